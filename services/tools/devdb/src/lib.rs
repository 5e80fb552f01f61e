//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, run
//! `postgres` on a free loopback port, and remove it all when done. Used by
//! `valerix up` and by the tests; needs only the PostgreSQL server binaries.
//!
//! Postgres refuses to run as root, so as root the cluster runs as the
//! `postgres` user (or `nobody`). The server is tied to a thread of ours that
//! lives as long as it does, with a parent-death signal: if our process dies,
//! the server goes with it instead of lingering.

mod ha;
mod tied;

pub use ha::{
    HaCluster, HaOptions, LOOP_WAIT_SECS, Member, RETRY_TIMEOUT_SECS, TTL_SECS, find_program,
};

use std::{
    fs,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

use tied::Tied;

use nix::{
    sys::signal::{Signal, kill},
    unistd::{Gid, Pid, Uid, User, chown},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries not found: put initdb and postgres on PATH or install them under /usr/lib/postgresql/<version>/bin (Debian: apt-get install postgresql)"
    )]
    BinariesNotFound,
    #[error(
        "running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL"
    )]
    NoUnprivilegedUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("initdb failed ({status}): {output}")]
    Initdb { status: String, output: String },
    #[error("postgres did not become ready within {0:?}; log:\n{1}")]
    NotReady(Duration, String),
    #[error(
        "patroni, etcd and haproxy are needed for a highly available cluster (Debian: apt-get install patroni etcd-server haproxy)"
    )]
    HaProgramsNotFound,
    #[error("{0}")]
    Ha(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Where `initdb` and `postgres` live: PATH first, then the newest
/// /usr/lib/postgresql/*/bin.
pub fn find_bin_dir() -> Result<PathBuf, Error> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Ok(dir);
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = e.path().join("bin");
            has_both(&dir).then_some((version, dir))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, d)| d)
        .ok_or(Error::BinariesNotFound)
}

/// The account the server runs as: ourselves, or an unprivileged one as root.
pub(crate) fn server_user() -> Result<Option<(Uid, Gid)>, Error> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(u) = User::from_name(name)? {
            return Ok(Some((u.uid, u.gid)));
        }
    }
    Err(Error::NoUnprivilegedUser)
}

pub(crate) fn free_port() -> Result<u16, Error> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

const DIR_PREFIX: &str = "valerix-pg-";

/// Removes the directories `<prefix><pid>-<n>` under `base` whose process
/// no longer exists (a killed test run cannot clean up after itself),
/// after `before_removing` has seen each.
pub(crate) fn sweep_stale(base: &Path, prefix: &str, before_removing: impl Fn(&Path)) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if kill(Pid::from_raw(pid), None).is_err() {
            before_removing(&e.path());
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// A new directory `<prefix><our pid>-<n>` in the temporary directory,
/// after sweeping away those of processes that are gone
/// ([`sweep_stale`], with `before_removing`).
pub(crate) fn fresh_dir(prefix: &str, before_removing: impl Fn(&Path)) -> Result<PathBuf, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::env::temp_dir();
    sweep_stale(&base, prefix, before_removing);
    let root = base.join(format!(
        "{prefix}{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    Ok(root)
}

/// How to set a cluster up beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Server settings given as `-c name=value` after the defaults, so they
    /// win over them and over the configuration files (e.g. WAL archiving:
    /// `archive_mode`, `archive_command`, `archive_timeout`).
    pub settings: Vec<(String, String)>,
}

/// A running throwaway cluster. Dropping it stops the server and deletes
/// its files.
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(Uid, Gid)>,
    settings: Vec<(String, String)>,
    /// The postmaster; None while the server is stopped.
    server: Option<Tied>,
}

impl Cluster {
    /// Creates and starts a cluster; returns once it accepts connections.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(&Options::default())
    }

    /// [`Self::start`] with `options`.
    pub fn start_with(options: &Options) -> Result<Self, Error> {
        let mut cluster = Self::empty(options)?;
        cluster.init()?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// The cluster's directory, owned by the server's account, without a
    /// data directory and not running: then [`Self::init`] or a data
    /// directory from elsewhere (a restore from a backup), and
    /// [`Self::start_on_free_port`].
    pub fn empty(options: &Options) -> Result<Self, Error> {
        let bin = find_bin_dir()?;
        let user = server_user()?;
        let root = fresh_dir(DIR_PREFIX, |_| {})?;
        // From here on, dropping `cluster` removes the directory.
        let cluster = Self {
            root,
            port: 0,
            bin,
            user,
            settings: options.settings.clone(),
            server: None,
        };
        if let Some((uid, gid)) = user {
            chown(&cluster.root, Some(uid), Some(gid))?;
        }
        fs::set_permissions(&cluster.root, fs::Permissions::from_mode(0o700))
            .map_err(io("setting cluster directory permissions"))?;
        Ok(cluster)
    }

    /// `initdb` into the data directory of an [`Self::empty`] cluster.
    pub fn init(&self) -> Result<(), Error> {
        let mut initdb = Command::new(self.bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-instructions",
            ])
            .arg("-D")
            .arg(self.data_dir())
            .current_dir(&self.root)
            .env("LC_ALL", "C");
        as_user(&mut initdb, self.user);
        let out = initdb.output().map_err(io("running initdb"))?;
        if !out.status.success() {
            return Err(Error::Initdb {
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Starts the server on a free port; returns once it accepts connections.
    pub fn start_on_free_port(&mut self) -> Result<(), Error> {
        // The free port may be taken between finding and binding it: retry.
        let mut last_err = None;
        for _ in 0..3 {
            self.port = free_port()?;
            match self.start_server() {
                Ok(()) => return Ok(()),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or(Error::NotReady(Duration::ZERO, String::new())))
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The account the server runs as when we are root (None: as ourselves).
    /// Tools that work on the data directory (pgBackRest) must run as it too.
    pub fn os_user(&self) -> Option<(Uid, Gid)> {
        self.user
    }

    /// Starts the server on the cluster's port (again, after `stop_server`);
    /// returns once it accepts connections.
    pub fn start_server(&mut self) -> Result<(), Error> {
        if self.server.is_some() {
            return Ok(());
        }
        let log_path = self.root.join("server.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("opening the server log"))?;
        if let Some((uid, gid)) = self.user {
            chown(&log_path, Some(uid), Some(gid))?;
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.root)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("opening the server log"))?)
            .stderr(log);
        as_user(&mut cmd, self.user);
        self.server = Some(Tied::spawn(
            &format!("postgres-{}", self.port),
            cmd,
            Signal::SIGQUIT,
        )?);
        let ready = self.wait_ready(Duration::from_secs(60));
        if ready.is_err() {
            self.stop_server();
        }
        ready
    }

    /// Ready means the postmaster wrote "ready" into postmaster.pid, which
    /// is what `pg_ctl -w` waits for too.
    fn wait_ready(&self, deadline: Duration) -> Result<(), Error> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(pid_file) = fs::read_to_string(&pid_file)
                && pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready")
            {
                return Ok(());
            }
            if self.server.as_ref().is_none_or(Tied::is_finished) {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(Error::NotReady(deadline, self.log()))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a database in this cluster (superuser `postgres`, trust auth).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The same database reached through the server's Unix socket in the
    /// cluster's directory: no loopback TCP for a client on this host.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{database}?host={}",
            self.port,
            self.root.display()
        )
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: clients are disconnected) and keeps
    /// its files, so `start_server` brings the same databases back on the
    /// same port: a database outage, for tests.
    pub fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(Signal::SIGINT, Duration::from_secs(10));
        }
    }

    /// Fast shutdown, then removes the files.
    pub fn stop(&mut self) {
        self.stop_server();
        let _ = fs::remove_dir_all(&self.root);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn as_user(cmd: &mut Command, user: Option<(Uid, Gid)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
}
