//! The observability side of `valerix up`: Prometheus, Grafana and Jaeger,
//! each started when its binary is on PATH, with configuration generated to
//! point at the services; the ones missing are named, not silently skipped.
//! The rule file, dashboard and provisioning are compiled in from grafana/,
//! so a packaged binary needs no checkout beside it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context;
use tokio::process::{Child, Command};

const RULES: &str = include_str!("../../../../grafana/prometheus/valerix-rules.yml");
const DASHBOARD: &str = include_str!("../../../../grafana/dashboards/valerix.json");
const DATASOURCES: &str = include_str!("../../../../grafana/provisioning/datasources/valerix.yml");
const DASHBOARD_PROVIDER: &str =
    include_str!("../../../../grafana/provisioning/dashboards/valerix.yml");
const ALERTING: &str = include_str!("../../../../grafana/provisioning/alerting/valerix-sla.yml");
const JAEGER_CONFIG: &str = include_str!("../../../../grafana/jaeger/valerix.yaml");

/// A Prometheus scrape target: job name and host:port.
pub struct Target {
    pub job: &'static str,
    pub address: String,
}

/// Where the observability tools listen (the datasources assume 9090).
pub const PROMETHEUS_PORT: u16 = 9090;
pub const GRAFANA_PORT: u16 = 3030;
/// Jaeger's OTLP/HTTP receiver; the services export there when Jaeger runs.
pub const JAEGER_OTLP: &str = "http://127.0.0.1:4318";
pub const JAEGER_UI: &str = "http://127.0.0.1:16686";

pub struct Tool {
    pub name: &'static str,
    pub url: String,
    pub child: Child,
}

/// What `start` brought up, and what it could not.
#[derive(Default)]
pub struct Observability {
    pub running: Vec<Tool>,
    pub skipped: Vec<String>,
}

impl Observability {
    pub fn jaeger_running(&self) -> bool {
        self.running.iter().any(|t| t.name == "jaeger")
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Prometheus configuration: every service scraped every 5 s (the 30 s
/// SLA window needs several samples), the SLA rule evaluated as often.
pub fn prometheus_config(targets: &[Target], rules_file: &Path) -> String {
    let mut s = format!(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\nrule_files:\n  - {}\nscrape_configs:\n",
        rules_file.display()
    );
    for t in targets {
        s.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n",
            t.job, t.address
        ));
    }
    s
}

fn spawn(name: &str, cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    valerix_stack::die_with_parent(cmd);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

async fn start_prometheus(
    bin: &Path,
    dir: &Path,
    targets: &[Target],
    port: u16,
) -> anyhow::Result<Tool> {
    let rules = dir.join("valerix-rules.yml");
    write(&rules, RULES)?;
    let config = dir.join("prometheus.yml");
    write(&config, &prometheus_config(targets, &rules))?;
    let child = spawn(
        "prometheus",
        Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        &dir.join("prometheus.log"),
    )?;
    Ok(Tool {
        name: "prometheus",
        url: format!("http://127.0.0.1:{port}"),
        child,
    })
}

/// Grafana needs its own install (static files, defaults.ini): GRAFANA_HOME,
/// or share/grafana beside the binary as in the Nix and upstream packages.
fn grafana_home(bin: &Path) -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("GRAFANA_HOME") {
        return Some(home.into());
    }
    let real = std::fs::canonicalize(bin).ok()?;
    let home = real.parent()?.parent()?.join("share/grafana");
    home.join("conf/defaults.ini").is_file().then_some(home)
}

async fn start_grafana(bin: &Path, home: &Path, dir: &Path) -> anyhow::Result<Tool> {
    let prov = dir.join("provisioning");
    let dashboards = dir.join("dashboards");
    write(&dashboards.join("valerix.json"), DASHBOARD)?;
    write(&prov.join("datasources/valerix.yml"), DATASOURCES)?;
    write(
        &prov.join("dashboards/valerix.yml"),
        &DASHBOARD_PROVIDER.replace(
            "/etc/valerix/grafana/dashboards",
            &dashboards.display().to_string(),
        ),
    )?;
    write(&prov.join("alerting/valerix-sla.yml"), ALERTING)?;
    let ini = dir.join("grafana.ini");
    write(
        &ini,
        &format!(
            "[server]\nhttp_addr = 127.0.0.1\nhttp_port = {GRAFANA_PORT}\n\
             [paths]\ndata = {data}\nlogs = {data}/log\nprovisioning = {prov}\n\
             [security]\nadmin_user = admin\nadmin_password = admin\n\
             [auth.anonymous]\nenabled = true\norg_role = Viewer\n\
             [analytics]\nreporting_enabled = false\ncheck_for_updates = false\n",
            data = dir.join("data").display(),
            prov = prov.display(),
        ),
    )?;
    let child = spawn(
        "grafana",
        Command::new(bin)
            .arg("server")
            .arg(format!("--homepath={}", home.display()))
            .arg(format!("--config={}", ini.display())),
        &dir.join("grafana.log"),
    )?;
    Ok(Tool {
        name: "grafana",
        url: format!("http://127.0.0.1:{GRAFANA_PORT}"),
        child,
    })
}

async fn start_jaeger(bin: &Path, dir: &Path) -> anyhow::Result<Tool> {
    // Always with a configuration file: Jaeger 2.0-2.2's built-in one reads
    // ./cmd/jaeger/sampling-strategies.json and exits without it (upstream
    // issue 6338). Ours: OTLP on 4317/4318, in-memory storage, UI on 16686.
    let config = dir.join("jaeger.yaml");
    write(&config, JAEGER_CONFIG)?;
    let child = spawn(
        "jaeger",
        Command::new(bin).arg(format!("--config={}", config.display())),
        &dir.join("jaeger.log"),
    )?;
    Ok(Tool {
        name: "jaeger",
        url: JAEGER_UI.to_owned(),
        child,
    })
}

/// Starts whatever of Prometheus, Grafana and Jaeger is installed, with its
/// files under `dir`.
pub async fn start(dir: &Path, targets: &[Target], prometheus_port: u16) -> Observability {
    let mut obs = Observability::default();
    let mut record = |name: &str, started: anyhow::Result<Tool>| match started {
        Ok(tool) => obs.running.push(tool),
        Err(err) => obs.skipped.push(format!("{name}: {err:#}")),
    };
    match on_path("prometheus") {
        Some(bin) => record(
            "prometheus",
            start_prometheus(&bin, &dir.join("prometheus"), targets, prometheus_port).await,
        ),
        None => record(
            "prometheus",
            Err(anyhow::anyhow!(
                "not on PATH (Debian: apt-get install prometheus)"
            )),
        ),
    }
    match on_path("grafana").or_else(|| on_path("grafana-server")) {
        Some(bin) => match grafana_home(&bin) {
            Some(home) => record(
                "grafana",
                start_grafana(&bin, &home, &dir.join("grafana")).await,
            ),
            None => record(
                "grafana",
                Err(anyhow::anyhow!(
                    "found {} but not its home; set GRAFANA_HOME",
                    bin.display()
                )),
            ),
        },
        None => record(
            "grafana",
            Err(anyhow::anyhow!("not on PATH (it comes with `nix run`)")),
        ),
    }
    match on_path("jaeger") {
        Some(bin) => record("jaeger", start_jaeger(&bin, &dir.join("jaeger")).await),
        None => record(
            "jaeger",
            Err(anyhow::anyhow!("not on PATH (it comes with `nix run`)")),
        ),
    }
    obs
}

/// Waits until a tool answers HTTP at `url`, or gives up quietly.
pub async fn wait_answering(url: &str, deadline: Duration) -> bool {
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    while start.elapsed() < deadline {
        if http.get(url).send().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration Jaeger runs with reads no other file (no remote
    /// sampling: Jaeger 2.0-2.2 exit when its strategies file is missing) and
    /// listens where the services and Grafana look for it.
    #[test]
    fn jaeger_config_needs_no_sampling_file_and_listens_where_expected() {
        let settings: String = JAEGER_CONFIG
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        assert!(!settings.contains("remote_sampling"), "{JAEGER_CONFIG}");
        assert!(!settings.contains("sampling-strategies"), "{JAEGER_CONFIG}");
        let otlp = JAEGER_OTLP.trim_start_matches("http://");
        let ui = JAEGER_UI.trim_start_matches("http://");
        assert!(
            JAEGER_CONFIG.contains(&format!("endpoint: {otlp}")),
            "{otlp}"
        );
        assert!(JAEGER_CONFIG.contains(&format!("endpoint: {ui}")), "{ui}");
        assert!(
            JAEGER_CONFIG.contains("max_traces:"),
            "storage must be bounded"
        );
    }
}
