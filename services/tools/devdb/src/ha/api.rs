//! What the cluster says of itself, through Patroni's REST API: its
//! members and their roles, and a planned switchover.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::HaCluster;
use crate::Error;

/// A member of the cluster as Patroni's `GET /cluster` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub name: String,
    /// `leader`, `sync_standby`, `replica`, ...
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, `creating replica`, ...
    pub state: String,
    #[serde(default)]
    pub timeline: Option<u64>,
}

impl Member {
    pub fn is_leader(&self) -> bool {
        self.role == "leader" && self.is_up()
    }
    pub fn is_sync_standby(&self) -> bool {
        self.role == "sync_standby" && self.is_up()
    }
    /// Running PostgreSQL: a primary, or a standby that follows one.
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming")
    }
}

#[derive(Debug, Deserialize)]
struct ClusterView {
    members: Vec<Member>,
}

impl HaCluster {
    /// The members as the first node whose REST API answers sees them
    /// (none while no Patroni answers).
    pub async fn members(&self) -> Vec<Member> {
        for node in &self.nodes {
            let Ok(answer) = self
                .http
                .get(format!("{}/cluster", node.api()))
                .send()
                .await
            else {
                continue;
            };
            if let Ok(view) = answer.json::<ClusterView>().await {
                return view.members;
            }
        }
        Vec::new()
    }

    /// The current leader's name, if a leader is running.
    pub async fn leader(&self) -> Option<String> {
        self.members()
            .await
            .into_iter()
            .find(Member::is_leader)
            .map(|m| m.name)
    }

    /// A planned switchover to `candidate` (a synchronous standby), through
    /// the leader's REST API; returns once Patroni says it is done.
    pub async fn switchover(&self, leader: &str, candidate: &str) -> Result<(), Error> {
        let node = &self.nodes[self.index(leader)?];
        let answer = self
            .http
            .post(format!("{}/switchover", node.api()))
            .timeout(Duration::from_secs(60))
            .json(&json!({ "leader": leader, "candidate": candidate }))
            .send()
            .await
            .map_err(|e| Error::Ha(format!("switchover request: {e}")))?;
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(Error::Ha(format!("switchover refused ({status}): {body}")))
        }
    }
}
