//! The off-site copy of the local repository, at most once a (UTC) day.
//!
//! The off-site provider may be called once a day, while WAL is archived
//! every minute. So the off-site target is not a second pgBackRest
//! repository (pgBackRest would push every WAL segment there as it is
//! archived) but a mirror of repository 1, made by this upload: a complete
//! pgBackRest repository as of the upload, restorable with `--repo1-path`
//! pointed at it.
//!
//! The guard: a state file in the repository records the day of the last
//! upload; an upload on a day already recorded is refused, whoever starts
//! it (the timer or a person). The day is claimed before anything is
//! copied, so an upload that fails half-way is not retried the same day:
//! the provider's limit wins over a complete copy, and tomorrow's upload
//! copies whatever is missing.

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use chrono::{NaiveDate, Utc};
use nix::fcntl::{Flock, FlockArg};

/// In the repository: the day of the last upload, then what it did.
pub const STATE_FILE: &str = "valerix-offsite-upload";
const LOCK_FILE: &str = "valerix-offsite-upload.lock";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "refused: an off-site upload already ran on {day} (UTC, recorded in {state}); the provider takes one a day, the next may run tomorrow"
    )]
    AlreadyToday { day: NaiveDate, state: PathBuf },
    #[error("{0} is not a pgBackRest repository (neither archive/ nor backup/ in it)")]
    NotARepository(PathBuf),
    #[error("another off-site upload is running (it holds {0})")]
    Busy(PathBuf),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> UploadError {
    let what = what.into();
    move |source| UploadError::Io { what, source }
}

/// What one upload did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Files copied (new or changed).
    pub copied: usize,
    pub bytes: u64,
    /// Files already there unchanged.
    pub unchanged: usize,
    /// Files removed off-site because the repository expired them.
    pub removed: usize,
}

/// The day of the last upload recorded in `repo`, if any.
pub fn last_upload(repo: &Path) -> Option<NaiveDate> {
    let text = fs::read_to_string(repo.join(STATE_FILE)).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// `valerix upload-offsite`.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// The local repository: pgBackRest's repo1-path (`DIR/repo` for
    /// `valerix up --backup-dir DIR`)
    #[arg(long, env = "VALERIX_BACKUP_REPO")]
    pub repo: PathBuf,
    /// The off-site target: a directory (a mounted remote file system or
    /// bucket); it becomes a copy of the repository
    #[arg(long, env = "VALERIX_OFFSITE_TARGET")]
    pub target: PathBuf,
}

/// Today's upload (UTC), with what it did printed.
pub fn run(args: &UploadArgs) -> Result<Uploaded, UploadError> {
    let today = Utc::now().date_naive();
    println!(
        "Uploading {} to {} (the upload of {today}, UTC)",
        args.repo.display(),
        args.target.display()
    );
    let done = upload(&args.repo, &args.target, today)?;
    println!(
        "Uploaded: {} file(s) copied ({} bytes), {} unchanged, {} removed off-site; the next upload may run tomorrow.",
        done.copied, done.bytes, done.unchanged, done.removed
    );
    Ok(done)
}

/// Uploads `repo` to `target` unless an upload already ran on `today`.
pub fn upload(repo: &Path, target: &Path, today: NaiveDate) -> Result<Uploaded, UploadError> {
    if !repo.join("archive").is_dir() && !repo.join("backup").is_dir() {
        return Err(UploadError::NotARepository(repo.to_owned()));
    }
    let lock_path = repo.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    let _lock = Flock::lock(lock, FlockArg::LockExclusiveNonblock)
        .map_err(|_| UploadError::Busy(lock_path.clone()))?;

    let state = repo.join(STATE_FILE);
    if let Some(day) = last_upload(repo)
        && day >= today
    {
        return Err(UploadError::AlreadyToday { day, state });
    }
    write_state(
        &state,
        &format!("{today} started {}\n", Utc::now().to_rfc3339()),
    )?;
    let done = mirror(repo, target)?;
    write_state(
        &state,
        &format!(
            "{today} done {} copied={} bytes={} unchanged={} removed={} target={}\n",
            Utc::now().to_rfc3339(),
            done.copied,
            done.bytes,
            done.unchanged,
            done.removed,
            target.display()
        ),
    )?;
    Ok(done)
}

/// Replaces the state file in one step: a crash leaves the old or the new.
fn write_state(path: &Path, text: &str) -> Result<(), UploadError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
}

/// The repository's files, relative to it; ours left out.
fn files(root: &Path) -> Result<BTreeSet<PathBuf>, UploadError> {
    let mut out = BTreeSet::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).map_err(io(format!("reading {}", dir.display())))? {
            let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
            let name = entry.file_name();
            let rel = rel.join(&name);
            let kind = entry
                .file_type()
                .map_err(io(format!("reading {}", rel.display())))?;
            if kind.is_dir() {
                todo.push(rel);
            } else if kind.is_file()
                && !name
                    .to_str()
                    .is_some_and(|n| n.starts_with(STATE_FILE) || n.ends_with(".valerix-tmp"))
            {
                out.insert(rel);
            }
        }
    }
    Ok(out)
}

/// pgBackRest's info files say which backups and WAL exist: copied last,
/// so the copy never names a file it does not hold yet.
fn is_info(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".info") || n.ends_with(".info.copy"))
}

/// `target/rel` and the directories above it, each with the mode (and, as
/// root, the owner) of its counterpart in `repo`.
fn make_dirs(repo: &Path, target: &Path, rel: &Path) -> Result<(), UploadError> {
    let mut prefix = PathBuf::new();
    for part in rel.components() {
        prefix.push(part);
        let (from, to) = (repo.join(&prefix), target.join(&prefix));
        if to.is_dir() {
            continue;
        }
        fs::create_dir(&to).map_err(io(format!("creating {}", to.display())))?;
        let meta = fs::metadata(&from).map_err(io(format!("reading {}", from.display())))?;
        fs::set_permissions(&to, meta.permissions())
            .map_err(io(format!("setting the mode of {}", to.display())))?;
        if nix::unistd::Uid::effective().is_root() {
            std::os::unix::fs::chown(&to, Some(meta.uid()), Some(meta.gid()))
                .map_err(io(format!("setting the owner of {}", to.display())))?;
        }
    }
    Ok(())
}

fn mirror(repo: &Path, target: &Path) -> Result<Uploaded, UploadError> {
    fs::create_dir_all(target).map_err(io(format!("creating {}", target.display())))?;
    let source = files(repo)?;
    let mut order: Vec<&PathBuf> = source.iter().collect();
    order.sort_by_key(|rel| is_info(rel));
    let mut done = Uploaded::default();
    let as_root = nix::unistd::Uid::effective().is_root();
    for rel in order {
        let (from, to) = (repo.join(rel), target.join(rel));
        let meta = fs::metadata(&from).map_err(io(format!("reading {}", from.display())))?;
        let same = fs::metadata(&to)
            .is_ok_and(|t| t.len() == meta.len() && t.modified().ok() == meta.modified().ok());
        if same {
            done.unchanged += 1;
            continue;
        }
        if let Some(parent) = rel.parent() {
            make_dirs(repo, target, parent)?;
        }
        let tmp = to.with_file_name(format!(
            ".{}.valerix-tmp",
            to.file_name().and_then(|n| n.to_str()).unwrap_or("file")
        ));
        done.bytes += fs::copy(&from, &tmp).map_err(io(format!("copying {}", from.display())))?;
        let copied = File::options()
            .write(true)
            .open(&tmp)
            .map_err(io(format!("opening {}", tmp.display())))?;
        if as_root {
            // A mirror keeps the owners (pgBackRest restores as the cluster's
            // user, which must read the copy).
            std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()))
                .map_err(io(format!("setting the owner of {}", tmp.display())))?;
        }
        if let Ok(modified) = meta.modified() {
            copied
                .set_modified(modified)
                .map_err(io(format!("setting the time of {}", tmp.display())))?;
        }
        copied
            .sync_all()
            .map_err(io(format!("syncing {}", tmp.display())))?;
        fs::rename(&tmp, &to).map_err(io(format!("placing {}", to.display())))?;
        done.copied += 1;
    }
    for rel in files(target)?.difference(&source) {
        let path = target.join(rel);
        fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
        done.removed += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "valerix-offsite-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn repo() -> PathBuf {
        let repo = temp("repo");
        for (rel, text) in [
            ("archive/valerix/archive.info", "a"),
            (
                "archive/valerix/15-1/0000000100000000/000000010000000000000001-abc.gz",
                "wal1",
            ),
            ("backup/valerix/backup.info", "b"),
            ("backup/valerix/20261201-120000F/backup.manifest", "m"),
        ] {
            let path = repo.join(rel);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, text).expect("write");
        }
        repo
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn a_second_upload_the_same_day_is_refused_and_copies_nothing() {
        let (repo, target) = (repo(), temp("target"));
        let first = upload(&repo, &target, day("2026-12-01")).expect("first upload");
        assert_eq!((first.copied, first.removed), (4, 0));
        assert_eq!(
            fs::read_to_string(target.join("backup/valerix/backup.info")).expect("copied"),
            "b"
        );
        assert_eq!(last_upload(&repo), Some(day("2026-12-01")));
        assert!(!target.join(STATE_FILE).exists(), "the guard stays local");

        // New WAL arrives; a second run the same day (by hand) is refused.
        let wal2 = "archive/valerix/15-1/0000000100000000/000000010000000000000002-def.gz";
        fs::write(repo.join(wal2), "wal2").expect("write");
        let second = upload(&repo, &target, day("2026-12-01"));
        assert!(
            matches!(second, Err(UploadError::AlreadyToday { day: d, .. }) if d == day("2026-12-01")),
            "{second:?}"
        );
        assert!(
            !target.join(wal2).exists(),
            "a refused upload copies nothing"
        );

        // The next day it runs, and copies only what changed.
        let next = upload(&repo, &target, day("2026-12-02")).expect("next day");
        assert_eq!((next.copied, next.unchanged), (1, 4));
        assert!(target.join(wal2).exists());
        let _ = fs::remove_dir_all(repo);
        let _ = fs::remove_dir_all(target);
    }

    #[test]
    fn a_clock_set_back_does_not_reopen_the_day() {
        let (repo, target) = (repo(), temp("target"));
        upload(&repo, &target, day("2026-12-02")).expect("upload");
        assert!(matches!(
            upload(&repo, &target, day("2026-12-01")),
            Err(UploadError::AlreadyToday { .. })
        ));
        let _ = fs::remove_dir_all(repo);
        let _ = fs::remove_dir_all(target);
    }

    #[test]
    fn expired_files_leave_the_copy_and_a_non_repository_is_refused() {
        let (repo, target) = (repo(), temp("target"));
        upload(&repo, &target, day("2026-12-01")).expect("upload");
        let manifest = "backup/valerix/20261201-120000F/backup.manifest";
        fs::remove_file(repo.join(manifest)).expect("expire");
        let next = upload(&repo, &target, day("2026-12-02")).expect("upload");
        assert_eq!(next.removed, 1);
        assert!(!target.join(manifest).exists());

        let empty = temp("empty");
        assert!(matches!(
            upload(&empty, &target, day("2026-12-03")),
            Err(UploadError::NotARepository(_))
        ));
        for d in [repo, target, empty] {
            let _ = fs::remove_dir_all(d);
        }
    }
}
