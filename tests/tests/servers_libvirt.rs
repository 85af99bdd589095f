//! End to end through the real parts: a one-node cluster whose agent drives libvirt at
//! `qemu:///system` (TCG guests). A server created through the API gets a real qcow2 disk in the
//! node-local pool and a real QEMU domain; it is powered off and on through the API, and removing
//! it removes both the domain and the disk.
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use skiff_cluster::api::client::ApiClient;
use skiff_cluster::api::servers::{CreateServerRequest, ServerActionRequest};
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::config::HypervisorKind;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const URI: &str = "qemu:///system";
const LIMIT: Duration = Duration::from_secs(90);

fn virsh(args: &[&str]) -> Option<String> {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether libvirt answers; panics with how to fix it unless `SKIFF_SKIP_LIBVIRT=1`.
fn libvirt_reachable(test: &str) -> bool {
    if virsh(&["version"]).is_some() {
        return true;
    }
    if std::env::var("SKIFF_SKIP_LIBVIRT").as_deref() == Ok("1") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test}: libvirt is not reachable at {URI}; SKIFF_SKIP_LIBVIRT=1"
        );
        return false;
    }
    panic!(
        "{test}: libvirt is not reachable at {URI}: start the daemons (`virtlogd -d; libvirtd -d`, \
         as .ci/run does) or set SKIFF_SKIP_LIBVIRT=1 to skip this test"
    );
}

/// Destroys and undefines the domain when the test ends, passed or failed.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = virsh(&["destroy", &self.0]);
        let _ = virsh(&["undefine", &self.0]);
    }
}

async fn run(api: &ApiClient, task: u64) {
    let done = api.wait_task(task, LIMIT).await.expect("the task ends");
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_made_through_the_api_are_libvirt_domains_with_qcow2_disks() {
    if !libvirt_reachable("servers_made_through_the_api_are_libvirt_domains_with_qcow2_disks") {
        return;
    }
    let mut spec = ClusterSpec::new(1, 1);
    spec.hypervisor = HypervisorKind::Libvirt;
    let c = TestCluster::start(spec).await;
    c.wait_single_leader(LIMIT).await;
    let api = c.client();
    c.wait_figures(LIMIT).await;

    let name = format!("e2e-{}", std::process::id());
    let _guard = Guard(name.clone());
    let req: CreateServerRequest = serde_json::from_value(serde_json::json!({
        "name": name,
        "memory_mib": 128,
        "vcpus": 1,
        "disks": [{"size_gib": 1}],
        "start": true,
    }))
    .expect("a valid request");
    let t = api.create_server(&req).await.expect("create");
    run(&api, t.task_id).await;

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

    // Powered off and on again through the API.
    let off = api
        .server_action(&name, "destroy", &ServerActionRequest::default())
        .await
        .expect("destroy");
    run(&api, off.task_id).await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("shut off"));
    let on = api
        .server_action(&name, "start", &ServerActionRequest::default())
        .await
        .expect("start");
    run(&api, on.task_id).await;
    assert_eq!(virsh(&["domstate", &name]).as_deref(), Some("running"));

    // Removed: no domain, no disk.
    let rm = api.remove_server(&name).await.expect("remove");
    run(&api, rm.task_id).await;
    assert_eq!(virsh(&["domstate", &name]), None, "the domain is gone");
    assert!(!disk.exists(), "the disk is deleted");
    c.shutdown().await;
}
