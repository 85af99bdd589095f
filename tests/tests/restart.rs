//! Truth on restart (issue 4): the real `skiffd` process of a one-node cluster is killed with
//! SIGKILL while its tasks are under way — servers being created from a master on real libvirt
//! and images being made — and started again on the same data dir. Afterwards every task has
//! ended (finished, or failed with its reason), the tasks that were cut short say in their log
//! that they were resumed, and what exists matches what the cluster records exactly:
//! one libvirt domain per server and none more, one qcow2 file per image or server disk and none
//! more, and no temporary files.
//!
//! Without a reachable libvirtd the test fails with a clear message, unless
//! `SKIFF_SKIP_LIBVIRT=1`, which makes it print `SKIPPED: ...` and return.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_cluster::config::{Accelerator, HypervisorKind, NodeConfig};
use skiff_tests::bins;
use skiff_tests::guest::{libvirt_reachable, virsh, DomainGuard};
use skiff_tests::inprocess::free_port;

const LIMIT: Duration = Duration::from_secs(120);

/// A running `skiffd run`, killed with SIGKILL when dropped.
struct Agent(Child);

impl Agent {
    fn start(data: &Path, log: &Path) -> Agent {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(bins::path("skiffd"))
            .args(["run", "--data-dir"])
            .arg(data)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start skiffd");
        Agent(child)
    }

    /// `kill -9`, and waits for the process to be gone.
    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skiff ... -o json`, parsed; `None` while the node does not answer.
async fn json(cred: &Path, args: &[&str]) -> Option<Value> {
    let out = tokio::process::Command::new(bins::path("skiff"))
        .arg("--cred")
        .arg(cred)
        .args(args)
        .args(["-o", "json"])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Polls `what` until it returns `Some`; fails after [`LIMIT`] naming it.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str().map(String::from))
        .collect()
}

/// The files of the pool directory: (image names of `*.qcow2`, everything else that is not a
/// directory or a master flag).
fn pool_files(pool: &Path) -> (BTreeSet<String>, Vec<String>) {
    let mut images = BTreeSet::new();
    let mut other = Vec::new();
    for e in std::fs::read_dir(pool).expect("pool dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            continue;
        }
        match name.strip_suffix(".qcow2") {
            Some(stem) if !name.starts_with('.') => {
                images.insert(stem.to_string());
            }
            _ if name.ends_with(".master") => {}
            _ => other.push(name),
        }
    }
    (images, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_work_leaves_no_orphan_after_restart() {
    if !libvirt_reachable("kill_9_mid_work_leaves_no_orphan_after_restart") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("n1");
    let log = dir.path().join("skiffd.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let init = Command::new(bins::path("skiffd"))
        .args(["init", "--name", "n1", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .output()
        .expect("skiffd init");
    assert!(init.status.success(), "{init:?}");
    let cfg_path = data.join("node.toml");
    let mut cfg = NodeConfig::load(&cfg_path).expect("node.toml");
    cfg.compute.hypervisor = HypervisorKind::Libvirt;
    cfg.compute.accelerator = Accelerator::Tcg;
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();
    let cred = data.join("admin.credential");

    let agent = Agent::start(&data, &log);
    wait_for("the node to lead and report its figures", || async {
        let nodes = json(&cred, &["node", "list"]).await?;
        let n = &nodes.as_array()?.first()?.clone();
        (n["leader"] == true && n["memory_total"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;

    // A master for the servers' disks.
    bins::skiff(
        &cred,
        &["image", "create", "base", "--size-gib", "1", "--wait"],
    )
    .await;
    bins::skiff(&cred, &["image", "master", "base", "--wait"]).await;

    // Work under way: four servers cloned from the master and started, two images made.
    let prefix = format!("k9-{}", std::process::id());
    let servers: Vec<String> = (0..4).map(|i| format!("{prefix}-{i}")).collect();
    let _guards: Vec<DomainGuard> = servers.iter().map(|s| DomainGuard(s.clone())).collect();
    for s in &servers {
        bins::skiff(
            &cred,
            &[
                "server", "create", s, "--memory", "64", "--vcpus", "1", "--image", "base",
                "--start",
            ],
        )
        .await;
    }
    bins::skiff(&cred, &["image", "create", "blank", "--size-gib", "2"]).await;
    bins::skiff(&cred, &["image", "clone", "base", "child"]).await;

    // SIGKILL as soon as a server is being made (the longest work here: a disk cloned, a domain
    // defined, QEMU started).
    let running = wait_for("a running server.create task", || async {
        let tasks = json(&cred, &["task", "list"]).await?;
        let running: Vec<u64> = tasks
            .as_array()?
            .iter()
            .filter(|t| t["state"] == "running" && t["kind"] == "server.create")
            .filter_map(|t| t["id"].as_u64())
            .collect();
        (!running.is_empty()).then_some(running)
    })
    .await;
    agent.kill9();
    let agent = Agent::start(&data, &log);

    // Every task ends.
    let tasks = wait_for("every task to end", || async {
        let tasks = json(&cred, &["task", "list"]).await?;
        let all_final = tasks.as_array()?.iter().all(|t| {
            matches!(
                t["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        });
        all_final.then_some(tasks)
    })
    .await;
    for t in tasks.as_array().unwrap() {
        assert_eq!(
            t["state"], "succeeded",
            "every task finishes after the restart: {t}"
        );
    }
    // The tasks cut short say so. (One seen running may still have finished in the moment
    // before the kill landed; not all of them can have.)
    let resumed: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| running.contains(&t["id"].as_u64().unwrap_or(0)))
        .filter(|t| t["log"].to_string().contains("resumed"))
        .collect();
    assert!(
        !resumed.is_empty(),
        "none of the tasks running at the kill ({running:?}) says it was resumed: {tasks}"
    );

    // What exists is exactly what the cluster records.
    let listed_servers = names(&json(&cred, &["server", "list"]).await.expect("servers"));
    assert_eq!(
        listed_servers,
        servers.iter().cloned().collect::<BTreeSet<_>>()
    );
    let domains: BTreeSet<String> = virsh(&["list", "--all", "--name"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(String::from)
        .collect();
    assert_eq!(domains, listed_servers, "one domain per server, none more");
    for s in &servers {
        assert_eq!(virsh(&["domstate", s]).as_deref(), Some("running"), "{s}");
    }
    let images = names(&json(&cred, &["image", "list"]).await.expect("images"));
    let expected: BTreeSet<String> = images
        .iter()
        .cloned()
        .chain(servers.iter().map(|s| format!("{s}-disk0")))
        .collect();
    let (files, other) = pool_files(&data.join("pools/local"));
    assert_eq!(
        files, expected,
        "one file per image and server disk, none more"
    );
    assert!(other.is_empty(), "no temporary files are left: {other:?}");

    // Cleaned up through the cluster: no domain, no disk left.
    for s in &servers {
        bins::skiff(&cred, &["server", "remove", s, "--wait"]).await;
        assert_eq!(virsh(&["domstate", s]), None, "{s}");
    }
    drop(agent);
}
