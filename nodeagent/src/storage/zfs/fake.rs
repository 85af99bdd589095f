//! `FakeZfs`: an in-memory [`ZfsOps`] that behaves like ZFS for the operations the backend
//! uses, so that [`ZfsPool`](super::ZfsPool) is tested everywhere (this machine has no
//! `/dev/zfs`).
//!
//! What it models, as ZFS does: parents must exist; rollback only to the latest snapshot
//! unless later ones may be destroyed; a snapshot with clones, or a dataset with snapshots or
//! children, cannot be destroyed; clones stay in their pool; an incremental send starts from an
//! earlier snapshot of the same dataset; a full receive makes a new dataset; an incremental
//! receive needs the target's latest snapshot to be the stream's source (same guid) and no
//! changes since it (unless forced); receive is atomic — the stream is read and checked whole
//! before anything changes, so a truncated stream leaves nothing.
//!
//! A dataset created with a mountpoint keeps its content in that real directory; snapshotting
//! it also copies the content to `MOUNTPOINT/.zfs/snapshot/NAME/`, where ZFS shows snapshots,
//! and rollback writes the snapshot's content back. Other datasets (clones, received backups)
//! keep their content in memory. `used` figures are file sizes, an approximation of ZFS's block
//! accounting.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::check_mountpoint;
use super::{
    CreateOptions, DatasetName, DatasetProperties, LaterSnapshots, SnapshotInfo, SnapshotName,
    ZfsError, ZfsOps,
};

/// What [`FakeZfs`] reports as available to every dataset, less what the dataset uses: 1 TiB.
pub const FAKE_CAPACITY: u64 = 1 << 40;

/// First and last line of a fake send stream; a stream without the last was cut short.
const STREAM_MAGIC: &[u8] = b"FAKEZFS1\n";
const STREAM_END: &[u8] = b"\nEND\n";

/// Relative path -> content.
type Files = BTreeMap<String, Vec<u8>>;

/// In-memory ZFS. One value stands for all pools of a host; share it by reference.
#[derive(Debug, Default)]
pub struct FakeZfs {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    datasets: BTreeMap<String, Dataset>,
    next_guid: u64,
    fail_next_send: bool,
}

#[derive(Debug, Default)]
struct Dataset {
    mountpoint: Option<PathBuf>,
    /// Content of a dataset without a mountpoint.
    files: Files,
    /// Oldest first.
    snapshots: Vec<Snap>,
    /// The snapshot this dataset was cloned from.
    origin: Option<String>,
}

#[derive(Debug, Clone)]
struct Snap {
    name: String,
    guid: u64,
    created: u64,
    files: Files,
    clones: Vec<String>,
}

/// The fake's send stream: the whole content (hex) and where it starts from.
#[derive(Debug, Serialize, Deserialize)]
struct Stream {
    guid: u64,
    created: u64,
    from_guid: Option<u64>,
    files: BTreeMap<String, String>,
}

impl FakeZfs {
    /// A host without pools.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds pool `name` (its root dataset, without a mountpoint).
    pub fn with_pool(self, name: &str) -> Result<Self, ZfsError> {
        let ds = DatasetName::parse(name)?;
        if ds.parent().is_some() {
            return Err(ZfsError::InvalidName {
                name: name.to_owned(),
                reason: "a pool name has no '/'",
            });
        }
        self.state()
            .datasets
            .insert(ds.as_str().to_owned(), Dataset::default());
        Ok(self)
    }

    /// Makes the next `send` write half of its stream and then fail, as a send cut off midway.
    pub fn fail_next_send(&self) {
        self.state().fail_next_send = true;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock (in a test) leaves consistent maps: every change is
        // made after its checks.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn dataset(&self, ds: &DatasetName) -> Result<&Dataset, ZfsError> {
        self.datasets.get(ds.as_str()).ok_or_else(|| not_found(ds))
    }

    fn dataset_mut(&mut self, ds: &DatasetName) -> Result<&mut Dataset, ZfsError> {
        self.datasets
            .get_mut(ds.as_str())
            .ok_or_else(|| not_found(ds))
    }

    fn snap(&self, snapshot: &SnapshotName) -> Result<(usize, &Snap), ZfsError> {
        self.dataset(&snapshot.dataset())?
            .snapshots
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == snapshot.short())
            .ok_or_else(|| not_found(snapshot))
    }

    fn guid(&mut self) -> u64 {
        self.next_guid += 1;
        0x5eed_0000_0000 + self.next_guid
    }

    fn children(&self, ds: &DatasetName) -> Vec<String> {
        let prefix = format!("{ds}/");
        self.datasets
            .keys()
            .filter(|k| {
                k.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .cloned()
            .collect()
    }

    /// Checks that `ds` is new and its parent exists.
    fn check_new(&self, ds: &DatasetName) -> Result<(), ZfsError> {
        if self.datasets.contains_key(ds.as_str()) {
            return Err(ZfsError::AlreadyExists {
                name: ds.to_string(),
            });
        }
        match ds.parent() {
            None => Err(ZfsError::NotFound {
                name: format!("pool {ds} (pools are made with `zpool create`)"),
            }),
            Some(p) if !self.datasets.contains_key(p.as_str()) => Err(not_found(&p)),
            Some(_) => Ok(()),
        }
    }
}

impl Dataset {
    /// The current content.
    fn live(&self) -> Result<Files, ZfsError> {
        match &self.mountpoint {
            Some(mp) => read_tree(mp),
            None => Ok(self.files.clone()),
        }
    }

    /// Replaces the current content.
    fn set_live(&mut self, files: &Files) -> Result<(), ZfsError> {
        match &self.mountpoint {
            Some(mp) => {
                clear_dir(mp, true)?;
                write_tree(mp, files)
            }
            None => {
                self.files = files.clone();
                Ok(())
            }
        }
    }

    /// `MOUNTPOINT/.zfs/snapshot/NAME`, for datasets with a mountpoint.
    fn snapshot_dir(&self, name: &str) -> Option<PathBuf> {
        self.mountpoint
            .as_ref()
            .map(|mp| mp.join(".zfs").join("snapshot").join(name))
    }

    fn latest(&self) -> Option<&Snap> {
        self.snapshots.last()
    }
}

impl ZfsOps for FakeZfs {
    fn create_filesystem(
        &self,
        dataset: &DatasetName,
        opts: &CreateOptions,
    ) -> Result<(), ZfsError> {
        let mut st = self.state();
        st.check_new(dataset)?;
        if let Some(mp) = &opts.mountpoint {
            check_mountpoint(dataset.as_str(), mp)?;
            fs::create_dir_all(mp).map_err(|e| ZfsError::io_at("cannot create", mp, e))?;
        }
        let ds = Dataset {
            mountpoint: opts.mountpoint.clone(),
            ..Dataset::default()
        };
        st.datasets.insert(dataset.as_str().to_owned(), ds);
        Ok(())
    }

    fn exists(&self, name: &str) -> Result<bool, ZfsError> {
        let st = self.state();
        if name.contains('@') {
            let snapshot = SnapshotName::parse(name)?;
            Ok(st.snap(&snapshot).is_ok())
        } else {
            let ds = DatasetName::parse(name)?;
            Ok(st.datasets.contains_key(ds.as_str()))
        }
    }

    fn snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        let mut st = self.state();
        if st.snap(snapshot).is_ok() {
            return Err(ZfsError::AlreadyExists {
                name: snapshot.to_string(),
            });
        }
        let files = st.dataset(&snapshot.dataset())?.live()?;
        let guid = st.guid();
        let ds = st.dataset_mut(&snapshot.dataset())?;
        if let Some(dir) = ds.snapshot_dir(snapshot.short()) {
            clear_dir(&dir, false)?;
            write_tree(&dir, &files)?;
        }
        ds.snapshots.push(Snap {
            name: snapshot.short().to_owned(),
            guid,
            created: unix_now(),
            files,
            clones: Vec::new(),
        });
        Ok(())
    }

    fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>, ZfsError> {
        let st = self.state();
        let ds = st.dataset(dataset)?;
        let live = ds.live()?;
        let snaps = &ds.snapshots;
        Ok(snaps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let next = snaps.get(i + 1).map_or(&live, |n| &n.files);
                SnapshotInfo {
                    name: s.name.clone(),
                    guid: s.guid,
                    created: s.created,
                    used: unique_bytes(&s.files, next),
                }
            })
            .collect())
    }

    fn rollback(&self, snapshot: &SnapshotName, later: LaterSnapshots) -> Result<(), ZfsError> {
        let mut st = self.state();
        let (idx, snap) = st.snap(snapshot)?;
        let files = snap.files.clone();
        let ds = st.dataset_mut(&snapshot.dataset())?;
        let newer: Vec<String> = ds.snapshots[idx + 1..]
            .iter()
            .map(|s| format!("{}@{}", snapshot.dataset(), s.name))
            .collect();
        if !newer.is_empty() && later == LaterSnapshots::Refuse {
            return Err(ZfsError::NotLatest {
                dataset: snapshot.dataset().to_string(),
                snapshot: snapshot.to_string(),
                later: newer,
            });
        }
        if let Some(s) = ds.snapshots[idx + 1..]
            .iter()
            .find(|s| !s.clones.is_empty())
        {
            return Err(ZfsError::HasClones {
                snapshot: format!("{}@{}", snapshot.dataset(), s.name),
                clones: s.clones.clone(),
            });
        }
        for s in ds.snapshots.split_off(idx + 1) {
            if let Some(dir) = ds.snapshot_dir(&s.name) {
                clear_dir(&dir, false)?;
                remove_dir(&dir)?;
            }
        }
        ds.set_live(&files)
    }

    fn destroy_snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        let mut st = self.state();
        let (idx, snap) = st.snap(snapshot)?;
        if !snap.clones.is_empty() {
            return Err(ZfsError::HasClones {
                snapshot: snapshot.to_string(),
                clones: snap.clones.clone(),
            });
        }
        let ds = st.dataset_mut(&snapshot.dataset())?;
        if let Some(dir) = ds.snapshot_dir(snapshot.short()) {
            clear_dir(&dir, false)?;
            remove_dir(&dir)?;
        }
        ds.snapshots.remove(idx);
        Ok(())
    }

    fn destroy_dataset(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        let mut st = self.state();
        let ds = st.dataset(dataset)?;
        if dataset.parent().is_none() {
            return Err(ZfsError::Lzc {
                op: "destroy",
                name: dataset.to_string(),
                source: std::io::Error::other("a pool's root dataset goes with `zpool destroy`"),
            });
        }
        let mut dependents: Vec<String> = ds
            .snapshots
            .iter()
            .map(|s| format!("{dataset}@{}", s.name))
            .collect();
        dependents.extend(st.children(dataset));
        if !dependents.is_empty() {
            return Err(ZfsError::HasDependents {
                dataset: dataset.to_string(),
                dependents,
            });
        }
        if let Some(mp) = &ds.mountpoint {
            // Unmounting hides the dataset's files; the fake removes them.
            clear_dir(mp, false)?;
        }
        let origin = ds.origin.clone();
        st.datasets.remove(dataset.as_str());
        if let Some(origin) = origin.and_then(|o| SnapshotName::parse(&o).ok()) {
            if let Some(parent) = st.datasets.get_mut(origin.dataset().as_str()) {
                for s in parent
                    .snapshots
                    .iter_mut()
                    .filter(|s| s.name == origin.short())
                {
                    s.clones.retain(|c| c != dataset.as_str());
                }
            }
        }
        Ok(())
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<(), ZfsError> {
        let mut st = self.state();
        let (idx, snap) = st.snap(snapshot)?;
        let files = snap.files.clone();
        st.check_new(target)?;
        if target.pool() != snapshot.dataset().pool() {
            return Err(ZfsError::Lzc {
                op: "clone",
                name: target.to_string(),
                source: std::io::Error::other(format!(
                    "a clone must be in the pool of its origin {snapshot}"
                )),
            });
        }
        st.dataset_mut(&snapshot.dataset())?.snapshots[idx]
            .clones
            .push(target.as_str().to_owned());
        let clone = Dataset {
            files,
            origin: Some(snapshot.to_string()),
            ..Dataset::default()
        };
        st.datasets.insert(target.as_str().to_owned(), clone);
        Ok(())
    }

    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &File,
    ) -> Result<(), ZfsError> {
        let (stream, cut) = {
            let mut st = self.state();
            let (idx, snap) = st.snap(snapshot)?;
            let from_guid = match from {
                None => None,
                Some(f) => Some(earlier_guid(&st, snapshot, idx, f)?),
            };
            let stream = Stream {
                guid: snap.guid,
                created: snap.created,
                from_guid,
                files: snap
                    .files
                    .iter()
                    .map(|(k, v)| (k.clone(), hex::encode(v)))
                    .collect(),
            };
            (stream, std::mem::take(&mut st.fail_next_send))
        };
        let send_err = |e: std::io::Error| ZfsError::Lzc {
            op: "send",
            name: snapshot.to_string(),
            source: e,
        };
        let body = serde_json::to_vec(&stream).map_err(|e| send_err(e.into()))?;
        let mut bytes = [STREAM_MAGIC, &body, STREAM_END].concat();
        if cut {
            bytes.truncate(bytes.len() / 2);
        }
        let mut w = out;
        w.write_all(&bytes).map_err(send_err)?;
        if cut {
            return Err(send_err(std::io::Error::other(
                "the send was cut off midway (FakeZfs::fail_next_send)",
            )));
        }
        Ok(())
    }

    fn receive(&self, snapshot: &SnapshotName, input: &File, force: bool) -> Result<(), ZfsError> {
        let refuse = |detail: String| ZfsError::Receive {
            snapshot: snapshot.to_string(),
            detail,
        };
        // Read and check the whole stream before anything changes: receive is atomic.
        let stream = read_stream(input).map_err(refuse)?;
        let files = decode_files(&stream).map_err(refuse)?;
        let target = snapshot.dataset();
        let mut st = self.state();
        if st.snap(snapshot).is_ok() {
            return Err(refuse(format!("{snapshot} exists already")));
        }
        match stream.from_guid {
            None => {
                st.check_new(&target)
                    .map_err(|e| refuse(format!("a full stream makes a new dataset: {e}")))?;
                st.datasets
                    .insert(target.as_str().to_owned(), Dataset::default());
            }
            Some(from) => check_incremental(&st, &target, from, force).map_err(refuse)?,
        }
        let ds = st.dataset_mut(&target)?;
        ds.set_live(&files)?;
        if let Some(dir) = ds.snapshot_dir(snapshot.short()) {
            clear_dir(&dir, false)?;
            write_tree(&dir, &files)?;
        }
        ds.snapshots.push(Snap {
            name: snapshot.short().to_owned(),
            guid: stream.guid,
            created: stream.created,
            files,
            clones: Vec::new(),
        });
        Ok(())
    }

    fn properties(&self, dataset: &DatasetName) -> Result<DatasetProperties, ZfsError> {
        let st = self.state();
        let ds = st.dataset(dataset)?;
        let live = ds.live()?;
        let snaps = &ds.snapshots;
        let used = size(&live)
            + snaps
                .iter()
                .enumerate()
                .map(|(i, s)| unique_bytes(&s.files, snaps.get(i + 1).map_or(&live, |n| &n.files)))
                .sum::<u64>();
        Ok(DatasetProperties {
            mountpoint: ds.mountpoint.clone(),
            mounted: ds.mountpoint.is_some(),
            used,
            available: FAKE_CAPACITY.saturating_sub(used),
        })
    }
}

/// The guid of `from`, which must be an earlier snapshot of `snapshot`'s dataset.
fn earlier_guid(
    st: &State,
    snapshot: &SnapshotName,
    idx: usize,
    from: &SnapshotName,
) -> Result<u64, ZfsError> {
    let (from_idx, from_snap) = st.snap(from)?;
    if from.dataset() != snapshot.dataset() || from_idx >= idx {
        return Err(ZfsError::Lzc {
            op: "send",
            name: snapshot.to_string(),
            source: std::io::Error::other(format!(
                "incremental source {from} is not an earlier snapshot of the same dataset"
            )),
        });
    }
    Ok(from_snap.guid)
}

/// An incremental stream from `from` applies only on top of the target's latest snapshot, and
/// only to an unchanged target unless forced.
fn check_incremental(
    st: &State,
    target: &DatasetName,
    from: u64,
    force: bool,
) -> Result<(), String> {
    let ds = st
        .dataset(target)
        .map_err(|_| format!("an incremental stream needs {target} to exist"))?;
    let Some(latest) = ds.latest() else {
        return Err(format!(
            "{target} has no snapshot to apply an incremental stream to"
        ));
    };
    if latest.guid != from {
        return Err(format!(
            "the latest snapshot of {target} ({}) is not the stream's incremental source",
            latest.name
        ));
    }
    let live = ds.live().map_err(|e| e.to_string())?;
    if !force && live != latest.files {
        return Err(format!(
            "{target} has been modified since its latest snapshot {}",
            latest.name
        ));
    }
    Ok(())
}

fn read_stream(input: &File) -> Result<Stream, String> {
    let mut bytes = Vec::new();
    let mut r = input;
    r.read_to_end(&mut bytes)
        .map_err(|e| format!("reading the stream: {e}"))?;
    let body = bytes
        .strip_prefix(STREAM_MAGIC)
        .ok_or("not a send stream")?
        .strip_suffix(STREAM_END)
        .ok_or("the stream is truncated")?;
    serde_json::from_slice(body).map_err(|e| format!("the stream is corrupt: {e}"))
}

fn decode_files(stream: &Stream) -> Result<Files, String> {
    stream
        .files
        .iter()
        .map(|(k, v)| {
            let bytes = hex::decode(v).map_err(|e| format!("the stream is corrupt: {e}"))?;
            Ok((k.clone(), bytes))
        })
        .collect()
}

fn not_found(name: &impl std::fmt::Display) -> ZfsError {
    ZfsError::NotFound {
        name: name.to_string(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn size(files: &Files) -> u64 {
    files.values().map(|v| v.len() as u64).sum()
}

/// Bytes of `files` that `next` no longer has as they were.
fn unique_bytes(files: &Files, next: &Files) -> u64 {
    files
        .iter()
        .filter(|(k, v)| next.get(*k) != Some(*v))
        .map(|(_, v)| v.len() as u64)
        .sum()
}

/// The regular files under `root` (relative paths with '/'), leaving out `root/.zfs`.
fn read_tree(root: &Path) -> Result<Files, ZfsError> {
    let mut files = Files::new();
    let mut dirs = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| ZfsError::io_at("cannot list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ZfsError::io_at("cannot list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && name == ".zfs" {
                continue;
            }
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| ZfsError::io_at("cannot stat", &path, e))?;
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if kind.is_dir() {
                dirs.push((path, key));
            } else if kind.is_file() {
                let data = fs::read(&path).map_err(|e| ZfsError::io_at("cannot read", &path, e))?;
                files.insert(key, data);
            }
        }
    }
    Ok(files)
}

fn write_tree(root: &Path, files: &Files) -> Result<(), ZfsError> {
    for (rel, data) in files {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| ZfsError::io_at("cannot create", parent, e))?;
        }
        fs::write(&path, data).map_err(|e| ZfsError::io_at("cannot write", &path, e))?;
    }
    Ok(())
}

/// Removes everything in `dir` (keeping `dir/.zfs` when `keep_zfs`); a missing `dir` is empty.
fn clear_dir(dir: &Path, keep_zfs: bool) -> Result<(), ZfsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ZfsError::io_at("cannot list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ZfsError::io_at("cannot list", dir, e))?;
        if keep_zfs && entry.file_name() == ".zfs" {
            continue;
        }
        let path = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let r = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        r.map_err(|e| ZfsError::io_at("cannot remove", &path, e))?;
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), ZfsError> {
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ZfsError::io_at("cannot remove", dir, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(n: &str) -> DatasetName {
        DatasetName::parse(n).expect("valid")
    }

    fn snap(n: &str) -> SnapshotName {
        SnapshotName::parse(n).expect("valid")
    }

    fn fake() -> FakeZfs {
        let z = FakeZfs::new().with_pool("tank").expect("pool");
        z.create_filesystem(&ds("tank/a"), &CreateOptions::default())
            .expect("create");
        z
    }

    #[test]
    fn create_needs_a_parent_and_a_new_name() {
        let z = fake();
        let none = CreateOptions::default();
        assert!(matches!(
            z.create_filesystem(&ds("tank/a"), &none),
            Err(ZfsError::AlreadyExists { .. })
        ));
        assert!(matches!(
            z.create_filesystem(&ds("tank/x/y"), &none),
            Err(ZfsError::NotFound { name }) if name == "tank/x"
        ));
        assert!(matches!(
            z.create_filesystem(&ds("other"), &none),
            Err(ZfsError::NotFound { .. })
        ));
        let relative = CreateOptions {
            mountpoint: Some("rel/dir".into()),
        };
        assert!(matches!(
            z.create_filesystem(&ds("tank/b"), &relative),
            Err(ZfsError::InvalidProperty { .. })
        ));
        assert_eq!(z.exists("tank/b").ok(), Some(false));
    }

    #[test]
    fn snapshots_with_clones_and_datasets_with_snapshots_stay() {
        let z = fake();
        z.snapshot(&snap("tank/a@s1")).expect("snapshot");
        assert!(matches!(
            z.snapshot(&snap("tank/a@s1")),
            Err(ZfsError::AlreadyExists { .. })
        ));
        z.clone_snapshot(&snap("tank/a@s1"), &ds("tank/c"))
            .expect("clone");
        assert!(matches!(
            z.clone_snapshot(&snap("tank/a@s1"), &ds("other/c")),
            Err(ZfsError::NotFound { .. })
        ));
        match z.destroy_snapshot(&snap("tank/a@s1")) {
            Err(ZfsError::HasClones { clones, .. }) => assert_eq!(clones, vec!["tank/c"]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            z.destroy_dataset(&ds("tank/a")),
            Err(ZfsError::HasDependents { .. })
        ));
        z.destroy_dataset(&ds("tank/c")).expect("destroy clone");
        z.destroy_snapshot(&snap("tank/a@s1"))
            .expect("destroy snap");
        z.destroy_dataset(&ds("tank/a")).expect("destroy");
        assert_eq!(z.exists("tank/a").ok(), Some(false));
    }

    #[test]
    fn rollback_to_an_earlier_snapshot_needs_leave() {
        let z = fake();
        for s in ["tank/a@s1", "tank/a@s2", "tank/a@s3"] {
            z.snapshot(&snap(s)).expect("snapshot");
        }
        match z.rollback(&snap("tank/a@s1"), LaterSnapshots::Refuse) {
            Err(ZfsError::NotLatest { later, .. }) => {
                assert_eq!(later, vec!["tank/a@s2", "tank/a@s3"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            z.list_snapshots(&ds("tank/a")).map(|l| l.len()).ok(),
            Some(3)
        );
        z.rollback(&snap("tank/a@s3"), LaterSnapshots::Refuse)
            .expect("latest");
        z.rollback(&snap("tank/a@s1"), LaterSnapshots::Destroy)
            .expect("destroy later");
        let names: Vec<String> = z
            .list_snapshots(&ds("tank/a"))
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, vec!["s1"]);
    }

    #[test]
    fn send_and_receive_follow_zfs_rules() {
        let z = fake();
        z.create_filesystem(&ds("tank/b"), &CreateOptions::default())
            .expect("create");
        z.snapshot(&snap("tank/a@s1")).expect("s1");
        z.snapshot(&snap("tank/a@s2")).expect("s2");
        let stream = |s: &str, from: Option<&str>| {
            let f = tempfile::tempfile().expect("tempfile");
            let from = from.map(snap);
            z.send(&snap(s), from.as_ref(), &f).expect("send");
            let mut f = f;
            std::io::Seek::rewind(&mut f).expect("rewind");
            f
        };
        // An incremental stream needs the target to have its source as latest snapshot.
        let inc = stream("tank/a@s2", Some("tank/a@s1"));
        assert!(matches!(
            z.receive(&snap("tank/b/copy@s2"), &inc, false),
            Err(ZfsError::Receive { .. })
        ));
        // A full stream into an existing dataset is refused.
        let full = stream("tank/a@s1", None);
        assert!(matches!(
            z.receive(&snap("tank/b@s1"), &full, false),
            Err(ZfsError::Receive { .. })
        ));
        let full = stream("tank/a@s1", None);
        z.receive(&snap("tank/b/copy@s1"), &full, false)
            .expect("full receive");
        let inc = stream("tank/a@s2", Some("tank/a@s1"));
        z.receive(&snap("tank/b/copy@s2"), &inc, false)
            .expect("incremental receive");
        let a = z.list_snapshots(&ds("tank/a")).expect("a");
        let b = z.list_snapshots(&ds("tank/b/copy")).expect("b");
        assert_eq!(
            a.iter().map(|s| s.guid).collect::<Vec<_>>(),
            b.iter().map(|s| s.guid).collect::<Vec<_>>()
        );
        // From a later snapshot is not incremental.
        let f = tempfile::tempfile().expect("tempfile");
        assert!(z
            .send(&snap("tank/a@s1"), Some(&snap("tank/a@s2")), &f)
            .is_err());
    }
}
