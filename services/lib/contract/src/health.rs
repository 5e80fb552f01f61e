//! The contract's health document, the same shape on every service.

use std::{collections::BTreeMap, sync::OnceLock};

use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Enum, Object, payload::Json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
}

static STARTED: OnceLock<DateTime<Utc>> = OnceLock::new();

/// When this process started serving: fixed by `server::serve_app` as it
/// starts (the first call wins), so a restarted service reports a later one.
pub fn started_at() -> DateTime<Utc> {
    *STARTED.get_or_init(Utc::now)
}

/// `{"status", "service", "dependencies", "timestamp"}` as in the contract,
/// and `started_at`.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub service: String,
    /// Each dependency and its state, e.g. `"database": "connected"`.
    pub dependencies: BTreeMap<String, String>,
    pub timestamp: DateTime<Utc>,
    /// When the service's process started serving: a later value than
    /// before means it was restarted (the gateway's overview counts these).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
}

impl Health {
    pub fn new(service: &str) -> Self {
        Self {
            status: HealthStatus::Healthy,
            service: service.to_owned(),
            dependencies: BTreeMap::new(),
            timestamp: Utc::now(),
            started_at: Some(started_at()),
        }
    }

    /// The database: "connected" or "disconnected".
    pub fn database(self, up: bool) -> Self {
        self.dependency("database", up, "connected", "disconnected")
    }

    /// A downstream service: "reachable" or "unreachable".
    pub fn service(self, name: &str, up: bool) -> Self {
        self.dependency(name, up, "reachable", "unreachable")
    }

    /// Any dependency down makes the whole service unhealthy.
    pub fn dependency(mut self, name: &str, up: bool, up_word: &str, down_word: &str) -> Self {
        self.dependencies.insert(
            name.to_owned(),
            if up { up_word } else { down_word }.to_owned(),
        );
        if !up {
            self.status = HealthStatus::Unhealthy;
        }
        self
    }

    /// Extra information that does not decide health (e.g. a breaker state).
    pub fn info(mut self, name: &str, value: impl Into<String>) -> Self {
        self.dependencies.insert(name.to_owned(), value.into());
        self
    }

    pub fn into_response(self) -> HealthResponse {
        match self.status {
            HealthStatus::Healthy => HealthResponse::Healthy(Json(self)),
            HealthStatus::Unhealthy => HealthResponse::Unhealthy(Json(self)),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum HealthResponse {
    /// Every dependency is up.
    #[oai(status = 200)]
    Healthy(Json<Health>),
    /// At least one dependency is down.
    #[oai(status = 503)]
    Unhealthy(Json<Health>),
}
