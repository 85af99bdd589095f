//! The storage pools this node has open: `local` (`DATA_DIR/pools/local`, always) and those the
//! leader hands it (`AgentRequest::Pools`: node-local pools of its own and every shared pool).
//!
//! Opening a pool makes its directory when missing (a ZFS pool: its dataset, on agents built
//! with the `zfs` feature), lets qemu traverse it, and removes temporary files of work a crash
//! interrupted. A shared pool is accepted only once its directory carries the marker file
//! ([`SHARED_MARKER`]) with the pool's token: the node told to write it does so when it is
//! missing, every other node waits to see it — so a directory that is not really shared (an NFS
//! mount missing on one node) is reported as unusable there instead of silently filling a local
//! disk. A pool that cannot be opened stays listed with the reason and is tried again on the next
//! `Pools` request. The list is kept in `DATA_DIR/pools.json`, so a restarted agent has its pools
//! before the leader speaks to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use skiff_cluster::agentproto::{ImageFileReport, PoolReport};
use skiff_cluster::state::pools::{PoolKind, PoolSpec, LOCAL_POOL, SHARED_MARKER};
use tracing::{info, warn};

use super::images::ImageStore;
use super::zfs::{
    backup_snapshot_name, CreateOptions, DatasetName, Sent, ZfsError, ZfsOps, ZfsPool,
};
use skiff_cluster::state::backups::BackupOp;

/// How long (in 100 ms steps) a node waits for a shared pool's marker before it reports the pool
/// unusable (and is asked again later).
const MARKER_WAIT_STEPS: u32 = 20;

/// Where the pool list is kept, in the data dir.
const POOLS_FILE: &str = "pools.json";

/// One pool as this node has it.
#[derive(Clone)]
struct OpenPool {
    /// `None` for `local`.
    spec: Option<PoolSpec>,
    path: PathBuf,
    store: Result<ImageStore, String>,
}

/// The node's open pools (cheap to clone: every clone sees the same pools).
#[derive(Clone)]
pub struct Pools {
    data_dir: PathBuf,
    open: Arc<RwLock<BTreeMap<String, OpenPool>>>,
    /// Counts changes of the set (for publishing figures at once).
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// This host's ZFS (`None`: built without the `zfs` feature, or no ZFS here).
    zfs: Option<Arc<dyn ZfsOps>>,
    /// Stand-in for `qemu-img` (tests).
    qemu_img: Option<PathBuf>,
}

impl Pools {
    /// Opens `local` and the pools kept in `DATA_DIR/pools.json` (a pool that cannot be opened
    /// is kept with the reason).
    pub fn open(data_dir: &Path) -> Pools {
        Self::open_with(data_dir, None)
    }

    /// [`Pools::open`] with `qemu_img` run instead of the one on `PATH`.
    pub fn open_with(data_dir: &Path, qemu_img: Option<PathBuf>) -> Pools {
        let pools = Pools {
            data_dir: data_dir.to_path_buf(),
            open: Arc::default(),
            changes: Arc::default(),
            zfs: host_zfs(),
            qemu_img,
        };
        let local = data_dir.join("pools").join(LOCAL_POOL);
        let store = pools.store_at(&local);
        if let Err(e) = &store {
            warn!(error = %e, "the local image pool is unusable: no image work here");
        }
        pools.write().insert(
            LOCAL_POOL.to_string(),
            OpenPool {
                spec: None,
                path: local,
                store,
            },
        );
        let kept: Vec<PoolSpec> = std::fs::read(data_dir.join(POOLS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if !kept.is_empty() {
            pools.set(kept);
        }
        pools
    }

    /// Pools of one store, as `local` (benchmarks and tests).
    pub fn single(store: ImageStore) -> Pools {
        let path = store.root().to_path_buf();
        let pools = Pools {
            data_dir: path.clone(),
            open: Arc::default(),
            changes: Arc::default(),
            zfs: None,
            qemu_img: None,
        };
        pools.write().insert(
            LOCAL_POOL.to_string(),
            OpenPool {
                spec: None,
                path,
                store: Ok(store),
            },
        );
        pools
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, OpenPool>> {
        self.open.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, OpenPool>> {
        self.open.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A number that changes whenever a pool is opened, fails or is forgotten.
    pub fn generation(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store of pool `name`, or why there is none.
    pub fn get(&self, name: &str) -> Result<ImageStore, String> {
        match self.read().get(name) {
            Some(p) => p
                .store
                .clone()
                .map_err(|e| format!("pool {name} is unusable on this node: {e}")),
            None => Err(format!("this node has no pool named {name:?}")),
        }
    }

    /// The usable pool whose directory holds the image `name` (first in name order).
    pub fn find(&self, name: &str) -> Option<ImageStore> {
        self.read()
            .values()
            .filter_map(|p| p.store.as_ref().ok())
            .find(|s| s.exists(name).unwrap_or(false))
            .cloned()
    }

    /// Whether `name` is a shared pool (on every node, marked by its token).
    pub fn is_shared(&self, name: &str) -> bool {
        self.read()
            .get(name)
            .and_then(|p| p.spec.as_ref())
            .is_some_and(|s| !s.token.is_empty())
    }

    /// The usable pools, by name.
    pub fn stores(&self) -> Vec<(String, ImageStore)> {
        self.read()
            .iter()
            .filter_map(|(n, p)| p.store.as_ref().ok().map(|s| (n.clone(), s.clone())))
            .collect()
    }

    /// Opens the pools of `specs` that are not open (or were unusable), forgets those not
    /// listed (`local` stays), and keeps the list for the next start. Blocking (file system
    /// work). Returns what it did.
    pub fn set(&self, specs: Vec<PoolSpec>) -> Vec<String> {
        let mut log = Vec::new();
        let current = self.read().clone();
        let mut next = BTreeMap::new();
        if let Some(local) = current.get(LOCAL_POOL) {
            next.insert(LOCAL_POOL.to_string(), local.clone());
        }
        for spec in &specs {
            if spec.name == LOCAL_POOL {
                continue;
            }
            match current.get(&spec.name) {
                // The same place, usable: kept as it is (reopening would clear temporary files
                // of work under way). Who writes a shared pool's marker may change meanwhile.
                Some(p)
                    if p.store.is_ok()
                        && p.spec
                            .as_ref()
                            .is_some_and(|o| o.kind == spec.kind && o.token == spec.token) =>
                {
                    next.insert(spec.name.clone(), p.clone());
                }
                _ => {
                    let opened = self.open_pool(spec);
                    match &opened.store {
                        Ok(_) => {
                            info!(pool = %spec.name, path = %opened.path.display(), "opened storage pool");
                            log.push(format!(
                                "opened pool {} at {}",
                                spec.name,
                                opened.path.display()
                            ));
                        }
                        Err(e) => {
                            warn!(pool = %spec.name, error = %e, "storage pool unusable");
                            log.push(format!("pool {} is unusable: {e}", spec.name));
                        }
                    }
                    next.insert(spec.name.clone(), opened);
                }
            }
        }
        for name in current.keys().filter(|n| !next.contains_key(*n)) {
            info!(pool = %name, "forgot storage pool (its files stay)");
            log.push(format!("forgot pool {name} (its files stay)"));
        }
        *self.write() = next;
        if !log.is_empty() {
            self.changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = self.keep(&specs) {
            warn!(error = %e, "could not keep the pool list");
        }
        log
    }

    fn keep(&self, specs: &[PoolSpec]) -> std::io::Result<()> {
        let path = self.data_dir.join(POOLS_FILE);
        let tmp = self.data_dir.join(format!("{POOLS_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(specs)?)?;
        std::fs::rename(tmp, path)
    }

    fn store_at(&self, dir: &Path) -> Result<ImageStore, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        traversable(dir).map_err(|e| format!("cannot open {} to qemu: {e}", dir.display()))?;
        let mut store = ImageStore::new(dir.to_path_buf()).map_err(|e| e.to_string())?;
        if let Some(q) = &self.qemu_img {
            store = store.with_qemu_img(q);
        }
        if let Ok(n) = store.remove_stale_temp_files() {
            if n > 0 {
                info!(pool = %dir.display(), removed = n, "removed temp files of interrupted image work");
            }
        }
        Ok(store)
    }

    fn open_pool(&self, spec: &PoolSpec) -> OpenPool {
        let (path, store) = match &spec.kind {
            PoolKind::Dir { path } => {
                let path = PathBuf::from(path);
                let store = self.check_place(&path).and_then(|()| {
                    if spec.token.is_empty() {
                        self.store_at(&path)
                    } else {
                        check_marker(&path, spec).and_then(|()| self.store_at(&path))
                    }
                });
                (path, store)
            }
            PoolKind::Zfs { dataset, .. } => match self.zfs_mountpoint(dataset) {
                Ok(path) => {
                    let store = self.check_place(&path).and_then(|()| self.store_at(&path));
                    (path, store)
                }
                Err(e) => (PathBuf::new(), Err(e)),
            },
        };
        OpenPool {
            spec: Some(spec.clone()),
            path,
            store,
        }
    }

    /// Refuses a pool directory that holds or lies inside the data dir (its files would be the
    /// agent's own, or `local`'s).
    fn check_place(&self, path: &Path) -> Result<(), String> {
        let data = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if real.starts_with(&data) || data.starts_with(&real) {
            return Err(format!(
                "{} overlaps this node's data dir {}",
                path.display(),
                data.display()
            ));
        }
        Ok(())
    }

    /// The pools as this node has them (`local` first), with the use of their file systems.
    pub fn report(&self) -> Vec<PoolReport> {
        let open = self.read().clone();
        let mut out: Vec<PoolReport> = Vec::new();
        for (name, p) in open {
            let (total, used) = p
                .store
                .as_ref()
                .ok()
                .and_then(|s| usage(s.root()))
                .unwrap_or((0, 0));
            let r = PoolReport {
                name: name.clone(),
                kind: p
                    .spec
                    .as_ref()
                    .map_or("dir", |s| s.kind.as_str())
                    .to_string(),
                path: p.path.display().to_string(),
                error: p.store.err(),
                total,
                used,
            };
            if name == LOCAL_POOL {
                out.insert(0, r);
            } else {
                out.push(r);
            }
        }
        out
    }

    /// The image files of every usable pool, by pool and name; `None` when a pool that is
    /// open could not be listed (the leader then judges no file of this node).
    pub fn files(&self) -> Option<Vec<ImageFileReport>> {
        let mut out = Vec::new();
        for (name, store) in self.stores() {
            for mut f in store.files().ok()? {
                f.pool = name.clone();
                out.push(f);
            }
        }
        Some(out)
    }
}

/// Checks a shared pool's marker: the right token, written here when this node is the one to
/// write it and it is missing.
fn check_marker(dir: &Path, spec: &PoolSpec) -> Result<(), String> {
    let marker = dir.join(SHARED_MARKER);
    let expected = format!("{}\n", spec.token);
    // The node that writes the marker is told at the same time as the others: give it a moment.
    if !spec.writes_marker {
        for _ in 0..MARKER_WAIT_STEPS {
            if marker.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    match std::fs::read_to_string(&marker) {
        Ok(found) if found == expected => Ok(()),
        Ok(_) => Err(format!(
            "{} belongs to another pool or cluster (its {SHARED_MARKER} holds another token)",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && spec.writes_marker => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
            write_new(&marker, &expected)
                .map_err(|e| format!("cannot write {}: {e}", marker.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{} is not shared with the other nodes yet: its {SHARED_MARKER} is missing (is the shared file system mounted here?)",
            dir.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", marker.display())),
    }
}

/// Writes a new file whole (never over an existing one) and syncs it.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Bytes of the file system holding `dir`, and in use there.
fn usage(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = st.fragment_size();
    let total = st.blocks() * frag;
    Some((total, total.saturating_sub(st.blocks_available() * frag)))
}

/// Lets other users (qemu's) traverse `dir`.
pub fn traversable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut p = std::fs::metadata(dir)?.permissions();
    if p.mode() & 0o001 == 0 {
        p.set_mode(p.mode() | 0o011);
        std::fs::set_permissions(dir, p)?;
    }
    Ok(())
}

/// This host's ZFS, when the agent is built with the `zfs` feature and `/dev/zfs` answers.
#[cfg(feature = "zfs")]
fn host_zfs() -> Option<Arc<dyn ZfsOps>> {
    match super::zfs::LzcZfs::new() {
        Ok(z) => Some(Arc::new(z)),
        Err(e) => {
            info!(reason = %e, "no ZFS on this host: ZFS pools will be reported unusable");
            None
        }
    }
}

#[cfg(not(feature = "zfs"))]
fn host_zfs() -> Option<Arc<dyn ZfsOps>> {
    None
}

/// What [`Pools::zfs_without`] says when there is no ZFS to use.
#[cfg(feature = "zfs")]
const NO_ZFS: &str = "ZFS is not usable on this host (no /dev/zfs)";
#[cfg(not(feature = "zfs"))]
const NO_ZFS: &str = "this skiffd is built without ZFS support (cargo feature `zfs`)";

/// Whole-pool backups keep every snapshot the leader has not asked to remove (its schedules'
/// retention decides, as for image backups).
const ZFS_KEEP: usize = usize::MAX;

impl Pools {
    /// Uses `zfs` as this host's ZFS (tests: a `FakeZfs`).
    pub fn with_zfs(mut self, zfs: Arc<dyn ZfsOps>) -> Pools {
        self.zfs = Some(zfs);
        self
    }

    fn zfs_without(&self, dataset: &str) -> String {
        format!("dataset {dataset}: {NO_ZFS}")
    }

    /// The directory of a ZFS pool: its dataset's mountpoint, the dataset made when missing.
    fn zfs_mountpoint(&self, dataset: &str) -> Result<PathBuf, String> {
        let zfs = self.zfs.as_ref().ok_or_else(|| self.zfs_without(dataset))?;
        let name = DatasetName::parse(dataset).map_err(|e| e.to_string())?;
        if !zfs.exists(dataset).map_err(|e| e.to_string())? {
            zfs.create_filesystem(&name, &CreateOptions::default())
                .map_err(|e| e.to_string())?;
        }
        let props = zfs.properties(&name).map_err(|e| e.to_string())?;
        match props.mountpoint {
            Some(m) if props.mounted => Ok(m),
            _ => Err(format!("dataset {dataset} is not mounted")),
        }
    }

    /// Carries out `op` for the whole-pool backup of pool `name` made at `at` (Unix seconds):
    /// `Create` takes the snapshot `skiff-YYYYMMDDTHHMMSSZ` of its dataset and sends it
    /// (incrementally when it can) to the pool's backup dataset; `Remove` destroys it on both
    /// sides. Idempotent. Blocking.
    pub fn zfs_backup(&self, name: &str, op: BackupOp, at: u64) -> Result<Vec<String>, String> {
        let spec = self
            .read()
            .get(name)
            .and_then(|p| p.spec.clone())
            .ok_or_else(|| format!("this node has no pool named {name:?}"))?;
        let PoolKind::Zfs { dataset, backup } = &spec.kind else {
            return Err(format!("pool {name} is not on ZFS"));
        };
        let zfs = self.zfs.clone().ok_or_else(|| self.zfs_without(dataset))?;
        let pool =
            ZfsPool::new(zfs, dataset, backup.as_deref(), ZFS_KEEP).map_err(|e| e.to_string())?;
        let snapshot = backup_snapshot_name(at);
        match op {
            BackupOp::Create => {
                let r = pool.backup_now(at).map_err(|e| e.to_string())?;
                let sent = match &r.sent {
                    Sent::NoBackupDataset => "kept in the pool (no backup dataset)".to_string(),
                    Sent::AlreadyThere => "already on the backup dataset".to_string(),
                    Sent::Full => format!("sent in full to {}", backup.as_deref().unwrap_or("-")),
                    Sent::Incremental { from } => format!(
                        "sent to {} incrementally from {from}",
                        backup.as_deref().unwrap_or("-")
                    ),
                };
                let took = if r.taken { "took" } else { "found" };
                Ok(vec![format!("{took} snapshot {dataset}@{}; {sent}", r.snapshot)])
            }
            BackupOp::Remove => match pool.remove_backup(&snapshot) {
                Ok(gone) => Ok(gone.into_iter().map(|s| format!("destroyed {s}")).collect()),
                Err(ZfsError::NotFound { .. }) => Ok(vec![format!("{dataset}@{snapshot} was gone already")]),
                Err(e) => Err(e.to_string()),
            },
            BackupOp::Restore => Err(format!(
                "a whole-pool backup is not restored through Skiff: files are in {dataset}'s .zfs/snapshot/{snapshot}/"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_spec(name: &str, path: &Path) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            kind: PoolKind::Dir {
                path: path.display().to_string(),
            },
            token: String::new(),
            writes_marker: false,
        }
    }

    fn shared(path: &Path, writes_marker: bool) -> PoolSpec {
        PoolSpec {
            name: "0".into(),
            token: "tok".into(),
            writes_marker,
            ..dir_spec("0", path)
        }
    }

    #[test]
    fn pools_open_report_and_are_kept_across_restarts() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let fast = t.path().join("srv/fast");
        let pools = Pools::open(&data);
        assert!(pools.get("local").is_ok());
        assert!(pools.get("fast").unwrap_err().contains("no pool named"));
        let log = pools.set(vec![dir_spec("fast", &fast)]);
        assert!(log[0].starts_with("opened pool fast"), "{log:?}");
        assert!(fast.is_dir());
        let store = pools.get("fast").unwrap();
        store.create("img", 1 << 20).unwrap();
        assert!(pools.find("img").is_some_and(|s| s.root() == store.root()));
        let r = pools.report();
        assert_eq!(
            r.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["local", "fast"]
        );
        assert!(r.iter().all(|p| p.error.is_none() && p.total > 0), "{r:?}");
        let files = pools.files().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            (files[0].pool.as_str(), files[0].name.as_str()),
            ("fast", "img")
        );
        // Again: nothing to do.
        assert!(pools.set(vec![dir_spec("fast", &fast)]).is_empty());
        // A restarted agent has it at once.
        let again = Pools::open(&data);
        assert!(again.get("fast").is_ok());
        // Forgotten, its files stay.
        let log = again.set(Vec::new());
        assert_eq!(log, ["forgot pool fast (its files stay)"]);
        assert!(again.get("fast").is_err() && fast.join("img.qcow2").exists());
        assert!(Pools::open(&data).get("fast").is_err());
    }

    #[test]
    fn unusable_pools_say_why_and_are_tried_again() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let pools = Pools::open(&data);
        let inside = dir_spec("x", &data.join("pools/x"));
        let blocker = t.path().join("file");
        std::fs::write(&blocker, "not a dir").unwrap();
        let not_dir = dir_spec("y", &blocker);
        let zfs = PoolSpec {
            name: "z".into(),
            kind: PoolKind::Zfs {
                backup: None,
                dataset: "tank/skiff".into(),
            },
            token: String::new(),
            writes_marker: false,
        };
        pools.set(vec![inside, not_dir.clone(), zfs]);
        let r = pools.report();
        let err = |n: &str| {
            r.iter()
                .find(|p| p.name == n)
                .unwrap()
                .error
                .clone()
                .unwrap()
        };
        assert!(
            err("x").contains("overlaps this node's data dir"),
            "{}",
            err("x")
        );
        assert!(err("y").contains("cannot make"), "{}", err("y"));
        assert!(!err("z").is_empty());
        assert!(pools.get("y").unwrap_err().contains("unusable"));
        // Fixed on the node: the next request opens it.
        std::fs::remove_file(&blocker).unwrap();
        let log = pools.set(vec![not_dir]);
        assert!(
            log.iter().any(|l| l.starts_with("opened pool y")),
            "{log:?}"
        );
    }

    #[test]
    fn zfs_pools_open_on_their_mountpoint_and_back_up_whole() {
        use crate::storage::zfs::FakeZfs;
        let t = tempfile::tempdir().unwrap();
        let mount = t.path().join("tank-skiff");
        let zfs = FakeZfs::new()
            .with_pool("tank")
            .and_then(|z| z.with_pool("backup"))
            .unwrap();
        let opts = CreateOptions {
            mountpoint: Some(mount.clone()),
        };
        zfs.create_filesystem(&DatasetName::parse("tank/skiff").unwrap(), &opts)
            .unwrap();
        let zfs: Arc<dyn ZfsOps> = Arc::new(zfs);
        let pools = Pools::open(&t.path().join("data")).with_zfs(zfs.clone());
        let spec = PoolSpec {
            name: "z".into(),
            kind: PoolKind::Zfs {
                dataset: "tank/skiff".into(),
                backup: Some("backup/skiff".into()),
            },
            token: String::new(),
            writes_marker: false,
        };
        let log = pools.set(vec![spec]);
        assert!(log[0].starts_with("opened pool z"), "{log:?}");
        let store = pools.get("z").unwrap();
        assert_eq!(store.root(), mount.canonicalize().unwrap());
        store.create("img", 1 << 20).unwrap();
        assert_eq!(pools.report()[1].kind, "zfs");

        // A whole-pool backup: taken and sent in full, found again when repeated, then
        // incremental; removed on both sides; the newest one both sides share is kept.
        const T1: u64 = 1_795_000_000;
        const T2: u64 = T1 + 86_400;
        let first = pools.zfs_backup("z", BackupOp::Create, T1).unwrap();
        assert!(
            first[0].starts_with("took snapshot tank/skiff@skiff-")
                && first[0].contains("sent in full"),
            "{first:?}"
        );
        let again = pools.zfs_backup("z", BackupOp::Create, T1).unwrap();
        assert!(
            again[0].starts_with("found") && again[0].contains("already on the backup"),
            "{again:?}"
        );
        let second = pools.zfs_backup("z", BackupOp::Create, T2).unwrap();
        assert!(
            second[0].contains("incrementally from skiff-"),
            "{second:?}"
        );
        let backup = DatasetName::parse("backup/skiff").unwrap();
        assert_eq!(zfs.list_snapshots(&backup).unwrap().len(), 2);
        let gone = pools.zfs_backup("z", BackupOp::Remove, T1).unwrap();
        assert_eq!(gone.len(), 2, "{gone:?}");
        assert_eq!(zfs.list_snapshots(&backup).unwrap().len(), 1);
        let twice = pools.zfs_backup("z", BackupOp::Remove, T1).unwrap();
        assert!(twice[0].contains("gone already"), "{twice:?}");
        let e = pools.zfs_backup("z", BackupOp::Remove, T2).unwrap_err();
        assert!(e.contains("newest snapshot"), "{e}");
        assert!(pools.zfs_backup("z", BackupOp::Restore, T2).is_err());
        assert!(pools.zfs_backup("local", BackupOp::Create, T2).is_err());
        // Without ZFS on the host, a ZFS pool says why it is unusable.
        let bare = Pools::open(&t.path().join("bare"));
        bare.set(vec![PoolSpec {
            name: "z".into(),
            kind: PoolKind::Zfs {
                dataset: "tank/skiff".into(),
                backup: None,
            },
            token: String::new(),
            writes_marker: false,
        }]);
        assert!(bare.get("z").unwrap_err().contains("ZFS"));
    }

    #[test]
    fn a_shared_pool_is_used_only_where_its_marker_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let shared_dir = t.path().join("shared");
        let a = Pools::open(&t.path().join("a"));
        let b = Pools::open(&t.path().join("b"));
        // b may not write the marker: it waits for a.
        b.set(vec![shared(&shared_dir, false)]);
        let e = b.get("0").unwrap_err();
        assert!(e.contains("not shared with the other nodes yet"), "{e}");
        a.set(vec![shared(&shared_dir, true)]);
        assert!(a.get("0").is_ok());
        // Another node writing markers from now on changes nothing here.
        assert!(a.set(vec![shared(&shared_dir, false)]).is_empty());
        b.set(vec![shared(&shared_dir, false)]);
        assert!(b.get("0").is_ok());
        // Another token: another pool's directory.
        let other = PoolSpec {
            token: "other".into(),
            ..shared(&shared_dir, true)
        };
        let c = Pools::open(&t.path().join("c"));
        c.set(vec![other]);
        assert!(c.get("0").unwrap_err().contains("belongs to another pool"));
    }
}
