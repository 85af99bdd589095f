//! The real ZFS backend (`LzcZfs`, nodeagent feature `zfs`) on a file-backed test pool
//! `skiffzfstest`: a pool dataset mounted on a temp dir, backed up to `skiffzfstest/backup/skiff`
//! in full, then incrementally, pruned to its retention, listed; one file restored from a
//! snapshot; rollbacks refused and done. The test pool is destroyed on the way out, also when the
//! test fails.
//!
//! Needs the `zfs` feature, `/dev/zfs` (the zfs kernel module), root and the `zpool` command.
//! Elsewhere it prints `SKIPPED: ...` with the reason and passes (`SKIFF_REQUIRE_ZFS=1` makes that
//! a failure). Run it: `cargo test -p skiff-tests --features zfs --test zfs -- --nocapture`.
//! The same logic runs everywhere through `FakeZfs` in the nodeagent's unit tests
//! (`cargo test -p skiff-nodeagent storage::zfs`).

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// The command that runs this test for real.
const RUN: &str = "cargo test -p skiff-tests --features zfs --test zfs";

/// Why the real backend cannot run here, or `None` when it can.
fn skip_reason() -> Option<String> {
    let mut why = Vec::new();
    if !cfg!(feature = "zfs") {
        why.push("built without the `zfs` feature".to_owned());
    }
    if !Path::new("/dev/zfs").exists() {
        why.push("/dev/zfs does not exist (no zfs kernel module here)".to_owned());
    } else {
        if effective_uid() != Some(0) {
            why.push("making a test pool needs root".to_owned());
        }
        if Command::new("zpool").arg("version").output().is_err() {
            why.push("the zpool command is missing (apt-get install zfsutils-linux)".to_owned());
        }
    }
    (!why.is_empty()).then(|| why.join("; "))
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn zfs_pool_backup_cycle() {
    let Some(why) = skip_reason() else {
        #[cfg(feature = "zfs")]
        real::backup_cycle();
        return;
    };
    if std::env::var("SKIFF_REQUIRE_ZFS").is_ok_and(|v| v == "1" || v == "true") {
        panic!("zfs_pool_backup_cycle: ZFS is required (SKIFF_REQUIRE_ZFS) but unusable: {why}");
    }
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests, and a skip
    // must show without `--nocapture`.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: zfs_pool_backup_cycle: {why}; where ZFS exists run `{RUN}`"
    );
}

#[cfg(feature = "zfs")]
mod real {
    use std::fs;
    use std::path::Path;
    use std::process::Command;

    use std::sync::Arc;

    use skiff_cluster::state::backups::BackupOp;
    use skiff_cluster::state::pools::{PoolKind, PoolSpec};
    use skiff_nodeagent::storage::pools::Pools;
    use skiff_nodeagent::storage::zfs::{
        backup_snapshot_name, CreateOptions, DatasetName, LaterSnapshots, LzcZfs, Sent, ZfsError,
        ZfsOps, ZfsPool,
    };

    const POOL: &str = "skiffzfstest";
    /// 2026-11-22T03:00:00Z: snapshot names come from it, not from the clock.
    const T0: u64 = 1_795_316_400;
    const HOUR: u64 = 3600;

    /// Destroys the test pool when dropped (also when the test panics).
    struct PoolGuard;

    impl Drop for PoolGuard {
        fn drop(&mut self) {
            destroy_pool();
        }
    }

    fn destroy_pool() {
        let _ = Command::new("zpool").args(["destroy", "-f", POOL]).output();
    }

    fn run(program: &str, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ds(name: &str) -> DatasetName {
        DatasetName::parse(name).expect("valid name")
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    pub fn backup_cycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A pool left by an interrupted run.
        destroy_pool();
        let vdev = dir.path().join("vdev");
        let vdev = vdev.to_str().expect("UTF-8 temp path");
        run("truncate", &["-s", "256M", vdev]);
        run("zpool", &["create", "-m", "none", POOL, vdev]);
        let _guard = PoolGuard;

        let zfs = LzcZfs::new().expect("libzfs_core");
        let mount = dir.path().join("mnt");
        let opts = CreateOptions {
            mountpoint: Some(mount.clone()),
        };
        zfs.create_filesystem(&ds("skiffzfstest/skiff"), &opts)
            .expect("pool dataset");
        zfs.create_filesystem(&ds("skiffzfstest/backup"), &CreateOptions::default())
            .expect("backup parent");
        let pool = ZfsPool::new(
            zfs,
            "skiffzfstest/skiff",
            Some("skiffzfstest/backup/skiff"),
            2,
        )
        .expect("pool");
        assert_eq!(pool.mountpoint().expect("mounted"), mount);

        let image = mount.join("web.qcow2");
        let stamp = backup_snapshot_name;
        fs::write(&image, "one").expect("write");
        let r = pool.backup_now(T0).expect("first backup");
        assert_eq!(r.sent, Sent::Full, "{r:?}");
        fs::write(&image, "two").expect("write");
        let r = pool.backup_now(T0 + HOUR).expect("second backup");
        assert_eq!(r.sent, Sent::Incremental { from: stamp(T0) }, "{r:?}");
        fs::write(&image, "three").expect("write");
        let r = pool.backup_now(T0 + 2 * HOUR).expect("third backup");
        assert_eq!(
            r.sent,
            Sent::Incremental {
                from: stamp(T0 + HOUR)
            },
            "{r:?}"
        );
        assert_eq!(r.pruned_pool, vec![stamp(T0)], "{r:?}");
        assert_eq!(r.pruned_backup, vec![stamp(T0)], "{r:?}");
        let again = pool.backup_now(T0 + 2 * HOUR).expect("repeat");
        assert_eq!(again.sent, Sent::AlreadyThere, "{again:?}");

        let list = pool.list_backups().expect("list");
        let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, vec![stamp(T0 + HOUR), stamp(T0 + 2 * HOUR)]);
        assert!(list.iter().all(|b| b.on_pool && b.on_backup), "{list:?}");

        let restored = dir.path().join("restored.qcow2");
        pool.restore_file(&stamp(T0 + HOUR), "web.qcow2", &restored)
            .expect("restore");
        assert_eq!(read(&restored), "two");

        fs::write(&image, "four").expect("write");
        match pool.rollback(&stamp(T0 + HOUR), LaterSnapshots::Refuse) {
            Err(ZfsError::NotLatest { .. }) => {}
            other => panic!("rollback past a later snapshot: {other:?}"),
        }
        pool.rollback(&stamp(T0 + 2 * HOUR), LaterSnapshots::Refuse)
            .expect("rollback to the latest");
        assert_eq!(read(&image), "three");
        pool.rollback(&stamp(T0 + HOUR), LaterSnapshots::Destroy)
            .expect("rollback destroying later");
        assert_eq!(read(&image), "two");

        let usage = pool.usage().expect("usage");
        assert!(usage.used > 0 && usage.available > 0, "{usage:?}");

        // The agent's way in: a ZFS pool handed to a node (`Pools::set`), images in its
        // mountpoint, whole-pool backups as the leader's backup tasks ask for them.
        let agent_mount = dir.path().join("agent");
        let lzc = LzcZfs::new().expect("libzfs_core");
        let opts = CreateOptions {
            mountpoint: Some(agent_mount.clone()),
        };
        lzc.create_filesystem(&ds("skiffzfstest/agent"), &opts)
            .expect("agent dataset");
        let pools = Pools::open(&dir.path().join("data")).with_zfs(Arc::new(lzc));
        let log = pools.set(vec![PoolSpec {
            name: "z".into(),
            kind: PoolKind::Zfs {
                dataset: "skiffzfstest/agent".into(),
                backup: Some("skiffzfstest/backup/agent".into()),
            },
            token: String::new(),
            writes_marker: false,
        }]);
        assert!(log[0].starts_with("opened pool z"), "{log:?}");
        let store = pools.get("z").expect("usable");
        store.create("img", 1 << 20).expect("image in the ZFS pool");
        let first = pools.zfs_backup("z", BackupOp::Create, T0).expect("backup");
        assert!(first[0].contains("sent in full"), "{first:?}");
        let second = pools
            .zfs_backup("z", BackupOp::Create, T0 + HOUR)
            .expect("backup");
        assert!(second[0].contains("incrementally"), "{second:?}");
        let gone = pools.zfs_backup("z", BackupOp::Remove, T0).expect("remove");
        assert_eq!(gone.len(), 2, "{gone:?}");
    }
}
