//! A service as a child process (`valerix service <name> ...`): started,
//! health-checked, killed and started again on the same address. Used by
//! `valerix up` and by the fault schedule.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::process::{Child, Command};

/// tokio's own setting for its worker threads (default: one per CPU).
pub const WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// Worker threads per service when the whole stack shares one machine: a
/// quarter of its CPUs each, at least one. With tokio's default every
/// service runs a worker per CPU, and on a small machine the services'
/// workers mostly wake each other and the PostgreSQL backends off the few
/// cores: with one worker each instead of two, `valerix bench` measured
/// 10-30% less CPU per order in the services on 2 CPUs (bench/README.md).
/// The services are I/O bound; one worker keeps up with what the database
/// can do here. Set TOKIO_WORKER_THREADS to override (it is passed through).
pub fn colocated_worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 4).max(1)
}

pub struct ServiceProcess {
    pub name: &'static str,
    /// host:port it listens on.
    pub listen: String,
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where its output goes; inherited from us when None.
    log: Option<PathBuf>,
    /// The Unix domain socket it also serves on, for the other services.
    socket: Option<PathBuf>,
    child: Option<Child>,
}

impl ServiceProcess {
    /// `exe service <sub> --listen <listen> <args...>`.
    pub fn new(
        exe: &Path,
        name: &'static str,
        sub: &str,
        listen: String,
        args: Vec<String>,
    ) -> Self {
        let mut all = vec![sub.to_owned(), "--listen".to_owned(), listen.clone()];
        all.extend(args);
        Self {
            name,
            listen,
            exe: exe.to_owned(),
            args: all,
            env: Vec::new(),
            log: None,
            socket: None,
            child: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn log_to(mut self, path: PathBuf) -> Self {
        self.log = Some(path);
        self
    }

    /// Also serve on the Unix socket `path`, which [`Self::local_address`]
    /// then gives to the services that call this one.
    pub fn unix_socket(mut self, path: PathBuf) -> Self {
        self = self.env("VALERIX_UNIX_SOCKET", &path.display().to_string());
        self.socket = Some(path);
        self
    }

    /// Its TCP address, for people, Prometheus and the load generator.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// How another service on this host reaches it: its Unix socket when it
    /// has one, else its TCP address.
    pub fn local_address(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix:{}", path.display()),
            None => self.url(),
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("service").args(&self.args);
        if std::env::var_os(WORKER_THREADS).is_none() {
            cmd.env(WORKER_THREADS, colocated_worker_threads().to_string());
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = &self.log {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            cmd.stdout(log.try_clone()?).stderr(log);
        }
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", self.name))?,
        );
        Ok(())
    }

    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    pub fn sigkill(&self) {
        self.signal(Signal::SIGKILL);
    }

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Not running: never started, or exited (on its own or killed).
    pub fn is_dead(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// SIGTERM, then up to `grace` for the drain, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        self.sigterm();
        if let Some(mut c) = self.child.take()
            && tokio::time::timeout(grace, c.wait()).await.is_err()
        {
            let _ = c.kill().await;
        }
    }

    /// Waits until `GET /health` answers 200, failing early if the process dies.
    pub async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if self.is_dead() {
                let hint = self
                    .log
                    .as_ref()
                    .map(|l| format!(" (see {})", l.display()))
                    .unwrap_or_default();
                bail!("{} exited while starting{hint}", self.name);
            }
            if let Ok(r) = http.get(format!("{}/health", self.url())).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if start.elapsed() > deadline {
                bail!("{} not healthy within {deadline:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
