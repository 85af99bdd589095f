//! High availability with fencing, on an in-process 4-node cluster running the in-memory
//! `FakeHypervisor`: a compute node cut off from the others powers off its highly available
//! server when its lease runs out, and only then does the leader restart that server on another
//! node; a server not marked highly available stays where it was; when the partition heals, the
//! stale copy on the old node is removed.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::config::HaSettings;
use skiff_nodeagent::compute::fake::{self, FakeHypervisor};
use skiff_nodeagent::compute::Hypervisor;
use skiff_tests::inprocess::{wait_until, ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(40);

fn fake_of(c: &TestCluster, i: usize) -> Arc<FakeHypervisor> {
    fake::for_data_dir(&c.dirs[i]).expect("the node runs the fake hypervisor")
}

fn power(h: &FakeHypervisor, name: &str) -> Option<DomainPower> {
    h.list()
        .ok()?
        .into_iter()
        .find(|d| d.name == name)
        .map(|d| d.power)
}

fn request(name: &str, ha: bool) -> CreateServerRequest {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "memory_mib": 128,
        "vcpus": 1,
        "ha": ha,
        "node": "n3",
        "start": true,
    }))
    .expect("a valid create request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_node_fences_itself_before_its_ha_server_restarts_elsewhere() {
    let mut spec = ClusterSpec::new(4, 3);
    spec.ha = HaSettings {
        fence_after_secs: 2,
    };
    let c = TestCluster::start(spec).await;
    c.wait_single_leader(LIMIT).await;
    let api = c.client();
    c.wait_figures(LIMIT).await;

    // Two servers on n3: one highly available (no disks, so nothing ties it to n3), one not.
    for (name, ha) in [("web", true), ("db", false)] {
        let t = api.create_server(&request(name, ha)).await.expect(name);
        assert_eq!(t.node.as_deref(), Some("n3"));
        let done = api
            .wait_task(t.task_id, LIMIT)
            .await
            .expect("create finishes");
        assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    }
    let n3 = fake_of(&c, 3);
    assert_eq!(power(&n3, "web"), Some(DomainPower::Running));
    assert_eq!(power(&n3, "db"), Some(DomainPower::Running));
    // n3 holds a lease while it can reach the leader.
    wait_until(LIMIT, "n3 to hold an HA lease", || async {
        c.node(3).fencing.holds_lease()
    })
    .await;

    // Cut n3 off. It fences its HA server (and only that one) when its lease runs out...
    c.partition(&[3], &[0, 1, 2]);
    let fenced_after = wait_until(LIMIT, "n3 to fence web", || async {
        !c.node(3).fencing.fenced().is_empty()
    })
    .await;
    assert_eq!(c.node(3).fencing.fenced(), vec!["web".to_string()]);
    assert_eq!(power(&n3, "web"), Some(DomainPower::Shutoff));
    assert_eq!(power(&n3, "db"), Some(DomainPower::Running), "db is not HA");
    eprintln!("n3 fenced web {fenced_after:?} after the partition");

    // ...and only then is it restarted on another node, by the leader.
    let moved_after = wait_until(LIMIT, "web to run on another node", || async {
        match api.server("web").await {
            Ok(s) if s.node.as_deref() != Some("n3") => {
                let i: usize = s.node.as_deref().unwrap_or("n?")[1..].parse().unwrap_or(9);
                i < 3 && power(&fake_of(&c, i), "web") == Some(DomainPower::Running)
            }
            _ => false,
        }
    })
    .await;
    eprintln!("web ran elsewhere {moved_after:?} after n3 fenced it");
    assert_eq!(power(&n3, "web"), Some(DomainPower::Shutoff), "never twice");
    let db = api.server("db").await.unwrap();
    assert_eq!(
        db.node.as_deref(),
        Some("n3"),
        "a server not marked HA stays"
    );

    // The partition heals: the stale copy on n3 is removed; db keeps running there.
    c.heal();
    wait_until(
        LIMIT,
        "the stale copy of web on n3 to be removed",
        || async { power(&n3, "web").is_none() },
    )
    .await;
    assert_eq!(power(&n3, "db"), Some(DomainPower::Running));
    c.shutdown().await;
}
