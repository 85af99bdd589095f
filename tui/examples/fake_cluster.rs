//! A fake three-node cluster for trying `skiff` by hand (and in tmux end-to-end runs) without
//! `skiffd`: `cargo run -p skiff-tui --example fake_cluster -- CRED_FILE`, then
//! `skiff --cred CRED_FILE`. The first endpoint is a follower that redirects to the leader; node
//! loads drift every second; while a file `CRED_FILE.down` exists the leader answers 503
//! `no_leader`, as during an election.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_cluster::api::{ApiError, ClusterView, NodeView, PoolUsage, TokenResponse};
use support::{FakeNode, Pki, Reply, Request};

const GIB: u64 = 1 << 30;

fn nodes(tick: u64, leader_addr: &str) -> Vec<NodeView> {
    let names = ["alpha", "bravo", "charlie", "delta", "echo"];
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let i = i as u64;
            let total = 16 * GIB * (1 + i % 3);
            let wave = (tick * (3 + i) + i * 17) % 100;
            NodeView {
                name: (*name).into(),
                id: 1000 + i,
                address: if i == 0 {
                    leader_addr.to_owned()
                } else {
                    format!("10.20.0.{}:7000", 10 + i)
                },
                role: if i < 3 { "admin-eligible" } else { "compute" }.into(),
                voter: i < 3,
                alive: !(i == 4 && tick % 20 >= 10),
                leader: i == 0,
                term: 3,
                generation: 1_763_000_000 + i,
                version: skiff_cluster::VERSION.into(),
                cores: 4 * (1 + i as u32 % 4),
                memory_total: total,
                memory_used: total * (10 + wave * 85 / 100) / 100,
                cpu_milli: 0,
                storage: vec![PoolUsage {
                    name: "local".into(),
                    total: 500 * GIB,
                    used: (100 + 20 * i) * GIB,
                }],
                servers: (i as u32 * 3) % 7,
            }
        })
        .collect()
}

fn main() {
    let cred: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fake-credential.toml"));
    let down = {
        let mut p = cred.clone().into_os_string();
        p.push(".down");
        PathBuf::from(p)
    };
    let pki = Pki::new();
    let start = Instant::now();
    let leader_addr = Arc::new(std::sync::Mutex::new(String::new()));
    let served = Arc::new(AtomicU64::new(0));

    let la = leader_addr.clone();
    let d = down.clone();
    let s = served.clone();
    let leader = FakeNode::start(
        &pki,
        Arc::new(move |req: &Request| {
            if d.exists() {
                return Reply::json(
                    503,
                    &ApiError::new("no_leader", "no leader is known (election in progress)"),
                );
            }
            s.fetch_add(1, Ordering::Relaxed);
            let tick = start.elapsed().as_secs();
            let addr = la.lock().unwrap().clone();
            match (req.method.as_str(), req.path.as_str()) {
                ("GET", "/api/v1/nodes") => Reply::json(200, &nodes(tick, &addr)),
                ("GET", "/api/v1/cluster") => Reply::json(
                    200,
                    &ClusterView {
                        cluster_id: "fake-cluster".into(),
                        leader: Some("alpha".into()),
                        term: 3,
                        voters: vec!["alpha".into(), "bravo".into(), "charlie".into()],
                        learners: vec![],
                    },
                ),
                ("POST", "/api/v1/nodes/tokens") => Reply::json(
                    200,
                    &TokenResponse {
                        token: "skiff-join-fake".into(),
                        expires_at: skiff_cluster::unix_now() + 3600,
                    },
                ),
                _ => Reply::json(
                    404,
                    &ApiError::new("not_found", "the fake cluster does not do that"),
                ),
            }
        }),
    );
    *leader_addr.lock().unwrap() = leader.addr();
    let target = leader.addr();
    let follower = FakeNode::start(
        &pki,
        Arc::new(move |req: &Request| {
            let mut reply = Reply::json(
                307,
                &ApiError {
                    code: "not_leader".into(),
                    message: "not the leader".into(),
                    leader: Some(target.clone()),
                },
            );
            reply
                .headers
                .push(("Location".into(), format!("https://{target}{}", req.path)));
            reply
        }),
    );
    std::fs::write(
        &cred,
        pki.credential_toml(&[follower.addr(), leader.addr()]),
    )
    .unwrap();
    println!(
        "fake cluster: follower {} -> leader {}; credential written to {}",
        follower.addr(),
        leader.addr(),
        cred.display()
    );
    loop {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("{} requests served", served.load(Ordering::Relaxed));
    }
}
