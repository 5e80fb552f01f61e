//! One service as a child process (`valerix service <name> ...`), started
//! the way systemd starts it: it is ready when it says READY=1 on a
//! NOTIFY_SOCKET of ours, and that message names the address it serves on.
//! It can be killed and started again on the same address.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    process::{Child, Command},
};
use valerix_runtime::topology::Service;

use crate::{
    held::HeldSockets,
    notify::{Message, NotifySocket, serving_addr},
};

/// tokio's own setting for its worker threads (default: one per CPU).
pub const WORKER_THREADS: &str = "TOKIO_WORKER_THREADS";

/// How long a service may take from its start to READY=1.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Worker threads per service when the whole stack shares one machine: a
/// quarter of its CPUs each, at least one. With tokio's default every
/// service runs a worker per CPU, and on a small machine the services'
/// workers mostly wake each other and the PostgreSQL backends off the few
/// cores (measured: CHANGELOG.md). The services are I/O bound. Set
/// TOKIO_WORKER_THREADS to override (it is passed through).
pub fn colocated_worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus / 4).max(1)
}

/// Makes the child die with us: the kernel sends it SIGTERM when the
/// process that started it is gone, even after a SIGKILL
/// (`PR_SET_PDEATHSIG`), so a killed launcher leaves no service, port or
/// socket behind. The signal follows the *thread* that spawned the child:
/// spawn from a thread that lives as long as the launcher (tokio's worker
/// threads and the main thread do; `spawn_blocking` threads do not).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec; it makes
    // two system calls and builds an io::Error from an errno, none of which
    // allocates or takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The parent may have died before the line above: then no
            // signal will ever come.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("starting {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} exited before it was ready ({status}){hint}")]
    Exited {
        name: String,
        status: String,
        hint: String,
    },
    #[error("{name} not ready within {within:?}{hint}")]
    NotReady {
        name: String,
        within: Duration,
        hint: String,
    },
    #[error("{name} said READY=1 without its address: {message:?}")]
    NoAddress { name: String, message: Message },
}

/// Where a child's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Ours (a person watching `valerix up`).
    Inherit,
    /// Appended to this file (it survives restarts).
    File(PathBuf),
    /// Kept in memory, for [`ServiceProcess::output`] (tests).
    Capture,
}

pub struct ServiceProcess {
    pub service: Service,
    /// Its name among replicas of one service (`order-service-2`).
    pub name: String,
    /// What it was asked to listen on (port 0: any); after its first READY=1
    /// the address it got, so a restart comes back on the same one.
    listen: SocketAddr,
    exe: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    output: Output,
    captured: Arc<Mutex<String>>,
    socket: Option<PathBuf>,
    notify: Option<NotifySocket>,
    /// Bind its sockets here and pass them to every start of it.
    hold_sockets: bool,
    held: Option<HeldSockets>,
    /// The messages up to and including the last READY=1.
    pub startup: Vec<Message>,
    child: Option<Child>,
}

impl ServiceProcess {
    /// `exe service <command> --listen <listen>`; more with the builders.
    pub fn new(exe: &Path, service: Service, listen: SocketAddr) -> Self {
        Self {
            service,
            name: service.name().to_owned(),
            listen,
            exe: exe.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            output: Output::Inherit,
            captured: Arc::default(),
            socket: None,
            notify: None,
            hold_sockets: false,
            held: None,
            startup: Vec::new(),
            child: None,
        }
    }

    /// Bind its TCP (and Unix) socket here, once, and pass them to every
    /// start of it (socket activation, as systemd does): a restart refuses
    /// no connection.
    pub fn hold_sockets(mut self) -> Self {
        self.hold_sockets = true;
        self
    }

    pub fn named(mut self, name: String) -> Self {
        self.name = name;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Not inherited from us (tests keep their own environment out).
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.to_owned());
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Also serve on the Unix socket `path`, which [`Self::local_address`]
    /// then gives to the services that call this one.
    pub fn unix_socket(mut self, path: PathBuf) -> Self {
        self.socket = Some(path);
        self
    }

    /// The address it serves TCP on (once ready, the one it really got).
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Its TCP address as a URL, for people, Prometheus and load generators.
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

    /// What it printed so far, with [`Output::Capture`].
    pub fn captured(&self) -> String {
        self.captured.lock().map(|o| o.clone()).unwrap_or_default()
    }

    fn hint(&self) -> String {
        match &self.output {
            Output::File(path) => format!(" (see {})", path.display()),
            Output::Capture => format!("; output:\n{}", self.captured()),
            Output::Inherit => String::new(),
        }
    }

    /// Starts it and waits for READY=1.
    pub async fn start(&mut self) -> Result<(), LaunchError> {
        self.spawn()?;
        self.ready().await
    }

    /// Starts the process; [`Self::ready`] waits for it.
    pub fn spawn(&mut self) -> Result<(), LaunchError> {
        let io = |source| LaunchError::Io {
            name: self.name.clone(),
            source,
        };
        if self.notify.is_none() {
            self.notify = Some(NotifySocket::bind().map_err(io)?);
        }
        if self.hold_sockets && self.held.is_none() {
            let (held, addr) =
                HeldSockets::bind(self.listen, self.socket.as_deref()).map_err(io)?;
            self.listen = addr;
            self.held = Some(held);
        }
        let notify = self.notify.as_ref().map(|n| n.path().to_owned());
        let mut cmd = match &self.held {
            Some(held) => held.command(&self.name, &self.exe),
            None => Command::new(&self.exe),
        };
        cmd.args(["service", self.service.command(), "--listen"])
            .arg(self.listen.to_string())
            .args(&self.args);
        if let Some(path) = &self.socket {
            cmd.arg("--unix-socket").arg(path);
        }
        if std::env::var_os(WORKER_THREADS).is_none() {
            cmd.env(WORKER_THREADS, colocated_worker_threads().to_string());
        }
        // Meant for us, not for our children.
        for key in ["WATCHDOG_USEC", "WATCHDOG_PID"]
            .into_iter()
            .chain(self.env_remove.iter().map(String::as_str))
        {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NOTIFY_SOCKET", notify.unwrap_or_default());
        // Sockets passed to us are not the service's.
        if self.held.is_none() {
            for key in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"] {
                cmd.env_remove(key);
            }
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        die_with_parent(&mut cmd);
        match &self.output {
            Output::Inherit => {}
            Output::File(path) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(io)?;
                cmd.stdout(log.try_clone().map_err(io)?).stderr(log);
            }
            Output::Capture => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            name: self.name.clone(),
            source,
        })?;
        if let Some(out) = child.stdout.take() {
            capture(out, self.captured.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, self.captured.clone());
        }
        self.child = Some(child);
        Ok(())
    }

    /// Waits for READY=1 from the process [`Self::spawn`] started; fails
    /// early when it exits first.
    pub async fn ready(&mut self) -> Result<(), LaunchError> {
        let (Some(notify), Some(child)) = (self.notify.as_mut(), self.child.as_mut()) else {
            return Err(LaunchError::Exited {
                name: self.name.clone(),
                status: "never started".into(),
                hint: String::new(),
            });
        };
        let startup = tokio::select! {
            seen = notify.wait_for("READY=1", READY_WITHIN) => seen,
            status = child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(LaunchError::Exited { name: self.name.clone(), status, hint: self.hint() });
            }
        };
        let startup = startup.map_err(|_| LaunchError::NotReady {
            name: self.name.clone(),
            within: READY_WITHIN,
            hint: self.hint(),
        })?;
        let ready = startup.last().cloned().unwrap_or_default();
        self.listen = serving_addr(&ready).ok_or_else(|| LaunchError::NoAddress {
            name: self.name.clone(),
            message: ready,
        })?;
        self.startup = startup;
        Ok(())
    }

    /// The notifications it sends after READY=1 (WATCHDOG=1, STATUS=,
    /// STOPPING=1), while it runs.
    pub fn notifications(&mut self) -> Option<&mut NotifySocket> {
        self.notify.as_mut()
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), sig);
        }
    }

    pub fn sigkill(&self) {
        self.signal(Signal::SIGKILL);
    }

    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// How it ended, once it has (on its own or killed); None while it runs
    /// or before it started.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Not running: never started, or exited.
    pub fn is_dead(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// SIGTERM, then up to `grace` for the drain, then SIGKILL. How it
    /// ended (None if it had to be killed or never ran).
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.sigterm();
        let mut child = self.child.take()?;
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.kill().await;
                None
            }
        }
    }
}

fn capture(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut out) = into.lock() {
                out.push_str(&line);
                out.push('\n');
            }
        }
    });
}
