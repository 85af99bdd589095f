//! What a running server shows, end to end on an in-process node running the in-memory
//! `FakeHypervisor`: live figures (what a "guest" uses is sampled by its agent, turned into rates,
//! reported to the leader, shown in `/api/v1/actual`, summed into the node's gossip, and streamed
//! to the cockpit as `servers` events), and its console output read through its agent.

use std::time::{Duration, Instant};

use skiff_cluster::api::events::ApiEvent;
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::api::tasks::TaskState;
use skiff_nodeagent::compute::fake;
use skiff_tests::inprocess::{wait_until, ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_servers_report_live_figures() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let api = c.client();
    let req: CreateServerRequest = serde_json::from_value(serde_json::json!({
        "name": "busy", "memory_mib": 256, "vcpus": 2, "start": true,
    }))
    .unwrap();
    let t = api.create_server(&req).await.unwrap();
    let done = api.wait_task(t.task_id, LIMIT).await.unwrap();
    assert_eq!(done.state, TaskState::Succeeded);

    // The guest keeps one core and a half busy and reads 1 MiB/s.
    let hv = fake::for_data_dir(&c.dirs[0]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burner = {
        let (hv, stop) = (hv.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let dt = last.elapsed();
                last = Instant::now();
                hv.add_usage(
                    "busy",
                    (dt.as_nanos() * 3 / 2) as u64,
                    (dt.as_secs_f64() * 1048576.0) as u64,
                );
            }
        })
    };

    let busy = || async {
        api.actual()
            .await
            .ok()
            .and_then(|v| v.servers.into_iter().find(|s| s.name == "busy"))
            .and_then(|s| s.figures)
            .filter(|f| f.cpu_milli > 0)
    };
    wait_until(LIMIT, "live figures in /api/v1/actual", || async {
        busy().await.is_some()
    })
    .await;
    // A full sampling window after the first figures.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let f = busy().await.expect("figures");
    assert_eq!(f.memory_mib, 256);
    // Sampling windows and the burner's ticks do not line up exactly: about 1500 and 1 MiB/s.
    assert!((1000..=2000).contains(&f.cpu_milli), "{f:?}");
    assert!(
        (512 * 1024..=1536 * 1024).contains(&f.disk_read_bps),
        "{f:?}"
    );

    // The node's gossip carries the sums.
    wait_until(LIMIT, "the servers' CPU in the node's gossip", || async {
        c.node(0)
            .gossip_nodes()
            .await
            .iter()
            .find(|g| g.name == "n0")
            .is_some_and(|g| {
                g.get_u64("servers_cpu_milli") > 0 && g.get_u64("servers_memory_mib") == 256
            })
    })
    .await;

    // The node's own CPU use is measured too (this test keeps the machine busy).
    wait_until(LIMIT, "the node's CPU use in its figures", || async {
        api.nodes()
            .await
            .is_ok_and(|ns| ns.iter().all(|n| n.cpu_milli > 0))
    })
    .await;

    // The cockpit's stream carries them too.
    let mut events = api.events().await.unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        assert!(Instant::now() < deadline, "no servers event");
        match tokio::time::timeout(LIMIT, events.next()).await {
            Ok(Some(Ok(ApiEvent::Servers { servers }))) => {
                if servers.iter().any(|s| s.name == "busy" && s.cpu_milli > 0) {
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended: {other:?}"),
        }
    }

    // Stopped: no figures any more.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    burner.await.unwrap();
    let t = api
        .server_action("busy", "destroy", &Default::default())
        .await
        .unwrap();
    api.wait_task(t.task_id, LIMIT).await.unwrap();
    wait_until(LIMIT, "no figures for a stopped server", || async {
        api.actual()
            .await
            .ok()
            .and_then(|v| v.servers.into_iter().find(|s| s.name == "busy"))
            .is_some_and(|s| s.figures.is_none())
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_output_is_read_through_the_agent() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let api = c.client();
    let req: CreateServerRequest = serde_json::from_value(serde_json::json!({
        "name": "chatty", "memory_mib": 128, "vcpus": 1, "start": true,
    }))
    .unwrap();
    let t = api.create_server(&req).await.unwrap();
    api.wait_task(t.task_id, LIMIT).await.unwrap();
    let hv = fake::for_data_dir(&c.dirs[0]).unwrap();
    hv.write_console("chatty", "booting\nlogin: \n");

    let all = api.server_console("chatty", None).await.unwrap();
    assert_eq!(
        (all.text.as_str(), all.truncated, all.node.as_str()),
        ("booting\nlogin: \n", false, "n0")
    );
    // A window that cuts a line starts at the next line.
    let end = api.server_console("chatty", Some(10)).await.unwrap();
    assert_eq!((end.text.as_str(), end.truncated), ("login: \n", true));

    let status = |r: Result<_, skiff_cluster::api::client::ClientError>| match r {
        Err(skiff_cluster::api::client::ClientError::Api { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(status(api.server_console("chatty", Some(0)).await), 400);
    assert_eq!(
        status(api.server_console("chatty", Some(1 << 30)).await),
        400
    );
    assert_eq!(status(api.server_console("nobody", None).await), 404);
    c.shutdown().await;
}
