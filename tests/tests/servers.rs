//! Servers through the control API on an in-process 3-node cluster: create/list/show/remove,
//! placement by the scheduler, lock to node, maintenance, refusals per node, quotas, evacuation,
//! and concurrent creates of one name.
//!
//! The three nodes run on one machine, so they gossip the same figures: placement is decided by
//! what the desired state already put on each node, then by name.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_cluster::api::client::ClientError;
use skiff_cluster::api::servers::{CreateServerRequest, ServerActionRequest};
use skiff_cluster::state::{Command, Quotas, UserCommand};
use skiff_tests::inprocess::{wait_until, ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(30);

fn req(name: &str, memory_mib: u64, vcpus: u32) -> CreateServerRequest {
    CreateServerRequest {
        name: name.into(),
        memory_mib,
        vcpus,
        disks: Vec::new(),
        nics: Vec::new(),
        boot_order: Vec::new(),
        autostart: false,
        lock_to_node: None,
        node: None,
        ha: false,
        iso: None,
        start: false,
    }
}

/// Refusal codes without underscores (`name_taken` and `nametaken` alike).
fn norm(code: &str) -> String {
    code.replace('_', "")
}

fn api_error(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_placed_operated_and_refused_with_reasons() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let api = c.client();
    c.wait_figures(LIMIT).await;
    let cores = api.nodes().await.unwrap()[0].cores;

    // Placement: equal machines, so each new server goes where the least is placed.
    let mut placed = BTreeSet::new();
    for name in ["a1", "a2", "a3"] {
        let t = api.create_server(&req(name, 256, 1)).await.expect(name);
        assert!(t.task_id > 0);
        placed.insert(t.node.expect("placed"));
    }
    assert_eq!(placed.len(), 3, "one server per node: {placed:?}");

    // List and show.
    let list = api.servers().await.unwrap();
    assert_eq!(
        list.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    let a1 = api.server("a1").await.unwrap();
    assert_eq!(
        (a1.owner.as_str(), a1.spec.memory_mib, a1.node.as_deref()),
        ("admin", 256, Some("n0"))
    );
    assert_eq!(api_error(api.server("nope").await).0, 404);

    // Lock to node: n2 although n0 has as much free.
    let mut locked = req("locked", 256, 1);
    locked.lock_to_node = Some("n2".into());
    assert_eq!(
        api.create_server(&locked).await.unwrap().node.as_deref(),
        Some("n2")
    );

    // Maintenance: nothing new lands on n1; a server locked to it is refused with the reason.
    api.set_maintenance("n1", true).await.unwrap();
    for i in 0..3 {
        let t = api
            .create_server(&req(&format!("m{i}"), 128, 1))
            .await
            .unwrap();
        assert_ne!(t.node.as_deref(), Some("n1"));
    }
    let mut to_n1 = req("to-n1", 128, 1);
    to_n1.lock_to_node = Some("n1".into());
    let (status, code, message) = api_error(api.create_server(&to_n1).await);
    assert_eq!((status, code.as_str()), (409, "no_placement"));
    assert_eq!(message, "no node can take the server: n1: in maintenance");

    // Nothing fits: one reason per node.
    let big = cores * 2 + 1;
    let (status, code, message) = api_error(api.create_server(&req("big", 128, big)).await);
    assert_eq!((status, code.as_str()), (409, "no_placement"));
    assert!(message.contains("n1: in maintenance"), "{message}");
    for n in ["n0", "n2"] {
        assert!(
            message.contains(&format!("{n}: ")) && message.contains(&format!("{big} needed")),
            "{message}"
        );
    }
    let (status, _, message) = api_error(api.create_server(&req("huge", 1 << 22, 1)).await);
    assert_eq!(status, 409);
    assert!(
        message.contains("MiB memory free, 4194304 needed"),
        "{message}"
    );
    api.set_maintenance("n1", false).await.unwrap();

    // Bad input is a 400 and leaves nothing behind.
    for bad in [
        req("Bad Name", 128, 1),
        req("zero", 0, 1),
        req("nocpu", 128, 0),
    ] {
        assert_eq!(api_error(api.create_server(&bad).await).0, 400, "{bad:?}");
    }

    // Operations: each answers with a task.
    let started = api
        .server_action("a1", "start", &ServerActionRequest::default())
        .await
        .unwrap();
    let shut = api
        .server_action(
            "a1",
            "shutdown",
            &ServerActionRequest {
                force_after_secs: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(shut.task_id > started.task_id);
    let (status, code, _) = api_error(
        api.server_action("a1", "resume", &ServerActionRequest::default())
            .await,
    );
    assert_eq!((status, norm(&code).as_str()), (409, "invalidstate"));
    assert_eq!(
        api_error(
            api.server_action("a1", "explode", &ServerActionRequest::default())
                .await
        )
        .0,
        404
    );
    let moved = api
        .server_action(
            "a1",
            "move",
            &ServerActionRequest {
                to: Some("n1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.node.as_deref(), Some("n1"));
    assert_eq!(api.server("a1").await.unwrap().node.as_deref(), Some("n1"));

    // Quotas, set through the leader directly: admin may take 1 GiB of memory in all.
    let used: u64 = api
        .servers()
        .await
        .unwrap()
        .iter()
        .map(|s| s.spec.memory_mib)
        .sum();
    c.node(leader)
        .propose(
            "user:admin",
            Command::User(UserCommand::SetQuotas {
                name: "admin".into(),
                quotas: Quotas {
                    memory_mib: Some(used + 100),
                    ..Default::default()
                },
            }),
        )
        .await
        .unwrap();
    let (status, code, message) = api_error(api.create_server(&req("over", 128, 1)).await);
    assert_eq!(
        (status, norm(&code).as_str()),
        (409, "quotaexceeded"),
        "{message}"
    );
    assert!(message.contains("memory quota"), "{message}");
    api.create_server(&req("under", 100, 1)).await.unwrap();
    c.node(leader)
        .propose(
            "user:admin",
            Command::User(UserCommand::SetQuotas {
                name: "admin".into(),
                quotas: Quotas::default(),
            }),
        )
        .await
        .unwrap();

    // Concurrent creates of one name: one winner, one clear 409.
    let (other, twin) = (c.client(), req("twin", 128, 1));
    let (x, y) = tokio::join!(api.create_server(&twin), other.create_server(&twin));
    let (ok, err) = match (x, y) {
        (Ok(t), Err(e)) | (Err(e), Ok(t)) => (t, e),
        other => panic!("expected one winner: {other:?}"),
    };
    assert!(ok.task_id > 0);
    let (status, code, message) = api_error(Err::<(), _>(err));
    assert_eq!(status, 409);
    assert_eq!(norm(&code), "nametaken", "{message}");
    assert!(message.contains("\"twin\" already exists"), "{message}");

    // Remove.
    let t = api.remove_server("a2").await.unwrap();
    assert!(t.task_id > 0);
    assert_eq!(api_error(api.server("a2").await).0, 404);
    assert_eq!(api_error(api.remove_server("a2").await).0, 404);
    assert_eq!(api_error(api.set_maintenance("n9", true).await).0, 404);
    // Two vCPUs per core and small machines: make room before evacuating.
    for name in ["under", "twin"] {
        api.remove_server(name).await.unwrap();
    }

    // Evacuation: n0's servers move elsewhere and n0 goes into maintenance.
    let on_n0: BTreeSet<String> = api
        .servers()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.node.as_deref() == Some("n0"))
        .map(|s| s.name)
        .collect();
    assert!(!on_n0.is_empty());
    let ev = api.evacuate("n0").await.unwrap();
    assert_eq!(
        ev.moves
            .iter()
            .map(|m| m.server.clone())
            .collect::<BTreeSet<_>>(),
        on_n0
    );
    assert!(ev.moves.iter().all(|m| m.to != "n0"));
    let ids: BTreeSet<u64> = ev.moves.iter().map(|m| m.task_id).collect();
    assert_eq!(ids.len(), ev.moves.len(), "one task per move");
    assert!(api
        .servers()
        .await
        .unwrap()
        .iter()
        .all(|s| s.node.as_deref() != Some("n0")));
    let mut only_n0 = req("only-n0", 128, 1);
    only_n0.node = Some("n0".into());
    assert_eq!(api_error(api.create_server(&only_n0).await).0, 409);
    api.set_maintenance("n0", false).await.unwrap();
    assert_eq!(
        api.create_server(&only_n0).await.unwrap().node.as_deref(),
        Some("n0")
    );

    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_compute_disabled_get_no_servers() {
    let mut spec = ClusterSpec::new(3, 3);
    spec.compute_disabled = vec![1];
    let c = TestCluster::start(spec).await;
    c.wait_single_leader(LIMIT).await;
    let api = c.client();
    c.wait_figures(LIMIT).await;
    for i in 0..4 {
        let t = api
            .create_server(&req(&format!("s{i}"), 128, 1))
            .await
            .unwrap();
        assert_ne!(t.node.as_deref(), Some("n1"), "s{i} went to n1");
    }
    let mut to_n1 = req("to-n1", 128, 1);
    to_n1.lock_to_node = Some("n1".into());
    let (status, code, message) = api_error(api.create_server(&to_n1).await);
    assert_eq!((status, code.as_str()), (409, "no_placement"));
    assert_eq!(message, "no node can take the server: n1: compute disabled");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_act_on_their_own_servers_only() {
    use skiff_cluster::api::servers::{ServerView, TaskAccepted};
    use skiff_cluster::api::users::Method;
    use skiff_cluster::api::users::TokenClient;
    use skiff_cluster::state::UserRole;

    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    let admin = c.client();
    wait_until(LIMIT, "figures", || async {
        admin
            .nodes()
            .await
            .map(|ns| ns.iter().all(|n| n.memory_total > 0))
            .unwrap_or(false)
    })
    .await;
    let mut clients = Vec::new();
    for (name, role) in [
        ("alice", UserRole::User),
        ("bob", UserRole::User),
        ("ro", UserRole::ReadOnly),
    ] {
        admin
            .add_user(name, role, Quotas::default())
            .await
            .expect(name);
        let t = admin.create_api_token(name, "test", None).await.unwrap();
        clients.push(TokenClient::new(c.cred.endpoints.clone(), &c.cred.ca_pem, &t.token).unwrap());
    }
    let (alice, bob, ro) = (&clients[0], &clients[1], &clients[2]);
    async fn list(cl: &TokenClient) -> Result<Vec<ServerView>, ClientError> {
        cl.call::<(), _>(Method::GET, "/servers", None).await
    }
    let none: Option<&()> = None;

    let t: TaskAccepted = alice
        .call(Method::POST, "/servers", Some(&req("alice-1", 128, 1)))
        .await
        .unwrap();
    assert!(t.task_id > 0);
    admin.create_server(&req("admin-1", 128, 1)).await.unwrap();

    // Lists: own for users and read-only users, all for the admin.
    let names = |v: Vec<ServerView>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(list(alice).await.unwrap()), ["alice-1"]);
    assert!(list(bob).await.unwrap().is_empty());
    assert!(list(ro).await.unwrap().is_empty());
    assert_eq!(
        names(admin.servers().await.unwrap()),
        ["admin-1", "alice-1"]
    );
    assert_eq!(admin.server("alice-1").await.unwrap().owner, "alice");

    // Another user's server does not exist for bob; read-only users cannot act at all.
    for (cl, method, path, want) in [
        (bob, Method::GET, "/servers/alice-1", 404),
        (bob, Method::POST, "/servers/alice-1/start", 404),
        (bob, Method::DELETE, "/servers/alice-1", 404),
        (ro, Method::GET, "/servers/alice-1", 404),
        (ro, Method::POST, "/servers/alice-1/start", 403),
        (alice, Method::GET, "/servers/admin-1", 404),
        (alice, Method::POST, "/nodes/n0/maintenance", 403),
        (alice, Method::POST, "/nodes/n0/evacuate", 403),
    ] {
        let body = serde_json::json!({});
        let body = (method != Method::GET && method != Method::DELETE).then_some(&body);
        let got = cl
            .call::<serde_json::Value, serde_json::Value>(method.clone(), path, body)
            .await;
        assert_eq!(api_error(got).0, want, "{method} {path}");
    }
    let got = ro
        .call::<CreateServerRequest, TaskAccepted>(
            Method::POST,
            "/servers",
            Some(&req("ro-1", 128, 1)),
        )
        .await;
    assert_eq!(api_error(got).0, 403);

    // The owner and the admin act.
    let _: TaskAccepted = alice
        .call(
            Method::POST,
            "/servers/alice-1/start",
            Some(&serde_json::json!({})),
        )
        .await
        .unwrap();
    admin
        .server_action("alice-1", "reboot", &ServerActionRequest::default())
        .await
        .unwrap();
    let _: TaskAccepted = alice
        .call::<(), _>(Method::DELETE, "/servers/alice-1", none)
        .await
        .unwrap();
    assert!(list(alice).await.unwrap().is_empty());
    c.shutdown().await;
}
