//! A reference for the gateway's cost: HAProxy doing the gateway's job for
//! `POST /orders` (the `/api` prefix taken off, an `Order-Id` added when
//! the client sent neither it nor an `Idempotency-Key`) in front of the same order service, over the
//! same socket, with one thread as the gateway has. It checks no token and
//! records no metrics or spans: what is left is the price of a fifth
//! HTTP exchange per order on this machine, which no gateway can go below.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    net::TcpStream,
    process::{Child, Command},
};
use valerix_stack::{die_with_parent, free_port};

/// A running HAProxy; killed when dropped.
pub(crate) struct Reference {
    child: Child,
    pid: u32,
    /// The base whose `/orders` takes orders (`http://127.0.0.1:port/api`).
    pub(crate) base: String,
}

impl Reference {
    /// HAProxy on a free loopback port, forwarding to the order service at
    /// `order` (`unix@/path` or `host:port`), its configuration in `dir`.
    pub(crate) async fn start(haproxy: &Path, order: &str, dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let config = dir.join("reference-haproxy.cfg");
        std::fs::write(&config, configuration(port, order))
            .with_context(|| format!("writing {}", config.display()))?;
        let log = std::fs::File::create(dir.join("reference-haproxy.log"))?;
        let mut cmd = Command::new(haproxy);
        cmd.arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", haproxy.display()))?;
        let pid = child.id().context("HAProxy exited at once")?;
        let mut reference = Self {
            child,
            pid,
            base: format!("http://127.0.0.1:{port}/api"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Some(status) = reference.child.try_wait()? {
                bail!(
                    "HAProxy exited at start ({status}); see {}",
                    dir.join("reference-haproxy.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("HAProxy did not listen on port {port} within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(reference)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }
}

/// Kept-alive connections on both sides and reused for any request, as the
/// gateway's pool does; timeouts as the gateway's defaults.
fn configuration(port: u16, order: &str) -> String {
    format!(
        "global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend valerix
  bind 127.0.0.1:{port}
  http-request set-header Order-Id %[uuid] unless {{ req.hdr(idempotency-key) -m found }} || {{ req.hdr(order-id) -m found }}
  http-request set-path %[path,regsub(^/api/,/)]
  default_backend order
backend order
  http-reuse always
  server order {order}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_forwards_to_the_order_service() {
        let cfg = configuration(5900, "unix@/run/order-service.sock");
        assert!(cfg.contains("bind 127.0.0.1:5900"), "{cfg}");
        assert!(
            cfg.contains("server order unix@/run/order-service.sock"),
            "{cfg}"
        );
        assert!(
            cfg.contains(
                "set-header Order-Id %[uuid] unless { req.hdr(idempotency-key) -m found } || { req.hdr(order-id) -m found }"
            ),
            "{cfg}"
        );
    }
}
