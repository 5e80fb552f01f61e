//! Where the CPU goes during a measurement: the time PostgreSQL, the
//! services and this process (the client) spent on the processor, and how
//! often their threads were switched out (put to sleep to wait for a message,
//! or preempted), read from /proc. Divided by the orders done, it says what
//! one order costs each part, which is what explains the ratio on a machine
//! that is CPU bound: every hand-over between processes is a switch.

use std::{fs, path::PathBuf, time::Duration};

/// The processes taking part.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// postmaster.pid of the cluster: the postmaster and all its children count.
    pub postmaster_pid_file: Option<PathBuf>,
    /// The services but the API gateway.
    pub services: Vec<u32>,
    /// The API gateway, when it runs: counted on its own, since it is idle
    /// in the runs that do not go through it.
    pub gateway: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub postgres: Duration,
    pub services: Duration,
    pub client: Duration,
    pub gateway: Duration,
    /// Context switches (voluntary and not) of all their threads.
    pub postgres_switches: u64,
    pub services_switches: u64,
    pub client_switches: u64,
    pub gateway_switches: u64,
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;
    fn add(self, o: CpuTime) -> CpuTime {
        CpuTime {
            postgres: self.postgres + o.postgres,
            services: self.services + o.services,
            client: self.client + o.client,
            gateway: self.gateway + o.gateway,
            postgres_switches: self.postgres_switches + o.postgres_switches,
            services_switches: self.services_switches + o.services_switches,
            client_switches: self.client_switches + o.client_switches,
            gateway_switches: self.gateway_switches + o.gateway_switches,
        }
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, o: CpuTime) -> CpuTime {
        CpuTime {
            postgres: self.postgres.saturating_sub(o.postgres),
            services: self.services.saturating_sub(o.services),
            client: self.client.saturating_sub(o.client),
            gateway: self.gateway.saturating_sub(o.gateway),
            postgres_switches: self.postgres_switches.saturating_sub(o.postgres_switches),
            services_switches: self.services_switches.saturating_sub(o.services_switches),
            client_switches: self.client_switches.saturating_sub(o.client_switches),
            gateway_switches: self.gateway_switches.saturating_sub(o.gateway_switches),
        }
    }
}

/// Context switches of every thread of a process so far (a thread that
/// already exited no longer counts; the ones here live as long as the run).
fn switches(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("status")).ok())
        .map(|status| {
            status
                .lines()
                .filter(|l| {
                    l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                })
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// utime + stime of a process (all its threads), and its parent.
fn stat(pid: u32) -> Option<(Duration, u32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    Some((Duration::from_micros(ticks * 1_000_000 / hz), ppid))
}

impl Roles {
    /// Total CPU time so far, by role; None when /proc cannot say.
    pub fn sample(&self) -> Option<CpuTime> {
        let postmaster: u32 = fs::read_to_string(self.postmaster_pid_file.as_ref()?)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()?;
        let me = std::process::id();
        let mut t = CpuTime {
            client: stat(me)?.0,
            client_switches: switches(me),
            ..CpuTime::default()
        };
        for pid in &self.services {
            t.services += stat(*pid).map_or(Duration::ZERO, |(d, _)| d);
            t.services_switches += switches(*pid);
        }
        if let Some(pid) = self.gateway {
            t.gateway = stat(pid).map_or(Duration::ZERO, |(d, _)| d);
            t.gateway_switches = switches(pid);
        }
        // Backends come and go with connections: every child of the postmaster.
        for e in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((d, ppid)) = stat(pid)
                && (pid == postmaster || ppid == postmaster)
            {
                t.postgres += d;
                t.postgres_switches += switches(pid);
            }
        }
        Some(t)
    }
}
