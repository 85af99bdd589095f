//! Connections and the address plan through the control API and the `skiff` CLI on an in-process
//! 3-node cluster: addresses chosen by the leader, the external pool and quota, one interface per
//! connection, permissions, bad input that changes nothing, and survival of the leader's loss.

use std::net::Ipv4Addr;
use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::connections::{ConnectionView, CreateConnectionRequest, SetNetworkRequest};
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::state::servers::NicSpec;
use skiff_cluster::state::{ConnectionKind, Quotas, UserRole};
use skiff_tests::bins;
use skiff_tests::clients::{credential_for, user_client};
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(30);

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

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn server(name: &str, nics: &[&str]) -> CreateServerRequest {
    CreateServerRequest {
        name: name.into(),
        memory_mib: 64,
        vcpus: 1,
        disks: Vec::new(),
        nics: nics
            .iter()
            .map(|c| NicSpec {
                connection: Some(c.to_string()),
            })
            .collect(),
        boot_order: Vec::new(),
        autostart: false,
        lock_to_node: None,
        node: None,
        ha: false,
        iso: None,
        start: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_get_addresses_serve_one_interface_and_survive_the_leader() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    admin
        .add_user(
            "alice",
            UserRole::User,
            Quotas {
                external_ips: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let alice = ApiClient::new(&credential_for(&admin, &c.cred, "alice").await).unwrap();
    let bob = user_client(&c, "bob", UserRole::User).await;
    let viewer = user_client(&c, "viewer", UserRole::ReadOnly).await;

    // No external pool yet: an external IP is refused, naming the fix.
    let (status, code, msg) = api_error(
        alice
            .create_connection(&CreateConnectionRequest::new(
                "pub",
                ConnectionKind::ExternalIp,
            ))
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "address_taken"), "{msg}");
    assert!(msg.contains("skiff network set"), "{msg}");

    // Only an admin sets the pool; bad ranges are 400 and change nothing.
    let pool = |p: &[&str]| SetNetworkRequest {
        internal_cidr: None,
        external_pool: Some(p.iter().map(|s| s.to_string()).collect()),
    };
    let (status, _, _) = api_error(alice.set_network(&pool(&["198.18.50.10"])).await);
    assert_eq!(status, 403);
    for bad in [
        &["198.18.50.20-198.18.50.10"][..],
        &["nonsense"],
        &["198.18.50.1-198.18.50.5", "198.18.50.5"],
    ] {
        let (status, code, msg) = api_error(admin.set_network(&pool(bad)).await);
        assert_eq!(status, 400, "{bad:?}: {code} {msg}");
    }
    assert!(admin.network().await.unwrap().external_pool.is_empty());
    let net = admin
        .set_network(&pool(&["198.18.50.10-198.18.50.12"]))
        .await
        .unwrap();
    assert_eq!((net.external_total, net.external_used), (3, 0));
    assert_eq!(net.internal_gateway, ip("10.47.0.1"));

    // Alice: an internal IP and an IP mapping get the lowest free addresses.
    let internal = alice
        .create_connection(&CreateConnectionRequest::new(
            "lan",
            ConnectionKind::InternalIp,
        ))
        .await
        .unwrap();
    assert_eq!(internal.internal_ip, ip("10.47.0.2"));
    assert_eq!(internal.owner, "alice");
    assert!(internal.active);
    let mut map = CreateConnectionRequest::new("web", ConnectionKind::IpMapping);
    map.ports = vec![22, 443];
    let web = alice.create_connection(&map).await.unwrap();
    assert_eq!(
        (web.internal_ip, web.external_ip),
        (ip("10.47.0.3"), Some(ip("198.18.50.10")))
    );
    assert_eq!(web.ports, vec![22, 443]);

    // Her quota is one external address.
    let (status, code, msg) = api_error(
        alice
            .create_connection(&CreateConnectionRequest::new(
                "pub",
                ConnectionKind::ExternalIp,
            ))
            .await,
    );
    assert_eq!((status, code.as_str()), (409, "quota_exceeded"), "{msg}");

    // Bad input: 400, nothing created.
    let mut bad_ports = CreateConnectionRequest::new("p", ConnectionKind::InternalIp);
    bad_ports.ports = vec![80];
    let mut taken = CreateConnectionRequest::new("p", ConnectionKind::InternalIp);
    taken.internal_ip = Some(ip("10.47.0.2"));
    let mut outside = CreateConnectionRequest::new("p", ConnectionKind::Gateway);
    outside.internal_ip = Some(ip("192.0.2.1"));
    for (req, want) in [
        (
            CreateConnectionRequest::new("Bad Name", ConnectionKind::Gateway),
            (400, "bad_request"),
        ),
        (bad_ports, (400, "bad_request")),
        (taken, (409, "address_taken")),
        (outside, (409, "address_taken")),
        (
            CreateConnectionRequest::new("lan", ConnectionKind::Gateway),
            (409, "name_taken"),
        ),
    ] {
        let (status, code, msg) = api_error(alice.create_connection(&req).await);
        assert_eq!((status, code.as_str()), want, "{req:?}: {msg}");
    }
    assert_eq!(alice.connections().await.unwrap().len(), 2);

    // Permissions: bob sees none of alice's; read-only cannot act; an admin sees all.
    assert!(bob.connections().await.unwrap().is_empty());
    assert_eq!(api_error(bob.connection("lan").await).0, 404);
    assert_eq!(api_error(bob.remove_connection("lan").await).0, 404);
    assert_eq!(
        api_error(bob.set_connection_active("lan", false).await).0,
        404
    );
    let (status, _, _) = api_error(
        viewer
            .create_connection(&CreateConnectionRequest::new("v", ConnectionKind::Gateway))
            .await,
    );
    assert_eq!(status, 403);
    assert_eq!(admin.connections().await.unwrap().len(), 2);
    let mut for_bob = CreateConnectionRequest::new("bob-out", ConnectionKind::Gateway);
    for_bob.owner = Some("bob".into());
    assert_eq!(
        admin.create_connection(&for_bob).await.unwrap().owner,
        "bob"
    );
    let mut sneaky = CreateConnectionRequest::new("x", ConnectionKind::Gateway);
    sneaky.owner = Some("alice".into());
    assert_eq!(api_error(bob.create_connection(&sneaky).await).0, 403);

    // A server's interface takes a connection of its owner, one interface per connection.
    let (status, _, msg) = api_error(alice.create_server(&server("s0", &["bob-out"])).await);
    assert_eq!(status, 404, "{msg}");
    alice.create_server(&server("s1", &["web"])).await.unwrap();
    let (status, _, msg) = api_error(alice.create_server(&server("s2", &["web"])).await);
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("in use by server s1"), "{msg}");
    assert_eq!(
        alice.connection("web").await.unwrap().server.as_deref(),
        Some("s1")
    );
    let (status, _, msg) = api_error(alice.remove_connection("web").await);
    assert_eq!(status, 409, "{msg}");
    assert!(
        !alice
            .set_connection_active("web", false)
            .await
            .unwrap()
            .active
    );

    // The leader dies: the new one has every connection with the same addresses.
    let before: Vec<ConnectionView> = admin.connections().await.unwrap();
    let leader = c.wait_single_leader(LIMIT).await;
    c.kill(leader).await;
    c.wait_single_leader(LIMIT).await;
    let after = admin.connections().await.unwrap();
    assert_eq!(before, after);

    // The CLI, for scripts: JSON out, and the same refusals with a non-zero exit.
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("admin.credential");
    std::fs::write(&cred, c.cred.to_toml()).unwrap();
    let out = bins::skiff(
        &cred,
        &[
            "connection",
            "create",
            "gw",
            "--kind",
            "gateway",
            "-o",
            "json",
        ],
    )
    .await;
    let gw: ConnectionView = serde_json::from_str(&out).unwrap();
    assert_eq!(gw.kind, ConnectionKind::Gateway);
    assert_eq!(gw.internal_ip, ip("10.47.0.5"));
    let listed: Vec<ConnectionView> =
        serde_json::from_str(&bins::skiff(&cred, &["connection", "list", "-o", "json"]).await)
            .unwrap();
    assert_eq!(listed.len(), 4);
    let table = bins::skiff(&cred, &["network", "show"]).await;
    assert!(table.contains("198.18.50.10-198.18.50.12"), "{table}");
    bins::skiff(&cred, &["connection", "remove", "gw"]).await;
    let refused = tokio::process::Command::new(bins::path("skiff"))
        .arg("--cred")
        .arg(&cred)
        .args(["connection", "remove", "web"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("in use by server s1"), "{err}");
    c.shutdown().await;
}
