//! The live event stream (`GET /api/v1/events`) on an in-process 3-node cluster: a user sees the
//! audit record of their write and their task's events up to its end; another user sees none of
//! it; node figures arrive; the stream ends when the leader dies and a new one is reached.

use std::time::Duration;

use skiff_cluster::api::events::{ApiEvent, EventStream};
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::state::UserRole;
use skiff_tests::clients::user_client;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(40);

fn req(name: &str) -> CreateServerRequest {
    CreateServerRequest {
        name: name.into(),
        memory_mib: 128,
        vcpus: 1,
        disks: Vec::new(),
        nics: Vec::new(),
        boot_order: Vec::new(),
        autostart: false,
        lock_to_node: None,
        node: None,
        ha: false,
        iso: None,
        start: true,
    }
}

/// The next event within `limit` (`None`: the stream ended; panics on silence or an error).
async fn next(s: &mut EventStream, limit: Duration) -> Option<ApiEvent> {
    match tokio::time::timeout(limit, s.next()).await {
        Ok(Some(Ok(ev))) => Some(ev),
        Ok(Some(Err(e))) => panic!("event stream error: {e}"),
        Ok(None) => None,
        Err(_) => panic!("no event within {limit:?}"),
    }
}

/// Whether an event is about server `name` (or a task on it).
fn mentions(ev: &ApiEvent, name: &str) -> bool {
    match ev {
        ApiEvent::State { records } => records.iter().any(|r| r.target == name),
        ApiEvent::Task { task } => task.target == name,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_per_user_and_follow_the_leader() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let bob = user_client(&c, "bob", UserRole::User).await;

    let mut alice_ev = alice.events().await.expect("alice subscribes");
    let mut bob_ev = bob.events().await.expect("bob subscribes");
    let mut admin_ev = admin.events().await.expect("admin subscribes");

    let t = alice.create_server(&req("alice-web")).await.unwrap();

    // Alice: the audit record of her create, then her task up to its end.
    let (mut saw_record, mut saw_running, mut saw_nodes) = (false, false, false);
    let end = loop {
        let ev = next(&mut alice_ev, LIMIT).await.expect("stream open");
        match ev {
            ApiEvent::State { records } => {
                for r in records {
                    if r.op == "server.create" && r.target == "alice-web" {
                        assert_eq!(r.actor, "user:alice");
                        assert_eq!(r.result, "ok");
                        saw_record = true;
                    }
                }
            }
            ApiEvent::Task { task } => {
                assert_eq!(task.owner, "alice");
                assert_eq!(task.id, t.task_id);
                if task.state == TaskState::Running {
                    saw_running = true;
                }
                if task.state.is_final() {
                    break task;
                }
            }
            ApiEvent::Nodes { nodes } => {
                assert_eq!(nodes.len(), 3);
                saw_nodes = true;
            }
            ApiEvent::Servers { servers } => {
                // Alice sees the figures of her own servers only.
                assert!(
                    servers.iter().all(|f| f.name.starts_with("alice-")),
                    "{servers:?}"
                );
            }
            ApiEvent::Lagged | ApiEvent::Unknown => {}
        }
    };
    assert_eq!(end.state, TaskState::Succeeded, "{end:?}");
    assert!(saw_record, "alice saw the audit record of her create");
    assert!(saw_running || end.log.len() > 1, "{end:?}");
    while !saw_nodes {
        if let Some(ApiEvent::Nodes { .. }) = next(&mut alice_ev, LIMIT).await {
            saw_nodes = true;
        }
    }

    // The admin saw alice's write.
    let mut admin_saw = false;
    while !admin_saw {
        let ev = next(&mut admin_ev, LIMIT).await.expect("admin stream open");
        admin_saw = mentions(&ev, "alice-web");
    }

    // Bob saw nothing of it: what he got until two node figures came are figures only.
    let mut figures = 0;
    while figures < 2 {
        let ev = next(&mut bob_ev, LIMIT).await.expect("bob stream open");
        assert!(!mentions(&ev, "alice-web"), "bob saw {ev:?}");
        assert!(
            !matches!(ev, ApiEvent::State { .. } | ApiEvent::Task { .. }),
            "bob saw {ev:?}"
        );
        if matches!(ev, ApiEvent::Nodes { .. }) {
            figures += 1;
        }
    }

    // The leader dies: the stream ends; the client reconnects to the new leader.
    let old = alice_ev.endpoint().to_owned();
    c.kill(leader).await;
    let ended = tokio::time::timeout(LIMIT, async {
        while let Some(Ok(_)) = alice_ev.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end with its leader");
    c.wait_single_leader(LIMIT).await;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut again = loop {
        match alice.events().await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("reconnecting: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no stream on the new leader: {e}"),
        }
    };
    assert_ne!(again.endpoint(), old);
    let t2 = alice.create_server(&req("alice-two")).await.unwrap();
    loop {
        match next(&mut again, LIMIT).await.expect("new stream open") {
            ApiEvent::Task { task } if task.id == t2.task_id && task.state.is_final() => {
                assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
                break;
            }
            _ => {}
        }
    }
    c.shutdown().await;
}
