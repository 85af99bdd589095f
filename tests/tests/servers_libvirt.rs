//! End to end through the real parts: a one-node cluster whose agent drives libvirt at
//! `qemu:///system` (TCG guests), operated with the real `skiff` binary. `skiff server create`
//! makes a real qcow2 disk in the node-local pool and a real QEMU domain; `shutdown`, `start`,
//! `destroy` change its power as `virsh` sees it; `remove` removes both the domain and the disk.
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use skiff_cluster::config::HypervisorKind;
use skiff_tests::bins;
use skiff_tests::guest::{libvirt_reachable, virsh, DomainGuard};
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(90);

/// Runs the `skiff` binary with `stdin` as its standard input (closed after it); returns all it did.
async fn skiff_stdin(cred: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(bins::path("skiff"))
        .arg("--cred")
        .arg(cred)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run skiff");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await.expect("stdin");
    }
    tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("skiff did not end after stdin ended")
        .expect("skiff")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_server_create_start_stop_remove_drive_real_libvirt_domains() {
    if !libvirt_reachable("skiff_server_create_start_stop_remove_drive_real_libvirt_domains") {
        return;
    }
    let mut spec = ClusterSpec::new(1, 1);
    spec.hypervisor = HypervisorKind::Libvirt;
    let c = TestCluster::start(spec).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("admin.credential");
    std::fs::write(&cred, c.cred.to_toml()).unwrap();

    let name = format!("e2e-{}", std::process::id());
    let _guard = DomainGuard(name.clone());
    bins::skiff(
        &cred,
        &[
            "server",
            "create",
            &name,
            "--memory",
            "128",
            "--vcpus",
            "1",
            "--disk-gib",
            "1",
            "--start",
            "--wait",
        ],
    )
    .await;

    // A real domain, running, whose disk is a real qcow2 image of the asked size.
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("running"));
    let disk = c.dirs[0]
        .join("pools/local")
        .join(format!("{name}-disk0.qcow2"));
    let blk = virsh(&["domblklist", &name]).unwrap_or_default();
    assert!(
        blk.contains(&disk.canonicalize().unwrap().display().to_string()),
        "{blk}"
    );
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&disk)
        .output()
        .expect("qemu-img");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 1u64 << 30);
    let listed: serde_json::Value =
        serde_json::from_str(&bins::skiff(&cred, &["server", "list", "-o", "json"]).await).unwrap();
    assert_eq!(listed[0]["name"], name.as_str());

    // Its serial console, both ways, through the leader and a real libvirt stream (the empty
    // disk boots nothing that answers: the session opens, takes what is typed, and ends once
    // stdin ended and the output settled).
    let out = skiff_stdin(&cred, &["server", "console", &name, "--attach"], b"\r").await;
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("attached to the console"),
        "{out:?}"
    );

    // Stopped (the disk has no OS, so nothing answers ACPI: forced after 2 s) and started again.
    bins::skiff(
        &cred,
        &["server", "shutdown", &name, "--force-after", "2", "--wait"],
    )
    .await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("shut off"));
    bins::skiff(&cred, &["server", "start", &name, "--wait"]).await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("running"));
    bins::skiff(&cred, &["server", "destroy", &name, "--wait"]).await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("shut off"));
    // A stopped server's console cannot be attached to.
    let out = skiff_stdin(&cred, &["server", "console", &name, "-i"], b"").await;
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not running"),
        "{out:?}"
    );

    // Removed: no domain, no disk.
    bins::skiff(&cred, &["server", "remove", &name, "--wait"]).await;
    assert_eq!(virsh(&["domstate", &name]), None, "the domain is gone");
    assert!(!disk.exists(), "the disk is deleted");

    // Pools: a master in a node-local pool `fast`, a server whose disk is its clone in pool
    // `local` — a real domain on a qcow2 child backed by a file of another pool.
    let fast = dir.path().join("fast");
    let fast_arg = fast.display().to_string();
    let node = c.names[0].clone();
    let out = bins::skiff(
        &cred,
        &["pool", "add", "fast", "--node", &node, "--path", &fast_arg],
    )
    .await;
    assert!(out.contains("added pool fast"), "{out}");
    let base = format!("base-{}", std::process::id());
    bins::skiff(
        &cred,
        &[
            "image",
            "create",
            &base,
            "--size-gib",
            "1",
            "--pool",
            "fast",
            "--wait",
        ],
    )
    .await;
    bins::skiff(&cred, &["image", "master", &base, "--wait"]).await;
    let child = format!("e2e-pool-{}", std::process::id());
    let _child_guard = DomainGuard(child.clone());
    bins::skiff(
        &cred,
        &[
            "server", "create", &child, "--memory", "128", "--vcpus", "1", "--image", &base,
            "--start", "--wait",
        ],
    )
    .await;
    assert_eq!(virsh(&["domstate", &child]).as_deref(), Some("running"));
    let child_disk = c.dirs[0]
        .join("pools/local")
        .join(format!("{child}-disk0.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&child_disk)
        .output()
        .expect("qemu-img");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    let master_file = fast.canonicalize().unwrap().join(format!("{base}.qcow2"));
    assert_eq!(
        info["backing-filename"].as_str(),
        Some(master_file.display().to_string().as_str()),
        "{info}"
    );
    bins::skiff(&cred, &["server", "remove", &child, "--wait"]).await;
    assert_eq!(virsh(&["domstate", &child]), None);
    assert!(!child_disk.exists() && master_file.exists());
    c.shutdown().await;
}
