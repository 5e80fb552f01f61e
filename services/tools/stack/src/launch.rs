//! The stack as processes, wired from the topology: each service gets the
//! database, its callees' addresses (their Unix sockets when there are
//! any), and starts after the services it calls. `valerix up`, the chaos
//! run, the benchmark and the tests all start the stack through this.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use valerix_runtime::topology::Service;

use crate::process::{LaunchError, Output, ServiceProcess};

/// A loopback port nobody listens on right now (e.g. an endpoint that must
/// refuse connections).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Which ports the services listen on.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// The contract's layout around the order service's port (`valerix up
    /// --base-port`).
    Base(u16),
    /// Whatever the kernel gives each (port 0); kept across restarts.
    Any,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("base port {0} leaves no room for every service's port")]
    BasePort(u16),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// The flags that wire `service` into a stack: the database (when it keeps
/// state), the gremlins, and the address of each service it calls (as
/// `address_of` knows it). In-process test stacks parse the same flags.
pub fn wiring(
    service: Service,
    database_url: Option<&str>,
    gremlins: bool,
    address_of: impl Fn(Service) -> Option<String>,
) -> Vec<String> {
    let mut args = Vec::new();
    if service.uses_database()
        && let Some(url) = database_url
    {
        args.extend(["--database-url".to_owned(), url.to_owned()]);
    }
    if gremlins {
        args.push("--gremlins".to_owned());
    }
    for &callee in service.calls() {
        if let Some(address) = address_of(callee) {
            args.extend([callee.address_flag().to_owned(), address]);
        }
    }
    args
}

/// What to start, and how. Only the services named in [`Self::with`] run.
pub struct StackBuilder {
    exe: PathBuf,
    host: IpAddr,
    ports: Ports,
    replicas: BTreeMap<Service, usize>,
    database_url: Option<String>,
    gremlins: bool,
    socket_dir: Option<PathBuf>,
    hold_sockets: bool,
    log_dir: Option<PathBuf>,
    capture: bool,
    otlp: Option<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    args: BTreeMap<Service, Vec<String>>,
}

impl StackBuilder {
    /// `exe` is the `valerix` binary (its `service` subcommand runs each).
    pub fn new(exe: &Path) -> Self {
        Self {
            exe: exe.to_owned(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::Any,
            replicas: BTreeMap::new(),
            database_url: None,
            gremlins: false,
            socket_dir: None,
            hold_sockets: false,
            log_dir: None,
            capture: false,
            otlp: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            args: BTreeMap::new(),
        }
    }

    /// Run `service` (`replicas` processes of it).
    pub fn with(mut self, service: Service, replicas: usize) -> Self {
        self.replicas.insert(service, replicas);
        self
    }

    /// Every service, one process each.
    pub fn all(self) -> Self {
        Service::ALL.into_iter().fold(self, |b, s| b.with(s, 1))
    }

    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }

    pub fn gremlins(mut self, on: bool) -> Self {
        self.gremlins = on;
        self
    }

    /// Each service also serves on `<dir>/<name>.sock`, and its callers
    /// reach it there.
    pub fn unix_sockets(mut self, dir: &Path) -> Self {
        self.socket_dir = Some(dir.to_owned());
        self
    }

    /// Bind each service's sockets here and pass them to every start of it
    /// ([`ServiceProcess::hold_sockets`]), as systemd's `.socket` units do.
    pub fn hold_sockets(mut self, on: bool) -> Self {
        self.hold_sockets = on;
        self
    }

    /// Each service's output goes to `<dir>/<name>.log`.
    pub fn logs(mut self, dir: &Path) -> Self {
        self.log_dir = Some(dir.to_owned());
        self
    }

    /// Each service's output is kept in memory ([`ServiceProcess::captured`]).
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// Traces go to this OTLP/HTTP endpoint, each service under its name.
    pub fn otlp(mut self, endpoint: &str) -> Self {
        self.otlp = Some(endpoint.to_owned());
        self
    }

    /// For every service.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Not inherited by any service.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.to_owned());
        self
    }

    /// Flags for one service only (every replica of it).
    pub fn args<S: Into<String>>(
        mut self,
        service: Service,
        args: impl IntoIterator<Item = S>,
    ) -> Self {
        self.args
            .entry(service)
            .or_default()
            .extend(args.into_iter().map(Into::into));
        self
    }

    fn listen(&self, service: Service) -> Result<SocketAddr, StackError> {
        let port = match self.ports {
            Ports::Any => 0,
            Ports::Base(base) => service
                .port_from_base(base)
                .ok_or(StackError::BasePort(base))?,
        };
        Ok(SocketAddr::new(self.host, port))
    }

    /// Starts the services in dependency order, each once the ones it
    /// calls are ready; the replicas of one service together.
    pub async fn start(self) -> Result<Stack, StackError> {
        if let Some(dir) = &self.socket_dir {
            std::fs::create_dir_all(dir).map_err(|e| StackError::Io(dir.clone(), e))?;
        }
        if let Some(dir) = &self.log_dir {
            std::fs::create_dir_all(dir).map_err(|e| StackError::Io(dir.clone(), e))?;
        }
        let mut stack = Stack { procs: Vec::new() };
        for service in Service::START_ORDER {
            let replicas = self.replicas.get(&service).copied().unwrap_or(0);
            let mut started = Vec::new();
            for i in 1..=replicas {
                let mut p = self.process(service, i, replicas, &stack)?;
                p.spawn()?;
                started.push(p);
            }
            for p in &mut started {
                p.ready().await?;
            }
            stack.procs.extend(started);
        }
        Ok(stack)
    }

    fn process(
        &self,
        service: Service,
        replica: usize,
        replicas: usize,
        running: &Stack,
    ) -> Result<ServiceProcess, StackError> {
        let name = if replicas > 1 {
            format!("{}-{replica}", service.name())
        } else {
            service.name().to_owned()
        };
        let mut p =
            ServiceProcess::new(&self.exe, service, self.listen(service)?).named(name.clone());
        p = p.args(wiring(
            service,
            self.database_url.as_deref(),
            self.gremlins,
            |callee| running.find(callee).map(ServiceProcess::local_address),
        ));
        if let Some(extra) = self.args.get(&service) {
            p = p.args(extra.iter().cloned());
        }
        if let Some(dir) = &self.socket_dir {
            p = p.unix_socket(dir.join(format!("{name}.sock")));
        }
        if self.hold_sockets {
            p = p.hold_sockets();
        }
        p = p.output(match (&self.log_dir, self.capture) {
            (Some(dir), _) => Output::File(dir.join(format!("{name}.log"))),
            (None, true) => Output::Capture,
            (None, false) => Output::Inherit,
        });
        if let Some(endpoint) = &self.otlp {
            p = p
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_SERVICE_NAME", service.name());
        }
        for (k, v) in &self.env {
            p = p.env(k, v);
        }
        for k in &self.env_remove {
            p = p.env_remove(k);
        }
        Ok(p)
    }
}

/// The running services, in the order they started.
pub struct Stack {
    procs: Vec<ServiceProcess>,
}

impl Stack {
    fn find(&self, service: Service) -> Option<&ServiceProcess> {
        self.procs.iter().find(|p| p.service == service)
    }

    /// The (first) process of `service`.
    ///
    /// # Panics
    /// When the stack was built without it: a launcher's own mistake.
    pub fn get(&self, service: Service) -> &ServiceProcess {
        self.find(service)
            .unwrap_or_else(|| panic!("{service} is not part of this stack"))
    }

    pub fn get_mut(&mut self, service: Service) -> &mut ServiceProcess {
        self.procs
            .iter_mut()
            .find(|p| p.service == service)
            .unwrap_or_else(|| panic!("{service} is not part of this stack"))
    }

    /// Every replica of `service`.
    pub fn replicas(&self, service: Service) -> impl Iterator<Item = &ServiceProcess> {
        self.procs.iter().filter(move |p| p.service == service)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ServiceProcess> {
        self.procs.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ServiceProcess> {
        self.procs.iter_mut()
    }

    /// SIGTERM to all at once (each drains on its own), then each gets up
    /// to `grace` before SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        for p in self.procs.iter().rev() {
            p.sigterm();
        }
        for p in self.procs.iter_mut().rev() {
            p.stop(grace).await;
        }
    }
}
