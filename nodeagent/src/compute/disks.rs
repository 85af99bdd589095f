//! The disks of the servers on this node: qcow2 images in the node-local pool, one per disk of the
//! server's spec, named `SERVER-diskN`.
//!
//! A disk with an `image` is a linked clone of that master (it must be a master in the same pool);
//! one without is a blank image of its size. Ensuring is idempotent: existing disks are kept (the
//! guest's data is in them), a clone smaller than its spec is grown. Removing a server removes its
//! disks. Shared pools (numbered, over NFS) come with the storage issue; until then every disk is
//! made in the local pool, whatever its `pool` says.

use std::path::PathBuf;

use skiff_cluster::state::ServerRecord;

use crate::storage::images::{ImageError, ImageStore};

const GIB: u64 = 1 << 30;

/// Makes and removes the disk images of servers in one pool.
#[derive(Clone, Debug)]
pub struct DiskProvisioner {
    store: ImageStore,
}

impl DiskProvisioner {
    pub fn new(store: ImageStore) -> Self {
        DiskProvisioner { store }
    }

    pub fn store(&self) -> &ImageStore {
        &self.store
    }

    /// The image name of disk `index` of `server`.
    pub fn disk_name(server: &str, index: usize) -> String {
        format!("{server}-disk{index}")
    }

    /// Makes every disk of `server` exist; returns their paths in the spec's order.
    pub fn ensure(&self, server: &ServerRecord) -> Result<Vec<PathBuf>, ImageError> {
        let mut paths = Vec::with_capacity(server.spec.disks.len());
        for (i, disk) in server.spec.disks.iter().enumerate() {
            let name = Self::disk_name(&server.name, i);
            let size = disk.size_gib.saturating_mul(GIB);
            if !self.store.exists(&name)? {
                match &disk.image {
                    Some(master) => {
                        self.store.clone_child(master, &name)?;
                        let virtual_size = self.store.info(&name)?.virtual_size;
                        if size > virtual_size {
                            self.store.resize(&name, size, false)?;
                        }
                    }
                    None => {
                        self.store.create(&name, size)?;
                    }
                }
            }
            paths.push(self.store.path(&name)?);
        }
        Ok(paths)
    }

    /// Removes every disk image of the server `name` (disks beyond its current spec too: detached
    /// ones). Returns the names removed.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let prefix = format!("{name}-disk");
        let mut removed = Vec::new();
        for entry in self.store.list()? {
            let is_disk = entry
                .name
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_disk {
                self.store.remove(&entry.name)?;
                removed.push(entry.name);
            }
        }
        Ok(removed)
    }
}
