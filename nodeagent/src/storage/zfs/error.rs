//! The one error type of the ZFS backend: every message names the dataset or snapshot and what
//! went wrong.

use std::path::PathBuf;

/// Why a ZFS operation was refused or failed.
///
/// Refusals (`InvalidName`, `NotLatest`, `HasClones`, `HasDependents`, ...) are checked before
/// anything runs, so nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// Not a valid ZFS dataset or snapshot name (see `storage::zfs::name`).
    #[error("invalid ZFS name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// A file name (to restore) that could leave the snapshot directory.
    #[error("invalid file name {name:?}: {reason}")]
    InvalidFileName { name: String, reason: &'static str },
    /// A property value we refuse (a mountpoint that is not an absolute path, ...).
    #[error("invalid value for property {property} of {dataset}: {reason}")]
    InvalidProperty {
        dataset: String,
        property: &'static str,
        reason: String,
    },
    /// A pool configuration that cannot work (retention 0, a backup dataset inside the pool).
    #[error("invalid ZFS pool configuration for {dataset}: {reason}")]
    InvalidConfig { dataset: String, reason: String },
    /// ZFS cannot be used here (no `/dev/zfs`, no kernel module, no permission).
    #[error("ZFS is not available: {reason}")]
    Unavailable { reason: String },
    /// No dataset or snapshot of that name.
    #[error("{name} does not exist")]
    NotFound { name: String },
    /// A dataset or snapshot of that name exists already.
    #[error("{name} already exists")]
    AlreadyExists { name: String },
    /// A rollback to a snapshot that is not the dataset's latest, without leave to destroy the
    /// later ones.
    #[error(
        "cannot roll {dataset} back to {snapshot}: later snapshots exist ({}); roll back with \
         LaterSnapshots::Destroy to destroy them",
        later.join(", ")
    )]
    NotLatest {
        dataset: String,
        snapshot: String,
        later: Vec<String>,
    },
    /// A snapshot that clones depend on (destroy or promote the clones first).
    #[error("cannot destroy {snapshot}: clones depend on it ({})", clones.join(", "))]
    HasClones {
        snapshot: String,
        clones: Vec<String>,
    },
    /// A dataset that still has snapshots or child datasets.
    #[error("cannot destroy {dataset}: it still has snapshots or child datasets ({})", dependents.join(", "))]
    HasDependents {
        dataset: String,
        dependents: Vec<String>,
    },
    /// The dataset has no mountpoint or is not mounted, so its files cannot be reached.
    #[error("{dataset} is not mounted ({detail})")]
    NotMounted { dataset: String, detail: String },
    /// A receive that ZFS refused or that failed; receive is atomic, so the target gained
    /// nothing.
    #[error("cannot receive {snapshot}: {detail}; nothing was received")]
    Receive { snapshot: String, detail: String },
    /// A send from the pool to its backup dataset failed. Receive is atomic: the backup side
    /// gained nothing.
    #[error("sending {snapshot} to {target} failed, nothing was received (ZFS receive is atomic): {detail}")]
    Transfer {
        snapshot: String,
        target: String,
        detail: String,
    },
    /// The backup dataset exists but shares no snapshot with the pool, or has snapshots newer
    /// than the newest one they share: an incremental send is impossible.
    #[error("cannot back {dataset} up to {target}: {detail}")]
    BackupDiverged {
        dataset: String,
        target: String,
        detail: String,
    },
    /// Removing this backup would break the incremental chain.
    #[error("cannot remove {snapshot}: {reason}")]
    Protected { snapshot: String, reason: String },
    /// A libzfs_core call failed for a reason not recognised above.
    #[error("zfs {op} of {name} failed: {source}")]
    Lzc {
        op: &'static str,
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A `zfs` or `zpool` command failed.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// A `zfs` or `zpool` command printed something we could not parse.
    #[error("unexpected output of `{command}`: {detail}")]
    BadOutput { command: String, detail: String },
    /// A file-system operation failed (restoring a file, the fake's mountpoint).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ZfsError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ZfsError::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error about a path.
    pub(crate) fn io_at(what: &str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::io(format!("{what} {}", path.display()), source)
    }
}

/// A mountpoint must be an absolute path without NUL or newline (it becomes a C string and a
/// line of `zfs get` output).
pub(crate) fn check_mountpoint(dataset: &str, path: &std::path::Path) -> Result<(), ZfsError> {
    use std::os::unix::ffi::OsStrExt;
    let bad = |reason: &str| ZfsError::InvalidProperty {
        dataset: dataset.to_owned(),
        property: "mountpoint",
        reason: format!("{}: {reason}", path.display()),
    };
    if !path.is_absolute() {
        return Err(bad("not an absolute path"));
    }
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, 0 | b'\n' | b'\t'))
    {
        return Err(bad("contains NUL, tab or newline"));
    }
    Ok(())
}

/// A mountpoint path as ZFS reports it: `none`, `legacy` and `-` mean no mountpoint.
pub(crate) fn mountpoint_from(value: &str) -> Option<PathBuf> {
    match value {
        "none" | "legacy" | "-" | "" => None,
        path => Some(PathBuf::from(path)),
    }
}
