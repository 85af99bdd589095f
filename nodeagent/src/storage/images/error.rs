//! The one error type of the image store: every refusal says what was wrong and changed nothing.

use std::path::PathBuf;

/// Why an image operation was refused or failed.
///
/// Refusals (`InvalidName`, `InUse`, `IsMaster`, ...) are checked before anything is written, so
/// the store is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image name does not match `[a-z0-9][a-z0-9._-]{0,62}` (or contains `..`).
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The snapshot name does not match `[A-Za-z0-9][A-Za-z0-9._-]{0,62}` or is all digits.
    #[error("invalid snapshot name {name:?}: {reason}")]
    InvalidSnapshotName { name: String, reason: &'static str },
    /// No image of that name in the store.
    #[error("image {0:?} does not exist")]
    NotFound(String),
    /// The image has no internal snapshot of that name.
    #[error("image {image:?} has no snapshot {snapshot:?}")]
    SnapshotNotFound { image: String, snapshot: String },
    /// An image of that name is already in the store.
    #[error("image {0:?} already exists")]
    AlreadyExists(String),
    /// The image already has an internal snapshot of that name.
    #[error("image {image:?} already has a snapshot {snapshot:?}")]
    SnapshotExists { image: String, snapshot: String },
    /// Other images of the store have this one in their backing chain.
    #[error("image {name:?} is the backing image of {by:?}")]
    InUse { name: String, by: Vec<String> },
    /// The image is a master (read-only base of clones) and the operation would write to it.
    #[error("image {0:?} is a master and read-only; unmaster it first")]
    IsMaster(String),
    /// The image has internal snapshots that the operation would lose (flattening in place keeps
    /// only the current contents).
    #[error("image {image:?} has snapshots {snapshots:?}, which flattening would lose")]
    HasSnapshots {
        image: String,
        snapshots: Vec<String>,
    },
    /// Only masters can be cloned or unmastered.
    #[error("image {0:?} is not a master")]
    NotMaster(String),
    /// A backing file in the image's chain is gone.
    #[error("backing file {} of image {image:?} is missing", backing.display())]
    MissingBacking { image: String, backing: PathBuf },
    /// qemu-img cannot read the image (or a backing file of it) as qcow2.
    #[error("image {image:?} is corrupt or not a qcow2 image: {detail}")]
    Corrupt { image: String, detail: String },
    /// A size that is zero, unaligned, too large, or a shrink that was not asked for.
    #[error("invalid size {size} bytes: {reason}")]
    InvalidSize { size: u64, reason: String },
    /// A file offered for import that is not an image we accept.
    #[error("cannot import {}: {reason}", path.display())]
    UnsupportedSource { path: PathBuf, reason: String },
    /// A path outside the store (import source, export destination) that cannot be used.
    #[error("invalid path {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: String },
    /// qemu-img failed for a reason not recognised above.
    #[error("`{command}` failed: {stderr}")]
    QemuImg { command: String, stderr: String },
    /// qemu-img succeeded but printed something we could not parse.
    #[error("unexpected output of `{command}`: {detail}")]
    BadOutput { command: String, detail: String },
    /// A file-system operation on the store failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }
}
