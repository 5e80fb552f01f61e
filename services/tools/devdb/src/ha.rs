//! A throwaway highly available PostgreSQL, as operators run one: etcd as
//! the consensus store, two or three PostgreSQL nodes under Patroni with a
//! synchronous standby, and HAProxy sending connections to whichever node
//! Patroni's REST API calls primary. Everything runs on loopback, as the
//! server's account when we are root, dies with us, and is removed when
//! dropped, like [`crate::Cluster`].
//!
//! The settings are the ones the failover drill measured (docs/failover.md):
//! `ttl 10 / loop_wait 2 / retry_timeout 4` (Patroni's defaults 30/10/10
//! take 24 s to fail over), `synchronous_mode` (an acknowledged commit is on
//! two nodes), `use_pg_rewind` (the old primary rejoins as a standby), and
//! `wal_retrieve_retry_interval 500ms` (the 5 s default doubles the time a
//! new standby takes to stream).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{Error, io, tied::Tied};

mod api;
mod config;

pub use api::Member;

/// What Patroni is told about timing, in seconds (see the module's doc).
pub const TTL_SECS: u64 = 10;
pub const LOOP_WAIT_SECS: u64 = 2;
pub const RETRY_TIMEOUT_SECS: u64 = 4;

const DIR_PREFIX: &str = "valerix-ha-";

/// How to set the cluster up.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// PostgreSQL nodes under Patroni: 2 or 3.
    pub nodes: usize,
    /// Patroni's `synchronous_mode_strict`: never commit on one node, even
    /// when that means no writes while the standby is gone.
    pub strict: bool,
}

impl Default for HaOptions {
    fn default() -> Self {
        Self {
            nodes: 2,
            strict: false,
        }
    }
}

/// One PostgreSQL node and its Patroni.
struct Node {
    name: String,
    pg_port: u16,
    api_port: u16,
    config: PathBuf,
    patroni: Option<Tied>,
}

impl Node {
    fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
    }
    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// A running HA cluster. Dropping it stops every process and deletes its files.
pub struct HaCluster {
    root: PathBuf,
    user: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    etcd: Option<Tied>,
    haproxy: Option<Tied>,
    nodes: Vec<Node>,
    port: u16,
    http: reqwest::Client,
}

/// The programs, found on PATH or where Debian puts them.
struct Programs {
    patroni: PathBuf,
    etcd: PathBuf,
    haproxy: PathBuf,
}

/// A program on PATH or in the system's bin and sbin directories (Debian
/// puts haproxy in /usr/sbin, which a user's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl Programs {
    fn find() -> Result<Self, Error> {
        let found = |name| find_program(name).ok_or(Error::HaProgramsNotFound);
        Ok(Self {
            patroni: found("patroni")?,
            etcd: found("etcd")?,
            haproxy: found("haproxy")?,
        })
    }
}

/// Stops what a killed process's cluster left running. Patroni, etcd and
/// HAProxy died with it; a PostgreSQL whose Patroni was killed outright may
/// not have.
fn stop_leftover_servers(root: &Path) {
    for node in fs::read_dir(root).into_iter().flatten().flatten() {
        if let Some(pid) = postmaster_pid(&node.path().join("data")) {
            let _ = kill(pid, Signal::SIGQUIT);
        }
    }
}

/// The postmaster of a data directory, from its `postmaster.pid`.
fn postmaster_pid(data: &Path) -> Option<Pid> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    Some(Pid::from_raw(pid))
}

impl HaCluster {
    /// Starts etcd, the nodes and HAProxy; returns once a primary with a
    /// synchronous standby (with two nodes or more) takes writes through
    /// HAProxy, or fails after `within`.
    pub async fn start(options: &HaOptions, within: Duration) -> Result<Self, Error> {
        let programs = Programs::find()?;
        // Patroni needs more of PostgreSQL's programs than initdb and
        // postgres (pg_controldata, pg_rewind, pg_basebackup): the directory
        // they are installed in, not the one that links the two.
        let bin = crate::find_bin_dir()?;
        let bin = fs::canonicalize(bin.join("postgres"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(bin);
        let user = crate::server_user()?;
        let root = crate::fresh_dir(DIR_PREFIX, stop_leftover_servers)?;
        let mut cluster = Self {
            root,
            user,
            etcd: None,
            haproxy: None,
            nodes: Vec::new(),
            port: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .map_err(|e| Error::Ha(format!("building an HTTP client: {e}")))?,
        };
        cluster.own(&cluster.root.clone(), 0o700)?;

        let etcd_client = crate::free_port()?;
        let etcd_peer = crate::free_port()?;
        let mut etcd = Command::new(&programs.etcd);
        etcd.args([
            "--name=valerix".to_owned(),
            format!("--data-dir={}", cluster.root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=valerix=http://127.0.0.1:{etcd_peer}"),
        ]);
        cluster.etcd = Some(cluster.spawn("etcd", etcd, Signal::SIGKILL)?);

        for i in 1..=options.nodes.clamp(1, 3) {
            let node = Node {
                name: format!("pg{i}"),
                pg_port: crate::free_port()?,
                api_port: crate::free_port()?,
                config: PathBuf::new(),
                patroni: None,
            };
            let config = cluster.write_patroni_config(&node, etcd_client, &bin, options)?;
            cluster.nodes.push(Node { config, ..node });
        }
        cluster.port = crate::free_port()?;
        let haproxy_config = cluster.write_haproxy_config()?;

        let deadline = Instant::now() + within;
        cluster
            .wait(deadline, "etcd to answer", async |c: &Self| {
                c.http
                    .get(format!("http://127.0.0.1:{etcd_client}/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            })
            .await?;
        for i in 0..cluster.nodes.len() {
            cluster.start_node(i, &programs.patroni)?;
        }
        let mut haproxy = Command::new(&programs.haproxy);
        haproxy.arg("-db").arg("-f").arg(&haproxy_config);
        cluster.haproxy = Some(cluster.spawn("haproxy", haproxy, Signal::SIGKILL)?);
        let sync_needed = cluster.nodes.len() > 1;
        cluster
            .wait(
                deadline,
                "a primary with a synchronous standby",
                async |c: &Self| {
                    let members = c.members().await;
                    members.iter().any(Member::is_leader)
                        && (!sync_needed || members.iter().any(Member::is_sync_standby))
                },
            )
            .await?;
        Ok(cluster)
    }

    /// Runs `cmd` as the server's account with a clean environment (an
    /// inherited `PGPASSWORD` would break Patroni's `pg_basebackup`), its
    /// output in `<name>.log`, tied to our life by `on_our_death`.
    fn spawn(&self, name: &str, mut cmd: Command, on_our_death: Signal) -> Result<Tied, Error> {
        let log_path = self.root.join(format!("{name}.log"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        self.own(&log_path, 0o600)?;
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8")
            .env("HOME", &self.root)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("opening a log"))?)
            .stderr(log);
        crate::as_user(&mut cmd, self.user);
        Tied::spawn(name, cmd, on_our_death)
    }

    /// Starts node `i`'s Patroni: at first, or to rejoin after it was
    /// killed (Patroni rewinds a former primary and follows the new one).
    fn start_node(&mut self, i: usize, patroni: &Path) -> Result<(), Error> {
        let name = self.nodes[i].name.clone();
        let config = self.nodes[i].config.clone();
        // SIGTERM: Patroni stops its PostgreSQL on the way out.
        let mut cmd = Command::new(patroni);
        cmd.arg(&config);
        let tied = self.spawn(&name, cmd, Signal::SIGTERM)?;
        self.nodes[i].patroni = Some(tied);
        Ok(())
    }

    async fn wait(
        &self,
        deadline: Instant,
        what: &str,
        check: impl AsyncFn(&Self) -> bool,
    ) -> Result<(), Error> {
        while Instant::now() < deadline {
            if check(self).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Ha(format!(
            "no {what} in time; logs in {}:\n{}",
            self.root.display(),
            self.logs_tail()
        )))
    }

    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "haproxy"]
            .into_iter()
            .map(str::to_owned)
            .chain(self.nodes.iter().map(|n| n.name.clone()))
        {
            let text =
                fs::read_to_string(self.root.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            out.push_str(&format!("--- {name}.log\n{tail}\n"));
        }
        out
    }

    fn index(&self, name: &str) -> Result<usize, Error> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| Error::Ha(format!("no node {name}")))
    }

    /// SIGKILLs node `name`'s Patroni and its postmaster together, as the
    /// loss of the node would: nobody releases the leader key, which then
    /// expires after the ttl.
    pub fn kill_node(&mut self, name: &str) -> Result<(), Error> {
        let i = self.index(name)?;
        let postmaster = postmaster_pid(&self.nodes[i].dir(&self.root).join("data"));
        if let Some(patroni) = self.nodes[i].patroni.take() {
            patroni.kill(Signal::SIGKILL);
        }
        if let Some(pid) = postmaster {
            let _ = kill(pid, Signal::SIGKILL);
        }
        Ok(())
    }

    /// Starts a killed node's Patroni again: it rewinds the former primary
    /// if need be and follows the leader.
    pub fn rejoin(&mut self, name: &str) -> Result<(), Error> {
        let i = self.index(name)?;
        if self.nodes[i].patroni.is_some() {
            return Ok(());
        }
        // A postmaster killed with SIGKILL leaves its backends to notice;
        // Patroni starts once they have gone (it checks postmaster.pid).
        let patroni = Programs::find()?.patroni;
        self.start_node(i, &patroni)
    }

    /// HAProxy's port: the primary, whichever node it is.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A database through HAProxy (superuser `postgres`, trust on loopback).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The names of the nodes, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Stops everything and removes the files.
    pub fn stop(&mut self) {
        if let Some(haproxy) = self.haproxy.take() {
            haproxy.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
        for node in &mut self.nodes {
            if let Some(patroni) = node.patroni.take() {
                // Patroni stops PostgreSQL (fast shutdown) before it exits.
                patroni.stop(Signal::SIGTERM, Duration::from_secs(20));
            }
            if let Some(pid) = postmaster_pid(&node.dir(&self.root).join("data")) {
                let _ = kill(pid, Signal::SIGQUIT);
            }
        }
        if let Some(etcd) = self.etcd.take() {
            etcd.stop(Signal::SIGTERM, Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
