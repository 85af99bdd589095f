//! In-process clusters over real QUIC on 127.0.0.1: formation, election, failover, trust,
//! restarts and partitions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_cluster::identity::{self, CertKind, NodeIdentity};
use skiff_cluster::tls::TlsContext;
use skiff_cluster::transport::{QuicEndpoint, TransportError, ALPN_GOSSIP, ALPN_JOIN, ALPN_RAFT};
use skiff_nodeagent::supervisor::Transition;
use skiff_tests::inprocess::{free_port, wait_until, ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(30);

async fn forms_and_elects_one_leader(n: usize) {
    let c = TestCluster::start(ClusterSpec::new(n, n)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let nodes = c.client().nodes().await.expect("node list");
    assert_eq!(nodes.len(), n);
    assert!(nodes.iter().all(|v| v.alive), "{nodes:?}");
    assert!(nodes.iter().all(|v| v.voter), "{nodes:?}");
    let leaders: Vec<_> = nodes.iter().filter(|v| v.leader).collect();
    assert_eq!(leaders.len(), 1, "{nodes:?}");
    assert_eq!(leaders[0].name, c.names[leader]);
    // Every node gossips the same term, the leader's.
    let term = c.node(leader).serving_term().unwrap();
    wait_until(LIMIT, "every node to know the term", || async {
        c.client()
            .nodes()
            .await
            .map(|ns| ns.iter().all(|v| v.term == term))
            .unwrap_or(false)
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_and_elect_exactly_one_leader() {
    forms_and_elects_one_leader(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_and_elect_exactly_one_leader() {
    forms_and_elects_one_leader(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let old = c.wait_single_leader(LIMIT).await;
    let old_term = c.node(old).serving_term().unwrap();
    c.kill(old).await;
    let took = wait_until(LIMIT, "a new leader", || async {
        c.serving().len() == 1 && c.serving()[0] != old
    })
    .await;
    eprintln!("new leader after {took:?}");
    let new = c.serving()[0];
    assert!(c.node(new).serving_term().unwrap() > old_term);
    // The API, reached through any endpoint, names the new leader and sees the old one dead.
    wait_until(LIMIT, "the node list to show the failover", || async {
        match c.client().nodes().await {
            Ok(ns) => {
                ns.iter().any(|v| v.name == c.names[new] && v.leader)
                    && ns
                        .iter()
                        .any(|v| v.name == c.names[old] && !v.alive && !v.leader)
            }
            Err(_) => false,
        }
    })
    .await;
    // The old leader comes back as a follower with its identity and state.
    c.restart(old).await;
    wait_until(LIMIT, "the old leader to rejoin", || async {
        c.client()
            .nodes()
            .await
            .map(|ns| ns.iter().all(|v| v.alive))
            .unwrap_or(false)
    })
    .await;
    assert_eq!(
        c.serving(),
        vec![new],
        "the restarted node must not take over"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_identity_and_raft_state() {
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let f = (leader + 1) % 3;
    let before_id = c.node(f).node_id;
    let before_cert = c.node(f).tls.own_cert().clone();
    let before_state = c.node(f).state().unwrap();
    assert_eq!(before_state.nodes.len(), 3);
    c.kill(f).await;
    c.restart(f).await;
    assert_eq!(c.node(f).node_id, before_id);
    assert_eq!(*c.node(f).tls.own_cert(), before_cert);
    // The replica is there before any leader sends anything.
    assert_eq!(c.node(f).state().unwrap().nodes, before_state.nodes);
    wait_until(LIMIT, "the restarted node to be alive again", || async {
        c.client()
            .nodes()
            .await
            .map(|ns| ns.iter().all(|v| v.alive && v.voter))
            .unwrap_or(false)
    })
    .await;
    // A token created after the restart replicates to it.
    c.client().create_token(600).await.unwrap();
    wait_until(LIMIT, "the new token to replicate", || async {
        c.node(f).state().unwrap().join_tokens.len() > before_state.join_tokens.len()
    })
    .await;
    c.shutdown().await;
}

/// True when no two nodes ran leader services at overlapping times.
fn no_overlap(histories: &[(usize, Vec<Transition>)], end: Instant) -> Result<(), String> {
    let mut spans = Vec::new();
    for (node, h) in histories {
        let mut open: Option<(Instant, u64)> = None;
        for t in h {
            match (t.term, open) {
                (Some(term), None) => open = Some((t.at, term)),
                (None, Some((s, term))) => {
                    spans.push((*node, s, t.at, term));
                    open = None;
                }
                _ => return Err(format!("n{node}: inconsistent history {h:?}")),
            }
        }
        if let Some((s, term)) = open {
            spans.push((*node, s, end, term));
        }
    }
    for a in &spans {
        for b in &spans {
            if a.0 != b.0 && a.1 < b.2 && b.1 < a.2 {
                return Err(format!(
                    "n{} (term {}) and n{} (term {}) served at once",
                    a.0, a.3, b.0, b.3
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_leader_stops_its_services() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let old = c.wait_single_leader(LIMIT).await;
    let rest: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let cut = Instant::now();
    c.partition(&[old], &rest);
    let stopped = wait_until(LIMIT, "the cut-off leader to stop its services", || async {
        c.node(old).serving_term().is_none()
    })
    .await;
    let elected = wait_until(LIMIT, "the majority to elect a new leader", || async {
        rest.iter().any(|i| c.node(*i).serving_term().is_some())
    })
    .await;
    eprintln!("minority leader stopped after {stopped:?}; majority elected after {elected:?} (since the cut at {cut:?})");
    // The minority cannot serve while cut off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(c.node(old).serving_term().is_none());
    c.heal();
    wait_until(LIMIT, "one leader after healing", || async {
        c.serving().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let histories: Vec<_> = c
        .running()
        .map(|(i, n)| (i, n.leader.as_ref().unwrap().history()))
        .collect();
    no_overlap(&histories, Instant::now()).unwrap();
    assert!(histories.iter().filter(|(_, h)| !h.is_empty()).count() >= 2);
    c.shutdown().await;
}

fn foreign_identity(
    name: &str,
    same_ca: Option<&skiff_cluster::state::CaMaterial>,
    expired: bool,
) -> Arc<TlsContext> {
    let owned;
    let ca = match same_ca {
        Some(ca) => ca,
        None => {
            owned = identity::new_ca("intruder").unwrap();
            &owned
        }
    };
    let key = identity::new_key_pem().unwrap();
    let ips = ["127.0.0.1".parse().unwrap()];
    let cert = if expired {
        identity::issue_expired_for_key(ca, name, CertKind::Node { ips: &ips }, &key).unwrap()
    } else {
        identity::issue_for_key(ca, name, CertKind::Node { ips: &ips }, &key).unwrap()
    };
    TlsContext::new(&NodeIdentity {
        ca_pem: ca.cert_pem.clone(),
        cert_pem: cert.cert_pem,
        key_pem: key,
        crl_pem: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_from_another_ca_expired_or_revoked_are_refused() {
    let mut spec = ClusterSpec::new(4, 3);
    spec.compute_from = 3;
    let c = TestCluster::start(spec).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let target = c.addrs[leader];
    let ca = c.node(leader).state().unwrap().ca.clone().unwrap();

    // Another CA: refused on every protocol, and it never shows up in gossip.
    let intruder = QuicEndpoint::bind(
        ([127, 0, 0, 1], free_port()).into(),
        foreign_identity("n0", None, false),
    )
    .unwrap();
    for alpn in [ALPN_RAFT, ALPN_GOSSIP] {
        let r = intruder
            .request(target, alpn, b"{}".to_vec(), Duration::from_secs(3))
            .await;
        assert!(
            r.is_err(),
            "a foreign CA got through on {:?}",
            String::from_utf8_lossy(alpn)
        );
    }
    // An expired certificate of the right CA: refused.
    let expired = QuicEndpoint::bind(
        ([127, 0, 0, 1], free_port()).into(),
        foreign_identity("old", Some(&ca), true),
    )
    .unwrap();
    assert!(expired
        .request(target, ALPN_RAFT, b"{}".to_vec(), Duration::from_secs(3))
        .await
        .is_err());
    // A valid certificate of the right CA gets an answer (the control case).
    let good = QuicEndpoint::bind(
        ([127, 0, 0, 1], free_port()).into(),
        foreign_identity("probe", Some(&ca), false),
    )
    .unwrap();
    assert!(good
        .request(
            target,
            ALPN_RAFT,
            b"garbage".to_vec(),
            Duration::from_secs(3)
        )
        .await
        .is_ok());
    // A request whose deadline ends mid-handshake does not abort the handshake: the connection
    // comes up anyway and the next request uses it (on a loaded machine a handshake can take
    // longer than one Raft heartbeat's deadline; cutting each one short never connects).
    // A zero deadline ends at the timer's next tick (tokio rounds up to the millisecond), which a
    // fast loopback handshake and reply can beat: fresh endpoints are tried until one request is
    // cut short.
    let mut hasty = None;
    for attempt in 0..5 {
        let endpoint = QuicEndpoint::bind(
            ([127, 0, 0, 1], free_port()).into(),
            foreign_identity(&format!("hasty{attempt}"), Some(&ca), false),
        )
        .unwrap();
        let r = endpoint
            .request(target, ALPN_RAFT, b"{}".to_vec(), Duration::ZERO)
            .await;
        if matches!(r, Err(TransportError::Timeout(_))) {
            hasty = Some(endpoint);
            break;
        }
        assert!(r.is_ok(), "{r:?}");
    }
    let hasty = hasty.expect("no request with a zero deadline was cut short in 5 tries");
    wait_until(LIMIT, "the abandoned handshake to finish", || async {
        hasty.live_connections() == 1
    })
    .await;
    assert!(hasty
        .request(target, ALPN_RAFT, b"{}".to_vec(), Duration::from_secs(3))
        .await
        .is_ok());
    assert_eq!(hasty.live_connections(), 1, "the second request reused it");

    // Removing the compute node revokes it: it is refused from then on.
    let removed = c.node(3).clone();
    c.client().remove_node("n3").await.expect("remove n3");
    wait_until(LIMIT, "the CRL to reach every node", || async {
        c.running()
            .filter(|(i, _)| *i != 3)
            .all(|(_, n)| n.tls.crl_number() >= 1)
    })
    .await;
    let r = removed
        .endpoint
        .request(target, ALPN_RAFT, b"{}".to_vec(), Duration::from_secs(3))
        .await;
    assert!(r.is_err(), "a revoked node got through");
    let names: HashSet<String> = c
        .client()
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(!names.contains("n3"));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_garbage_change_nothing() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    let seed = c.addrs[0];
    let dir = tempfile::tempdir().unwrap();
    let cfg = |name: &str| skiff_cluster::config::NodeConfig {
        name: name.into(),
        listen: ([127, 0, 0, 1], free_port()).into(),
        advertise: None,
        admin_eligible: false,
        seeds: vec![],
        gossip: Default::default(),
        raft: Default::default(),
        compute: skiff_cluster::config::ComputeSettings {
            hypervisor: skiff_cluster::config::HypervisorKind::Fake,
            ..Default::default()
        },
        scheduler: Default::default(),
        ha: Default::default(),
        ssh: Default::default(),
    };
    let before = c.node(0).state().unwrap();

    // Malformed token: refused before anything is sent.
    let e = skiff_nodeagent::join::join_cluster(&dir.path().join("a"), cfg("a"), seed, "nonsense")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("malformed join token"), "{e:#}");
    // Right shape and CA, wrong secret.
    let good = c.client().create_token(600).await.unwrap().token;
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[2] = "0".repeat(48);
    let e = skiff_nodeagent::join::join_cluster(
        &dir.path().join("b"),
        cfg("b"),
        seed,
        &parts.join("."),
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("not known"), "{e:#}");
    // A token pinning another CA: the seed is refused before the secret leaves.
    parts = good.split('.').map(String::from).collect();
    parts[3] = "ab".repeat(32);
    let e = skiff_nodeagent::join::join_cluster(
        &dir.path().join("c"),
        cfg("c"),
        seed,
        &parts.join("."),
    )
    .await
    .unwrap_err();
    assert!(format!("{e:#}").contains("does not belong"), "{e:#}");
    // The good token works once, then is refused as used.
    skiff_nodeagent::join::join_cluster(&dir.path().join("d"), cfg("d"), seed, &good)
        .await
        .unwrap();
    let e = skiff_nodeagent::join::join_cluster(&dir.path().join("e"), cfg("e"), seed, &good)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("already used"), "{e:#}");
    assert!(
        !dir.path().join("b").exists() && !dir.path().join("e").exists(),
        "a refused join wrote a data dir"
    );

    // Garbage on the QUIC port: random datagrams, and a certificate-less client on every ALPN.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 1300 + 1)).map(|b| (b * 31 + i) as u8).collect();
        let _ = sock.send_to(&junk, seed);
    }
    for alpn in [ALPN_RAFT, ALPN_GOSSIP, ALPN_JOIN] {
        let _ = raw_anonymous_request(seed, alpn).await;
    }
    // Still serving, and only the one good join changed the state.
    let after = c.client().nodes().await.unwrap();
    assert_eq!(after.len(), before.nodes.len() + 1);
    assert!(c.node(0).serving_term().is_some());
    c.shutdown().await;
}

/// Opens a QUIC connection with no client certificate and sends garbage.
async fn raw_anonymous_request(to: std::net::SocketAddr, alpn: &[u8]) -> anyhow::Result<Vec<u8>> {
    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            skiff_cluster::tls::provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(skiff_cluster::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg)?;
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = ep
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), to, "x")?
        .await?;
    let (mut s, mut r) = conn.open_bi().await?;
    s.write_all(b"\x00\xffgarbage{{{").await?;
    s.finish()?;
    Ok(tokio::time::timeout(Duration::from_secs(3), r.read_to_end(1 << 20)).await??)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_and_demote_change_the_voter_set() {
    let mut spec = ClusterSpec::new(4, 1);
    spec.compute_from = 3;
    let c = TestCluster::start(spec).await;
    let client = c.client();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let view = client.cluster().await.unwrap();
    assert_eq!(view.voters, names(&["n0"]));
    assert_eq!(
        view.learners,
        names(&["n1", "n2"]),
        "admin-eligible nodes join as learners"
    );
    // One at a time would leave 2 voters: refused with the reason, nothing changed.
    let e = client.promote(names(&["n1"]), false).await.unwrap_err();
    assert!(e.to_string().contains("even"), "{e}");
    assert_eq!(client.cluster().await.unwrap().voters, names(&["n0"]));
    // A compute node cannot vote.
    let e = client
        .promote(names(&["n3", "n1"]), false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("compute"), "{e}");
    // An unknown node is named.
    let e = client
        .promote(names(&["nope", "n1"]), false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let view = client.promote(names(&["n1", "n2"]), false).await.unwrap();
    assert_eq!(view.voters, names(&["n0", "n1", "n2"]));
    let nodes = client.nodes().await.unwrap();
    assert_eq!(nodes.iter().filter(|v| v.voter).count(), 3);
    assert!(!nodes.iter().find(|v| v.name == "n3").unwrap().voter);
    // Demote two back to learners.
    let leader = c.wait_single_leader(LIMIT).await;
    let others: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| c.names[i].clone())
        .collect();
    let view = client.demote(others.clone(), false).await.unwrap();
    assert_eq!(view.voters, vec![c.names[leader].clone()]);
    for o in &others {
        assert!(view.learners.contains(o), "{view:?}");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_the_loss_of_the_leader() {
    use skiff_cluster::state::{Quotas, UserRole};
    let mut c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    let old = c.wait_single_leader(LIMIT).await;
    let client = c.client();
    // Writes acknowledged one by one, then a burst of concurrent ones.
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let name = format!("u{i}");
        client
            .add_user(&name, UserRole::User, Quotas::default())
            .await
            .unwrap();
        acknowledged.push(name);
    }
    let burst = futures::future::join_all((5..25).map(|i| {
        let client = c.client();
        async move {
            let name = format!("u{i}");
            client
                .add_user(&name, UserRole::User, Quotas::default())
                .await
                .map(|_| name)
        }
    }))
    .await;
    acknowledged.extend(burst.into_iter().filter_map(Result::ok));
    assert!(
        acknowledged.len() >= 20,
        "most writes are acknowledged: {acknowledged:?}"
    );
    // The leader dies right after acknowledging.
    c.kill(old).await;
    wait_until(LIMIT, "a new leader", || async {
        c.serving().len() == 1 && c.serving()[0] != old
    })
    .await;
    let users: HashSet<String> = c
        .client()
        .users()
        .await
        .expect("read from the new leader")
        .into_iter()
        .map(|u| u.name)
        .collect();
    for name in &acknowledged {
        assert!(users.contains(name), "acknowledged write {name} was lost");
    }
    c.shutdown().await;
}
