//! `ZfsPool`: a storage pool on a ZFS filesystem dataset, with whole-pool backups.
//!
//! A backup is a snapshot of the pool's dataset (not its children) named
//! `skiff-YYYYMMDDTHHMMSSZ` (UTC), sent to the backup dataset (normally in another pool):
//! in full the first time, then incrementally from the newest snapshot both sides share (the
//! same guid: a received snapshot keeps the sender's). Retention keeps the newest `retention`
//! backup snapshots on each side and never destroys the newest common one, the base of the
//! next incremental send. Snapshots without the `skiff-` prefix are never touched.
//!
//! Idempotent and never half-made: a repeated [`ZfsPool::backup_now`] for the same second finds
//! its snapshot and finishes the send; a failed send leaves the backup side as it was (ZFS
//! receive is atomic) and is retried by the next call.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    validate_snapshot_part, DatasetName, LaterSnapshots, SnapshotInfo, SnapshotName, ZfsError,
    ZfsOps,
};

/// Start of the names of the snapshots backups make (and retention may destroy).
pub const BACKUP_PREFIX: &str = "skiff-";

const DAY: u64 = 86_400;

/// A storage pool on ZFS dataset `dataset`, backed up to `backup` when set.
#[derive(Debug)]
pub struct ZfsPool<Z: ZfsOps> {
    ops: Z,
    dataset: DatasetName,
    backup: Option<DatasetName>,
    retention: usize,
}

/// Where a backup's snapshot went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The pool has no backup dataset: the snapshot is the backup.
    NoBackupDataset,
    /// The backup dataset had it already (a repeated call).
    AlreadyThere,
    /// A full stream (the backup dataset was made by it).
    Full,
    /// An incremental stream from this earlier snapshot.
    Incremental { from: String },
}

/// What one [`ZfsPool::backup_now`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The snapshot's name (after `@`).
    pub snapshot: String,
    /// Whether this call took it (false: found from an earlier call).
    pub taken: bool,
    pub sent: Sent,
    /// Backup snapshots retention destroyed on the pool and on the backup dataset.
    pub pruned_pool: Vec<String>,
    pub pruned_backup: Vec<String>,
    /// Snapshots beyond retention that clones depend on, kept.
    pub kept_with_clones: Vec<String>,
}

/// One backup snapshot and where it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupEntry {
    pub name: String,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Bytes only this snapshot holds (on the pool if it is there, else on the backup side).
    pub used: u64,
    pub on_pool: bool,
    pub on_backup: bool,
}

/// Space of the pool's dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub used: u64,
    pub available: u64,
}

impl<Z: ZfsOps> ZfsPool<Z> {
    /// A pool on `dataset`, sent to `backup` (when set), keeping `retention` backups (at least
    /// 1). The backup dataset may be neither the pool's dataset nor above or below it.
    pub fn new(
        ops: Z,
        dataset: &str,
        backup: Option<&str>,
        retention: usize,
    ) -> Result<Self, ZfsError> {
        let dataset = DatasetName::parse(dataset)?;
        let backup = backup.map(DatasetName::parse).transpose()?;
        let bad = |reason: &str| ZfsError::InvalidConfig {
            dataset: dataset.to_string(),
            reason: reason.to_owned(),
        };
        if retention == 0 {
            return Err(bad("retention must keep at least one backup"));
        }
        if let Some(b) = &backup {
            if *b == dataset || b.is_below(&dataset) || dataset.is_below(b) {
                return Err(bad(
                    "the backup dataset must lie outside the pool's dataset",
                ));
            }
        }
        Ok(Self {
            ops,
            dataset,
            backup,
            retention,
        })
    }

    /// The ZFS operations this pool uses.
    pub fn ops(&self) -> &Z {
        &self.ops
    }

    /// The pool's dataset.
    pub fn dataset(&self) -> &DatasetName {
        &self.dataset
    }

    /// The backup dataset, if any.
    pub fn backup_dataset(&self) -> Option<&DatasetName> {
        self.backup.as_ref()
    }

    /// The directory of the pool's images: the dataset's mountpoint, which must be mounted.
    pub fn mountpoint(&self) -> Result<PathBuf, ZfsError> {
        let props = self.ops.properties(&self.dataset)?;
        let not_mounted = |detail: String| ZfsError::NotMounted {
            dataset: self.dataset.to_string(),
            detail,
        };
        match (props.mountpoint, props.mounted) {
            (Some(path), true) => Ok(path),
            (Some(path), false) => {
                Err(not_mounted(format!("its mountpoint is {}", path.display())))
            }
            (None, _) => Err(not_mounted("its mountpoint is none or legacy".into())),
        }
    }

    /// Bytes used by the pool (images and snapshots) and still available.
    pub fn usage(&self) -> Result<PoolUsage, ZfsError> {
        let props = self.ops.properties(&self.dataset)?;
        Ok(PoolUsage {
            used: props.used,
            available: props.available,
        })
    }

    /// Backs the pool up as at `now` (Unix seconds): takes `skiff-STAMP` unless it exists,
    /// sends it to the backup dataset unless it is there, prunes both sides to `retention`.
    /// A failed send is reported after pruning, which keeps the newest snapshot both sides share.
    pub fn backup_now(&self, now: u64) -> Result<BackupReport, ZfsError> {
        let name = backup_snapshot_name(now);
        let snapshot = self.dataset.snapshot(&name)?;
        let taken = self.ensure_snapshot(&snapshot)?;
        let mut report = BackupReport {
            snapshot: name,
            taken,
            sent: Sent::NoBackupDataset,
            pruned_pool: Vec::new(),
            pruned_backup: Vec::new(),
            kept_with_clones: Vec::new(),
        };
        if let Some(target) = &self.backup {
            match self.send_to_backup(&snapshot, target) {
                Ok(sent) => report.sent = sent,
                Err(e) => {
                    // Retention still applies while the backup side fails (it keeps the newest
                    // common snapshot), or snapshots would pile up in the pool.
                    if let Err(prune) = self.prune(&mut report) {
                        tracing::warn!(
                            dataset = %self.dataset,
                            error = %prune,
                            "pruning after a failed backup"
                        );
                    }
                    return Err(e);
                }
            }
        }
        self.prune(&mut report)?;
        Ok(report)
    }

    /// The backup snapshots on the pool and its backup dataset, oldest first.
    pub fn list_backups(&self) -> Result<Vec<BackupEntry>, ZfsError> {
        let mut by_guid: BTreeMap<u64, BackupEntry> = BTreeMap::new();
        for s in ours(&self.ops.list_snapshots(&self.dataset)?) {
            by_guid.insert(s.guid, entry(s, true, false));
        }
        for s in ours(&self.backup_snapshots()?) {
            by_guid
                .entry(s.guid)
                .and_modify(|e| e.on_backup = true)
                .or_insert_with(|| entry(s, false, true));
        }
        let mut list: Vec<BackupEntry> = by_guid.into_values().collect();
        list.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(list)
    }

    /// Destroys backup snapshot `name` on both sides; returns the snapshots destroyed. Refused
    /// for the newest snapshot both sides share (the next incremental send starts there) and for
    /// snapshots not made by backups.
    pub fn remove_backup(&self, name: &str) -> Result<Vec<String>, ZfsError> {
        validate_snapshot_part(name)?;
        if parse_backup_snapshot_name(name).is_none() {
            return Err(ZfsError::InvalidName {
                name: name.to_owned(),
                reason: "not a backup snapshot (skiff-YYYYMMDDTHHMMSSZ)",
            });
        }
        let src = self.ops.list_snapshots(&self.dataset)?;
        let dst = self.backup_snapshots()?;
        if let Some(common) = newest_common(&src, &dst) {
            if common.name == name {
                return Err(ZfsError::Protected {
                    snapshot: self.dataset.snapshot(name)?.to_string(),
                    reason: "it is the newest snapshot the pool and its backup share, the base \
                             of the next incremental send"
                        .into(),
                });
            }
        }
        let mut removed = Vec::new();
        let sides = [(Some(&self.dataset), &src), (self.backup.as_ref(), &dst)];
        for (ds, snaps) in sides {
            if let Some(ds) = ds.filter(|_| snaps.iter().any(|s| s.name == name)) {
                let snapshot = ds.snapshot(name)?;
                self.ops.destroy_snapshot(&snapshot)?;
                removed.push(snapshot.to_string());
            }
        }
        if removed.is_empty() {
            return Err(ZfsError::NotFound {
                name: self.dataset.snapshot(name)?.to_string(),
            });
        }
        Ok(removed)
    }

    /// Copies image file `file_name` as it was in snapshot `snapshot` of the pool to `dest`
    /// (through a temp file next to it, renamed over it: `dest` is replaced whole or not at
    /// all); returns the bytes copied. The file comes from `MOUNTPOINT/.zfs/snapshot/SNAP/`.
    pub fn restore_file(
        &self,
        snapshot: &str,
        file_name: &str,
        dest: &Path,
    ) -> Result<u64, ZfsError> {
        validate_snapshot_part(snapshot)?;
        check_file_name(file_name)?;
        let full = self.dataset.snapshot(snapshot)?;
        let snaps = self.ops.list_snapshots(&self.dataset)?;
        if !snaps.iter().any(|s| s.name == snapshot) {
            return Err(ZfsError::NotFound {
                name: full.to_string(),
            });
        }
        let source = self
            .mountpoint()?
            .join(".zfs")
            .join("snapshot")
            .join(snapshot)
            .join(file_name);
        match source.symlink_metadata() {
            Ok(m) if m.is_file() => copy_replacing(&source, dest),
            Ok(_) => Err(ZfsError::InvalidFileName {
                name: file_name.to_owned(),
                reason: "not a regular file in the snapshot",
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ZfsError::NotFound {
                name: format!("{file_name} in {full}"),
            }),
            Err(e) => Err(ZfsError::io_at("cannot stat", &source, e)),
        }
    }

    /// Rolls the whole pool back to `snapshot` (every image in it); later snapshots are refused
    /// or destroyed as `later` says. Their copies on the backup dataset stay.
    pub fn rollback(&self, snapshot: &str, later: LaterSnapshots) -> Result<(), ZfsError> {
        validate_snapshot_part(snapshot)?;
        self.ops.rollback(&self.dataset.snapshot(snapshot)?, later)
    }

    /// Takes `snapshot` unless it exists; says whether it took it.
    fn ensure_snapshot(&self, snapshot: &SnapshotName) -> Result<bool, ZfsError> {
        if self.ops.exists(snapshot.as_str())? {
            return Ok(false);
        }
        match self.ops.snapshot(snapshot) {
            Ok(()) => Ok(true),
            Err(ZfsError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The snapshots of the backup dataset (none when it is not set or does not exist yet).
    fn backup_snapshots(&self) -> Result<Vec<SnapshotInfo>, ZfsError> {
        match &self.backup {
            Some(b) if self.ops.exists(b.as_str())? => self.ops.list_snapshots(b),
            _ => Ok(Vec::new()),
        }
    }

    /// Sends `snapshot` to `target`: nothing if it is there, incrementally from the newest
    /// snapshot both share, or in full into a new dataset.
    fn send_to_backup(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<Sent, ZfsError> {
        let src = self.ops.list_snapshots(&self.dataset)?;
        let Some(pos) = src.iter().position(|s| s.name == snapshot.short()) else {
            return Err(ZfsError::NotFound {
                name: snapshot.to_string(),
            });
        };
        let dst = self.backup_snapshots()?;
        if dst.iter().any(|s| s.guid == src[pos].guid) {
            return Ok(Sent::AlreadyThere);
        }
        let diverged = |detail: String| ZfsError::BackupDiverged {
            dataset: self.dataset.to_string(),
            target: target.to_string(),
            detail,
        };
        let target_snapshot = target.snapshot(snapshot.short())?;
        let Some(common) = newest_common(&src[..pos], &dst) else {
            if self.ops.exists(target.as_str())? {
                return Err(diverged(format!(
                    "{target} exists but shares no snapshot older than {} with the pool, so \
                     no incremental send is possible and a full one would replace it; remove \
                     or rename {target}",
                    snapshot.short()
                )));
            }
            self.transfer(snapshot, None, &target_snapshot, false)?;
            return Ok(Sent::Full);
        };
        if dst.last().map(|s| s.guid) != Some(common.guid) {
            let newer = dst
                .iter()
                .skip_while(|s| s.guid != common.guid)
                .skip(1)
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(diverged(format!(
                "it has snapshots newer than {}, the newest one it shares with the pool ({newer}); \
                 was the pool rolled back? remove them with remove_backup",
                common.name
            )));
        }
        let from = self.dataset.snapshot(&common.name)?;
        // Forced: a mounted backup copy changes (atime) without anyone writing to it; what
        // changed there since its latest snapshot is never a backup.
        self.transfer(snapshot, Some(&from), &target_snapshot, true)?;
        Ok(Sent::Incremental {
            from: common.name.clone(),
        })
    }

    /// Runs a send into a pipe on a second thread and the receive from it on this one. A receive
    /// that stops early closes its end, so the send fails with EPIPE instead of blocking (Rust
    /// programs ignore SIGPIPE).
    fn transfer(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        target: &SnapshotName,
        force: bool,
    ) -> Result<(), ZfsError> {
        let (read, write) = pipe()?;
        let (sent, received) = std::thread::scope(|s| {
            let sender = s.spawn(move || {
                let r = self.ops.send(snapshot, from, &write);
                drop(write); // the receiver sees the end of the stream
                r
            });
            let received = self.ops.receive(target, &read, force);
            drop(read); // a sender still writing gets EPIPE instead of blocking
            let sent = sender.join().unwrap_or_else(|_| {
                Err(ZfsError::io(
                    "the send thread",
                    std::io::Error::other("panicked"),
                ))
            });
            (sent, received)
        });
        match (sent, received) {
            (_, Ok(())) => Ok(()),
            (sent, Err(received)) => {
                let mut detail = format!("receive: {received}");
                if let Err(e) = sent {
                    detail.push_str(&format!("; send: {e}"));
                }
                Err(ZfsError::Transfer {
                    snapshot: snapshot.to_string(),
                    target: target.dataset().to_string(),
                    detail,
                })
            }
        }
    }

    /// Destroys backup snapshots beyond retention on both sides, keeping the newest common one.
    fn prune(&self, report: &mut BackupReport) -> Result<(), ZfsError> {
        let src = self.ops.list_snapshots(&self.dataset)?;
        let dst = self.backup_snapshots()?;
        let keep = newest_common(&src, &dst).map(|s| s.guid);
        report.pruned_pool = self.prune_side(&self.dataset, &src, keep, report)?;
        if let Some(b) = &self.backup {
            report.pruned_backup = self.prune_side(b, &dst, keep, report)?;
        }
        Ok(())
    }

    fn prune_side(
        &self,
        ds: &DatasetName,
        snaps: &[SnapshotInfo],
        keep: Option<u64>,
        report: &mut BackupReport,
    ) -> Result<Vec<String>, ZfsError> {
        let ours = ours(snaps);
        let excess = ours.len().saturating_sub(self.retention);
        let mut pruned = Vec::new();
        for s in ours.into_iter().take(excess) {
            if Some(s.guid) == keep {
                continue;
            }
            let snapshot = ds.snapshot(&s.name)?;
            match self.ops.destroy_snapshot(&snapshot) {
                Ok(()) => pruned.push(s.name.clone()),
                Err(ZfsError::HasClones { .. }) => {
                    report.kept_with_clones.push(snapshot.to_string())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(pruned)
    }
}

/// Whether a daily backup is due at `now`: at or after `hour_utc` today (UTC) and none since.
/// `last` is the newest backup's time (see [`parse_backup_snapshot_name`]); hours above 23 count
/// as 23.
pub fn backup_due(last: Option<u64>, now: u64, hour_utc: u8) -> bool {
    let slot = now - now % DAY + u64::from(hour_utc.min(23)) * 3600;
    now >= slot && last.is_none_or(|l| l < slot)
}

/// `skiff-YYYYMMDDTHHMMSSZ` for Unix time `now` (UTC).
pub fn backup_snapshot_name(now: u64) -> String {
    let (y, m, d) = skiff_cluster::civil_from_days((now / DAY) as i64);
    let rem = now % DAY;
    format!(
        "{BACKUP_PREFIX}{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Unix time of a backup snapshot's name, or `None` for any other name.
pub fn parse_backup_snapshot_name(name: &str) -> Option<u64> {
    let stamp = name.strip_prefix(BACKUP_PREFIX)?;
    let b = stamp.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = stamp.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y as i64, mo as u32, d as u32)).ok()?;
    let t = days * DAY + h * 3600 + mi * 60 + s;
    // 31 February and friends do not survive the round trip.
    (backup_snapshot_name(t) == name).then_some(t)
}

/// The backup snapshots among `snaps`, in their order.
fn ours(snaps: &[SnapshotInfo]) -> Vec<&SnapshotInfo> {
    snaps
        .iter()
        .filter(|s| parse_backup_snapshot_name(&s.name).is_some())
        .collect()
}

fn entry(s: &SnapshotInfo, on_pool: bool, on_backup: bool) -> BackupEntry {
    BackupEntry {
        name: s.name.clone(),
        created: s.created,
        used: s.used,
        on_pool,
        on_backup,
    }
}

/// The newest snapshot of `src` whose guid `dst` has.
fn newest_common<'a>(src: &'a [SnapshotInfo], dst: &[SnapshotInfo]) -> Option<&'a SnapshotInfo> {
    src.iter()
        .rev()
        .find(|s| dst.iter().any(|d| d.guid == s.guid))
}

/// A file name of the pool's top level: no `/`, no `..`, not empty, no NUL.
fn check_file_name(name: &str) -> Result<(), ZfsError> {
    let bad = |reason| ZfsError::InvalidFileName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name == "." {
        return Err(bad("empty"));
    }
    if name.contains('/') {
        return Err(bad("must not contain '/'"));
    }
    if name.contains("..") {
        return Err(bad("must not contain '..'"));
    }
    if name.contains('\0') {
        return Err(bad("must not contain NUL"));
    }
    Ok(())
}

/// Gives restore temp files unique names within this process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Copies `source` to a temp file next to `dest`, syncs it and renames it over `dest`.
fn copy_replacing(source: &Path, dest: &Path) -> Result<u64, ZfsError> {
    let Some(dest_name) = dest.file_name() else {
        return Err(ZfsError::io_at(
            "cannot restore to",
            dest,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    };
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = dir.unwrap_or(Path::new(".")).join(format!(
        ".{}.restore.{}-{}.tmp",
        dest_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fs::copy(source, &tmp)
        .map_err(|e| ZfsError::io_at("cannot copy to", &tmp, e))
        .and_then(|n| {
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| ZfsError::io_at("cannot sync", &tmp, e))?;
            fs::rename(&tmp, dest).map_err(|e| ZfsError::io_at("cannot rename over", dest, e))?;
            Ok(n)
        });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A pipe whose ends are not inherited by child processes (the `zfs` commands).
fn pipe() -> Result<(File, File), ZfsError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ZfsError::io("cannot make a pipe", e.into()))?;
    Ok((File::from(read), File::from(write)))
}

/// (year, month, day) to days since 1970-01-01 (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::super::{CreateOptions, FakeZfs};
    use super::*;

    /// 2026-11-22T03:00:00Z.
    const T0: u64 = 1_795_316_400;
    const HOUR: u64 = 3600;

    struct Setup {
        _dir: tempfile::TempDir,
        mount: PathBuf,
        out: PathBuf,
        pool: ZfsPool<FakeZfs>,
    }

    /// Pool `tank/skiff` mounted on a temp dir, backed up to `backup/skiff`.
    fn setup(retention: usize) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("mnt");
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let z = FakeZfs::new()
            .with_pool("tank")
            .and_then(|z| z.with_pool("backup"))
            .expect("pools");
        let opts = CreateOptions {
            mountpoint: Some(mount.clone()),
        };
        z.create_filesystem(&ds("tank/skiff"), &opts)
            .expect("create");
        let pool = ZfsPool::new(z, "tank/skiff", Some("backup/skiff"), retention).expect("pool");
        Setup {
            _dir: dir,
            mount,
            out,
            pool,
        }
    }

    fn ds(n: &str) -> DatasetName {
        DatasetName::parse(n).expect("valid")
    }

    fn write(s: &Setup, file: &str, data: &str) {
        fs::write(s.mount.join(file), data).expect("write");
    }

    fn names(z: &FakeZfs, dataset: &str) -> Vec<String> {
        z.list_snapshots(&ds(dataset))
            .map(|l| l.into_iter().map(|s| s.name).collect())
            .unwrap_or_default()
    }

    fn stamp(t: u64) -> String {
        backup_snapshot_name(t)
    }

    #[test]
    fn first_backup_is_full_then_incremental() {
        let s = setup(7);
        write(&s, "web.qcow2", "v1");
        let first = s.pool.backup_now(T0).expect("first");
        assert_eq!(first.snapshot, "skiff-20261122T030000Z");
        assert!(first.taken);
        assert_eq!(first.sent, Sent::Full);
        write(&s, "web.qcow2", "v2");
        let second = s.pool.backup_now(T0 + HOUR).expect("second");
        assert_eq!(second.sent, Sent::Incremental { from: stamp(T0) });
        let z = s.pool.ops();
        let guids = |d: &str| -> Vec<u64> {
            z.list_snapshots(&ds(d))
                .expect("list")
                .iter()
                .map(|x| x.guid)
                .collect()
        };
        assert_eq!(guids("tank/skiff"), guids("backup/skiff"));
        // The same second again: nothing new to take or send.
        let again = s.pool.backup_now(T0 + HOUR).expect("again");
        assert!(!again.taken);
        assert_eq!(again.sent, Sent::AlreadyThere);
        let list = s.pool.list_backups().expect("list");
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|b| b.on_pool && b.on_backup));
        assert_eq!(list[0].name, stamp(T0));
    }

    #[test]
    fn failed_receive_leaves_nothing_and_a_repeat_finishes() {
        let s = setup(7);
        write(&s, "web.qcow2", "v1");
        s.pool.ops().fail_next_send();
        let err = s.pool.backup_now(T0).expect_err("cut off");
        assert!(matches!(err, ZfsError::Transfer { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("nothing was received"), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
        assert_eq!(s.pool.ops().exists("backup/skiff").ok(), Some(false));
        assert_eq!(names(s.pool.ops(), "tank/skiff"), vec![stamp(T0)]);

        let repeat = s.pool.backup_now(T0).expect("repeat");
        assert!(!repeat.taken);
        assert_eq!(repeat.sent, Sent::Full);

        // An incremental send cut off leaves the backup side as it was.
        write(&s, "web.qcow2", "v2");
        s.pool.ops().fail_next_send();
        assert!(s.pool.backup_now(T0 + HOUR).is_err());
        assert_eq!(names(s.pool.ops(), "backup/skiff"), vec![stamp(T0)]);
        let repeat = s.pool.backup_now(T0 + HOUR).expect("repeat");
        assert_eq!(repeat.sent, Sent::Incremental { from: stamp(T0) });
        assert_eq!(
            names(s.pool.ops(), "backup/skiff"),
            vec![stamp(T0), stamp(T0 + HOUR)]
        );
    }

    #[test]
    fn retention_prunes_both_sides() {
        let s = setup(2);
        for i in 0..4 {
            write(&s, "web.qcow2", &format!("v{i}"));
            s.pool.backup_now(T0 + i * HOUR).expect("backup");
        }
        let kept = vec![stamp(T0 + 2 * HOUR), stamp(T0 + 3 * HOUR)];
        assert_eq!(names(s.pool.ops(), "tank/skiff"), kept);
        assert_eq!(names(s.pool.ops(), "backup/skiff"), kept);
        // Snapshots not made by backups are never pruned.
        let manual = ds("tank/skiff").snapshot("manual").expect("name");
        s.pool.ops().snapshot(&manual).expect("manual");
        let r = s.pool.backup_now(T0 + 4 * HOUR).expect("backup");
        assert_eq!(r.pruned_pool, vec![stamp(T0 + 2 * HOUR)]);
        assert_eq!(r.pruned_backup, vec![stamp(T0 + 2 * HOUR)]);
        assert!(names(s.pool.ops(), "tank/skiff").contains(&"manual".to_owned()));
    }

    #[test]
    fn retention_never_destroys_the_newest_common_snapshot() {
        let s = setup(1);
        write(&s, "web.qcow2", "v1");
        s.pool.backup_now(T0).expect("first");
        // The backup side fails twice: the pool keeps the last snapshot both sides share.
        for i in 1..=2 {
            s.pool.ops().fail_next_send();
            assert!(s.pool.backup_now(T0 + i * HOUR).is_err());
        }
        assert_eq!(
            names(s.pool.ops(), "tank/skiff"),
            vec![stamp(T0), stamp(T0 + 2 * HOUR)]
        );
        assert!(matches!(
            s.pool.remove_backup(&stamp(T0)),
            Err(ZfsError::Protected { .. })
        ));
        let r = s.pool.backup_now(T0 + 2 * HOUR).expect("works again");
        assert_eq!(r.sent, Sent::Incremental { from: stamp(T0) });
        assert_eq!(
            names(s.pool.ops(), "tank/skiff"),
            vec![stamp(T0 + 2 * HOUR)]
        );
        assert_eq!(
            names(s.pool.ops(), "backup/skiff"),
            vec![stamp(T0 + 2 * HOUR)]
        );
    }

    #[test]
    fn clones_keep_their_snapshot_through_retention() {
        let s = setup(1);
        s.pool.backup_now(T0).expect("first");
        let origin = ds("tank/skiff").snapshot(&stamp(T0)).expect("name");
        s.pool
            .ops()
            .clone_snapshot(&origin, &ds("tank/copy"))
            .expect("clone");
        let r = s.pool.backup_now(T0 + HOUR).expect("second");
        assert_eq!(r.kept_with_clones, vec![origin.to_string()]);
        assert_eq!(r.pruned_backup, vec![stamp(T0)]);
    }

    #[test]
    fn rollback_to_an_earlier_backup_is_refused_unless_told() {
        let s = setup(7);
        for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
            write(&s, "web.qcow2", v);
            s.pool.backup_now(T0 + i as u64 * HOUR).expect("backup");
        }
        write(&s, "web.qcow2", "v4");
        match s.pool.rollback(&stamp(T0), LaterSnapshots::Refuse) {
            Err(ZfsError::NotLatest { later, .. }) => assert_eq!(
                later,
                vec![
                    format!("tank/skiff@{}", stamp(T0 + HOUR)),
                    format!("tank/skiff@{}", stamp(T0 + 2 * HOUR))
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            fs::read_to_string(s.mount.join("web.qcow2"))
                .ok()
                .as_deref(),
            Some("v4")
        );
        s.pool
            .rollback(&stamp(T0 + 2 * HOUR), LaterSnapshots::Refuse)
            .expect("latest");
        assert_eq!(
            fs::read_to_string(s.mount.join("web.qcow2"))
                .ok()
                .as_deref(),
            Some("v3")
        );
        s.pool
            .rollback(&stamp(T0), LaterSnapshots::Destroy)
            .expect("destroy later");
        assert_eq!(
            fs::read_to_string(s.mount.join("web.qcow2"))
                .ok()
                .as_deref(),
            Some("v1")
        );
        assert_eq!(names(s.pool.ops(), "tank/skiff"), vec![stamp(T0)]);
        // The backup side kept the later copies: the next backup says how to go on.
        let err = s.pool.backup_now(T0 + 3 * HOUR).expect_err("diverged");
        assert!(matches!(err, ZfsError::BackupDiverged { .. }), "{err:?}");
        for t in [T0 + HOUR, T0 + 2 * HOUR] {
            assert_eq!(
                s.pool.remove_backup(&stamp(t)).expect("remove"),
                vec![format!("backup/skiff@{}", stamp(t))]
            );
        }
        let r = s.pool.backup_now(T0 + 3 * HOUR).expect("after removal");
        assert_eq!(r.sent, Sent::Incremental { from: stamp(T0) });
    }

    #[test]
    fn bad_names_are_refused_and_change_nothing() {
        let z = || FakeZfs::new().with_pool("tank").expect("pool");
        for (dataset, backup, keep) in [
            ("tank/../x", None, 1),
            ("/tank/skiff", None, 1),
            ("tank/skiff", Some("tank/skiff/bk"), 1),
            ("tank/skiff", Some("tank"), 1),
            ("tank/skiff", Some("tank/skiff"), 1),
            ("tank/skiff", Some("bk;rm -rf /"), 1),
            ("tank/skiff", None, 0),
        ] {
            assert!(
                ZfsPool::new(z(), dataset, backup, keep).is_err(),
                "{dataset} {backup:?}"
            );
        }
        let s = setup(7);
        write(&s, "web.qcow2", "v1");
        s.pool.backup_now(T0).expect("backup");
        let before = (
            names(s.pool.ops(), "tank/skiff"),
            names(s.pool.ops(), "backup/skiff"),
        );
        let dest = s.out.join("x");
        for snap in ["", "a/b", "..", "a b", "x@y", "-r"] {
            assert!(
                s.pool.rollback(snap, LaterSnapshots::Destroy).is_err(),
                "{snap:?}"
            );
            assert!(s.pool.remove_backup(snap).is_err(), "{snap:?}");
            assert!(
                s.pool.restore_file(snap, "web.qcow2", &dest).is_err(),
                "{snap:?}"
            );
        }
        for file in ["", ".", "..", "../web.qcow2", "a/b", "/etc/passwd", "x\0y"] {
            assert!(
                matches!(
                    s.pool.restore_file(&stamp(T0), file, &dest),
                    Err(ZfsError::InvalidFileName { .. })
                ),
                "{file:?}"
            );
        }
        // Only backup snapshots are removed by remove_backup.
        assert!(matches!(
            s.pool.remove_backup("manual"),
            Err(ZfsError::InvalidName { .. })
        ));
        assert!(!dest.exists());
        assert_eq!(
            (
                names(s.pool.ops(), "tank/skiff"),
                names(s.pool.ops(), "backup/skiff")
            ),
            before
        );
        assert_eq!(
            fs::read_to_string(s.mount.join("web.qcow2"))
                .ok()
                .as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn restores_one_file_from_a_snapshot() {
        let s = setup(7);
        write(&s, "web.qcow2", "version one");
        write(&s, "db.qcow2", "db");
        s.pool.backup_now(T0).expect("backup");
        write(&s, "web.qcow2", "version two");
        let dest = s.out.join("web.qcow2");
        fs::write(&dest, "old").expect("write");
        let n = s
            .pool
            .restore_file(&stamp(T0), "web.qcow2", &dest)
            .expect("restore");
        assert_eq!(n, 11);
        assert_eq!(
            fs::read_to_string(&dest).ok().as_deref(),
            Some("version one")
        );
        // No temp file left next to it.
        let left: Vec<_> = fs::read_dir(&s.out)
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("web.qcow2")]);
        assert!(matches!(
            s.pool.restore_file(&stamp(T0), "gone.qcow2", &dest),
            Err(ZfsError::NotFound { .. })
        ));
        assert!(matches!(
            s.pool.restore_file(&stamp(T0 + HOUR), "web.qcow2", &dest),
            Err(ZfsError::NotFound { .. })
        ));
        assert_eq!(
            fs::read_to_string(&dest).ok().as_deref(),
            Some("version one")
        );
    }

    #[test]
    fn mountpoint_usage_and_a_pool_without_backup_dataset() {
        let s = setup(7);
        assert_eq!(s.pool.mountpoint().ok(), Some(s.mount.clone()));
        write(&s, "web.qcow2", "12345");
        let u = s.pool.usage().expect("usage");
        assert_eq!(u.used, 5);
        assert_eq!(u.used + u.available, super::super::fake::FAKE_CAPACITY);

        let z = FakeZfs::new().with_pool("tank").expect("pool");
        z.create_filesystem(&ds("tank/nomount"), &CreateOptions::default())
            .expect("create");
        let alone = ZfsPool::new(z, "tank/nomount", None, 1).expect("pool");
        assert!(matches!(
            alone.mountpoint(),
            Err(ZfsError::NotMounted { .. })
        ));
        assert_eq!(alone.backup_now(T0).expect("b").sent, Sent::NoBackupDataset);
        let r = alone.backup_now(T0 + HOUR).expect("b");
        assert_eq!(r.pruned_pool, vec![stamp(T0)]);
        assert!(alone
            .list_backups()
            .expect("list")
            .iter()
            .all(|b| !b.on_backup));
    }

    #[test]
    fn backup_snapshot_names() {
        assert_eq!(backup_snapshot_name(0), "skiff-19700101T000000Z");
        assert_eq!(backup_snapshot_name(T0), "skiff-20261122T030000Z");
        assert_eq!(backup_snapshot_name(951_868_799), "skiff-20000229T235959Z");
        for t in [0, T0, 951_868_799, T0 + 12_345_678] {
            assert_eq!(
                parse_backup_snapshot_name(&backup_snapshot_name(t)),
                Some(t)
            );
        }
        for n in [
            "manual",
            "skiff-",
            "skiff-20260231T000000Z",
            "skiff-20261122T240000Z",
            "skiff-20261122T030000",
            "skiff-2026112xT030000Z",
            "skiff-+0261122T030000Z",
            "skiff-20261122T030000Zx",
        ] {
            assert_eq!(parse_backup_snapshot_name(n), None, "{n}");
        }
    }

    #[test]
    fn daily_schedule() {
        let day = T0 - T0 % DAY;
        assert!(!backup_due(None, day + 2 * HOUR, 3));
        assert!(backup_due(None, day + 3 * HOUR, 3));
        assert!(backup_due(Some(day - DAY + 3 * HOUR), day + 5 * HOUR, 3));
        assert!(!backup_due(Some(day + 3 * HOUR + 5), day + 5 * HOUR, 3));
        // A backup taken earlier today, before the hour, does not count.
        assert!(backup_due(Some(day + HOUR), day + 4 * HOUR, 3));
    }
}
