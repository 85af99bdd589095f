//! A running node: its QUIC endpoint, gossip, Raft replica (admin-eligible nodes), leader services
//! supervisor, control API, and the background loops that keep gossip and revocation current.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use skiff_cluster::agentproto::{AgentReply, AgentRequest};
use skiff_cluster::config::{NodeConfig, NodeFacts};
use skiff_cluster::gossip::{keys, Gossip, GossipNode, GossipOptions};
use skiff_cluster::identity::{self, IdentityFiles};
pub use skiff_cluster::raft::ProposeError;
use skiff_cluster::raft::{open_raft, ClusterRaft, RaftTimings, StateHandle, WriteBatcher};
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, NodeId, NodeRole, Proposal};
use skiff_cluster::tls::TlsContext;
use skiff_cluster::transport::{QuicEndpoint, ALPN_AGENT, ALPN_JOIN};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::figures;
use crate::join::JoinHandler;
use crate::supervisor::LeaderServices;

/// The file holding the first command of a new cluster until it is committed.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
/// The node configuration file in a data dir.
pub const CONFIG_FILE: &str = "node.toml";

/// The Raft replica of an admin-eligible node.
#[derive(Clone)]
pub struct Replica {
    pub raft: ClusterRaft,
    pub state: StateHandle,
    /// Shares read-index rounds between concurrent linearizable reads.
    pub reads: Arc<skiff_cluster::raft::reads::ReadBarrier>,
    /// Commits concurrent writes together (group commit).
    pub writes: WriteBatcher,
}

/// Everything a running node shares between its tasks.
pub struct Node {
    pub name: String,
    pub node_id: NodeId,
    pub cluster_id: String,
    pub config: NodeConfig,
    pub data_dir: PathBuf,
    pub endpoint: QuicEndpoint,
    pub tls: Arc<TlsContext>,
    pub gossip: Gossip,
    pub replica: Option<Replica>,
    pub leader: Option<Arc<LeaderServices>>,
    /// The SSH cockpit (a leader service), when `[ssh] listen` is set on an admin-eligible node.
    pub ssh: Option<Arc<crate::ssh::SshService>>,
    /// HA leases and self-fencing (both the compute and the leader side).
    pub fencing: Arc<crate::fencing::Fencing>,
    /// Wakes the reconciler before its next pass is due: a node's `Changed` hint (see
    /// [`crate::compute::changes`]).
    pub reconcile_wake: Arc<tokio::sync::Notify>,
    /// The storage pools this node has open (`local` and those the leader handed it).
    pub pools: crate::storage::pools::Pools,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Why a request to a node's agent got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    #[error("node {0} is not a member")]
    NotMember(String),
    #[error("node {node} did not answer: {reason}")]
    Unreachable { node: String, reason: String },
    #[error("node {node} gave an unexpected answer: {reason}")]
    Garbled { node: String, reason: String },
}

/// Where a node's leader is, as far as it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub name: String,
    pub addr: SocketAddr,
}

impl Node {
    /// Starts a node from its data dir (made by `skiffd init` or `skiffd join`).
    pub async fn start(data_dir: &Path) -> anyhow::Result<Arc<Node>> {
        let config_path = data_dir.join(CONFIG_FILE);
        let config = NodeConfig::load(&config_path)?;
        let facts = NodeFacts::load(data_dir).with_context(|| {
            format!(
                "{} is not an initialised data dir (run `skiffd init` or `skiffd join`)",
                data_dir.display()
            )
        })?;
        let files = IdentityFiles::new(data_dir);
        let id = files.load()?;
        let tls = TlsContext::new(&id)?;
        let endpoint = QuicEndpoint::bind(config.listen, tls.clone())?;
        let advertise = config.advertise_addr();
        info!(name = %config.name, node_id = facts.node_id, quic = %endpoint.local_addr(), "starting node");

        let replica = if config.admin_eligible {
            let r = &config.raft;
            let (raft, state) = open_raft(
                facts.node_id,
                data_dir,
                RaftTimings {
                    heartbeat_ms: r.heartbeat_ms,
                    election_min_ms: r.election_min_ms,
                    election_max_ms: r.election_max_ms,
                },
                endpoint.clone(),
            )
            .await?;
            if data_dir.join(BOOTSTRAP_FILE).exists() {
                let mut members = BTreeMap::new();
                members.insert(
                    facts.node_id,
                    openraft::BasicNode::new(advertise.to_string()),
                );
                match raft.initialize(members).await {
                    Ok(()) => info!("initialised a new Raft group"),
                    Err(e) => info!(reason = %e, "Raft group already initialised"),
                }
            }
            Some(Replica {
                writes: WriteBatcher::new(raft.clone()),
                raft,
                state,
                reads: Arc::new(skiff_cluster::raft::reads::ReadBarrier::new()),
            })
        } else {
            None
        };

        let pools = crate::storage::pools::Pools::open(data_dir);
        let figures = figures::measure(&pools);
        let mut seeds: Vec<String> = config.seeds.clone();
        if let Some(r) = &replica {
            for n in r.state.read().nodes.values() {
                if n.addr != advertise {
                    seeds.push(n.addr.to_string());
                }
            }
        }
        seeds.sort();
        seeds.dedup();
        let role = if config.admin_eligible {
            NodeRole::AdminEligible
        } else {
            NodeRole::Compute
        };
        let gossip = Gossip::start(
            endpoint.clone(),
            GossipOptions {
                name: config.name.clone(),
                cluster_id: facts.cluster_id.clone(),
                advertise,
                seeds,
                settings: config.gossip.clone(),
                initial: vec![
                    (keys::ROLE.into(), role.as_str().into()),
                    (keys::NODE_ID.into(), facts.node_id.to_string()),
                    (keys::VERSION.into(), skiff_cluster::VERSION.into()),
                    (keys::COMPUTE.into(), config.compute.enabled.to_string()),
                    (keys::CORES.into(), figures.cores.to_string()),
                    (keys::MEMORY_TOTAL.into(), figures.memory_total.to_string()),
                    (keys::MEMORY_USED.into(), figures.memory_used.to_string()),
                    (
                        keys::STORAGE.into(),
                        serde_json::to_string(&figures.storage)?,
                    ),
                    (keys::SERVERS.into(), "0".into()),
                    (keys::TERM.into(), "0".into()),
                ],
            },
        )
        .await?;

        // The SSH cockpit, when `[ssh] listen` is set, is the one leader service registered here.
        let ssh = (replica.is_some() && config.ssh.listen.is_some())
            .then(|| crate::ssh::SshService::new(config.ssh.clone()));
        let leader = replica.as_ref().map(|_| {
            let services: Vec<Arc<dyn crate::supervisor::LeaderService>> = ssh
                .iter()
                .map(|s| s.clone() as Arc<dyn crate::supervisor::LeaderService>)
                .collect();
            LeaderServices::new(services)
        });
        let fence_after = Duration::from_secs(config.ha.fence_after_secs);
        let node = Arc::new(Node {
            name: config.name.clone(),
            node_id: facts.node_id,
            cluster_id: facts.cluster_id.clone(),
            config,
            data_dir: data_dir.to_path_buf(),
            endpoint: endpoint.clone(),
            tls,
            gossip,
            replica,
            leader,
            ssh,
            fencing: crate::fencing::Fencing::new(fence_after),
            reconcile_wake: Arc::new(tokio::sync::Notify::new()),
            pools,
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        });
        if let Some(ssh) = &node.ssh {
            ssh.attach(&node);
        }
        endpoint.set_request_handler(ALPN_JOIN, Arc::new(JoinHandler::new(Arc::downgrade(&node))));
        crate::fencing::serve(&node);
        crate::compute::start(&node).await;

        let mut tasks = Vec::new();
        if let (Some(r), Some(l)) = (&node.replica, &node.leader) {
            let rc = &node.config.raft;
            tasks.push(tokio::spawn(l.clone().supervise(
                r.raft.clone(),
                node.node_id,
                Duration::from_millis(rc.lease_ms),
                Duration::from_millis(rc.heartbeat_ms),
                node.shutdown.subscribe(),
            )));
            tasks.push(tokio::spawn(leader_duties(node.clone())));
            tasks.push(tokio::spawn(crate::reconciler::run(node.clone())));
        }
        tasks.push(tokio::spawn(publish_figures(node.clone())));
        tasks.push(tokio::spawn(sync_crl(node.clone())));
        tasks.push(tokio::spawn(crate::api::serve(node.clone())));
        if let Ok(mut t) = node.tasks.lock() {
            t.extend(tasks);
        }
        Ok(node)
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops everything this node runs and releases its ports and files.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        if let Some(r) = &self.replica {
            let _ = r.raft.shutdown().await;
        }
        // Let the supervisor see the signal and stop leader services first.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.gossip.abort();
        self.endpoint.close();
    }

    /// The desired state, as this node's replica has applied it (admin-eligible nodes only).
    pub fn state(&self) -> Option<Arc<ClusterState>> {
        self.replica.as_ref().map(|r| r.state.read())
    }

    /// The desired state as of this call, for linearizable reads: confirms leadership with a
    /// quorum (read-index, one round shared by concurrent readers: [`ReadBarrier`](skiff_cluster::raft::reads::ReadBarrier)) and waits
    /// until every write committed before the call is applied.
    /// `None` when leadership cannot be confirmed in time.
    pub async fn read_state(&self) -> Option<Arc<ClusterState>> {
        let r = self.replica.as_ref()?;
        let limit = Duration::from_millis(self.config.raft.election_max_ms);
        let round = || async { r.raft.ensure_linearizable().await.is_ok() };
        match tokio::time::timeout(limit, r.reads.confirm(round)).await {
            Ok(true) => Some(r.state.read()),
            _ => None,
        }
    }

    /// Whether this node runs leader services now, and for which term.
    pub fn serving_term(&self) -> Option<u64> {
        self.leader.as_ref().and_then(|l| l.active_term())
    }

    /// The leader this node knows of: from Raft on admin-eligible nodes, from gossip otherwise.
    pub async fn leader_hint(&self) -> Option<LeaderHint> {
        if let Some(r) = &self.replica {
            let m = r.raft.metrics().borrow().clone();
            let known = m.current_leader.and_then(|id| {
                let node = m.membership_config.membership().get_node(&id)?.clone();
                let addr: SocketAddr = node.addr.parse().ok()?;
                let name = r
                    .state
                    .read()
                    .node_by_id(id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| format!("node-{id}"));
                Some(LeaderHint { name, addr })
            });
            if known.is_some() {
                return known;
            }
            // A fresh learner has not heard from the leader yet: gossip may know.
        }
        let nodes = self.gossip.nodes().await;
        nodes
            .iter()
            .filter(|n| n.alive && n.get(keys::SERVING_TERM).is_some())
            .max_by_key(|n| n.get_u64(keys::SERVING_TERM))
            .map(|n| LeaderHint {
                name: n.name.clone(),
                addr: n.addr,
            })
    }

    /// Proposes a command on behalf of `actor` (`user:NAME`, `system`, ...) through Raft (leader
    /// only) and returns what applying it produced.
    pub async fn propose(&self, actor: &str, cmd: Command) -> Result<CommandOutcome, ProposeError> {
        let r = self.replica.as_ref().ok_or(ProposeError::NotLeader)?;
        if self.serving_term().is_none() {
            return Err(ProposeError::NotLeader);
        }
        r.writes
            .propose(Proposal::new(actor, skiff_cluster::unix_now(), cmd))
            .await
    }

    /// Sends `req` to the agent of member node `to` (ALPN `skiff-agent/1`) and decodes its
    /// answer. The one way the leader talks to agents: tasks, drift and the console API.
    pub async fn call_agent(
        &self,
        to: &str,
        req: &AgentRequest,
    ) -> Result<AgentReply, AgentCallError> {
        let addr = self
            .state()
            .and_then(|s| s.nodes.get(to).map(|n| n.addr))
            .ok_or_else(|| AgentCallError::NotMember(to.to_string()))?;
        let bytes = self
            .endpoint
            .request(addr, ALPN_AGENT, req.encode(), req.timeout())
            .await
            .map_err(|e| AgentCallError::Unreachable {
                node: to.to_string(),
                reason: e.to_string(),
            })?;
        AgentReply::decode(&bytes).map_err(|e| AgentCallError::Garbled {
            node: to.to_string(),
            reason: e.to_string(),
        })
    }

    /// Gossip's view of every node.
    pub async fn gossip_nodes(&self) -> Vec<GossipNode> {
        self.gossip.nodes().await
    }
}

/// Keeps this node's gossiped figures current: capacity, use, and what it knows of the leader.
async fn publish_figures(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut n = 0u64;
    let mut cpu_before = figures::cpu_times();
    let mut pools_seen = node.pools.generation();
    loop {
        tick.tick().await;
        n += 1;
        // New pools are gossiped at once: the scheduler places disks and images by them.
        let pools_now = node.pools.generation();
        if pools_now != pools_seen && n % 10 != 1 {
            if let Ok(s) = serde_json::to_string(&figures::pool_figures(&node.pools)) {
                node.gossip.set(keys::STORAGE, s).await;
            }
        }
        pools_seen = pools_now;
        if n % 10 == 1 {
            let f = figures::measure(&node.pools);
            let cpu_now = figures::cpu_times();
            if let (Some(a), Some(b)) = (cpu_before, cpu_now) {
                node.gossip
                    .set(keys::CPU, figures::cpu_milli(a, b, f.cores))
                    .await;
            }
            cpu_before = cpu_now;
            node.gossip.set(keys::CORES, f.cores).await;
            node.gossip.set(keys::MEMORY_TOTAL, f.memory_total).await;
            node.gossip.set(keys::MEMORY_USED, f.memory_used).await;
            if let Ok(s) = serde_json::to_string(&f.storage) {
                node.gossip.set(keys::STORAGE, s).await;
            }
        }
        let term = match &node.replica {
            Some(r) => r.raft.metrics().borrow().current_term,
            None => node
                .gossip
                .nodes()
                .await
                .iter()
                .filter(|g| g.alive)
                .map(|g| g.get_u64(keys::SERVING_TERM))
                .max()
                .unwrap_or(0),
        };
        node.gossip.set(keys::TERM, term).await;
        let leader = node.leader_hint().await.map(|l| l.name).unwrap_or_default();
        node.gossip.set(keys::LEADER, leader).await;
        match node.serving_term() {
            Some(t) => node.gossip.set(keys::SERVING_TERM, t).await,
            None => node.gossip.unset(keys::SERVING_TERM).await,
        }
    }
}

/// Installs the newest CRL signed by the CA, from the leader's state or from any peer's gossip,
/// and closes the connections of peers it revokes.
async fn sync_crl(node: Arc<Node>) {
    let files = IdentityFiles::new(&node.data_dir);
    let mut tried: HashSet<u64> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let mut candidates: Vec<String> = Vec::new();
        // The leader signs a CRL whenever the state has revoked more than the CRL in force says.
        if let (Some(state), Some(_)) = (node.state(), node.serving_term()) {
            if state.crl_number > node.tls.crl_number() {
                if let Some(ca) = &state.ca {
                    let revoked: Vec<(String, u64)> = state
                        .revoked
                        .values()
                        .map(|r| (r.cert_serial.clone(), r.revoked_at))
                        .collect();
                    match identity::sign_crl(ca, state.crl_number, &revoked) {
                        Ok(pem) => candidates.push(pem),
                        Err(e) => error!(error = %e, "cannot sign the CRL"),
                    }
                }
            }
        }
        for g in node.gossip.nodes().await {
            if let Some(pem) = g.get(keys::CRL) {
                let key = fingerprint(pem);
                if tried.insert(key) {
                    candidates.push(pem.to_string());
                }
            }
        }
        for pem in candidates {
            match node.tls.install_crl(&pem) {
                Ok(true) => {
                    if let Err(e) = files.save_crl(&pem) {
                        warn!(error = %e, "cannot save the CRL");
                    }
                    node.gossip.set(keys::CRL, &pem).await;
                    node.endpoint.close_revoked();
                    let own = skiff_cluster::tls::peer_identity(node.tls.own_cert());
                    if own.is_some_and(|p| node.tls.is_revoked(&p.serial_hex)) {
                        error!(
                            "this node's certificate is revoked: it was removed from the cluster"
                        );
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "refused a CRL"),
            }
        }
    }
}

fn fingerprint(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// What only the leader does in the background: commit the bootstrap command of a new cluster,
/// and prune expired join tokens.
async fn leader_duties(node: Arc<Node>) {
    let Some(leader) = node.leader.clone() else {
        return;
    };
    let mut active = leader.watch();
    let bootstrap = node.data_dir.join(BOOTSTRAP_FILE);
    let mut last_prune = std::time::Instant::now();
    loop {
        if active.borrow().is_some() {
            if bootstrap.exists() {
                match commit_bootstrap(&node, &bootstrap).await {
                    Ok(()) => info!("cluster bootstrapped"),
                    Err(e) => warn!(error = %e, "bootstrap not committed yet"),
                }
            }
            if last_prune.elapsed() > Duration::from_secs(60) {
                last_prune = std::time::Instant::now();
                let _ = node
                    .propose(
                        "system",
                        Command::PruneTokens {
                            now: skiff_cluster::unix_now(),
                        },
                    )
                    .await;
            }
        }
        tokio::select! {
            _ = active.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn commit_bootstrap(node: &Node, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let cmd: Command = serde_json::from_str(&text).context("bootstrap.json is corrupt")?;
    match node.propose("system", cmd).await? {
        CommandOutcome::Done => {}
        CommandOutcome::Refused {
            code: skiff_cluster::state::RefusalCode::AlreadyBootstrapped,
            ..
        } => {}
        other => anyhow::bail!("bootstrap refused: {other:?}"),
    }
    std::fs::remove_file(path)?;
    Ok(())
}
