//! The disks of the servers on this node: qcow2 images in the node's pools, one per disk of the
//! server's spec, named `SERVER-diskN`, in the pool the disk names (`local` when none).
//!
//! A disk with an `image` is a linked clone of that master, which may be in any pool of the node
//! (a master in a shared pool, its children node-local); one without is a blank image of its
//! size. Ensuring is idempotent: existing disks are kept (the guest's data is in them), a clone
//! smaller than its spec is grown. Removing a server removes its disks from every pool.

use std::path::PathBuf;

use skiff_cluster::state::pools::LOCAL_POOL;
use skiff_cluster::state::ServerRecord;

use crate::storage::images::ImageStore;
use crate::storage::pools::Pools;

const GIB: u64 = 1 << 30;

/// Makes and removes the disk images of servers in the node's pools.
#[derive(Clone)]
pub struct DiskProvisioner {
    pools: Pools,
}

impl DiskProvisioner {
    pub fn new(pools: Pools) -> Self {
        DiskProvisioner { pools }
    }

    /// A provisioner whose every disk is in `store` (benchmarks and tests: one pool).
    pub fn in_store(store: ImageStore) -> Self {
        let pools = Pools::single(store);
        DiskProvisioner { pools }
    }

    /// The image name of disk `index` of `server`.
    pub fn disk_name(server: &str, index: usize) -> String {
        skiff_cluster::state::images::disk_name(server, index)
    }

    /// Makes every disk of `server` exist; returns their paths in the spec's order.
    pub fn ensure(&self, server: &ServerRecord) -> Result<Vec<PathBuf>, String> {
        let mut paths = Vec::with_capacity(server.spec.disks.len());
        for (i, disk) in server.spec.disks.iter().enumerate() {
            let name = Self::disk_name(&server.name, i);
            let store = self.pools.get(disk.pool.as_deref().unwrap_or(LOCAL_POOL))?;
            let size = disk.size_gib.saturating_mul(GIB);
            let err = |e: crate::storage::images::ImageError| e.to_string();
            if !store.exists(&name).map_err(err)? {
                match &disk.image {
                    Some(master) => {
                        let from = self
                            .pools
                            .find(master)
                            .ok_or_else(|| format!("master {master} is in no pool of this node"))?;
                        store.clone_child_from(&from, master, &name).map_err(err)?;
                        let virtual_size = store.info(&name).map_err(err)?.virtual_size;
                        if size > virtual_size {
                            store.resize(&name, size, false).map_err(err)?;
                        }
                    }
                    None => {
                        store.create(&name, size).map_err(err)?;
                    }
                }
            }
            paths.push(store.path(&name).map_err(err)?);
        }
        Ok(paths)
    }

    /// Removes every disk image of the server `name` (disks beyond its current spec too: detached
    /// ones). Returns the names removed.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, String> {
        let mut removed = Vec::new();
        for (_, store) in self.pools.stores() {
            for entry in store.list().map_err(|e| e.to_string())? {
                if skiff_cluster::state::images::disk_owner(&entry.name) == Some(name) {
                    store.remove(&entry.name).map_err(|e| e.to_string())?;
                    removed.push(entry.name);
                }
            }
        }
        Ok(removed)
    }
}
