//! Tasks and reconciliation on an in-process cluster whose nodes run the in-memory
//! `FakeHypervisor`: a task runs on the right node; a new leader finishes the task the old one
//! left running; an agent that restarts (and forgets its domains) is converged back; a node that
//! dies is shown as such; a cancelled task stays cancelled.

use std::sync::Arc;
use std::time::Duration;

use skiff_cluster::agentproto::{AgentErrorCode, AgentReply, AgentRequest, DomainPower};
use skiff_cluster::api::tasks::{Convergence, TaskState};
use skiff_cluster::state::servers::PowerState;
use skiff_cluster::state::{Command, CommandOutcome, ServerCommand, ServerSpec};
use skiff_cluster::transport::ALPN_AGENT;
use skiff_nodeagent::compute::fake::{self, FakeHypervisor};
use skiff_nodeagent::compute::Hypervisor;
use skiff_tests::inprocess::{wait_until, ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(40);

fn spec() -> ServerSpec {
    ServerSpec::new(256, 1)
}

/// Proposes a server command on the leader as the admin; returns the task it opened.
async fn server_command(c: &TestCluster, cmd: ServerCommand) -> u64 {
    let leader = c.wait_single_leader(LIMIT).await;
    match c
        .node(leader)
        .propose("user:admin", Command::Server(cmd))
        .await
    {
        Ok(CommandOutcome::TaskStarted { task_id }) => task_id,
        other => panic!("server command not accepted: {other:?}"),
    }
}

fn fake_of(c: &TestCluster, i: usize) -> Arc<FakeHypervisor> {
    fake::for_data_dir(&c.dirs[i]).expect("the node runs the fake hypervisor")
}

fn power_on(c: &TestCluster, i: usize, name: &str) -> Option<DomainPower> {
    fake_of(c, i)
        .list()
        .ok()?
        .into_iter()
        .find(|d| d.name == name)
        .map(|d| d.power)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_on_its_node_and_survives_the_loss_of_the_leader() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let target = (leader + 1) % 3;
    // Each change takes 1.5 s on the target: the create (define + start) is still under way
    // when the leader dies.
    fake_of(&c, target).set_delay(Duration::from_millis(1500));
    let id = server_command(
        &c,
        ServerCommand::Create {
            name: "web".into(),
            owner: "admin".into(),
            spec: spec(),
            node: c.names[target].clone(),
            start: true,
        },
    )
    .await;
    let client = c.client();
    wait_until(LIMIT, "the task to run", || async {
        client
            .task(id)
            .await
            .is_ok_and(|t| t.state == TaskState::Running)
    })
    .await;
    c.kill(leader).await;
    let task = client
        .wait_task(id, LIMIT)
        .await
        .expect("the new leader finishes the task");
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    assert_eq!(task.node.as_deref(), Some(c.names[target].as_str()));
    assert!(
        task.log.iter().any(|l| l.contains("resumed")),
        "the new leader took the task over: {:?}",
        task.log
    );
    assert_eq!(power_on(&c, target, "web"), Some(DomainPower::Running));
    let other = 3 - leader - target;
    assert_eq!(power_on(&c, other, "web"), None, "only its node runs it");
    // An agent answers garbage over QUIC with an error, and keeps serving.
    let new_leader = c.wait_single_leader(LIMIT).await;
    let ep = &c.node(new_leader).endpoint;
    for junk in [&b"garbage"[..], b"{\"request\":\"format_disks\"}", b""] {
        let reply = ep
            .request(
                c.addrs[target],
                ALPN_AGENT,
                junk.to_vec(),
                Duration::from_secs(5),
            )
            .await
            .expect("the agent answers");
        assert!(
            matches!(
                AgentReply::decode(&reply),
                Ok(AgentReply::Error {
                    code: AgentErrorCode::BadRequest,
                    ..
                })
            ),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
    let reply = ep
        .request(
            c.addrs[target],
            ALPN_AGENT,
            AgentRequest::Report.encode(),
            Duration::from_secs(5),
        )
        .await
        .expect("report");
    match AgentReply::decode(&reply) {
        Ok(AgentReply::Report(r)) => {
            assert_eq!(r.node, c.names[target]);
            assert_eq!(r.hypervisor, "fake");
            assert_eq!(r.domains.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    // Listing and showing through the API.
    let tasks = client.tasks().await.expect("task list");
    assert!(tasks.iter().any(|t| t.id == id));
    assert_eq!(
        client.task(999_999).await.unwrap_err().api_code(),
        Some("not_found")
    );
    // A finished task cannot be cancelled.
    assert_eq!(
        client.cancel_task(id).await.unwrap_err().api_code(),
        Some("task_finished")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_converge_after_restart_and_dead_nodes_show() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let target = (leader + 1) % 3;
    let id = server_command(
        &c,
        ServerCommand::Create {
            name: "db".into(),
            owner: "admin".into(),
            spec: spec(),
            node: c.names[target].clone(),
            start: true,
        },
    )
    .await;
    let client = c.client();
    let task = client.wait_task(id, LIMIT).await.expect("create");
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");

    // A guest crash is repaired by the drift loop.
    fake_of(&c, target).crash("db");
    wait_until(LIMIT, "the crashed server to run again", || async {
        power_on(&c, target, "db") == Some(DomainPower::Running)
    })
    .await;

    // A stray domain no server explains is removed.
    let stray = fake_of(&c, target);
    skiff_nodeagent::compute::agent_handler::ensure(
        stray.as_ref(),
        &skiff_cluster::state::ServerRecord {
            name: "stray".into(),
            owner: "nobody".into(),
            spec: spec(),
            node: None,
            desired: PowerState::Running,
            created_at: 0,
            generation: 1,
        },
        None,
    )
    .expect("stray domain");
    wait_until(LIMIT, "the stray domain to go", || async {
        power_on(&c, target, "stray").is_none()
    })
    .await;

    // The node dies: the server shows it.
    c.kill(target).await;
    wait_until(LIMIT, "the server to show its node down", || async {
        client.actual().await.is_ok_and(|v| {
            v.servers
                .iter()
                .any(|s| s.name == "db" && s.convergence == Convergence::NodeDead)
        })
    })
    .await;
    // It comes back with an empty hypervisor (the fake forgets): converged back to desired.
    c.restart(target).await;
    wait_until(
        LIMIT,
        "the restarted agent to run the server again",
        || async { power_on(&c, target, "db") == Some(DomainPower::Running) },
    )
    .await;
    wait_until(LIMIT, "the view to show it in sync", || async {
        client.actual().await.is_ok_and(|v| {
            v.servers
                .iter()
                .any(|s| s.name == "db" && s.convergence == Convergence::InSync)
        })
    })
    .await;

    // The node gossips how many servers it holds.
    wait_until(LIMIT, "the node list to count the server", || async {
        client.nodes().await.is_ok_and(|ns| {
            ns.iter()
                .any(|n| n.name == c.names[target] && n.servers == 1)
        })
    })
    .await;

    // A running task can be cancelled; its late finish is refused and it stays cancelled.
    fake_of(&c, target).set_delay(Duration::from_millis(1500));
    let id = server_command(&c, ServerCommand::Reboot { name: "db".into() }).await;
    wait_until(LIMIT, "the reboot to run", || async {
        client
            .task(id)
            .await
            .is_ok_and(|t| t.state == TaskState::Running)
    })
    .await;
    let t = client.cancel_task(id).await.expect("cancel");
    assert_eq!(t.state, TaskState::Cancelled);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = client.task(id).await.expect("task");
    assert_eq!(t.state, TaskState::Cancelled, "{t:?}");
    c.shutdown().await;
}
