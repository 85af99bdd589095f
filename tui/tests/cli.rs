//! The `skiff` binary end to end against fake nodes: output on the right stream, exit statuses,
//! leader redirects.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use skiff_cluster::api::{
    ApiError, ClusterView, MembershipRequest, NodeView, PoolUsage, TokenRequest, TokenResponse,
};
use support::{FakeNode, Handler, Pki, Reply, Request};

fn node(name: &str, leader: bool) -> NodeView {
    NodeView {
        name: name.into(),
        id: 1,
        address: format!("10.1.0.{}:7000", name.len()),
        role: "admin-eligible".into(),
        voter: true,
        alive: true,
        leader,
        term: 5,
        generation: 2,
        version: "0.1.0".into(),
        cores: 4,
        memory_total: 8 << 30,
        memory_used: 2 << 30,
        cpu_milli: 0,
        storage: vec![PoolUsage {
            name: "local".into(),
            total: 100 << 30,
            used: 10 << 30,
        }],
        servers: 1,
    }
}

fn cluster_view() -> ClusterView {
    ClusterView {
        cluster_id: "test-cluster".into(),
        leader: Some("alpha".into()),
        term: 5,
        voters: vec!["alpha".into(), "beta".into(), "gamma".into()],
        learners: vec!["delta".into()],
    }
}

fn leader() -> Handler {
    Arc::new(
        |req: &Request| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/nodes") => {
                Reply::json(200, &vec![node("beta", false), node("alpha", true)])
            }
            ("GET", "/api/v1/cluster") => Reply::json(200, &cluster_view()),
            ("POST", "/api/v1/nodes/tokens") => {
                let body: TokenRequest = serde_json::from_slice(&req.body).unwrap();
                Reply::json(
                    200,
                    &TokenResponse {
                        token: format!("join-{}", body.ttl_secs),
                        expires_at: skiff_cluster::unix_now() + body.ttl_secs,
                    },
                )
            }
            ("POST", "/api/v1/nodes/promote") => {
                let body: MembershipRequest = serde_json::from_slice(&req.body).unwrap();
                if body.allow_even {
                    Reply::json(200, &cluster_view())
                } else {
                    Reply::json(
                        409,
                        &ApiError::new(
                            "even_voters",
                            "that would leave 4 voters; pass --allow-even",
                        ),
                    )
                }
            }
            ("DELETE", "/api/v1/nodes/gamma") => Reply::json(200, &node("gamma", false)),
            _ => Reply::json(404, &ApiError::new("not_found", "no such node")),
        },
    )
}

fn follower(leader: String) -> Handler {
    Arc::new(move |req: &Request| {
        let mut reply = Reply::json(
            307,
            &ApiError {
                code: "not_leader".into(),
                message: "not the leader".into(),
                leader: Some(leader.clone()),
            },
        );
        reply
            .headers
            .push(("Location".into(), format!("https://{leader}{}", req.path)));
        reply
    })
}

struct Env {
    _dir: tempfile::TempDir,
    cred: PathBuf,
    home: PathBuf,
}

/// A credential naming `endpoints`, in a fresh directory that also serves as `$HOME`.
fn env(pki: &Pki, endpoints: &[String]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("credential");
    std::fs::write(&cred, pki.credential_toml(endpoints)).unwrap();
    Env {
        home: dir.path().to_owned(),
        cred,
        _dir: dir,
    }
}

fn skiff(home: &Path, cred: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
    cmd.env_remove("SKIFF_CRED").env("HOME", home);
    if let Some(cred) = cred {
        cmd.arg("--cred").arg(cred);
    }
    cmd.args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
    // Dropped here: nothing listens any more.
}

#[test]
fn node_list_table_through_a_follower() {
    let pki = Pki::new();
    let lead = FakeNode::start(&pki, leader());
    let follow = FakeNode::start(&pki, follower(lead.addr()));
    let e = env(&pki, &[follow.addr()]);
    let out = skiff(&e.home, Some(&e.cred), &["node", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("NAME   ADDRESS"), "{stdout}");
    assert!(lines[0].ends_with("SERVERS  VERSION"), "{stdout}");
    assert!(
        lines[1].starts_with("alpha  10.1.0.5:7000  admin-eligible  yes    yes    *"),
        "{stdout}"
    );
    assert!(lines[2].starts_with("beta "), "{stdout}");
    assert_eq!(lines.len(), 3);
    assert_eq!(follow.hits(), 1);
    assert_eq!(lead.hits(), 1);
}

#[test]
fn node_list_json_is_the_api_array() {
    let pki = Pki::new();
    let lead = FakeNode::start(&pki, leader());
    let e = env(&pki, &[lead.addr()]);
    // The credential found through $SKIFF_CRED this time.
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .env("SKIFF_CRED", &e.cred)
        .env("HOME", &e.home)
        .args(["node", "list", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let nodes: Vec<NodeView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nodes, vec![node("beta", false), node("alpha", true)]);
}

#[test]
fn token_alone_on_stdout() {
    let pki = Pki::new();
    let lead = FakeNode::start(&pki, leader());
    let e = env(&pki, &[lead.addr()]);
    let out = skiff(&e.home, Some(&e.cred), &["node", "token", "--ttl", "15m"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "join-900\n");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("expires at "), "{stderr}");
    assert!(
        stderr.contains(" UTC (in 15m)") || stderr.contains(" UTC (in 14m"),
        "{stderr}"
    );
}

#[test]
fn refused_request_exits_1_with_the_api_message() {
    let pki = Pki::new();
    let lead = FakeNode::start(&pki, leader());
    let e = env(&pki, &[lead.addr()]);
    let out = skiff(&e.home, Some(&e.cred), &["node", "promote", "delta"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: that would leave 4 voters; pass --allow-even\n"
    );
    assert!(out.stdout.is_empty());

    let out = skiff(
        &e.home,
        Some(&e.cred),
        &["node", "promote", "delta", "--allow-even"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("LEARNERS  delta (1)"));
}

#[test]
fn remove_and_cluster() {
    let pki = Pki::new();
    let lead = FakeNode::start(&pki, leader());
    let e = env(&pki, &[lead.addr()]);
    let out = skiff(&e.home, Some(&e.cred), &["node", "remove", "gamma"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "removed node gamma (10.1.0.5:7000); its certificate is revoked\n"
    );
    let out = skiff(&e.home, Some(&e.cred), &["node", "remove", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "error: no such node\n");

    let out = skiff(&e.home, Some(&e.cred), &["cluster", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let view: ClusterView = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view, cluster_view());
    let out = skiff(&e.home, Some(&e.cred), &["cluster"]);
    assert!(text(&out.stdout).contains("VOTERS    alpha, beta, gamma (3)\n"));
}

#[test]
fn unreachable_cluster_exits_3() {
    let pki = Pki::new();
    let (a, b) = (dead_addr(), dead_addr());
    let e = env(&pki, &[a.clone(), b.clone()]);
    let out = skiff(&e.home, Some(&e.cred), &["node", "list"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: cannot reach the cluster at {a}, {b}: ")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_or_broken_credential_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = skiff(dir.path(), None, &["node", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("error: "));

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "cluster_id = 3\n").unwrap();
    let out = skiff(dir.path(), Some(&bad), &["cluster"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_2_and_completions_need_no_credential() {
    let dir = tempfile::tempdir().unwrap();
    let out = skiff(dir.path(), None, &["node", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = skiff(dir.path(), None, &["node", "list", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = skiff(dir.path(), None, &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("skiff"));
    let out = skiff(dir.path(), None, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    // No terminal here (output is piped): the cockpit says so instead of garbling the pipe.
    let out = skiff(dir.path(), None, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the cockpit needs a terminal"));
}
