//! systemd's side of sd_notify(3): a datagram socket per child process, so
//! a launcher learns that a service is ready (READY=1) and where it serves
//! (STATUS=serving on ADDR) from the service itself, as systemd does, never
//! by polling or sleeping.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::{net::UnixDatagram, sync::mpsc, task::JoinHandle};

/// Messages kept for a reader who is not reading; beyond this the newest
/// are dropped. A service that notifies must never block on a full socket
/// (sd_notify's send is blocking), so the socket is always drained.
const BACKLOG: usize = 1024;

/// A directory under the system temp dir, removed on drop. Its name,
/// `<prefix>-<pid>-<random>`, names the process that made it, so that
/// [`sweep_orphans`] can remove it when that process was killed before its
/// drop could run.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
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

/// Removes the temp directories `<prefix>-<pid>` and `<prefix>-<pid>-...`
/// whose process is gone: left by a run that was killed (SIGKILL, OOM)
/// before it could clean up. Another user's, or a live process's, stay.
pub fn sweep_orphans(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let prefix = format!("{prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // Signal 0 checks that a process exists without touching it.
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One notification: its `NAME=value` lines.
pub type Message = Vec<String>;

const NOTIFY_DIR_PREFIX: &str = "valerix-notify";

pub struct NotifySocket {
    path: PathBuf,
    messages: mpsc::Receiver<Message>,
    drain: JoinHandle<()>,
    _dir: TempDir,
}

impl NotifySocket {
    pub fn bind() -> std::io::Result<Self> {
        sweep_orphans(NOTIFY_DIR_PREFIX);
        let dir = TempDir::new(NOTIFY_DIR_PREFIX)?;
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path)?;
        let (tx, messages) = mpsc::channel(BACKLOG);
        let drain = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf).await {
                let msg = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned)
                    .collect();
                let _ = tx.try_send(msg);
            }
        });
        Ok(Self {
            path,
            messages,
            drain,
            _dir: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next message, or None after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Message> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }

    /// Reads messages until one has a line starting with `line` (e.g.
    /// `READY=1`, `STATUS=unhealthy`); returns the messages read, that one
    /// last, or what did arrive when `deadline` passed first.
    pub async fn wait_for(
        &mut self,
        line: &str,
        deadline: Duration,
    ) -> Result<Vec<Message>, Vec<Message>> {
        let start = Instant::now();
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match self.recv(left).await {
                Some(msg) => {
                    let found = msg.iter().any(|l| l.starts_with(line));
                    seen.push(msg);
                    if found {
                        return Ok(seen);
                    }
                }
                None => return Err(seen),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.drain.abort();
    }
}

/// The address in the `STATUS=serving on ADDR[ and SOCKET]` line the
/// runtime sends with READY=1.
pub fn serving_addr(message: &[String]) -> Option<SocketAddr> {
    message
        .iter()
        .find_map(|l| l.strip_prefix("STATUS=serving on "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
