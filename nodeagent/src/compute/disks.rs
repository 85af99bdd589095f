//! The disks of the servers on this node: qcow2 images in the node's pools, one per disk of the
//! server's spec, named `SERVER-diskN`, in the pool the disk names (`local` when none).
//!
//! A disk with an `image` is a linked clone of that master, which may be in any pool of the node
//! (a master in a shared pool, its children node-local); one without is a blank image of its
//! size. Ensuring is idempotent: existing disks are kept (the guest's data is in them), a clone
//! smaller than its spec is grown. Removing a server removes its disks from the node's own pools,
//! and from shared pools only when it is removed for good.

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

    /// Removes every disk image of the server `name` in the node's own pools (disks beyond its
    /// current spec too: detached ones), and in shared pools when `shared_too` (the server is
    /// removed for good, not a stale copy whose disks a copy elsewhere still uses). Returns the
    /// names removed.
    pub fn remove(&self, name: &str, shared_too: bool) -> Result<Vec<String>, String> {
        let mut removed = Vec::new();
        for (pool, store) in self.pools.stores() {
            if !shared_too && self.pools.is_shared(&pool) {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::state::pools::{PoolKind, PoolSpec};

    #[test]
    fn a_stale_copy_leaves_its_disks_in_shared_pools() {
        let t = tempfile::tempdir().unwrap();
        let pools = Pools::open(&t.path().join("data"));
        let shared = t.path().join("shared");
        pools.set(vec![PoolSpec {
            name: "0".into(),
            kind: PoolKind::Dir {
                path: shared.display().to_string(),
            },
            token: "tok".into(),
            writes_marker: true,
        }]);
        let local = pools.get(LOCAL_POOL).unwrap();
        let zero = pools.get("0").unwrap();
        local.create("web-disk0", 1 << 20).unwrap();
        zero.create("web-disk1", 1 << 20).unwrap();
        zero.create("other-disk0", 1 << 20).unwrap();
        let d = DiskProvisioner::new(pools);
        // A stale copy (after a move or failover): only the node's own disks go.
        assert_eq!(d.remove("web", false).unwrap(), ["web-disk0"]);
        assert!(zero.exists("web-disk1").unwrap());
        // Removed for good: the shared disk goes too, nobody else's.
        assert_eq!(d.remove("web", true).unwrap(), ["web-disk1"]);
        assert!(zero.exists("other-disk0").unwrap());
    }
}
