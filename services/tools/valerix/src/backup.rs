//! Backups with pgBackRest: continuous WAL archiving into a local
//! repository, full/differential backups on demand, restores to the latest
//! archived WAL or a point in time, and the once-a-day copy of the
//! repository to an off-site target ([`offsite`]).
//!
//! Every verb is a thin wrapper: each pgBackRest command is printed
//! before it runs and its own output is shown. A backup directory holds
//!
//! - `pgbackrest.conf`: the stanza `valerix` (data directory, port, socket)
//!   and the repository settings, written by `valerix up --backup-dir`;
//! - `repo/`: pgBackRest's repository 1 (backups and archived WAL);
//! - `log/`, `lock/`: pgBackRest's log and lock files.
//!
//! PostgreSQL runs the archive command as the cluster's OS user, so as root
//! pgBackRest runs as the owner of the backup directory (the cluster's user).

pub mod offsite;

use std::{
    fmt, fs,
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    str::FromStr,
    time::Duration,
};

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use clap::Args;
use nix::unistd::{Gid, Uid, chown};
use valerix_devdb::{Cluster, Options};

/// The stanza (pgBackRest's name for one cluster) of the dev stack.
pub const STANZA: &str = "valerix";

/// The RPO: PostgreSQL switches to a new WAL segment (and so archives the
/// last one) at least this often while there are writes.
pub const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Full backups kept (with the WAL they need); older ones are expired.
pub const RETENTION_FULL: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "pgbackrest not found on PATH: install it (Debian: apt-get install pgbackrest; Nix: pkgs.pgbackrest)"
    )]
    Missing,
    #[error("{0}: no pgbackrest.conf in it; `valerix up --backup-dir {0}` writes one")]
    NoConfig(PathBuf),
    #[error(
        "{0} already holds backups of another cluster: start with `--restore latest` to bring that one back, or give an empty --backup-dir"
    )]
    RepositoryInUse(PathBuf),
    #[error(
        "{0}: PostgreSQL is running on this data directory (postmaster.pid); stop it before a restore"
    )]
    Running(PathBuf),
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] valerix_devdb::Error),
    #[error("{0}")]
    Sys(#[from] nix::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// Where pgBackRest is: PATH only, so what runs is what the user has.
pub fn find_pgbackrest() -> Result<PathBuf, BackupError> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("pgbackrest"))
                .find(|p| p.is_file())
        })
        .ok_or(BackupError::Missing)
}

/// A backup directory and what it holds.
#[derive(Debug, Clone)]
pub struct BackupDir {
    root: PathBuf,
}

impl BackupDir {
    pub fn new(root: &Path) -> Self {
        // Absolute: the archive command runs in the data directory.
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> PathBuf {
        self.root.join("pgbackrest.conf")
    }

    /// pgBackRest's repository 1.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    fn holds_backups(&self) -> bool {
        self.repo()
            .join("backup")
            .join(STANZA)
            .join("backup.info")
            .is_file()
    }

    /// The directories, owned by `user` (the cluster's, when we are root).
    fn create(&self, user: Option<(Uid, Gid)>) -> Result<(), BackupError> {
        for dir in [
            self.root.clone(),
            self.repo(),
            self.root.join("log"),
            self.root.join("lock"),
        ] {
            fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            if let Some((uid, gid)) = user {
                chown(&dir, Some(uid), Some(gid))?;
            }
        }
        Ok(())
    }

    /// `pgbackrest.conf` for the cluster at `data_dir`, serving on `port`
    /// with its socket in `socket_dir`.
    pub fn write_config(
        &self,
        data_dir: &Path,
        port: u16,
        socket_dir: &Path,
    ) -> Result<(), BackupError> {
        let root = self.root.display();
        let text = format!(
            "# Written by `valerix up --backup-dir`; read by `valerix backup` and `valerix restore`.\n\
             [global]\n\
             repo1-path={root}/repo\n\
             repo1-retention-full={RETENTION_FULL}\n\
             log-path={root}/log\n\
             lock-path={root}/lock\n\
             log-level-console=info\n\
             log-level-file=detail\n\
             start-fast=y\n\
             compress-type=lz4\n\
             \n\
             [{STANZA}]\n\
             pg1-path={data}\n\
             pg1-port={port}\n\
             pg1-socket-path={socket}\n\
             pg1-user=postgres\n",
            data = data_dir.display(),
            socket = socket_dir.display(),
        );
        let path = self.config();
        fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    }

    /// The cluster's data directory as the configuration names it.
    pub fn configured_data_dir(&self) -> Result<PathBuf, BackupError> {
        let path = self.config();
        let text =
            fs::read_to_string(&path).map_err(|_| BackupError::NoConfig(self.root.clone()))?;
        text.lines()
            .find_map(|l| l.trim().strip_prefix("pg1-path="))
            .map(PathBuf::from)
            .ok_or(BackupError::NoConfig(self.root.clone()))
    }

    /// The server settings that archive every finished WAL segment into
    /// this directory's repository.
    pub fn archive_settings(
        &self,
        pgbackrest: &Path,
        archive_timeout: Duration,
    ) -> Vec<(String, String)> {
        vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            (
                "archive_command".into(),
                format!(
                    "{} --config={} --stanza={STANZA} archive-push %p",
                    pgbackrest.display(),
                    self.config().display()
                ),
            ),
            (
                "archive_timeout".into(),
                format!("{}s", archive_timeout.as_secs().max(1)),
            ),
        ]
    }
}

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

/// `valerix backup`: one backup now.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup directory of `valerix up --backup-dir`
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: PathBuf,
    /// full: everything; diff: what changed since the last full; incr:
    /// since the last backup of any type
    #[arg(long = "type", value_enum, default_value_t = BackupType::Full)]
    pub kind: BackupType,
}

pub fn backup(args: &BackupArgs) -> Result<(), BackupError> {
    let dir = BackupDir::new(&args.backup_dir);
    let pgbackrest = PgBackRest::for_dir(&dir)?;
    pgbackrest.backup(args.kind)?;
    print!("{}", pgbackrest.info()?);
    Ok(())
}

/// `valerix restore`: a stopped cluster back from the repository.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory of `valerix up --backup-dir`
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: PathBuf,
    /// `latest` (the end of the archived WAL) or a time (RFC 3339, or
    /// "YYYY-MM-DD HH:MM:SS[+TZ]", UTC without a zone)
    #[arg(long)]
    pub to: RestoreTarget,
    /// Restore into this data directory instead of the configured one
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Restore from this repository instead of the configured one: the
    /// off-site copy when the local repository is lost too
    #[arg(long)]
    pub repo: Option<PathBuf>,
}

pub fn restore(args: &RestoreArgs) -> Result<(), BackupError> {
    let dir = BackupDir::new(&args.backup_dir);
    let pgbackrest = PgBackRest::for_dir(&dir)?;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => dir.configured_data_dir()?,
    };
    pgbackrest.restore(&data_dir, args.to, args.repo.as_deref())?;
    println!(
        "Restored {} to {}: start PostgreSQL on it; it replays the archived WAL{} and then accepts writes.",
        data_dir.display(),
        args.to,
        match args.to {
            RestoreTarget::Latest => String::new(),
            RestoreTarget::Time(t) => format!(" up to {t}"),
        }
    );
    Ok(())
}

/// `valerix up`'s backup flags.
#[derive(Debug, Clone, Default, Args)]
pub struct UpBackupArgs {
    /// Archive WAL and keep backups of the throwaway cluster in this
    /// directory (pgBackRest; kept when the stack stops)
    #[arg(long, env = "VALERIX_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Start from the backups in --backup-dir instead of an empty cluster:
    /// `latest` or a time, as `valerix restore --to`
    #[arg(long, requires = "backup_dir")]
    pub restore: Option<RestoreTarget>,
}

/// A throwaway cluster with its WAL archived into a backup directory.
pub struct BackedUpCluster {
    pub cluster: Cluster,
    pub dir: BackupDir,
    pub pgbackrest: PgBackRest,
    /// Restored from the repository (its databases exist already).
    pub restored: bool,
}

/// Starts a cluster that archives into `dir`: a new one (stanza created;
/// take the first backup once the database exists), or the one in the
/// repository, restored to `restore`.
pub fn start_cluster(
    dir: &BackupDir,
    restore: Option<RestoreTarget>,
    archive_timeout: Duration,
) -> Result<BackedUpCluster, BackupError> {
    let exe = find_pgbackrest()?;
    if restore.is_none() && dir.holds_backups() {
        return Err(BackupError::RepositoryInUse(dir.root().to_owned()));
    }
    let options = Options {
        settings: dir.archive_settings(&exe, archive_timeout),
    };
    let mut cluster = Cluster::empty(&options)?;
    dir.create(cluster.os_user())?;
    // Named before the server runs, so the archive command finds it.
    dir.write_config(&cluster.data_dir(), 0, cluster.dir())?;
    let pgbackrest = PgBackRest::for_dir(dir)?;
    match restore {
        Some(target) => pgbackrest.restore(&cluster.data_dir(), target, None)?,
        None => cluster.init()?,
    }
    cluster.start_on_free_port()?;
    dir.write_config(&cluster.data_dir(), cluster.port(), cluster.dir())?;
    if restore.is_none() {
        pgbackrest.stanza_create()?;
    }
    Ok(BackedUpCluster {
        cluster,
        dir: dir.clone(),
        pgbackrest,
        restored: restore.is_some(),
    })
}

/// Waits until a restored cluster has replayed the WAL and accepts writes.
pub async fn wait_promoted(url: &str, deadline: Duration) -> anyhow::Result<()> {
    use sqlx::Connection;
    let start = std::time::Instant::now();
    loop {
        if let Ok(mut conn) = sqlx::PgConnection::connect(url).await
            && let Ok(false) = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await
        {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < deadline,
            "the restored cluster still replays WAL after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `valerix up --backup-dir` keeps beside its cluster.
pub struct DevBackups {
    pub dir: BackupDir,
    pub pgbackrest: PgBackRest,
    pub restored: Option<RestoreTarget>,
}

/// `valerix up`'s cluster: a plain throwaway one, or one with backups
/// (new, or restored from the backup directory and promoted).
pub async fn start_dev_cluster(
    args: &UpBackupArgs,
) -> anyhow::Result<(Cluster, Option<DevBackups>)> {
    let Some(root) = args.backup_dir.clone() else {
        return Ok((tokio::task::spawn_blocking(Cluster::start).await??, None));
    };
    let dir = BackupDir::new(&root);
    let restore = args.restore;
    let started =
        tokio::task::spawn_blocking(move || start_cluster(&dir, restore, ARCHIVE_TIMEOUT))
            .await??;
    if restore.is_some() {
        wait_promoted(&started.cluster.url("postgres"), Duration::from_secs(300)).await?;
    }
    Ok((
        started.cluster,
        Some(DevBackups {
            dir: started.dir,
            pgbackrest: started.pgbackrest,
            restored: restore,
        }),
    ))
}

impl DevBackups {
    /// The first full backup of a new cluster, once its database exists:
    /// a restore needs a backup to start from.
    pub async fn first_backup(&self) -> anyhow::Result<()> {
        if self.restored.is_none() {
            let pgbackrest = self.pgbackrest.clone();
            tokio::task::spawn_blocking(move || pgbackrest.backup(BackupType::Full)).await??;
        }
        Ok(())
    }

    /// For `valerix up`'s summary.
    pub fn describe(&self) -> String {
        let root = self.dir.root().display();
        let restored = self
            .restored
            .map(|t| format!("restored to {t}; "))
            .unwrap_or_default();
        format!(
            "{restored}pgBackRest repository {root}/repo, WAL archived at least every {}s; \
             `valerix backup --backup-dir {root}` takes one now",
            ARCHIVE_TIMEOUT.as_secs()
        )
    }
}
