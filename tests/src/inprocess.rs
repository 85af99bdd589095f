//! In-process clusters: N real nodes (`skiff_nodeagent::Node`) in one process, each with its own
//! data dir and QUIC endpoint on 127.0.0.1, built the way an operator builds one (init, tokens
//! through the API, joins over QUIC, promotion through the API). Partitions are made by cutting
//! links in each endpoint's fault injector.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_cluster::api::client::ApiClient;
use skiff_cluster::config::{GossipSettings, NodeConfig, RaftSettings};
use skiff_cluster::credential::Credential;
use skiff_nodeagent::Node;

/// Installs a log subscriber once (RUST_LOG controls it; quiet by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error")),
        )
        .with_test_writer()
        .try_init();
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port free for both UDP (QUIC) and TCP (API) on 127.0.0.1.
pub fn free_port() -> u16 {
    if NEXT_PORT.load(Ordering::Relaxed) == 0 {
        // Spread concurrent test processes apart.
        let base = 20_000 + (std::process::id() % 400) as u16 * 100;
        let _ = NEXT_PORT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let p = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        if p >= 60_000 {
            NEXT_PORT.store(20_000, Ordering::Relaxed);
            continue;
        }
        let udp = UdpSocket::bind(("127.0.0.1", p));
        let tcp = TcpListener::bind(("127.0.0.1", p));
        if udp.is_ok() && tcp.is_ok() {
            return p;
        }
    }
}

/// How to build a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// How many of them vote (the first ones). Must be 1, 3 or 5.
    pub voters: usize,
    /// Nodes from this index on join as compute nodes.
    pub compute_from: usize,
    pub gossip: GossipSettings,
    pub raft: RaftSettings,
    /// Nodes (by index) started with `[compute] enabled = false`.
    pub compute_disabled: Vec<usize>,
    pub ha: skiff_cluster::config::HaSettings,
    /// The hypervisor of every compute node (default: the in-memory fake).
    pub hypervisor: skiff_cluster::config::HypervisorKind,
    /// Serve the SSH cockpit (`[ssh] listen` on a free 127.0.0.1 port) on every admin-eligible
    /// node; the address is in each node's `config.ssh.listen`.
    pub ssh: bool,
}

impl ClusterSpec {
    pub fn new(nodes: usize, voters: usize) -> Self {
        ClusterSpec {
            nodes,
            voters,
            compute_from: nodes,
            gossip: GossipSettings {
                interval_ms: 100,
                phi_threshold: 8.0,
                dead_grace_secs: 3600,
            },
            raft: RaftSettings::default(),
            compute_disabled: Vec::new(),
            ha: Default::default(),
            hypervisor: skiff_cluster::config::HypervisorKind::Fake,
            ssh: false,
        }
    }
}

/// A running in-process cluster.
pub struct TestCluster {
    pub spec: ClusterSpec,
    _root: tempfile::TempDir,
    pub dirs: Vec<PathBuf>,
    pub addrs: Vec<SocketAddr>,
    pub names: Vec<String>,
    pub nodes: Vec<Option<Arc<Node>>>,
    /// The admin credential, listing every node as an endpoint.
    pub cred: Credential,
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; returns how long it took.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node_config(
    spec: &ClusterSpec,
    i: usize,
    name: &str,
    addr: SocketAddr,
    admin: bool,
) -> NodeConfig {
    NodeConfig {
        name: name.into(),
        listen: addr,
        advertise: None,
        admin_eligible: admin,
        seeds: Vec::new(),
        gossip: spec.gossip.clone(),
        raft: spec.raft.clone(),
        compute: skiff_cluster::config::ComputeSettings {
            enabled: !spec.compute_disabled.contains(&i),
            hypervisor: spec.hypervisor,
            accelerator: skiff_cluster::config::Accelerator::Tcg,
            ..Default::default()
        },
        scheduler: Default::default(),
        ha: spec.ha.clone(),
        ssh: skiff_cluster::config::SshSettings {
            listen: (spec.ssh && admin).then(|| SocketAddr::from(([127, 0, 0, 1], free_port()))),
            ..Default::default()
        },
    }
}

impl TestCluster {
    /// Builds the cluster as an operator would and waits until every node sees every node.
    pub async fn start(spec: ClusterSpec) -> TestCluster {
        init_logging();
        let root = tempfile::tempdir().expect("tempdir");
        let mut dirs = Vec::new();
        let mut addrs = Vec::new();
        let mut names = Vec::new();
        for i in 0..spec.nodes {
            dirs.push(root.path().join(format!("n{i}")));
            addrs.push(SocketAddr::from(([127, 0, 0, 1], free_port())));
            names.push(format!("n{i}"));
        }
        let init = skiff_nodeagent::init::init_cluster(
            &dirs[0],
            node_config(&spec, 0, &names[0], addrs[0], true),
        )
        .expect("init");
        let mut cred = init.credential.clone();
        cred.endpoints = addrs.iter().map(|a| a.to_string()).collect();
        let mut nodes = vec![Some(Node::start(&dirs[0]).await.expect("start n0"))];
        let client = ApiClient::new(&cred).expect("client");
        wait_until(
            Duration::from_secs(20),
            "the first node to lead",
            || async { client.cluster().await.is_ok() },
        )
        .await;
        for i in 1..spec.nodes {
            let token = client.create_token(600).await.expect("token").token;
            let admin = i < spec.compute_from;
            let cfg = node_config(&spec, i, &names[i], addrs[i], admin);
            // Join through any running node: the first join goes to the leader itself, later
            // ones through followers (forwarded).
            let seed = addrs[(i - 1) % i];
            let mut attempt = 0;
            loop {
                match skiff_nodeagent::join::join_cluster(&dirs[i], cfg.clone(), seed, &token).await
                {
                    Ok(_) => break,
                    // The seed may not know the leader yet: retry, as an operator would.
                    Err(e) if attempt < 40 && format!("{e:#}").contains("retry") => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(e) => panic!("join n{i}: {e:#}"),
                }
            }
            nodes.push(Some(Node::start(&dirs[i]).await.expect("start")));
        }
        let cluster = TestCluster {
            spec: spec.clone(),
            _root: root,
            dirs,
            addrs,
            names,
            nodes,
            cred,
        };
        if spec.voters > 1 {
            let more: Vec<String> = cluster.names[1..spec.voters].to_vec();
            let client = cluster.client();
            let mut last = None;
            for _ in 0..50 {
                match client.promote(more.clone(), false).await {
                    Ok(_) => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        last = Some(e.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            assert!(last.is_none(), "promote failed: {last:?}");
        }
        cluster.wait_converged(Duration::from_secs(30)).await;
        cluster
    }

    pub fn client(&self) -> ApiClient {
        ApiClient::new(&self.cred).expect("client")
    }

    pub fn node(&self, i: usize) -> &Arc<Node> {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &Arc<Node>)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Waits until the API lists every node of the cluster with its gossiped figures (cores and
    /// memory), which the scheduler needs before it can place a server.
    pub async fn wait_figures(&self, limit: Duration) {
        let api = self.client();
        let n = self.spec.nodes;
        wait_until(limit, "every node to gossip its figures", || async {
            api.nodes()
                .await
                .map(|ns| ns.len() == n && ns.iter().all(|x| x.memory_total > 0 && x.cores > 0))
                .unwrap_or(false)
        })
        .await;
    }

    /// Waits until every running node's gossip sees every running node alive.
    pub async fn wait_converged(&self, limit: Duration) -> Duration {
        let expected = self.running().count();
        wait_until(limit, "gossip to converge", || async {
            for (_, n) in self.running() {
                let alive = n.gossip_nodes().await.iter().filter(|g| g.alive).count();
                if alive < expected {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Indexes of the nodes running leader services now.
    pub fn serving(&self) -> Vec<usize> {
        self.running()
            .filter(|(_, n)| n.serving_term().is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// Waits until exactly one node serves as leader, and returns it.
    pub async fn wait_single_leader(&self, limit: Duration) -> usize {
        wait_until(limit, "exactly one leader", || async {
            self.serving().len() == 1
        })
        .await;
        self.serving()[0]
    }

    /// Stops a node abruptly (its Raft, gossip and endpoint end at once).
    pub async fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown().await;
        }
    }

    /// Starts a stopped node again from its data dir.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "n{i} is running");
        let mut last = String::new();
        for _ in 0..100 {
            match Node::start(&self.dirs[i]).await {
                Ok(n) => {
                    self.nodes[i] = Some(n);
                    return;
                }
                // The previous instance may still hold its database or ports for a moment.
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("restart n{i}: {last}");
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                if let Some(n) = &self.nodes[x] {
                    n.endpoint.faults().block(self.addrs[y]);
                }
                if let Some(n) = &self.nodes[y] {
                    n.endpoint.faults().block(self.addrs[x]);
                }
            }
        }
    }

    pub fn heal(&self) {
        for (_, n) in self.running() {
            n.endpoint.faults().heal();
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i).await;
        }
    }
}
