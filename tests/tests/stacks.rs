//! Stacks through the control API on an in-process 3-node cluster with the fake hypervisor:
//! install from a recipe (every server created and placed, owned by the installer), start and
//! stop all servers together, bad recipes refused with a clear message and nothing created,
//! who sees and may act on what, and remove.
//!
//! The three nodes run on one machine, so they gossip the same figures: placement is decided by
//! what the desired state already put on each node.

use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::images::{CreateImageRequest, ImageActionRequest};
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::api::stacks::{InstallStackRequest, Recipe, RecipeServer, StackAccepted};
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::api::users::{Method, TokenClient};
use skiff_cluster::state::servers::PowerState;
use skiff_cluster::state::{Quotas, UserRole};
use skiff_tests::clients::user_client;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(60);

fn api_error<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn server(name: &str, memory_mib: u64) -> RecipeServer {
    RecipeServer {
        name: name.into(),
        memory_mib,
        vcpus: 1,
        image: None,
        disk_gib: Some(1),
        pool: None,
        autostart: false,
        ha: false,
    }
}

fn install(name: &str, servers: Vec<RecipeServer>) -> InstallStackRequest {
    InstallStackRequest {
        name: name.into(),
        recipe: Recipe {
            description: "a web server and its database".into(),
            servers,
        },
        start: false,
    }
}

/// Waits for every task of `a` to end and asserts each succeeded, with the kind `kind`.
async fn all_done(api: &ApiClient, a: &StackAccepted, kind: &str) {
    for t in &a.tasks {
        let task = api.wait_task(t.task_id, LIMIT).await.expect("task");
        assert_eq!(
            (task.state, task.kind.as_str(), task.target.as_str()),
            (TaskState::Succeeded, kind, t.server.as_str()),
            "task {}: {:?} {:?}",
            task.id,
            task.result,
            task.log
        );
    }
}

/// What alice owns: her servers' and stacks' names.
async fn owned(api: &ApiClient) -> (Vec<String>, Vec<String>) {
    let servers = api.servers().await.unwrap();
    let stacks = api.stacks().await.unwrap();
    (
        servers.into_iter().map(|s| s.name).collect(),
        stacks.into_iter().map(|s| s.name).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_install_start_stop_refuse_and_remove_together() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let bob = user_client(&c, "bob", UserRole::User).await;
    let ro = user_client(&c, "ro", UserRole::ReadOnly).await;

    // An admin's master (visible to every user) on n0, for the web server's boot disk.
    let node0 = c.node(0).name.clone();
    let t = admin
        .create_image(&CreateImageRequest {
            pool: None,
            name: "debian-12".into(),
            size_gib: 1,
            node: Some(node0.clone()),
        })
        .await
        .unwrap();
    assert_eq!(
        admin.wait_task(t.task_id, LIMIT).await.unwrap().state,
        TaskState::Succeeded
    );
    let t = admin
        .image_action("debian-12", "master", &ImageActionRequest::default())
        .await
        .unwrap();
    assert_eq!(
        admin.wait_task(t.task_id, LIMIT).await.unwrap().state,
        TaskState::Succeeded
    );

    // Install: two servers, one task each, placed and owned by alice.
    let mut web = server("web", 256);
    web.image = Some("debian-12".into());
    web.disk_gib = Some(2);
    let a = alice
        .install_stack(&install("shop", vec![web, server("db", 256)]))
        .await
        .unwrap();
    assert_eq!(a.stack, "shop");
    let names: Vec<&str> = a.tasks.iter().map(|t| t.server.as_str()).collect();
    assert_eq!(names, ["shop-web", "shop-db"]);
    assert_eq!(a.tasks[1].task_id, a.tasks[0].task_id + 1);
    // The web server goes where its master is; the db sees it placed there and goes elsewhere.
    assert_eq!(a.tasks[0].node.as_deref(), Some(node0.as_str()));
    assert!(a.tasks[1].node.is_some());
    assert_ne!(a.tasks[1].node, a.tasks[0].node);
    all_done(&alice, &a, "server.create").await;
    for t in &a.tasks {
        let s = alice.server(&t.server).await.unwrap();
        assert_eq!((s.owner.as_str(), &s.node), ("alice", &t.node));
        assert_eq!(s.desired, PowerState::Stopped);
    }
    let web = alice.server("shop-web").await.unwrap();
    assert_eq!(web.spec.disks[0].image.as_deref(), Some("debian-12"));
    assert_eq!(web.spec.disks[0].size_gib, 2);
    let shown = alice.stack("shop").await.unwrap();
    assert_eq!(
        (shown.owner.as_str(), shown.description.as_str()),
        ("alice", "a web server and its database")
    );
    assert_eq!(shown.servers.len(), 2);
    let before = owned(&alice).await;
    assert_eq!(before.1, ["shop"]);

    // Start and stop move both.
    let a = alice.start_stack("shop").await.unwrap();
    assert_eq!(a.tasks.len(), 2);
    all_done(&alice, &a, "server.start").await;
    let shown = alice.stack("shop").await.unwrap();
    assert!(
        shown
            .servers
            .iter()
            .all(|s| s.desired == PowerState::Running),
        "{shown:?}"
    );
    let a = alice.stop_stack("shop", Some(5)).await.unwrap();
    all_done(&alice, &a, "server.shutdown").await;
    let shown = alice.stack("shop").await.unwrap();
    assert!(shown
        .servers
        .iter()
        .all(|s| s.desired == PowerState::Stopped));

    // Bad recipes: refused with a message naming the problem, and nothing is created.
    let token = admin.create_api_token("alice", "test", None).await.unwrap();
    let raw = TokenClient::new(c.cred.endpoints.clone(), &c.cred.ca_pem, &token.token).unwrap();
    let unknown = serde_json::json!({
        "name": "bad",
        "recipe": {"servers": [{"name": "web", "memory_mib": 128, "vcpus": 1, "colour": "red"}]}
    });
    let (status, _, message) = api_error(
        raw.call::<_, serde_json::Value>(Method::POST, "/stacks", Some(&unknown))
            .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("unknown field `colour`"), "{message}");

    let mut missing = server("web", 128);
    missing.image = Some("ubuntu".into());
    let taken = admin
        .create_server(&CreateServerRequest {
            name: "taken-web".into(),
            memory_mib: 64,
            vcpus: 1,
            disks: vec![],
            nics: vec![],
            boot_order: vec![],
            autostart: false,
            lock_to_node: None,
            node: None,
            ha: false,
            iso: None,
            start: false,
        })
        .await
        .unwrap();
    assert!(taken.task_id > 0);
    let cases: Vec<(InstallStackRequest, u16, &str)> = vec![
        (
            install("bad", vec![server("web", 128), server("web", 128)]),
            400,
            "servers[1] (\"web\"): name: \"web\" is also the name of servers[0]",
        ),
        (
            install("bad", vec![server("db", 128), missing]),
            400,
            "recipe servers[1] (bad-web): no image named \"ubuntu\"",
        ),
        (
            install("bad", vec![server("web", 0)]),
            400,
            "memory_mib must be between 16",
        ),
        (install("bad", vec![]), 400, "1 to 16 servers, not 0"),
        (
            install("Bad", vec![server("web", 128)]),
            400,
            "invalid stack name",
        ),
        (
            install("shop", vec![server("web", 128)]),
            409,
            "a stack named \"shop\" already exists",
        ),
        (
            install("taken", vec![server("db", 128), server("web", 128)]),
            409,
            "a server named \"taken-web\" already exists",
        ),
        (
            install("bad", vec![server("db", 128), server("web", 1 << 22)]),
            409,
            "recipe servers[1] (bad-web): no node can take the server",
        ),
    ];
    for (req, want, msg) in cases {
        let (status, code, message) = api_error(alice.install_stack(&req).await);
        assert_eq!(status, want, "{code}: {message}");
        assert!(message.contains(msg), "{message:?} should say {msg:?}");
        assert_eq!(owned(&alice).await, before, "{msg}: nothing is created");
    }
    // Over quota: the stack as a whole (each server would fit alone).
    admin
        .set_user_quotas(
            "alice",
            &Quotas {
                memory_mib: Some(512 + 300),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, code, message) = api_error(
        alice
            .install_stack(&install("bad", vec![server("web", 200), server("db", 200)]))
            .await,
    );
    assert_eq!(
        (status, code.as_str()),
        (409, "quota_exceeded"),
        "{message}"
    );
    assert!(
        message.contains("stack bad: alice's memory quota is 812 MiB: 512 in use, 400 more asked"),
        "{message}"
    );
    assert_eq!(owned(&alice).await, before);
    admin
        .set_user_quotas("alice", &Quotas::default())
        .await
        .unwrap();

    // Others: bob does not see alice's stack at all; the read-only user cannot act.
    assert!(bob.stacks().await.unwrap().is_empty());
    assert_eq!(api_error(bob.stack("shop").await).0, 404);
    assert_eq!(api_error(bob.start_stack("shop").await).0, 404);
    assert_eq!(api_error(bob.stop_stack("shop", None).await).0, 404);
    assert_eq!(api_error(bob.remove_stack("shop").await).0, 404);
    assert!(ro.stacks().await.unwrap().is_empty());
    assert_eq!(api_error(ro.start_stack("shop").await).0, 403);
    assert_eq!(api_error(ro.remove_stack("shop").await).0, 403);
    assert_eq!(
        api_error(
            ro.install_stack(&install("ro", vec![server("web", 64)]))
                .await
        )
        .0,
        403
    );
    // The admin sees every stack and may act on it.
    assert_eq!(admin.stack("shop").await.unwrap().owner, "alice");
    let a = admin.start_stack("shop").await.unwrap();
    all_done(&admin, &a, "server.start").await;

    // A server of a stack goes with its stack only.
    let (status, _, message) = api_error(alice.remove_server("shop-db").await);
    assert_eq!(status, 409);
    assert!(
        message.contains("server shop-db belongs to stack shop"),
        "{message}"
    );

    // Remove: the servers and the stack.
    let a = alice.remove_stack("shop").await.unwrap();
    let names: Vec<&str> = a.tasks.iter().map(|t| t.server.as_str()).collect();
    assert_eq!(names, ["shop-web", "shop-db"]);
    all_done(&alice, &a, "server.remove").await;
    assert_eq!(api_error(alice.stack("shop").await).0, 404);
    assert_eq!(api_error(alice.server("shop-web").await).0, 404);
    assert_eq!(owned(&alice).await, (vec![], vec![]));
    assert_eq!(api_error(alice.remove_stack("shop").await).0, 404);

    c.shutdown().await;
}
