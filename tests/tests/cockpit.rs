//! End to end, as an operator works: a one-node cluster whose agent drives libvirt (TCG guests),
//! a real guest made through the API, and the real `skiff` binary — first as a CLI (upload the
//! guest's bootable disk, make it a master, create a server whose disk is a clone of it), then
//! as the cockpit in tmux (find the server, start it, see it running, open its console and read
//! its line, shut it down, see it stopped).
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::path::Path;
use std::time::Duration;

use skiff_cluster::config::HypervisorKind;
use skiff_tests::bins;
use skiff_tests::guest::{libvirt_reachable, qemu_io, test_guest, virsh, DomainGuard, READY_LINE};
use skiff_tests::guest_disk::boot_disk;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};
use skiff_tests::tmux::Tmux;

const LIMIT: Duration = Duration::from_secs(90);
/// A TCG guest boots in 5–20 s here, more under load.
const BOOT: Duration = Duration::from_secs(120);

/// Waits until the server's console shows the guest's ready line; returns how long it took.
async fn wait_console(cred: &Path, name: &str) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let text = bins::skiff(cred, &["server", "console", name]).await;
        if text.contains(READY_LINE) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < BOOT,
            "the guest did not print {READY_LINE} within {BOOT:?}; console:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// Four workers: the tmux waits block one while the cluster runs on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_runs_a_real_guest_from_the_cockpit() {
    let test = "operator_runs_a_real_guest_from_the_cockpit";
    if !libvirt_reachable(test) {
        return;
    }
    let guest = test_guest().expect("building the test guest");
    let disk = boot_disk(&guest).expect("building the guest's boot disk");

    let mut spec = ClusterSpec::new(1, 1);
    spec.hypervisor = HypervisorKind::Libvirt;
    let c = TestCluster::start(spec).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("admin.credential");
    std::fs::write(&cred, c.cred.to_toml()).unwrap();

    // The CLI: the guest's disk becomes a master; the server's disk is a clone of it.
    let name = format!("cockpit-{}", std::process::id());
    let _guard = DomainGuard(name.clone());
    let disk_arg = disk.display().to_string();
    bins::skiff(&cred, &["image", "upload", "guest", &disk_arg]).await;
    bins::skiff(&cred, &["image", "master", "guest", "--wait"]).await;
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
            "--image",
            "guest",
            "--disk-gib",
            "1",
            "--wait",
        ],
    )
    .await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("shut off"));

    // The cockpit, in tmux: find the server, start it, see it running, read its console and
    // type into it, force it off (the guest has no ACPI daemon), see it stopped.
    let command = format!(
        "{} --cred {}",
        bins::path("skiff").display(),
        cred.display()
    );
    let tmux = Tmux::start("cockpit", 160, 45, &command, &[("TERM", "xterm-256color")])
        .expect("tmux (Debian's tmux)");
    tmux.wait_text("admin", LIMIT)
        .expect("the cockpit's header");
    tmux.keys(&[":"]).unwrap();
    tmux.type_text("srv").unwrap();
    tmux.keys(&["Enter"]).unwrap();
    tmux.wait_text(&name, LIMIT)
        .expect("the server in the servers view");
    tmux.keys(&["s"]).unwrap();
    tmux.wait_for("the start dialog", LIMIT, |s| {
        s.contains("Start server") && s.contains("y confirms")
    })
    .unwrap();
    tmux.keys(&["y"]).unwrap();
    let row = |screen: &str| -> String {
        screen
            .lines()
            .find(|l| l.contains(name.as_str()))
            .unwrap_or_default()
            .to_string()
    };
    let shows = |words: &'static [&'static str]| {
        let row = &row;
        move |screen: &str| {
            let r = row(screen);
            let mut rest = r.as_str();
            words.iter().all(|w| match rest.find(w) {
                Some(at) => {
                    rest = &rest[at + w.len()..];
                    true
                }
                None => false,
            })
        }
    };
    tmux.wait_for(
        "the server running",
        BOOT,
        shows(&["running", "running", "in-sync"]),
    )
    .unwrap();
    tmux.keys(&["c"]).unwrap();
    let started = std::time::Instant::now();
    tmux.wait_text(READY_LINE, BOOT)
        .expect("the guest's line in the console pane");
    eprintln!(
        "guest line in the cockpit's console {:?} after opening it",
        started.elapsed()
    );
    tmux.type_text("echo skiff-$((6*7))").unwrap();
    tmux.keys(&["Enter"]).unwrap();
    tmux.wait_text("skiff-42", LIMIT)
        .expect("the guest's answer");
    tmux.keys(&["C-]"]).unwrap();
    tmux.wait_text("servers", LIMIT).unwrap();
    tmux.keys(&["K"]).unwrap();
    tmux.wait_for("the force-off dialog", LIMIT, |s| {
        s.contains("Type the server's name")
    })
    .unwrap();
    tmux.type_text(&name).unwrap();
    tmux.keys(&["Enter"]).unwrap();
    tmux.wait_for("the server stopped", LIMIT, shows(&["stopped", "shutoff"]))
        .unwrap();
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("shut off"));
    tmux.keys(&["q"]).unwrap();
    tmux.wait_for("skiff to exit", LIMIT, |_| tmux.exited().unwrap_or(false))
        .unwrap();

    // Backed up while stopped, changed, restored: the disk is back as it was, and boots.
    let disk0 = c.dirs[0]
        .join("pools/local")
        .join(format!("{name}-disk0.qcow2"));
    assert!(qemu_io(&disk0, "write -P 0x5a 512M 64k"));
    bins::skiff(&cred, &["backup", "create", "--server", &name, "--wait"]).await;
    let listed: serde_json::Value =
        serde_json::from_str(&bins::skiff(&cred, &["backup", "list", "-o", "json"]).await).unwrap();
    let id = listed[0]["id"].as_u64().expect("a backup id");
    assert!(qemu_io(&disk0, "write -P 0x00 512M 64k"));
    bins::skiff(&cred, &["backup", "restore", &id.to_string(), "--wait"]).await;
    assert!(
        qemu_io(&disk0, "read -P 0x5a 512M 64k"),
        "the disk is restored"
    );
    bins::skiff(&cred, &["server", "start", &name, "--wait"]).await;
    wait_console(&cred, &name).await;
    bins::skiff(&cred, &["server", "destroy", &name, "--wait"]).await;
    c.shutdown().await;
}
