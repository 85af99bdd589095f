//! The values the image store hands out: image info, backing chain elements, snapshots, check
//! reports and list entries. Plain data, serialisable for the API and the agent protocol.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::qemu::{RawCheck, RawInfo};

/// What `qemu-img info --backing-chain` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub path: PathBuf,
    /// Always `qcow2` for store images.
    pub format: String,
    /// Size the guest sees, in bytes.
    pub virtual_size: u64,
    /// Bytes allocated on the host.
    pub actual_size: Option<u64>,
    pub master: bool,
    /// qcow2's "corrupt" header bit: qemu found damage while writing and refuses writes.
    pub marked_corrupt: bool,
    /// The backing files, nearest first; empty for a standalone image.
    pub backing_chain: Vec<BackingImage>,
    /// Internal snapshots.
    pub snapshots: Vec<Snapshot>,
}

/// One element of a backing chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackingImage {
    pub filename: PathBuf,
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    /// The image's name if the file is in this store.
    pub image: Option<String>,
}

/// An internal qcow2 snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// qemu's numeric ID (names are what Skiff uses).
    pub id: String,
    pub name: String,
    /// Saved VM state (RAM) in bytes; 0 for disk-only snapshots.
    pub vm_state_size: u64,
    /// Creation time, seconds since the Unix epoch.
    pub date_sec: i64,
}

/// The result of `qemu-img check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Errors that stopped qemu-img from checking some metadata.
    pub check_errors: u64,
    /// Metadata inconsistencies that can lose or expose data.
    pub corruptions: u64,
    /// Clusters allocated but unused: wasted space, harmless.
    pub leaks: u64,
    pub allocated_clusters: Option<u64>,
    pub total_clusters: Option<u64>,
    pub fragmented_clusters: Option<u64>,
}

impl CheckReport {
    /// No corruption, no leak, nothing qemu-img could not check.
    pub fn is_clean(&self) -> bool {
        self.check_errors == 0 && self.corruptions == 0 && self.leaks == 0
    }

    /// Corruptions or unchecked metadata (leaks alone are not damage).
    pub fn is_damaged(&self) -> bool {
        self.check_errors > 0 || self.corruptions > 0
    }
}

/// One image as [`ImageStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub name: String,
    pub master: bool,
    /// The backing image's name, when the backing file is in this store.
    pub backing: Option<String>,
    /// The backing file as recorded in the image, wherever it is.
    pub backing_file: Option<PathBuf>,
    /// Why the image header could not be read, if it could not.
    pub problem: Option<String>,
}

impl From<RawCheck> for CheckReport {
    fn from(raw: RawCheck) -> Self {
        CheckReport {
            check_errors: raw.check_errors,
            corruptions: raw.corruptions,
            leaks: raw.leaks,
            allocated_clusters: raw.allocated_clusters,
            total_clusters: raw.total_clusters,
            fragmented_clusters: raw.fragmented_clusters,
        }
    }
}

/// The internal snapshots in a `qemu-img info` result.
pub(crate) fn snapshots_of(info: &RawInfo) -> Vec<Snapshot> {
    info.snapshots
        .iter()
        .map(|s| Snapshot {
            id: s.id.clone(),
            name: s.name.clone(),
            vm_state_size: s.vm_state_size,
            date_sec: s.date_sec,
        })
        .collect()
}
