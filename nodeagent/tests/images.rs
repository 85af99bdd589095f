//! The image store against the real `qemu-img` (and `qemu-io` to write guest data), each test in
//! its own temp directory: masters and clones, snapshots, resize, flatten (in place and into a
//! new image, compressed or not), check, import/export, and the refusals (bad names, images in
//! use, missing or damaged files) that must change nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_nodeagent::storage::images::{ImageError, ImageStore};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A store in a fresh temp dir, or `None` (with a clear message) when qemu-img is missing.
fn store() -> Option<(tempfile::TempDir, ImageStore)> {
    let found = Command::new("qemu-img").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: qemu-img is not installed (Debian package qemu-utils)");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = dir.path().join("pool");
    fs::create_dir(&pool).expect("pool dir");
    let store = ImageStore::new(pool).expect("store");
    Some((dir, store))
}

/// Runs one qemu-io command on a qcow2 file and says whether it succeeded (a `read -P` with
/// the wrong pattern fails).
fn qemu_io(path: &Path, cmd: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd])
        .arg(path)
        .output()
        .expect("run qemu-io");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && !text.contains("Pattern verification failed")
}

/// File names in a directory, sorted (to prove nothing was left behind).
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn master_clone_chain_and_refusals() {
    let Some((_dir, s)) = store() else { return };
    let base = s.create("base", GIB).expect("create");
    assert_eq!(base, s.root().join("base.qcow2"));
    assert!(base.is_absolute());

    // Only masters can be cloned.
    assert!(matches!(s.clone_child("base", "vm1"), Err(ImageError::NotMaster(n)) if n == "base"));
    s.make_master("base").expect("make master");
    s.make_master("base").expect("make master is idempotent");
    assert!(s.is_master("base").expect("is master"));
    assert_eq!(mode(&base), 0o444);

    let child = s.clone_child("base", "vm1").expect("clone");
    let info = s.info("vm1").expect("info");
    assert_eq!(info.path, child);
    assert_eq!(info.format, "qcow2");
    assert_eq!(info.virtual_size, GIB);
    assert!(!info.master);
    assert_eq!(info.backing_chain.len(), 1);
    assert_eq!(info.backing_chain[0].filename, base);
    assert_eq!(info.backing_chain[0].format, "qcow2");
    assert_eq!(info.backing_chain[0].image.as_deref(), Some("base"));

    let list = s.list().expect("list");
    let names: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["base", "vm1"]);
    assert!(list[0].master && list[0].backing.is_none());
    assert!(!list[1].master);
    assert_eq!(list[1].backing.as_deref(), Some("base"));
    assert_eq!(list[1].backing_file.as_deref(), Some(base.as_path()));

    // The master is protected while a clone uses it.
    let before = files(s.root());
    match s.remove("base") {
        Err(ImageError::InUse { name, by }) => {
            assert_eq!((name.as_str(), by), ("base", vec!["vm1".to_owned()]))
        }
        other => panic!("remove master: {other:?}"),
    }
    assert!(matches!(s.unmaster("base"), Err(ImageError::InUse { .. })));
    assert!(matches!(
        s.snapshot_create("base", "s1"),
        Err(ImageError::IsMaster(_))
    ));
    assert!(matches!(
        s.resize("base", 2 * GIB, false),
        Err(ImageError::IsMaster(_))
    ));
    assert!(matches!(
        s.clone_child("vm1", "vm2"),
        Err(ImageError::NotMaster(_))
    ));
    assert!(
        matches!(s.clone_child("base", "vm1"), Err(ImageError::AlreadyExists(n)) if n == "vm1")
    );
    assert!(matches!(
        s.create("base", GIB),
        Err(ImageError::AlreadyExists(_))
    ));
    assert!(matches!(s.unmaster("vm1"), Err(ImageError::NotMaster(_))));
    assert!(matches!(s.remove("ghost"), Err(ImageError::NotFound(n)) if n == "ghost"));
    assert_eq!(files(s.root()), before, "refusals changed nothing");

    // A chain two deep: the root master is protected by its grandchild too.
    s.make_master("vm1").expect("master of a clone");
    s.clone_child("vm1", "vm1-a").expect("grandchild");
    match s.remove("base") {
        Err(ImageError::InUse { by, .. }) => assert_eq!(by, ["vm1", "vm1-a"]),
        other => panic!("{other:?}"),
    }
    let chain = s.info("vm1-a").expect("info").backing_chain;
    let chain: Vec<_> = chain.iter().map(|b| b.image.clone()).collect();
    assert_eq!(chain, [Some("vm1".to_owned()), Some("base".to_owned())]);

    // Flatten folds the chain into a standalone image.
    assert!(qemu_io(
        &s.path("vm1-a").expect("path"),
        "write -P 0x5a 0 1M"
    ));
    let flat = s.flatten("vm1-a", "standalone").expect("flatten");
    let info = s.info("standalone").expect("info");
    assert!(info.backing_chain.is_empty());
    assert_eq!(info.virtual_size, GIB);
    assert!(
        qemu_io(&flat, "read -P 0x5a 0 1M"),
        "data survived flattening"
    );
    assert!(matches!(
        s.flatten("vm1-a", "standalone"),
        Err(ImageError::AlreadyExists(_))
    ));

    // Unwinding in order works.
    s.remove("vm1-a").expect("remove grandchild");
    s.unmaster("vm1").expect("unmaster vm1");
    s.remove("vm1").expect("remove child");
    s.unmaster("base").expect("unmaster");
    assert_eq!(mode(&base), 0o644);
    assert!(!s.is_master("base").expect("flag"));
    s.remove("base").expect("remove base");
    assert_eq!(files(s.root()), ["standalone.qcow2"]);
}

#[test]
fn flatten_in_place_keeps_the_data_and_drops_the_master() {
    let Some((_dir, s)) = store() else { return };
    let base = s.create("base", 64 * MIB).expect("create");
    assert!(qemu_io(&base, "write -P 0x11 0 1M"));
    s.make_master("base").expect("master");
    let child = s.clone_child("base", "vm").expect("clone");
    assert!(qemu_io(&child, "write -P 0x22 1M 1M"));
    let before = mode(&child);

    assert!(s.flatten_in_place("vm").expect("flatten"));
    let info = s.info("vm").expect("info");
    assert!(info.backing_chain.is_empty(), "{info:?}");
    assert_eq!(info.virtual_size, 64 * MIB);
    assert_eq!(mode(&child), before, "the image keeps its mode");
    assert!(qemu_io(&child, "read -P 0x11 0 1M"), "the master's data");
    assert!(qemu_io(&child, "read -P 0x22 1M 1M"), "the child's data");
    // Nothing to do the second time; nothing left aside.
    assert!(!s.flatten_in_place("vm").expect("again"));
    assert_eq!(files(s.root()), ["base.master", "base.qcow2", "vm.qcow2"]);

    // The master is free, and the image no longer needs it.
    s.unmaster("base").expect("unmaster");
    s.remove("base").expect("remove");
    assert!(qemu_io(&child, "read -P 0x11 0 1M"));
    s.check("vm").expect("check");
}

#[test]
fn flatten_in_place_refusals_change_nothing() {
    let Some((_dir, s)) = store() else { return };
    s.create("base", 64 * MIB).expect("create");
    s.make_master("base").expect("master");
    s.clone_child("base", "vm").expect("clone");
    s.snapshot_create("vm", "s1").expect("snapshot");
    let before = files(s.root());
    match s.flatten_in_place("vm") {
        Err(ImageError::HasSnapshots { image, snapshots }) => {
            assert_eq!((image.as_str(), snapshots), ("vm", vec!["s1".to_owned()]))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.flatten_in_place("base"),
        Err(ImageError::IsMaster(_))
    ));
    assert!(matches!(
        s.flatten_in_place("ghost"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        s.flatten_in_place("../x"),
        Err(ImageError::InvalidName { .. })
    ));
    assert_eq!(files(s.root()), before);
    assert_eq!(s.info("vm").expect("info").backing_chain.len(), 1);
}

#[test]
fn convert_into_makes_a_standalone_compressed_copy() {
    let Some((_dir, s)) = store() else { return };
    let base = s.create("base", 64 * MIB).expect("create");
    // Compressible data: a long run of one byte.
    assert!(qemu_io(&base, "write -P 0x33 0 16M"));
    s.make_master("base").expect("master");
    s.clone_child("base", "vm").expect("clone");
    s.snapshot_create("vm", "s1").expect("snapshot");

    let plain = s.convert_into("vm", "plain", false).expect("convert");
    let packed = s.convert_into("vm", "packed", true).expect("compressed");
    for (path, name) in [(&plain, "plain"), (&packed, "packed")] {
        let info = s.info(name).expect("info");
        assert!(info.backing_chain.is_empty() && info.snapshots.is_empty());
        assert_eq!(info.virtual_size, 64 * MIB);
        assert!(qemu_io(path, "read -P 0x33 0 16M"), "{name} has the data");
    }
    let size = |p: &PathBuf| fs::metadata(p).expect("stat").len();
    assert!(size(&packed) < size(&plain), "compression made it smaller");
    // The source is untouched; a taken name is refused.
    assert_eq!(s.info("vm").expect("info").backing_chain.len(), 1);
    assert_eq!(s.snapshot_list("vm").expect("list").len(), 1);
    assert!(matches!(
        s.convert_into("vm", "plain", true),
        Err(ImageError::AlreadyExists(_))
    ));
    // A master converts too (it is only read).
    s.convert_into("base", "copy", false)
        .expect("convert a master");
    assert!(!s.is_master("copy").expect("flag"));
    assert_eq!(
        files(s.root()),
        [
            "base.master",
            "base.qcow2",
            "copy.qcow2",
            "packed.qcow2",
            "plain.qcow2",
            "vm.qcow2"
        ]
    );
}

#[test]
fn clone_of_a_large_master_is_only_a_header() {
    let Some((_dir, s)) = store() else { return };
    s.create("big", 20 * GIB).expect("create 20 GiB");
    s.make_master("big").expect("master");
    s.clone_child("big", "big-clone").expect("clone");
    let info = s.info("big-clone").expect("info");
    assert_eq!(info.virtual_size, 20 * GIB);
    assert!(info.actual_size.expect("actual size") < 10 * MIB);
}

#[test]
fn snapshots_create_list_revert_delete() {
    let Some((_dir, s)) = store() else { return };
    let path = s.create("disk", 64 * MIB).expect("create");
    assert!(qemu_io(&path, "write -P 0x11 0 64k"));
    s.snapshot_create("disk", "before").expect("snapshot");
    assert!(matches!(
        s.snapshot_create("disk", "before"),
        Err(ImageError::SnapshotExists { .. })
    ));
    let list = s.snapshot_list("disk").expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "before");
    assert_eq!(s.info("disk").expect("info").snapshots, list);

    assert!(qemu_io(&path, "write -P 0x22 0 64k"));
    s.snapshot_revert("disk", "before").expect("revert");
    assert!(
        qemu_io(&path, "read -P 0x11 0 64k"),
        "revert brought the old data back"
    );

    for bad in ["1", "42", "../x", "", "a b", "-a"] {
        assert!(
            matches!(
                s.snapshot_create("disk", bad),
                Err(ImageError::InvalidSnapshotName { .. })
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.snapshot_revert("disk", "nope"),
        Err(ImageError::SnapshotNotFound { .. })
    ));
    assert!(matches!(
        s.snapshot_delete("disk", "nope"),
        Err(ImageError::SnapshotNotFound { .. })
    ));
    s.snapshot_delete("disk", "before").expect("delete");
    assert!(s.snapshot_list("disk").expect("list").is_empty());
    assert!(matches!(
        s.snapshot_list("nope"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn resize_grows_and_shrinks_only_when_asked() {
    let Some((_dir, s)) = store() else { return };
    s.create("disk", GIB).expect("create");
    s.resize("disk", 2 * GIB, false).expect("grow");
    assert_eq!(s.info("disk").expect("info").virtual_size, 2 * GIB);
    match s.resize("disk", GIB, false) {
        Err(ImageError::InvalidSize { size, reason }) => {
            assert_eq!(size, GIB);
            assert!(reason.contains("shrink"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.info("disk").expect("info").virtual_size, 2 * GIB);
    for bad in [0, 1000, u64::MAX] {
        assert!(matches!(
            s.resize("disk", bad, true),
            Err(ImageError::InvalidSize { .. })
        ));
    }
    s.resize("disk", GIB, true).expect("shrink when asked");
    assert_eq!(s.info("disk").expect("info").virtual_size, GIB);
    assert!(matches!(
        s.create("zero", 0),
        Err(ImageError::InvalidSize { .. })
    ));
    assert!(!s.exists("zero").expect("exists"));
}

#[test]
fn check_reports_clean_corrupt_and_garbage() {
    let Some((_dir, s)) = store() else { return };
    s.create("good", 64 * MIB).expect("create");
    let report = s.check("good").expect("check");
    assert!(report.is_clean(), "{report:?}");

    // Damaged tables: point the first L2 entry at the refcount table's cluster.
    let path = s.create("damaged", 64 * MIB).expect("create");
    assert!(qemu_io(&path, "write -P 0x33 0 1M"));
    let mut bytes = fs::read(&path).expect("read");
    let be = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let l1 = be(0x28) as usize;
    let l2 = (be(l1) & 0x00ff_ffff_ffff_fe00) as usize;
    bytes[l2..l2 + 8].copy_from_slice(&((1u64 << 63) | 0x10000).to_be_bytes());
    fs::write(&path, &bytes).expect("write");
    let report = s
        .check("damaged")
        .expect("a damaged image is a report, not an error");
    assert!(report.corruptions > 0 && report.is_damaged(), "{report:?}");

    // Garbage where an image should be.
    let junk = s.root().join("junk.qcow2");
    let garbage: Vec<u8> = (0..MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&junk, garbage).expect("write junk");
    for result in [s.info("junk").map(|_| ()), s.check("junk").map(|_| ())] {
        match result {
            Err(ImageError::Corrupt { image, detail }) => {
                assert_eq!(image, "junk");
                assert!(detail.contains("qcow2"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
    let listed = s.list().expect("list");
    let junk_entry = listed
        .iter()
        .find(|e| e.name == "junk")
        .expect("junk listed");
    assert!(junk_entry.problem.is_some());
    assert!(matches!(
        s.make_master("junk"),
        Err(ImageError::Corrupt { .. })
    ));
    assert!(!s.is_master("junk").expect("flag"));
}

#[test]
fn missing_backing_file_is_named() {
    let Some((_dir, s)) = store() else { return };
    let base = s.create("base", 64 * MIB).expect("create");
    s.make_master("base").expect("master");
    s.clone_child("base", "vm").expect("clone");
    fs::remove_file(&base).expect("lose the master");
    for result in [
        s.info("vm").map(|_| ()),
        s.check("vm").map(|_| ()),
        s.snapshot_create("vm", "s1"),
        s.flatten("vm", "flat").map(|_| ()),
    ] {
        match result {
            Err(ImageError::MissingBacking { image, backing }) => {
                assert_eq!(image, "vm");
                assert_eq!(backing, base);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!s.exists("flat").expect("exists"), "nothing half-made");
    assert!(matches!(
        s.clone_child("base", "vm2"),
        Err(ImageError::NotFound(_))
    ));
    // The header is still readable, so list says where the backing should be.
    let entry = s
        .list()
        .expect("list")
        .into_iter()
        .find(|e| e.name == "vm")
        .expect("vm");
    assert_eq!(entry.backing_file, Some(base));
    // A corrupt master is named as such.
    fs::write(s.root().join("base.qcow2"), vec![7u8; 4096]).expect("garbage master");
    match s.info("vm") {
        Err(ImageError::Corrupt { image, .. }) => assert_eq!(image, "base"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn path_traversal_names_are_refused() {
    let Some((dir, s)) = store() else { return };
    let outside_before = files(dir.path());
    let raw = dir.path().join("src.raw");
    for bad in [
        "../evil", "..", "a/b", "/tmp/x", ".hidden", "Evil", "a..b", "x:y", "",
    ] {
        let invalid =
            |r: Result<PathBuf, ImageError>| matches!(r, Err(ImageError::InvalidName { .. }));
        assert!(invalid(s.create(bad, GIB)), "{bad:?}");
        assert!(invalid(s.path(bad)), "{bad:?}");
        assert!(invalid(s.import(bad, &raw)), "{bad:?}");
        assert!(
            invalid(s.flatten("x", bad).or(s.flatten(bad, "x"))),
            "{bad:?}"
        );
        assert!(matches!(s.remove(bad), Err(ImageError::InvalidName { .. })));
        assert!(matches!(
            s.make_master(bad),
            Err(ImageError::InvalidName { .. })
        ));
        assert!(matches!(s.info(bad), Err(ImageError::InvalidName { .. })));
    }
    s.create("ok", MIB).expect("create");
    s.make_master("ok").expect("master");
    assert!(matches!(
        s.clone_child("ok", "../evil"),
        Err(ImageError::InvalidName { .. })
    ));
    assert_eq!(
        files(dir.path()),
        outside_before,
        "nothing written outside the store"
    );
    assert_eq!(files(s.root()), ["ok.master", "ok.qcow2"]);
}

#[test]
fn import_converts_raw_and_refuses_backed_qcow2() {
    let Some((dir, s)) = store() else { return };
    let raw = dir.path().join("disk.raw");
    let mut data = vec![0u8; 4 * MIB as usize];
    data[..4096].fill(0xa5);
    fs::write(&raw, &data).expect("raw");
    let imported = s.import("imported", &raw).expect("import raw");
    let info = s.info("imported").expect("info");
    assert_eq!(
        (info.format.as_str(), info.virtual_size),
        ("qcow2", 4 * MIB)
    );
    let same = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&imported)
        .status()
        .expect("compare");
    assert!(same.success(), "imported data equals the raw file");
    assert!(matches!(
        s.import("imported", &raw),
        Err(ImageError::AlreadyExists(_))
    ));

    // A qcow2 source is copied; one with a backing file is refused.
    let q = dir.path().join("plain.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&q)
        .arg("16M")
        .status()
        .expect("qemu-img");
    assert!(ok.success());
    fs::set_permissions(&q, fs::Permissions::from_mode(0o444)).expect("chmod");
    let plain = s.import("plain", &q).expect("import qcow2");
    assert_eq!(
        mode(&plain),
        0o644,
        "an import is writable whatever the source mode"
    );
    let backed = dir.path().join("backed.qcow2");
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(&q)
        .arg(&backed)
        .status()
        .expect("qemu-img");
    assert!(ok.success());
    match s.import("backed", &backed) {
        Err(ImageError::UnsupportedSource { reason, .. }) => {
            assert!(reason.contains("backing"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.import("missing", &dir.path().join("nope")),
        Err(ImageError::InvalidPath { .. })
    ));
    assert!(matches!(
        s.import("dir", dir.path()),
        Err(ImageError::InvalidPath { .. })
    ));
    assert_eq!(
        files(s.root()),
        ["imported.qcow2", "plain.qcow2"],
        "no temp files left"
    );

    // Export writes a standalone qcow2 outside the store, never over an existing file.
    let out = dir.path().join("exported.qcow2");
    s.export("imported", &out).expect("export");
    let same = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
        .arg(&raw)
        .arg(&out)
        .status()
        .expect("compare");
    assert!(same.success());
    assert!(matches!(
        s.export("imported", &out),
        Err(ImageError::InvalidPath { .. })
    ));
    assert!(matches!(
        s.export("imported", &s.root().join("sneaky.qcow2")),
        Err(ImageError::InvalidPath { .. })
    ));
    assert!(matches!(
        s.export("imported", Path::new("relative.qcow2")),
        Err(ImageError::InvalidPath { .. })
    ));
    assert!(!s.exists("sneaky").expect("exists"));
}

#[test]
fn stale_temp_files_are_cleaned() {
    let Some((_dir, s)) = store() else { return };
    s.create("keep", MIB).expect("create");
    fs::write(s.root().join(".x.qcow2.1-0.tmp"), b"half").expect("stale");
    assert_eq!(s.remove_stale_temp_files().expect("clean"), 1);
    assert_eq!(files(s.root()), ["keep.qcow2"]);

    // A master mark left behind by an interrupted removal does not mark a new image.
    fs::write(s.root().join("fresh.master"), b"stale").expect("stale mark");
    s.create("fresh", MIB).expect("create");
    assert!(!s.is_master("fresh").expect("flag"));
    assert_eq!(files(s.root()), ["fresh.qcow2", "keep.qcow2"]);
}
