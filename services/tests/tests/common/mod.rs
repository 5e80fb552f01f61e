// Each test binary uses part of this module.
#![allow(dead_code)]

//! `valerix up` as a child process on free ports, for the tests that run the
//! stack the way a user does.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Four consecutive free ports (the gateway's, then the base); returns the
/// base (the order service's port).
///
/// Below the kernel's ephemeral range (32768 and up on Linux): a port the
/// kernel hands to someone else's bind to port 0 (a throwaway PostgreSQL of
/// a test running alongside) can then never be one of these between the
/// check here and `valerix up` binding it. Each call in this process takes
/// the next block, so two tests never get the same one.
pub fn free_base_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const BLOCKS: u32 = (32_000 - FIRST) / 4;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id() % BLOCKS;
    for _ in 0..BLOCKS {
        let block = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % BLOCKS;
        let gateway = (FIRST + block * 4) as u16;
        if (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", gateway + i)).is_ok()) {
            return gateway + 1;
        }
    }
    panic!("no four free ports between {FIRST} and 32000");
}

/// A running `valerix up`. Dropping it interrupts it, so a failing test
/// leaves no services or cluster behind.
pub struct Up {
    child: Option<Child>,
    pub base: u16,
    pub prometheus_port: u16,
    /// What it printed up to "Ctrl-C stops everything".
    pub printed: Vec<String>,
    pub cluster_dir: Option<PathBuf>,
    /// What it prints after that.
    later: Option<mpsc::Receiver<String>>,
    /// The operator's dashboard link it printed (`http://.../#token=...`).
    pub operator_link: Option<String>,
}

impl Up {
    pub fn start() -> Self {
        Self::start_with(free_base_port(), &[])
    }

    /// On the given base port (the order service's).
    pub fn start_on(base: u16) -> Self {
        Self::start_with(base, &[])
    }

    /// `valerix up` on `base` with these flags too.
    pub fn start_with(base: u16, extra: &[&str]) -> Self {
        let prometheus_port = free_base_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_valerix-under-test"))
            .args(["up", "--base-port", &base.to_string()])
            .args(["--prometheus-port", &prometheus_port.to_string()])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn valerix up");
        let stdout = child.stdout.take().expect("stdout");
        let mut up = Self {
            child: Some(child),
            base,
            prometheus_port,
            printed: Vec::new(),
            cluster_dir: None,
            later: None,
            operator_link: None,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| {
                    panic!("valerix up did not come up; printed: {:#?}", up.printed)
                });
            if let Some(rest) = line.strip_prefix("PostgreSQL: throwaway cluster in ") {
                up.cluster_dir = rest.split(" on port").next().map(PathBuf::from);
            }
            if let Some(link) = line.split_whitespace().find(|w| w.contains("/#token=")) {
                up.operator_link = Some(link.to_owned());
            }
            let done = line.starts_with("Ctrl-C stops everything");
            up.printed.push(line);
            if done {
                up.later = Some(rx);
                return up;
            }
        }
    }

    /// The lines printed since the last call (or since it came up).
    pub fn new_lines(&mut self) -> Vec<String> {
        self.later
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// The operator token, from the printed link's fragment.
    pub fn operator_token(&self) -> String {
        let link = self
            .operator_link
            .as_deref()
            .unwrap_or_else(|| panic!("valerix up printed no operator link: {:#?}", self.printed));
        link.split_once("#token=")
            .map(|(_, token)| token.to_owned())
            .unwrap_or_default()
    }

    pub fn url(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Ctrl-C, then waits (at most a minute) for it to exit.
    pub fn interrupt(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("interrupt");
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(child.wait());
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("valerix up stops after Ctrl-C")
            .expect("wait")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let _ = child.wait();
        }
    }
}
