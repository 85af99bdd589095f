//! The ZFS storage backend: a pool is a ZFS filesystem dataset (such as `tank/skiff`) whose
//! mountpoint is a directory of qcow2 images, used by [`ImageStore`](super::images::ImageStore)
//! exactly like a `dir` pool. ZFS adds whole-pool snapshots, rollback and incremental
//! send/receive to a backup dataset ([`ZfsPool`]).
//!
//! Every ZFS call goes through the [`ZfsOps`] trait, which has two implementations:
//! - [`FakeZfs`] (always built): in memory, behaving like ZFS for these operations; the unit
//!   tests drive [`ZfsPool`] through it.
//! - `LzcZfs` (cargo feature `zfs`, module `lzc`): libzfs_core through the `zfs-core` crate for
//!   create, snapshot, clone, rollback, destroy, send and receive, and the `zfs` command with
//!   `-Hp` output for listing snapshots and reading properties (libzfs_core has no listing).
//!
//! Design choices, and why:
//! - **Typed names.** Every operation takes a [`DatasetName`] or [`SnapshotName`], checked
//!   against ZFS's naming rules when parsed, so bad names are refused before anything runs; the
//!   `zfs` command is run with separate arguments, never through a shell.
//! - **Rollback only to the latest snapshot** unless the caller says to destroy the later ones
//!   ([`LaterSnapshots`]), as `zfs rollback` without and with `-r`.
//! - **Streams are files.** `send` writes to and `receive` reads from a [`File`], which may be a
//!   pipe: libzfs_core needs a file descriptor, and [`ZfsPool`] joins a send and a receive with
//!   a pipe.
//! - Every call blocks (ioctls, child processes); async callers use `spawn_blocking`.
//!
//! Code map: `name` (dataset and snapshot names), `error`, `cli` (the `zfs` command and its `-Hp`
//! output), `fake`, `lzc` (feature `zfs`), `pool` (backups, retention, restore).

mod cli;
mod error;
mod fake;
#[cfg(feature = "zfs")]
mod lzc;
mod name;
mod pool;

use std::fs::File;
use std::path::PathBuf;

pub use error::ZfsError;
pub use fake::FakeZfs;
#[cfg(feature = "zfs")]
pub use lzc::LzcZfs;
pub use name::{validate_snapshot_part, DatasetName, SnapshotName, MAX_NAME_LEN};
pub use pool::{
    backup_due, backup_snapshot_name, parse_backup_snapshot_name, BackupEntry, BackupReport,
    PoolUsage, Sent, ZfsPool, BACKUP_PREFIX,
};

/// One snapshot of a dataset, as listed by [`ZfsOps::list_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The part after `@`.
    pub name: String,
    /// ZFS's globally unique id of the snapshot: a received snapshot keeps the sender's, so equal
    /// guids on two datasets mean the same data.
    pub guid: u64,
    /// Creation time, Unix seconds (kept by a receive).
    pub created: u64,
    /// Bytes only this snapshot holds (what destroying it would free).
    pub used: u64,
}

/// The properties of a dataset that the backend reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetProperties {
    /// Where the filesystem is mounted (or would be); `None` for `none` or `legacy`.
    pub mountpoint: Option<PathBuf>,
    /// Whether it is mounted now.
    pub mounted: bool,
    /// Bytes used by the dataset, its snapshots and children.
    pub used: u64,
    /// Bytes still available to it.
    pub available: u64,
}

/// Properties given to a new filesystem.
///
/// Only string-valued properties are offered: libzfs_core passes property values to the kernel
/// as they are, and numeric or named values (`compression=lz4`, `quota=10G`) need libzfs's
/// conversion first. The mountpoint is what a pool needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// An absolute path; `None` inherits the parent's.
    pub mountpoint: Option<PathBuf>,
}

/// What a rollback does with snapshots newer than its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterSnapshots {
    /// Refuse with [`ZfsError::NotLatest`], naming them (`zfs rollback`).
    Refuse,
    /// Destroy them first (`zfs rollback -r`); refused if any has clones.
    Destroy,
}

/// The ZFS operations the storage backend needs, and no more.
///
/// Implementations behave like ZFS: names are typed and checked; a failed call changes nothing
/// (receive is atomic).
pub trait ZfsOps: Send + Sync {
    /// Creates (and mounts, when it has a mountpoint) a filesystem; its parent must exist.
    fn create_filesystem(
        &self,
        dataset: &DatasetName,
        opts: &CreateOptions,
    ) -> Result<(), ZfsError>;

    /// Whether a filesystem, volume or snapshot of that name exists.
    fn exists(&self, name: &str) -> Result<bool, ZfsError>;

    /// Takes a snapshot of one dataset (not its children).
    fn snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError>;

    /// The snapshots of `dataset` itself, oldest first.
    fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>, ZfsError>;

    /// Rolls the snapshot's dataset back to it, discarding every change made since; later
    /// snapshots are refused or destroyed as `later` says.
    fn rollback(&self, snapshot: &SnapshotName, later: LaterSnapshots) -> Result<(), ZfsError>;

    /// Destroys a snapshot; refused while clones depend on it ([`ZfsError::HasClones`]).
    fn destroy_snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError>;

    /// Destroys (after unmounting) a filesystem that has no snapshots and no children.
    fn destroy_dataset(&self, dataset: &DatasetName) -> Result<(), ZfsError>;

    /// Makes `target`, a writable clone of `snapshot` (which then cannot be destroyed while the
    /// clone lives).
    fn clone_snapshot(&self, snapshot: &SnapshotName, target: &DatasetName)
        -> Result<(), ZfsError>;

    /// Writes a send stream of `snapshot` to `out`: full, or incremental from `from` (an
    /// earlier snapshot of the same dataset).
    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &File,
    ) -> Result<(), ZfsError>;

    /// Reads a send stream from `input` and creates `snapshot` from it. A full stream makes a new
    /// dataset (whose parent must exist); an incremental one needs the dataset's latest snapshot
    /// to be the stream's source. `force` first discards changes made to the dataset since its
    /// latest snapshot (`zfs receive -F` without destroying snapshots). Atomic: on failure
    /// nothing was received.
    fn receive(&self, snapshot: &SnapshotName, input: &File, force: bool) -> Result<(), ZfsError>;

    /// The mountpoint, mount state and space of a dataset.
    fn properties(&self, dataset: &DatasetName) -> Result<DatasetProperties, ZfsError>;
}

/// A shared implementation (the agent keeps one per host and hands it to each ZFS pool).
impl<T: ZfsOps + ?Sized> ZfsOps for std::sync::Arc<T> {
    fn create_filesystem(
        &self,
        dataset: &DatasetName,
        opts: &CreateOptions,
    ) -> Result<(), ZfsError> {
        (**self).create_filesystem(dataset, opts)
    }
    fn exists(&self, name: &str) -> Result<bool, ZfsError> {
        (**self).exists(name)
    }
    fn snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        (**self).snapshot(snapshot)
    }
    fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>, ZfsError> {
        (**self).list_snapshots(dataset)
    }
    fn rollback(&self, snapshot: &SnapshotName, later: LaterSnapshots) -> Result<(), ZfsError> {
        (**self).rollback(snapshot, later)
    }
    fn destroy_snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        (**self).destroy_snapshot(snapshot)
    }
    fn destroy_dataset(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        (**self).destroy_dataset(dataset)
    }
    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<(), ZfsError> {
        (**self).clone_snapshot(snapshot, target)
    }
    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &File,
    ) -> Result<(), ZfsError> {
        (**self).send(snapshot, from, out)
    }
    fn receive(&self, snapshot: &SnapshotName, input: &File, force: bool) -> Result<(), ZfsError> {
        (**self).receive(snapshot, input, force)
    }
    fn properties(&self, dataset: &DatasetName) -> Result<DatasetProperties, ZfsError> {
        (**self).properties(dataset)
    }
}
