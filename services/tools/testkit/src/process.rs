//! Services as real processes (the CLI's `valerix service <name>`), started
//! the way systemd starts them: readiness and the bound address arrive as
//! READY=1 / STATUS= on a NOTIFY_SOCKET of the test's own, so tests wait on
//! the service saying so, never on a sleep.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, BufReader},
    net::UnixDatagram,
    process::{Child, Command},
};

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unix datagram socket playing systemd's side of sd_notify(3).
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl NotifySocket {
    pub fn bind() -> Self {
        let dir = TempDir::new("valerix-notify");
        let path = dir.path().join("notify.sock");
        let socket =
            UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        Self {
            socket,
            path,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message's `NAME=value` lines, or None after `timeout`.
    pub async fn recv(&self, timeout: Duration) -> Option<Vec<String>> {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(timeout, self.socket.recv(&mut buf))
            .await
            .ok()?
            .unwrap_or_else(|e| panic!("notify socket: {e}"));
        Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Reads messages until one has a line starting with `line` (e.g.
    /// `READY=1`, `STATUS=unhealthy`); returns the messages read, that one
    /// last. Panics after `deadline`, listing what did arrive.
    pub async fn wait_for(&self, line: &str, deadline: Duration) -> Vec<Vec<String>> {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.recv(left).await {
                Some(msg) => {
                    let found = msg.iter().any(|l| l.starts_with(line));
                    seen.push(msg);
                    if found {
                        return seen;
                    }
                }
                None => panic!("no {line} within {deadline:?}; received {seen:?}"),
            }
        }
    }
}

/// The `STATUS=serving on ADDR` line `valerix_runtime::server` sends with READY=1.
pub fn serving_addr(message: &[String]) -> Option<SocketAddr> {
    message
        .iter()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))?
        .parse()
        .ok()
}

/// Says whether the test may use `tool` (e.g. `prometheus`): on PATH, or,
/// when it is not, a printed skip (None) — except under CI=true, where a
/// missing tool fails the test instead of silently skipping it.
pub fn require_tool(tool: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "{tool} is not installed, and CI=true: not skipping");
        eprintln!("SKIPPED: {tool} is not on PATH ({install_hint})");
    }
    found
}

/// A service running as a child process; killed when dropped.
pub struct ServiceProcess {
    pub name: String,
    pub url: String,
    pub addr: SocketAddr,
    /// Keeps receiving after start-up: WATCHDOG=1, STATUS=, STOPPING=1.
    pub notify: NotifySocket,
    /// The messages up to and including READY=1, in order.
    pub startup: Vec<Vec<String>>,
    child: Child,
    output: Arc<Mutex<String>>,
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

impl ServiceProcess {
    /// Runs `exe service <service> --listen 127.0.0.1:0 <args>` with a
    /// NOTIFY_SOCKET and `env`, and returns once it sent READY=1.
    pub async fn start(exe: &Path, service: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let notify = NotifySocket::bind();
        let mut cmd = Command::new(exe);
        cmd.args(["service", service, "--listen", "127.0.0.1:0"])
            .args(args)
            // Nothing from the test's own environment decides what is tested.
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", notify.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            capture(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, output.clone());
        }
        let startup = tokio::select! {
            msg = notify.wait_for("READY=1", Duration::from_secs(60)) => msg,
            status = child.wait() => {
                let out = output.lock().map(|o| o.clone()).unwrap_or_default();
                panic!("{service} exited before READY=1 ({status:?}); output:\n{out}");
            }
        };
        let ready = startup.last().cloned().unwrap_or_default();
        let addr = serving_addr(&ready)
            .unwrap_or_else(|| panic!("{service}: READY=1 without the address: {ready:?}"));
        Self {
            name: service.to_owned(),
            url: format!("http://{addr}"),
            addr,
            notify,
            startup,
            child,
            output,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().map_or(0, |p| p as i32)
    }

    /// What it printed so far (stdout and stderr, line-interleaved).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most `deadline`) for it to exit.
    pub async fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        use nix::{
            sys::signal::{Signal, kill},
            unistd::Pid,
        };
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(Ok(status)) => status,
            other => panic!(
                "{} did not exit within {deadline:?} of SIGTERM ({other:?}); output:\n{}",
                self.name,
                self.output()
            ),
        }
    }
}
