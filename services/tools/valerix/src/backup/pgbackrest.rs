//! pgBackRest's commands, each printed before it runs and run as the
//! account that owns the backup directory; what a backup covers and how far
//! a restore replays.

use std::{
    fmt, fs,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    str::FromStr,
};

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use nix::unistd::{Gid, Uid};

use super::{BackupError, STANZA, dir::BackupDir, find_pgbackrest, io};

/// What a backup covers: everything, or what changed since the last full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "full",
            Self::Diff => "diff",
            Self::Incr => "incr",
        })
    }
}

/// How far a restore replays the archived WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTarget {
    /// To the end of the archived WAL.
    Latest,
    /// Up to and including the transactions committed at this time.
    Time(DateTime<FixedOffset>),
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?}: expected `latest` or a time such as 2026-12-01T11:30:00Z or \"2026-12-01 11:30:00+00:00\""
)]
pub struct BadTarget(String);

impl FromStr for RestoreTarget {
    type Err = BadTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("latest") {
            return Ok(Self::Latest);
        }
        DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z"))
            .or_else(|_| {
                // No zone: UTC, said so in --help.
                NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                    .map(|t| t.and_utc().fixed_offset())
            })
            .map(Self::Time)
            .map_err(|_| BadTarget(s.to_owned()))
    }
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Time(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f%:z")),
        }
    }
}

/// pgBackRest with one configuration, run as the right account.
#[derive(Debug, Clone)]
pub struct PgBackRest {
    exe: PathBuf,
    config: PathBuf,
    user: Option<(Uid, Gid)>,
}

impl PgBackRest {
    /// For `dir`: as root, as the owner of the directory.
    pub fn for_dir(dir: &BackupDir) -> Result<Self, BackupError> {
        let exe = find_pgbackrest()?;
        if !dir.config().is_file() {
            return Err(BackupError::NoConfig(dir.root().to_owned()));
        }
        let user = if Uid::effective().is_root() {
            let meta = fs::metadata(dir.root())
                .map_err(io(format!("reading {}", dir.root().display())))?;
            (meta.uid() != 0).then(|| (Uid::from_raw(meta.uid()), Gid::from_raw(meta.gid())))
        } else {
            None
        };
        Ok(Self {
            exe,
            config: dir.config(),
            user,
        })
    }

    fn command(&self, args: &[String]) -> (Command, String) {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args)
            // pgBackRest reads its options from PGBACKREST_* too: only ours count.
            .env_remove("PGBACKREST_CONFIG")
            .stdin(Stdio::null());
        let mut shown = format!(
            "{} --config={} --stanza={STANZA} {}",
            self.exe.display(),
            self.config.display(),
            args.join(" ")
        );
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
            let name = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name);
            shown = format!("{shown}   (as {name})");
        }
        (cmd, shown)
    }

    /// Runs a command with its output shown; fails on a non-zero exit.
    pub fn run(&self, args: &[String]) -> Result<(), BackupError> {
        let (mut cmd, shown) = self.command(args);
        println!("$ {shown}");
        let status = cmd.status().map_err(io(format!("running {shown}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(BackupError::Failed {
                command: shown,
                status: status.to_string(),
            })
        }
    }

    /// Runs a command and returns what it printed.
    pub fn output(&self, args: &[String]) -> Result<Output, BackupError> {
        let (mut cmd, shown) = self.command(args);
        let out = cmd.output().map_err(io(format!("running {shown}")))?;
        if out.status.success() {
            Ok(out)
        } else {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            Err(BackupError::Failed {
                command: shown,
                status: out.status.to_string(),
            })
        }
    }

    pub fn stanza_create(&self) -> Result<(), BackupError> {
        self.run(&["stanza-create".into()])
    }

    pub fn backup(&self, kind: BackupType) -> Result<(), BackupError> {
        self.run(&["backup".into(), format!("--type={kind}")])
    }

    /// `pgbackrest info`: the backups and the archived WAL range.
    pub fn info(&self) -> Result<String, BackupError> {
        let out = self.output(&["info".into()])?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Restores into `data_dir` (the cluster must be stopped): into an
    /// existing data directory with `--delta` (the files that match stay),
    /// else into an empty or missing one.
    pub fn restore(
        &self,
        data_dir: &Path,
        target: RestoreTarget,
        repo: Option<&Path>,
    ) -> Result<(), BackupError> {
        if data_dir.join("postmaster.pid").exists() {
            return Err(BackupError::Running(data_dir.to_owned()));
        }
        let mut args = vec!["restore".to_owned()];
        if data_dir.join("PG_VERSION").is_file() {
            args.push("--delta".to_owned());
        }
        args.push(format!("--pg1-path={}", data_dir.display()));
        if let Some(repo) = repo {
            args.push(format!("--repo1-path={}", repo.display()));
        }
        if let RestoreTarget::Time(_) = target {
            args.extend([
                "--type=time".to_owned(),
                format!("--target={target}"),
                "--target-action=promote".to_owned(),
            ]);
        }
        self.run(&args)
    }
}
