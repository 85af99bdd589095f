//! `LzcZfs`: the real [`ZfsOps`], built with the cargo feature `zfs`.
//!
//! libzfs_core (through the `zfs-core` crate) creates, snapshots, clones, rolls back, destroys,
//! sends and receives; the `zfs` command ([`ZfsCommand`], `-Hp` output) lists snapshots, reads
//! properties, finds clones and children, and mounts — libzfs_core has no listing, no property
//! reading and no mounting (`zfs create` mounts through libzfs, `lzc_create` does not).
//!
//! Needs `/dev/zfs` (the zfs kernel module) and root. Build needs Debian's `libzfslinux-dev`
//! (contrib). Streams pass to libzfs_core as file descriptors (`AsRawFd` on a [`File`]): no
//! unsafe code here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nvpair::{NvData, NvList};
use zfs_core::{DataSetType, SendFlags, Zfs};

use super::cli::ZfsCommand;
use super::error::check_mountpoint;
use super::{
    CreateOptions, DatasetName, DatasetProperties, LaterSnapshots, SnapshotInfo, SnapshotName,
    ZfsError, ZfsOps,
};

/// The device libzfs_core talks to.
const ZFS_DEVICE: &str = "/dev/zfs";

/// Send streams keep large blocks, embedded data and compressed blocks as they are (`zfs send
/// -L -e -c`): less to copy, and the backup keeps the pool's block sizes.
const SEND_FLAGS: SendFlags = SendFlags {
    embed_data: true,
    large_block: true,
    compress: true,
    raw: false,
};

/// ZFS through libzfs_core and the `zfs` command.
#[derive(Debug)]
pub struct LzcZfs {
    lzc: Zfs,
    cli: ZfsCommand,
}

impl LzcZfs {
    /// Opens libzfs_core; [`ZfsError::Unavailable`] without `/dev/zfs`.
    pub fn new() -> Result<Self, ZfsError> {
        if !Path::new(ZFS_DEVICE).exists() {
            return Err(ZfsError::Unavailable {
                reason: format!("{ZFS_DEVICE} does not exist (is the zfs kernel module loaded?)"),
            });
        }
        let lzc = Zfs::new().map_err(|e| ZfsError::Unavailable {
            reason: format!("libzfs_core_init failed: {e}"),
        })?;
        Ok(Self {
            lzc,
            cli: ZfsCommand::new("zfs"),
        })
    }

    /// Uses `program` instead of the `zfs` found on `PATH`.
    pub fn with_zfs_command(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli = ZfsCommand::new(program);
        self
    }

    /// Mounts a new dataset that has a mountpoint; destroys it again when that fails, so a
    /// failed create or clone leaves nothing.
    fn mount_new(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        let mounted = self.cli.properties(dataset).and_then(|p| {
            if p.mountpoint.is_some() && !p.mounted {
                self.cli.mount(dataset)
            } else {
                Ok(())
            }
        });
        if mounted.is_err() {
            let _ = self.lzc.destroy(dataset.as_str());
        }
        mounted
    }

    fn require(&self, name: &str) -> Result<(), ZfsError> {
        if self.lzc.exists(name) {
            Ok(())
        } else {
            Err(ZfsError::NotFound {
                name: name.to_owned(),
            })
        }
    }
}

impl ZfsOps for LzcZfs {
    fn create_filesystem(
        &self,
        dataset: &DatasetName,
        opts: &CreateOptions,
    ) -> Result<(), ZfsError> {
        let mut props = NvList::try_new().map_err(|e| lzc_error("create", dataset, e))?;
        if let Some(mp) = &opts.mountpoint {
            check_mountpoint(dataset.as_str(), mp)?;
            let value =
                CString::new(mp.as_os_str().as_bytes()).map_err(|_| ZfsError::InvalidProperty {
                    dataset: dataset.to_string(),
                    property: "mountpoint",
                    reason: "contains NUL".into(),
                })?;
            props
                .insert("mountpoint", value.as_c_str())
                .map_err(|e| lzc_error("create", dataset, e))?;
        }
        self.lzc
            .create(dataset.as_str(), DataSetType::Zfs, &props)
            .map_err(|e| match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                Errno::ENOENT => ZfsError::NotFound {
                    name: dataset
                        .parent()
                        .map_or_else(|| format!("pool {dataset}"), |p| p.to_string()),
                },
                _ => lzc_error("create", dataset, e),
            })?;
        self.mount_new(dataset)
    }

    fn exists(&self, name: &str) -> Result<bool, ZfsError> {
        if name.contains('@') {
            SnapshotName::parse(name)?;
        } else {
            DatasetName::parse(name)?;
        }
        Ok(self.lzc.exists(name))
    }

    fn snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        let e = match self.lzc.snapshot([snapshot.as_str()]) {
            Ok(()) => return Ok(()),
            Err(zfs_core::Error::Io { source }) => source,
            Err(zfs_core::Error::List { source }) => first_error(source.as_ref()),
        };
        Err(match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
            Errno::ENOENT => ZfsError::NotFound {
                name: snapshot.dataset().to_string(),
            },
            _ => lzc_error("snapshot", snapshot, e),
        })
    }

    fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<SnapshotInfo>, ZfsError> {
        self.require(dataset.as_str())?;
        self.cli.list_snapshots(dataset)
    }

    fn rollback(&self, snapshot: &SnapshotName, later: LaterSnapshots) -> Result<(), ZfsError> {
        let dataset = snapshot.dataset();
        let snaps = self.list_snapshots(&dataset)?;
        let Some(idx) = snaps.iter().position(|s| s.name == snapshot.short()) else {
            return Err(ZfsError::NotFound {
                name: snapshot.to_string(),
            });
        };
        let newer = snaps[idx + 1..]
            .iter()
            .map(|s| dataset.snapshot(&s.name))
            .collect::<Result<Vec<_>, _>>()?;
        if !newer.is_empty() && later == LaterSnapshots::Refuse {
            return Err(ZfsError::NotLatest {
                dataset: dataset.to_string(),
                snapshot: snapshot.to_string(),
                later: newer.iter().map(ToString::to_string).collect(),
            });
        }
        // Check every later snapshot before destroying any.
        for s in &newer {
            let clones = self.cli.clones(s)?;
            if !clones.is_empty() {
                return Err(ZfsError::HasClones {
                    snapshot: s.to_string(),
                    clones,
                });
            }
        }
        for s in newer.iter().rev() {
            self.lzc
                .destroy(s.as_str())
                .map_err(|e| lzc_error("destroy", s, e))?;
        }
        self.lzc
            .rollback_to(dataset.as_str(), snapshot.as_str())
            .map_err(|e| lzc_error("rollback", snapshot, e))
    }

    fn destroy_snapshot(&self, snapshot: &SnapshotName) -> Result<(), ZfsError> {
        self.require(snapshot.as_str())?;
        let clones = self.cli.clones(snapshot)?;
        if !clones.is_empty() {
            return Err(ZfsError::HasClones {
                snapshot: snapshot.to_string(),
                clones,
            });
        }
        self.lzc.destroy(snapshot.as_str()).map_err(|e| {
            match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                Errno::EEXIST => ZfsError::HasClones {
                    snapshot: snapshot.to_string(),
                    clones: vec!["(a clone made meanwhile)".into()],
                },
                _ => lzc_error("destroy", snapshot, e),
            }
        })
    }

    fn destroy_dataset(&self, dataset: &DatasetName) -> Result<(), ZfsError> {
        self.require(dataset.as_str())?;
        if dataset.parent().is_none() {
            return Err(lzc_error(
                "destroy",
                dataset,
                io::Error::other("a pool's root dataset goes with `zpool destroy`"),
            ));
        }
        let mut dependents: Vec<String> = self
            .cli
            .list_snapshots(dataset)?
            .into_iter()
            .map(|s| format!("{dataset}@{}", s.name))
            .collect();
        dependents.extend(self.cli.children(dataset)?);
        if !dependents.is_empty() {
            return Err(ZfsError::HasDependents {
                dataset: dataset.to_string(),
                dependents,
            });
        }
        let was_mounted = self.cli.properties(dataset)?.mounted;
        if was_mounted {
            self.cli.unmount(dataset)?;
        }
        self.lzc.destroy(dataset.as_str()).map_err(|e| {
            if was_mounted {
                // Leave it as it was.
                let _ = self.cli.mount(dataset);
            }
            lzc_error("destroy", dataset, e)
        })
    }

    fn clone_snapshot(
        &self,
        snapshot: &SnapshotName,
        target: &DatasetName,
    ) -> Result<(), ZfsError> {
        self.require(snapshot.as_str())?;
        let mut props = NvList::try_new().map_err(|e| lzc_error("clone", target, e))?;
        self.lzc
            .clone_dataset(target.as_str(), snapshot.as_str(), &mut props)
            .map_err(|e| match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                Errno::EEXIST => ZfsError::AlreadyExists {
                    name: target.to_string(),
                },
                Errno::ENOENT => ZfsError::NotFound {
                    name: target
                        .parent()
                        .map_or_else(|| target.to_string(), |p| p.to_string()),
                },
                _ => lzc_error("clone", target, e),
            })?;
        self.mount_new(target)
    }

    fn send(
        &self,
        snapshot: &SnapshotName,
        from: Option<&SnapshotName>,
        out: &File,
    ) -> Result<(), ZfsError> {
        self.lzc
            .send(
                snapshot.as_str(),
                from.map(SnapshotName::as_str),
                out.as_raw_fd(),
                SEND_FLAGS,
            )
            .map_err(|e| match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                Errno::ENOENT => ZfsError::NotFound {
                    name: snapshot.to_string(),
                },
                Errno::EXDEV => lzc_error(
                    "send",
                    snapshot,
                    io::Error::other(format!(
                        "incremental source {} is not an earlier snapshot of the same dataset",
                        from.map_or("?", SnapshotName::as_str)
                    )),
                ),
                _ => lzc_error("send", snapshot, e),
            })
    }

    fn receive(&self, snapshot: &SnapshotName, input: &File, force: bool) -> Result<(), ZfsError> {
        self.lzc
            .receive(
                snapshot.as_str(),
                None,
                None::<&str>,
                force,
                false,
                input.as_raw_fd(),
            )
            .map_err(|e| ZfsError::Receive {
                snapshot: snapshot.to_string(),
                detail: receive_detail(&e),
            })
    }

    fn properties(&self, dataset: &DatasetName) -> Result<DatasetProperties, ZfsError> {
        self.require(dataset.as_str())?;
        self.cli.properties(dataset)
    }
}

/// A libzfs_core error, with ENOENT and EEXIST named.
fn lzc_error(op: &'static str, name: &impl std::fmt::Display, e: io::Error) -> ZfsError {
    match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
        Errno::ENOENT => ZfsError::NotFound {
            name: name.to_string(),
        },
        Errno::EEXIST if op != "destroy" => ZfsError::AlreadyExists {
            name: name.to_string(),
        },
        _ => ZfsError::Lzc {
            op,
            name: name.to_string(),
            source: e,
        },
    }
}

/// The first error code of an lzc error list (`name -> errno`).
fn first_error(list: &NvList) -> io::Error {
    list.iter()
        .find_map(|pair| match pair.data() {
            NvData::Int32(code) => Some(io::Error::from_raw_os_error(code)),
            _ => None,
        })
        .unwrap_or_else(|| io::Error::other("libzfs_core returned an error list without codes"))
}

/// What the kernel's receive errors mean (see `dmu_recv_begin_check`).
fn receive_detail(e: &io::Error) -> String {
    let meaning = match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
        Errno::EEXIST => "the destination exists (a full stream needs a new dataset) or has this snapshot already",
        Errno::ENODEV => "the destination's latest snapshot is not the stream's incremental source",
        Errno::ETXTBSY => "the destination was modified since its latest snapshot",
        Errno::ENOENT => "the destination or its parent does not exist",
        // ZFS's ECKSUM is EBADE on Linux.
        Errno::EBADE => "the stream is corrupt or truncated",
        Errno::EINVAL => "the stream is invalid or truncated",
        _ => return e.to_string(),
    };
    format!("{meaning} ({e})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `/dev/zfs` (this machine, CI) opening libzfs_core says why; with it, it opens.
    /// The rest of the real backend runs in tests/tests/zfs.rs where ZFS exists.
    #[test]
    fn opening_says_why_zfs_is_unavailable() {
        match LzcZfs::new() {
            Err(ZfsError::Unavailable { reason }) => {
                assert!(!Path::new(ZFS_DEVICE).exists(), "{reason}");
                assert!(reason.contains(ZFS_DEVICE), "{reason}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => assert!(Path::new(ZFS_DEVICE).exists()),
        }
    }

    #[test]
    fn receive_errors_are_explained() {
        let e = io::Error::from_raw_os_error(Errno::ENODEV as i32);
        assert!(receive_detail(&e).contains("incremental source"));
        let e = io::Error::from_raw_os_error(Errno::EPERM as i32);
        assert_eq!(receive_detail(&e), e.to_string());
    }
}
