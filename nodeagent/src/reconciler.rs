//! The reconciler: a leader-only loop that carries out queued tasks on the nodes' agents and
//! drives what actually exists towards the desired state.
//!
//! Every [`PASS_INTERVAL`], while this node serves as leader (sooner when a compute node sends a
//! `Changed` hint: a guest stopped or crashed by itself; see [`until_next_pass`]):
//! 1. **Tasks.** Each queued `server.*` task (and each running one that no work of this leader
//!    carries: an old leader's) is marked running through Raft, sent to the server's node over
//!    `skiff-agent/1` as an idempotent `Ensure` or `Remove`, its log recorded, and finished.
//! 2. **Drift.** Every alive compute node is asked for a `Report`; each server placed there is
//!    compared with it (existence, generation, power) and `Ensure`d where they differ; domains no
//!    server explains are `Remove`d. Servers with an open task are left to the task; a server whose
//!    newest task was cancelled is left alone until its next change.
//!
//! The decisions are pure functions ([`plan_task`], [`plan_drift`], [`ha_decision`]) so they can be
//! tested without a cluster. Nothing here is remembered across leaders except through Raft: a new
//! leader starts from the state and fresh reports, which is what makes agent restarts and leader
//! changes converge to the same result.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use skiff_cluster::agentproto::{
    AgentErrorCode, AgentReply, AgentReport, AgentRequest, PoolReport, PowerAction, REPORT_TIMEOUT,
};
use skiff_cluster::api::tasks::{ActualView, Convergence, NodeActual, ServerActual};
use skiff_cluster::state::backups::{schedule_due, BackupOp, BackupTarget};
use skiff_cluster::state::images::disk_owner;
use skiff_cluster::state::pools::{pools_of, PoolKind, PoolSpec, LOCAL_POOL};
use skiff_cluster::state::servers::{
    shutdown_force_after, DiskSpec, PowerState, SHUTDOWN_FORCE_AFTER_SECS,
};
use skiff_cluster::state::{
    BackupCommand, ClusterState, Command, CommandOutcome, ImageCommand, ImageOp, ServerRecord,
    TaskCommand, TaskRecord, TaskState,
};
use skiff_cluster::transport::ALPN_AGENT;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::agent::{AgentCallError, Node};
use crate::compute::GOSSIP_HYPERVISOR;

/// Time between two passes.
pub const PASS_INTERVAL: Duration = Duration::from_millis(500);
/// The least time between the starts of two passes when hints wake the reconciler early: a burst
/// of hints (or a node sending too many) cannot make it spin.
pub const MIN_WAKE_GAP: Duration = Duration::from_millis(50);

/// Why the reconciler woke up for its next pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woken {
    /// [`PASS_INTERVAL`] went by.
    Interval,
    /// Leadership started or ended.
    Leadership,
    /// A node's `Changed` hint (through `wake`).
    Hint,
}

/// Waits until the next pass is due: [`PASS_INTERVAL`] from now, a change of leadership, or a
/// hint on `wake` (then no sooner than [`MIN_WAKE_GAP`] after `last_pass` started). A hint that
/// came during the pass is not lost: `Notify` keeps one permit.
pub async fn until_next_pass(
    wake: &tokio::sync::Notify,
    active: &mut tokio::sync::watch::Receiver<Option<u64>>,
    last_pass: Instant,
) -> Woken {
    tokio::select! {
        _ = active.changed() => Woken::Leadership,
        _ = tokio::time::sleep(PASS_INTERVAL) => Woken::Interval,
        _ = wake.notified() => {
            let since = last_pass.elapsed();
            if since < MIN_WAKE_GAP {
                tokio::time::sleep(MIN_WAKE_GAP - since).await;
            }
            Woken::Hint
        }
    }
}

/// A task whose node stays down this long (seconds since it was created) fails.
pub const NODE_DOWN_GRACE_SECS: u64 = 30;
/// Transport failures tolerated while carrying out one task before it fails.
pub const TASK_SEND_ATTEMPTS: u32 = 5;
/// Longest wait before the drift loop tries a failing server again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An upload task older than this (seconds) that no API request on this leader carries fails.
pub const ORPHAN_UPLOAD_SECS: u64 = 60;
/// An image file in a pool that nothing in the desired state explains is set aside once it has
/// not changed for this long (seconds): a margin over any work in flight that made it.
pub const ORPHAN_IMAGE_SECS: u64 = 120;
/// Who the reconciler's Raft writes are from.
pub const ACTOR: &str = "system";

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// What a task asks of the agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskPlan {
    /// Not a task the reconciler carries out (another service owns it).
    NotOurs,
    /// Ensure the server on its node, after removing it from `remove_from` (a move).
    Ensure {
        node: String,
        server: Box<ServerRecord>,
        action: Option<PowerAction>,
        /// How long a shutdown waits before forcing the server off.
        force_after_secs: u64,
        remove_from: Vec<String>,
    },
    /// Remove the domain from the node.
    Remove { node: String, name: String },
    /// Carry out an image's or a backup's pending operation on its node (`request`), then
    /// settle it in the state.
    Settled {
        node: String,
        request: AgentRequest,
        settle: SettleOf,
    },
    /// Nothing to do on any node: finish at once with this result.
    Done(String),
    /// Cannot be carried out: fail with this message.
    Fail(String),
    /// An image or backup task that cannot be carried out: settle its operation as failed, and
    /// fail.
    FailSettled { settle: SettleOf, message: String },
}

/// Whose pending operation a task settles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettleOf {
    Image(String),
    Backup(u64),
}

impl SettleOf {
    /// The command that records the outcome of task `task_id`.
    fn command(&self, task_id: u64, ok: bool) -> Command {
        match self {
            SettleOf::Image(name) => Command::Image(ImageCommand::Settle {
                name: name.clone(),
                task_id,
                ok,
                size_gib: None,
            }),
            SettleOf::Backup(id) => Command::Backup(BackupCommand::Settle {
                id: *id,
                task_id,
                ok,
            }),
        }
    }
}

/// Decides what a `server.*` task needs. `holders` are the nodes whose last report shows a domain
/// of that name (for moves).
pub fn plan_task(task: &TaskRecord, state: &ClusterState, holders: &[String]) -> TaskPlan {
    if task.kind.starts_with("image.") {
        return plan_image_task(task, state);
    }
    if task.kind.starts_with("backup.") {
        return plan_backup_task(task, state);
    }
    let Some(op) = task.kind.strip_prefix("server.") else {
        return TaskPlan::NotOurs;
    };
    let action = match op {
        "reboot" => Some(PowerAction::Reboot),
        "destroy" => Some(PowerAction::ForceStop),
        "create" | "start" | "shutdown" | "stop" | "suspend" | "resume" | "move" | "failover"
        | "update" | "attach_disk" | "detach_disk" | "mount_iso" | "unmount_iso" => None,
        "remove" => {
            return match (&task.node, state.servers.get(&task.target)) {
                (_, Some(s)) if s.node.is_some() && s.node != task.node => TaskPlan::Fail(format!(
                    "server {} still exists on {}: not removing it",
                    task.target,
                    s.node.as_deref().unwrap_or("?")
                )),
                (Some(n), _) => TaskPlan::Remove {
                    node: n.clone(),
                    name: task.target.clone(),
                },
                (None, _) => TaskPlan::Done("the server was on no node".into()),
            }
        }
        _ => return TaskPlan::NotOurs,
    };
    let Some(server) = state.servers.get(&task.target) else {
        return TaskPlan::Fail(format!("server {} no longer exists", task.target));
    };
    let Some(node) = server.node.clone() else {
        return TaskPlan::Fail(format!("server {} is not placed on any node", server.name));
    };
    TaskPlan::Ensure {
        force_after_secs: shutdown_force_after(task),
        remove_from: holders.iter().filter(|h| **h != node).cloned().collect(),
        node,
        server: Box::new(server.clone()),
        action,
    }
}

/// Decides what an `image.*` task needs: the image's pending operation, if it is this task's.
fn plan_image_task(task: &TaskRecord, state: &ClusterState) -> TaskPlan {
    let Some(image) = state.images.get(&task.target) else {
        return TaskPlan::Fail(format!("image {} no longer exists", task.target));
    };
    match &image.pending {
        // The API streams an upload while its request lasts; one that no request on this
        // leader carries (the leader changed, or the client went away) fails after a while.
        Some(p) if p.task_id == task.id && p.op == ImageOp::Upload => {
            let age = skiff_cluster::unix_now().saturating_sub(task.created_at);
            if crate::api::uploading(&image.name) || age < ORPHAN_UPLOAD_SECS {
                TaskPlan::NotOurs
            } else {
                TaskPlan::FailSettled {
                    settle: SettleOf::Image(image.name.clone()),
                    message: "the upload was interrupted (no request carries it)".into(),
                }
            }
        }
        Some(p) if p.task_id == task.id => TaskPlan::Settled {
            node: image.node.clone(),
            request: AgentRequest::Image {
                name: image.name.clone(),
                op: p.op.clone(),
                pool: image.pool.clone(),
            },
            settle: SettleOf::Image(image.name.clone()),
        },
        _ => TaskPlan::Fail(format!(
            "image {} has no pending operation of this task",
            task.target
        )),
    }
}

/// Decides what a `backup.*` task needs: the pending operation of the backup it belongs to.
fn plan_backup_task(task: &TaskRecord, state: &ClusterState) -> TaskPlan {
    let backup = state
        .backups
        .values()
        .find(|b| b.pending.as_ref().is_some_and(|p| p.task_id == task.id));
    match backup {
        Some(b) => TaskPlan::Settled {
            node: b.node.clone(),
            request: AgentRequest::Backup {
                id: b.id,
                files: b.files.clone(),
                op: b.pending.as_ref().map_or(BackupOp::Create, |p| p.op),
                pool: b.pool.clone(),
                whole_pool: matches!(b.target, BackupTarget::Pool { .. }),
                at: b.created_at,
            },
            settle: SettleOf::Backup(b.id),
        },
        None => TaskPlan::Fail(format!(
            "no backup has a pending operation of task {}",
            task.id
        )),
    }
}

/// Whether a task is open (queued or running) for a server, or its newest task was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTasks {
    Idle,
    Open(u64),
    Cancelled(u64),
}

/// The task situation of every server named by a `server.*` task.
pub fn server_tasks(state: &ClusterState) -> HashMap<String, ServerTasks> {
    let mut out: HashMap<String, ServerTasks> = HashMap::new();
    // Tasks are ordered by id: later ones override earlier ones, except that any open task wins.
    for t in state.tasks.values() {
        if !t.kind.starts_with("server.") {
            continue;
        }
        let entry = out.entry(t.target.clone()).or_insert(ServerTasks::Idle);
        if matches!(entry, ServerTasks::Open(_)) {
            continue;
        }
        *entry = match t.state {
            TaskState::Queued | TaskState::Running => ServerTasks::Open(t.id),
            TaskState::Cancelled => ServerTasks::Cancelled(t.id),
            TaskState::Succeeded | TaskState::Failed => ServerTasks::Idle,
        };
    }
    out
}

/// One change the drift pass makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriftAction {
    Ensure {
        node: String,
        server: Box<ServerRecord>,
    },
    Remove {
        node: String,
        name: String,
    },
    /// Move an image file nothing explains out of the node's pool (see [`ORPHAN_IMAGE_SECS`]).
    SetAside {
        node: String,
        pool: String,
        name: String,
    },
    /// Hand the node the pools it should have (it reports others, or some unusable).
    Pools {
        node: String,
        pools: Vec<PoolSpec>,
    },
}

impl DriftAction {
    /// Identifies the action for backoff and to avoid running it twice at once.
    pub fn key(&self) -> String {
        match self {
            DriftAction::Ensure { node, server } => format!("{}@{node}", server.name),
            DriftAction::Remove { node, name } => format!("{name}@{node}"),
            DriftAction::SetAside { node, pool, name } => format!("image:{pool}/{name}@{node}"),
            DriftAction::Pools { node, .. } => format!("pools@{node}"),
        }
    }
}

/// What one node told the reconciler.
#[derive(Clone, Debug)]
pub enum NodeReport {
    /// Gossip says it is down.
    Dead,
    /// It did not answer.
    Unreachable(String),
    /// It is alive but runs no hypervisor (`[compute] enabled = false`).
    NoCompute,
    Report(AgentReport),
}

/// Compares the desired servers with the reports and says what to change, and how each server
/// looks. `is_shared` tells whether a disk is on shared storage (for the HA decision).
pub fn plan_drift(
    state: &ClusterState,
    reports: &BTreeMap<String, NodeReport>,
    tasks: &HashMap<String, ServerTasks>,
    is_shared: &dyn Fn(&DiskSpec) -> bool,
) -> (Vec<DriftAction>, Vec<ServerActual>) {
    let mut actions = Vec::new();
    let mut view = Vec::new();
    for s in state.servers.values() {
        let mut a = ServerActual {
            name: s.name.clone(),
            owner: s.owner.clone(),
            node: s.node.clone(),
            desired: s.desired,
            generation: s.generation,
            power: None,
            actual_generation: None,
            convergence: Convergence::InSync,
            note: String::new(),
            figures: None,
        };
        let task = tasks.get(&s.name).copied().unwrap_or(ServerTasks::Idle);
        match s.node.as_ref().map(|n| (n, reports.get(n))) {
            None => {
                a.convergence = Convergence::Unplaced;
            }
            Some((n, None | Some(NodeReport::Dead))) => {
                a.convergence = Convergence::NodeDead;
                a.note = match ha_decision(s, false, is_shared) {
                    HaDecision::RestartElsewhere => format!(
                        "node {n} is down; highly available with shared disks: to be restarted elsewhere"
                    ),
                    HaDecision::Stay => format!("node {n} is down"),
                    HaDecision::NotEligible(why) => format!("node {n} is down; not restarted elsewhere: {why}"),
                };
            }
            Some((n, Some(NodeReport::NoCompute))) => {
                a.convergence = Convergence::NodeUnreachable;
                a.note = format!("node {n} does not run servers ([compute] enabled = false)");
            }
            Some((n, Some(NodeReport::Unreachable(e)))) => {
                a.convergence = Convergence::NodeUnreachable;
                a.note = format!("node {n} did not report: {e}");
            }
            Some((n, Some(NodeReport::Report(r)))) => {
                let d = r.domains.iter().find(|d| d.name == s.name);
                a.figures = r.figures.iter().find(|f| f.name == s.name).cloned();
                a.power = d.map(|d| d.power);
                a.actual_generation = d.map(|d| d.generation);
                let in_sync =
                    d.is_some_and(|d| d.generation >= s.generation && d.power.satisfies(s.desired));
                match (in_sync, task) {
                    (_, ServerTasks::Open(id)) => {
                        a.convergence = Convergence::TaskOpen;
                        a.note = format!("task {id} is working on it");
                    }
                    (true, _) => {}
                    (false, ServerTasks::Cancelled(id)) => {
                        a.convergence = Convergence::Paused;
                        a.note =
                            format!("task {id} was cancelled: left alone until its next change");
                    }
                    (false, ServerTasks::Idle) => {
                        a.convergence = Convergence::Converging;
                        a.note = match d {
                            None => format!("missing on {n}"),
                            Some(d) if d.generation < s.generation => {
                                format!(
                                    "defined from generation {} of {}",
                                    d.generation, s.generation
                                )
                            }
                            Some(d) => {
                                format!("{:?}, desired {:?}", d.power, s.desired).to_lowercase()
                            }
                        };
                        actions.push(DriftAction::Ensure {
                            node: n.clone(),
                            server: Box::new(s.clone()),
                        });
                    }
                }
            }
        }
        view.push(a);
    }
    // Shared pools' markers are written by the first node (by name) that reports.
    let first_reporting = reports
        .iter()
        .find(|(_, r)| matches!(r, NodeReport::Report(_)))
        .map(|(n, _)| n.clone());
    for (node, r) in reports {
        let NodeReport::Report(r) = r else { continue };
        let wanted = pools_of(
            state,
            node,
            first_reporting.as_deref() == Some(node.as_str()),
        );
        if pools_differ(&wanted, r.pools.as_deref()) {
            actions.push(DriftAction::Pools {
                node: node.clone(),
                pools: wanted,
            });
        }
        for d in &r.domains {
            let explained = state
                .servers
                .get(&d.name)
                .is_some_and(|s| s.node.as_deref() == Some(node.as_str()));
            let busy = matches!(tasks.get(&d.name), Some(ServerTasks::Open(_)));
            if !explained && !busy {
                actions.push(DriftAction::Remove {
                    node: node.clone(),
                    name: d.name.clone(),
                });
            }
        }
        for f in r.images.iter().flatten() {
            if f.age_secs >= ORPHAN_IMAGE_SECS
                && !image_explained(state, tasks, node, &f.pool, &f.name)
            {
                actions.push(DriftAction::SetAside {
                    node: node.clone(),
                    pool: f.pool.clone(),
                    name: f.name.clone(),
                });
            }
        }
    }
    (actions, view)
}

/// Whether a node's report of its pools differs from what it should have: another set of pools
/// (by name, kind and directory), or one it cannot use. An older agent (no list) is left alone.
fn pools_differ(wanted: &[PoolSpec], reported: Option<&[PoolReport]>) -> bool {
    let Some(reported) = reported else {
        return false;
    };
    let others: Vec<&PoolReport> = reported.iter().filter(|p| p.name != LOCAL_POOL).collect();
    others.len() != wanted.len()
        || others.iter().any(|r| r.error.is_some())
        || wanted.iter().any(|w| {
            !others.iter().any(|r| {
                r.name == w.name
                    && r.kind == w.kind.as_str()
                    && match &w.kind {
                        PoolKind::Dir { path } => &r.path == path,
                        PoolKind::Zfs { .. } => true,
                    }
            })
        })
}

/// Whether the desired state accounts for the image file `name` in the pool `pool` as `node`
/// lists it: an image recorded in that pool (made, pending or being removed) on that node — on
/// any node for a shared pool, which every node lists —, or a disk (`SERVER-diskN`) of a server
/// placed there (anywhere, for a shared pool) or with a task under way (a move or removal may
/// hold disks on two nodes).
fn image_explained(
    state: &ClusterState,
    tasks: &HashMap<String, ServerTasks>,
    node: &str,
    pool: &str,
    name: &str,
) -> bool {
    let shared = state.pools.get(pool).is_some_and(|p| p.is_shared());
    if state
        .images
        .get(name)
        .is_some_and(|i| i.pool == pool && (shared || i.node == node))
    {
        return true;
    }
    let Some(server) = disk_owner(name) else {
        return false;
    };
    state
        .servers
        .get(server)
        .is_some_and(|s| shared || s.node.as_deref() == Some(node))
        || matches!(tasks.get(server), Some(ServerTasks::Open(_)))
}

/// The images recorded as made on `node` (ready, no operation under way) whose file its report
/// does not list, sorted; empty when the report has no list.
pub fn missing_images(state: &ClusterState, node: &str, report: &AgentReport) -> Vec<String> {
    let Some(files) = &report.images else {
        return Vec::new();
    };
    // Pools the node cannot use are not listed: their images are not judged missing.
    let listed = |pool: &str| match &report.pools {
        Some(pools) => pools.iter().any(|p| p.name == pool && p.error.is_none()),
        None => pool == LOCAL_POOL,
    };
    let present: HashSet<(&str, &str)> = files
        .iter()
        .map(|f| (f.pool.as_str(), f.name.as_str()))
        .collect();
    state
        .images
        .values()
        .filter(|i| i.node == node && i.ready && i.pending.is_none() && listed(&i.pool))
        .filter(|i| !present.contains(&(i.pool.as_str(), i.name.as_str())))
        .map(|i| i.name.clone())
        .collect()
}

/// Whether a server on a dead node should be restarted elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaDecision {
    /// Its node is alive, or it is not meant to run: nothing to do.
    Stay,
    /// Restart it on another node (a `server.move` task).
    RestartElsewhere,
    /// It cannot move, and why.
    NotEligible(String),
}

/// Whether a disk is on a shared pool: shared pools are numbered from 0 (`"0"`, `"1"`...); named
/// pools and the default (`None`) are local to a node.
pub fn is_shared_pool(disk: &DiskSpec) -> bool {
    disk.pool
        .as_deref()
        .is_some_and(skiff_cluster::state::pools::is_shared_name)
}

/// Decides whether a server whose node is `node_alive` should restart elsewhere: only when it is
/// marked highly available, should run, is not locked to its node, and every disk is on shared
/// storage (a local disk died with its node).
pub fn ha_decision(
    server: &ServerRecord,
    node_alive: bool,
    is_shared: &dyn Fn(&DiskSpec) -> bool,
) -> HaDecision {
    if node_alive || server.desired == PowerState::Stopped {
        return HaDecision::Stay;
    }
    if !server.spec.ha {
        return HaDecision::NotEligible("not marked highly available".into());
    }
    if server.spec.lock_to_node.is_some() && server.spec.lock_to_node == server.node {
        return HaDecision::NotEligible("locked to its node".into());
    }
    let local: Vec<String> = server
        .spec
        .disks
        .iter()
        .enumerate()
        .filter(|(_, d)| !is_shared(d))
        .map(|(i, _)| i.to_string())
        .collect();
    if !local.is_empty() {
        return HaDecision::NotEligible(format!(
            "disk(s) {} are not on shared storage",
            local.join(", ")
        ));
    }
    HaDecision::RestartElsewhere
}

/// Exponential backoff after `fails` consecutive failures: 1 s, 2 s, 4 s... up to [`MAX_BACKOFF`].
pub fn backoff(fails: u32) -> Duration {
    if fails == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (fails - 1).min(5)).min(MAX_BACKOFF)
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

type Views = Mutex<HashMap<PathBuf, ActualView>>;

fn views() -> &'static Views {
    static VIEWS: OnceLock<Views> = OnceLock::new();
    VIEWS.get_or_init(Default::default)
}

fn set_view(data_dir: &Path, view: Option<ActualView>) {
    if let Ok(mut v) = views().lock() {
        match view {
            Some(view) => v.insert(data_dir.to_path_buf(), view),
            None => v.remove(data_dir),
        };
    }
}

/// The last view of the reconciler running on `node` (only while it leads).
pub fn actual_view(node: &Node) -> Option<ActualView> {
    views().lock().ok()?.get(&node.data_dir).cloned()
}

/// The pools each node reported in the reconciler's last pass on `node` (nodes that reported
/// none are left out).
pub fn reported_pools(node: &Node) -> BTreeMap<String, Vec<PoolReport>> {
    actual_view(node)
        .map(|v| {
            v.nodes
                .into_iter()
                .filter_map(|n| n.pools.map(|p| (n.name, p)))
                .collect()
        })
        .unwrap_or_default()
}

/// What one leader term of the reconciler remembers (never needed for correctness).
struct Memory {
    term: u64,
    /// When this node began to serve this term (fencing counts from it).
    since: Instant,
    /// Servers whose failover could not be placed, and when to try again.
    failover_retry: HashMap<String, Instant>,
    /// Work under way: `task:ID` or a drift key.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Drift failures per key: count and when to try again.
    failures: Arc<Mutex<HashMap<String, (u32, Instant)>>>,
    /// Transport failures per task.
    send_failures: Arc<Mutex<HashMap<u64, u32>>>,
    agent_generations: HashMap<String, u64>,
    reports: BTreeMap<String, NodeReport>,
    work: JoinSet<()>,
}

impl Memory {
    fn new(term: u64) -> Self {
        Memory {
            term,
            since: Instant::now(),
            failover_retry: HashMap::new(),
            in_flight: Default::default(),
            failures: Default::default(),
            send_failures: Default::default(),
            agent_generations: HashMap::new(),
            reports: BTreeMap::new(),
            work: JoinSet::new(),
        }
    }
}

fn claim(set: &Mutex<HashSet<String>>, key: &str) -> bool {
    set.lock()
        .map(|mut s| s.insert(key.to_string()))
        .unwrap_or(false)
}

fn release(set: &Mutex<HashSet<String>>, key: &str) {
    if let Ok(mut s) = set.lock() {
        s.remove(key);
    }
}

/// Runs the reconciler for as long as the node runs; it works only while the node serves as leader.
pub async fn run(node: Arc<Node>) {
    let Some(leader) = node.leader.clone() else {
        return;
    };
    let mut active = leader.watch();
    let mut memory: Option<Memory> = None;
    loop {
        let started = Instant::now();
        match node.serving_term() {
            Some(term) => {
                if memory.as_ref().map(|m| m.term) != Some(term) {
                    info!(term, "reconciler running");
                    memory = Some(Memory::new(term));
                }
                if let Some(m) = memory.as_mut() {
                    pass(&node, m).await;
                }
            }
            None => {
                if memory.take().is_some() {
                    info!("reconciler stopped: no longer leader");
                    set_view(&node.data_dir, None);
                }
            }
        }
        if until_next_pass(&node.reconcile_wake, &mut active, started).await == Woken::Hint {
            debug!("reconciling early: a node reported a change");
        }
    }
}

/// One pass: tasks, then drift, then the view.
async fn pass(node: &Arc<Node>, m: &mut Memory) {
    while m.work.try_join_next().is_some() {}
    let Some(state) = node.state() else { return };
    let gossip = node.gossip_nodes().await;
    let alive: HashSet<String> = gossip
        .iter()
        .filter(|g| g.alive || g.name == node.name)
        .map(|g| g.name.clone())
        .collect();
    let compute: Vec<String> = gossip
        .iter()
        .filter(|g| g.get(GOSSIP_HYPERVISOR).is_some() && state.nodes.contains_key(&g.name))
        .map(|g| g.name.clone())
        .collect();

    // Reports from every compute node (at once).
    let mut asks = JoinSet::new();
    for name in &compute {
        if !alive.contains(name) {
            continue;
        }
        let Some(addr) = state.nodes.get(name).map(|n| n.addr) else {
            continue;
        };
        let (ep, name) = (node.endpoint.clone(), name.clone());
        asks.spawn(async move {
            let r = ep
                .request(
                    addr,
                    ALPN_AGENT,
                    AgentRequest::Report.encode(),
                    REPORT_TIMEOUT,
                )
                .await;
            let report = match r.map(|b| AgentReply::decode(&b)) {
                Ok(Ok(AgentReply::Report(r))) => NodeReport::Report(r),
                Ok(Ok(AgentReply::Error { message, .. })) => NodeReport::Unreachable(message),
                Ok(Ok(other)) => NodeReport::Unreachable(format!("unexpected reply {other:?}")),
                Ok(Err(e)) => NodeReport::Unreachable(e.to_string()),
                Err(e) => NodeReport::Unreachable(e.to_string()),
            };
            (name, report)
        });
    }
    let mut reports: BTreeMap<String, NodeReport> = BTreeMap::new();
    for name in state.nodes.keys() {
        let report = if compute.contains(name) || !alive.contains(name) {
            NodeReport::Dead
        } else {
            NodeReport::NoCompute
        };
        reports.insert(name.clone(), report);
    }
    while let Some(Ok((name, report))) = asks.join_next().await {
        if let NodeReport::Report(r) = &report {
            let before = m.agent_generations.insert(name.clone(), r.agent_generation);
            if before.is_some_and(|g| g != r.agent_generation) {
                info!(node = %name, "agent restarted: converging it again");
            }
        }
        reports.insert(name, report);
    }
    m.reports = reports;

    let tasks = server_tasks(&state);
    run_tasks(node, m, &state, &alive);
    run_drift(node, m, &state, &tasks);
    run_failover(node, m, &state, &tasks, &gossip).await;
    run_backup_schedules(node, &state).await;

    let (_, servers) = plan_drift(&state, &m.reports, &tasks, &is_shared_pool);
    let nodes = m
        .reports
        .iter()
        .map(|(name, r)| NodeActual {
            name: name.clone(),
            alive: !matches!(r, NodeReport::Dead),
            hypervisor: match r {
                NodeReport::Report(r) => Some(r.hypervisor.clone()),
                NodeReport::NoCompute => Some("none".into()),
                _ => None,
            },
            agent_generation: match r {
                NodeReport::Report(r) => Some(r.agent_generation),
                _ => None,
            },
            domains: match r {
                NodeReport::Report(r) => r.domains.len(),
                _ => 0,
            },
            images: match r {
                NodeReport::Report(r) => r.images.as_ref().map(Vec::len),
                _ => None,
            },
            missing_images: match r {
                NodeReport::Report(r) => missing_images(&state, name, r),
                _ => Vec::new(),
            },
            pools: match r {
                NodeReport::Report(r) => r.pools.clone(),
                _ => None,
            },
            error: match r {
                NodeReport::Unreachable(e) => Some(e.clone()),
                _ => None,
            },
        })
        .collect();
    set_view(
        &node.data_dir,
        Some(ActualView {
            leader: node.name.clone(),
            updated_at: skiff_cluster::unix_now(),
            servers,
            nodes,
        }),
    );
}

/// Makes the day's scheduled backups that are due and removes those beyond their retention
/// (see `state::backups::schedule_due`). Each proposal is applied before the next pass reads
/// the state, so a backup is asked for once.
async fn run_backup_schedules(node: &Node, state: &ClusterState) {
    let (due, expired) = schedule_due(state, skiff_cluster::unix_now());
    for s in due {
        let cmd = Command::Backup(BackupCommand::Create {
            target: s.target.clone(),
            owner: s.owner.clone(),
            scheduled: true,
        });
        match node.propose(ACTOR, cmd).await {
            Ok(CommandOutcome::TaskStarted { task_id }) => {
                info!(target = %s.target.describe(), task = task_id, "scheduled backup started")
            }
            other => {
                debug!(target = %s.target.describe(), outcome = ?other, "scheduled backup not started")
            }
        }
    }
    for id in expired {
        let cmd = Command::Backup(BackupCommand::Remove { id });
        if let Ok(CommandOutcome::TaskStarted { task_id }) = node.propose(ACTOR, cmd).await {
            info!(
                backup = id,
                task = task_id,
                "removing a backup beyond its schedule's retention"
            );
        }
    }
}

/// Restarts the highly available servers of lost nodes elsewhere, once each lost node has surely
/// fenced itself (see [`crate::fencing`]): its last lease renewal with this leader (or this term's
/// start) is older than `fence_after` plus a margin.
async fn run_failover(
    node: &Arc<Node>,
    m: &mut Memory,
    state: &ClusterState,
    tasks: &HashMap<String, ServerTasks>,
    gossip: &[skiff_cluster::gossip::GossipNode],
) {
    let policy = crate::scheduler::SchedulerPolicy::from(&node.config.scheduler);
    for s in state.servers.values() {
        let Some(from) = s.node.as_deref() else {
            continue;
        };
        if !matches!(m.reports.get(from), Some(NodeReport::Dead))
            || matches!(tasks.get(&s.name), Some(ServerTasks::Open(_)))
            || ha_decision(s, false, &is_shared_pool) != HaDecision::RestartElsewhere
            || !node.fencing.lost_long_enough(from, m.since)
            || m.failover_retry
                .get(&s.name)
                .is_some_and(|t| Instant::now() < *t)
        {
            continue;
        }
        let mut demand = crate::scheduler::Demand::of(&s.spec);
        demand.exclude = Some(from.to_string());
        let candidates = crate::scheduler::candidates(state, gossip, Some(&s.name));
        let to = match crate::scheduler::place(&candidates, &demand, &policy) {
            Ok(to) => to,
            Err(e) => {
                warn!(server = %s.name, node = %from, reason = %e, "cannot restart a highly available server elsewhere");
                m.failover_retry
                    .insert(s.name.clone(), Instant::now() + MAX_BACKOFF);
                continue;
            }
        };
        let cmd = Command::Server(skiff_cluster::state::ServerCommand::Failover {
            name: s.name.clone(),
            from: from.to_string(),
            to: to.clone(),
        });
        match node.propose(ACTOR, cmd).await {
            Ok(CommandOutcome::TaskStarted { task_id }) => {
                info!(server = %s.name, from = %from, to = %to, task_id, "node lost: restarting a highly available server elsewhere");
            }
            other => {
                warn!(server = %s.name, outcome = ?other, "failover refused");
                m.failover_retry
                    .insert(s.name.clone(), Instant::now() + MAX_BACKOFF);
            }
        }
    }
}

fn run_tasks(node: &Arc<Node>, m: &mut Memory, state: &ClusterState, alive: &HashSet<String>) {
    for task in state.tasks.values() {
        if task.state.is_final() {
            continue;
        }
        let key = format!("task:{}", task.id);
        if m.in_flight.lock().map(|s| s.contains(&key)).unwrap_or(true) {
            continue;
        }
        let holders: Vec<String> = m
            .reports
            .iter()
            .filter_map(|(n, r)| match r {
                NodeReport::Report(r) if r.domains.iter().any(|d| d.name == task.target) => {
                    Some(n.clone())
                }
                _ => None,
            })
            .collect();
        let plan = plan_task(task, state, &holders);
        if plan == TaskPlan::NotOurs {
            continue;
        }
        // Wait for a dead node for a while, then give up.
        let target_node = match &plan {
            TaskPlan::Ensure { node, .. }
            | TaskPlan::Remove { node, .. }
            | TaskPlan::Settled { node, .. } => Some(node.clone()),
            _ => None,
        };
        let plan = match target_node {
            Some(n) if !alive.contains(&n) => {
                let waited = skiff_cluster::unix_now().saturating_sub(task.created_at);
                if waited < NODE_DOWN_GRACE_SECS {
                    continue;
                }
                match plan {
                    TaskPlan::Settled { settle, .. } => TaskPlan::FailSettled {
                        settle,
                        message: format!("node {n} is down"),
                    },
                    _ => TaskPlan::Fail(format!("node {n} is down")),
                }
            }
            _ => plan,
        };
        if !claim(&m.in_flight, &key) {
            continue;
        }
        let (node, in_flight, send_failures) =
            (node.clone(), m.in_flight.clone(), m.send_failures.clone());
        let (id, resumed) = (task.id, task.state == TaskState::Running);
        m.work.spawn(async move {
            let retry = carry_out(&node, id, resumed, plan).await;
            if retry {
                let n = send_failures
                    .lock()
                    .map(|mut f| {
                        let n = f.entry(id).or_insert(0);
                        *n += 1;
                        *n
                    })
                    .unwrap_or(TASK_SEND_ATTEMPTS);
                if n >= TASK_SEND_ATTEMPTS {
                    finish(&node, id, false, "the node did not answer".into()).await;
                }
                tokio::time::sleep(backoff(n)).await;
            }
            release(&in_flight, &format!("task:{id}"));
        });
    }
}

async fn propose_task(node: &Node, cmd: TaskCommand) -> bool {
    match node.propose(ACTOR, Command::Task(cmd)).await {
        Ok(CommandOutcome::Done) => true,
        Ok(other) => {
            debug!(outcome = ?other, "task write refused");
            false
        }
        Err(e) => {
            debug!(error = %e, "task write failed");
            false
        }
    }
}

async fn progress(node: &Node, id: u64, progress: u8, line: String) -> bool {
    propose_task(
        node,
        TaskCommand::Progress {
            id,
            progress,
            line: Some(line),
        },
    )
    .await
}

async fn finish(node: &Node, id: u64, ok: bool, result: String) {
    if ok {
        info!(task = id, %result, "task succeeded");
    } else {
        warn!(task = id, %result, "task failed");
    }
    propose_task(node, TaskCommand::Finish { id, ok, result }).await;
}

/// The outcome of one agent request.
enum Sent {
    Done(Vec<String>),
    Failed(String, Vec<String>),
    /// The node could not be reached: try again later.
    Unreachable(String),
}

async fn send(node: &Node, to: &str, req: AgentRequest) -> Sent {
    match node.call_agent(to, &req).await {
        Err(e @ AgentCallError::NotMember(_)) => Sent::Failed(e.to_string(), Vec::new()),
        Err(AgentCallError::Unreachable { reason, .. }) => Sent::Unreachable(reason),
        Err(AgentCallError::Garbled { reason, .. }) => Sent::Failed(reason, Vec::new()),
        Ok(reply) => match reply {
            AgentReply::Done { log, .. } => Sent::Done(log),
            // A node without an HA lease yet (just started or just reconnected) will have one in
            // a moment: like an unreachable node, try again.
            AgentReply::Error {
                code: AgentErrorCode::NoLease,
                message,
                ..
            } => Sent::Unreachable(message),
            AgentReply::Error { message, log, .. } => Sent::Failed(message, log),
            other => Sent::Failed(format!("unexpected reply {other:?}"), Vec::new()),
        },
    }
}

/// Carries out one task; returns true when it should be tried again (a node did not answer).
async fn carry_out(node: &Node, id: u64, resumed: bool, plan: TaskPlan) -> bool {
    let (requests, work_node) = match plan {
        TaskPlan::NotOurs => return false,
        TaskPlan::Done(result) => {
            if propose_task(node, TaskCommand::Start { id, node: None }).await {
                finish(node, id, true, result).await;
            }
            return false;
        }
        TaskPlan::Fail(message) => {
            if propose_task(node, TaskCommand::Start { id, node: None }).await {
                finish(node, id, false, message).await;
            }
            return false;
        }
        TaskPlan::FailSettled { settle, message } => {
            if propose_task(node, TaskCommand::Start { id, node: None }).await {
                settle_work(node, &settle, id, false).await;
                finish(node, id, false, message).await;
            }
            return false;
        }
        TaskPlan::Settled {
            node: n,
            request,
            settle,
        } => {
            return carry_out_settled(node, id, resumed, n, request, settle).await;
        }
        TaskPlan::Remove { node: n, name } => (
            vec![(
                n.clone(),
                AgentRequest::Remove {
                    name,
                    shared_disks: true,
                },
            )],
            n,
        ),
        TaskPlan::Ensure {
            node: n,
            server,
            action,
            force_after_secs,
            remove_from,
        } => {
            let mut reqs: Vec<(String, AgentRequest)> = remove_from
                .into_iter()
                .map(|from| {
                    (
                        from,
                        AgentRequest::Remove {
                            name: server.name.clone(),
                            shared_disks: false,
                        },
                    )
                })
                .collect();
            reqs.push((
                n.clone(),
                AgentRequest::Ensure {
                    server,
                    action,
                    force_after_secs,
                },
            ));
            (reqs, n)
        }
    };
    if !propose_task(
        node,
        TaskCommand::Start {
            id,
            node: Some(work_node),
        },
    )
    .await
    {
        return false;
    }
    if resumed {
        info!(task = id, "taking over a task of an earlier leader");
    }
    let steps = requests.len();
    let mut log_lines = Vec::new();
    for (i, (to, req)) in requests.into_iter().enumerate() {
        let what = req.describe();
        let base = (10 + 80 * i / steps) as u8;
        if !progress(node, id, base, format!("{what}: sent to {to}")).await {
            return false; // cancelled, or no longer leader
        }
        match send(node, &to, req).await {
            Sent::Done(log) => log_lines.extend(log.into_iter().map(|l| (to.clone(), l))),
            Sent::Failed(message, log) => {
                for l in log {
                    progress(node, id, base, format!("{to}: {l}")).await;
                }
                finish(node, id, false, format!("{what} on {to} failed: {message}")).await;
                return false;
            }
            Sent::Unreachable(e) => {
                progress(
                    node,
                    id,
                    base,
                    format!("{to} did not answer ({e}); will retry"),
                )
                .await;
                return true;
            }
        }
    }
    let n = log_lines.len().max(1);
    for (i, (to, l)) in log_lines.into_iter().enumerate() {
        progress(
            node,
            id,
            (10 + 80 * (i + 1) / n) as u8,
            format!("{to}: {l}"),
        )
        .await;
    }
    finish(node, id, true, "done".into()).await;
    false
}

/// Writes the outcome of an image or backup task's operation into the state (see
/// `state::images`, `state::backups`).
async fn settle_work(node: &Node, settle: &SettleOf, id: u64, ok: bool) -> bool {
    match node.propose(ACTOR, settle.command(id, ok)).await {
        Ok(CommandOutcome::Done) => true,
        other => {
            warn!(task = id, ?settle, outcome = ?other, "settling the operation failed");
            false
        }
    }
}

/// Carries out one image or backup task on its node; true when it should be tried again.
async fn carry_out_settled(
    node: &Node,
    id: u64,
    resumed: bool,
    to: String,
    req: AgentRequest,
    settle: SettleOf,
) -> bool {
    if !propose_task(
        node,
        TaskCommand::Start {
            id,
            node: Some(to.clone()),
        },
    )
    .await
    {
        return false;
    }
    if resumed {
        info!(task = id, "taking over a task of an earlier leader");
    }
    let what = req.describe();
    if !progress(node, id, 10, format!("{what}: sent to {to}")).await {
        return false;
    }
    match send(node, &to, req).await {
        Sent::Done(log) => {
            for l in log {
                progress(node, id, 90, format!("{to}: {l}")).await;
            }
            if settle_work(node, &settle, id, true).await {
                finish(node, id, true, "done".into()).await;
            }
            false
        }
        Sent::Failed(message, log) => {
            for l in log {
                progress(node, id, 50, format!("{to}: {l}")).await;
            }
            settle_work(node, &settle, id, false).await;
            finish(node, id, false, format!("{what} on {to} failed: {message}")).await;
            false
        }
        Sent::Unreachable(e) => {
            progress(
                node,
                id,
                10,
                format!("{to} did not answer ({e}); will retry"),
            )
            .await;
            true
        }
    }
}

fn run_drift(
    node: &Arc<Node>,
    m: &mut Memory,
    state: &ClusterState,
    tasks: &HashMap<String, ServerTasks>,
) {
    let (actions, _) = plan_drift(state, &m.reports, tasks, &is_shared_pool);
    for action in actions {
        let key = action.key();
        let waiting = m
            .failures
            .lock()
            .map(|f| f.get(&key).is_some_and(|(_, at)| Instant::now() < *at))
            .unwrap_or(false);
        if waiting || !claim(&m.in_flight, &key) {
            continue;
        }
        let (node, in_flight, failures) = (node.clone(), m.in_flight.clone(), m.failures.clone());
        m.work.spawn(async move {
            let (to, req) = match action {
                DriftAction::Ensure { node, server } => (
                    node,
                    AgentRequest::Ensure {
                        server,
                        action: None,
                        force_after_secs: SHUTDOWN_FORCE_AFTER_SECS,
                    },
                ),
                DriftAction::Remove { node, name } => (
                    node,
                    AgentRequest::Remove {
                        name,
                        shared_disks: false,
                    },
                ),
                DriftAction::SetAside { node, pool, name } => {
                    warn!(%node, %pool, image = %name, "an image file nothing explains: setting it aside");
                    (node, AgentRequest::SetAside { name, pool })
                }
                DriftAction::Pools { node, pools } => (node, AgentRequest::Pools { pools }),
            };
            let what = req.describe();
            let failed = match send(&node, &to, req).await {
                Sent::Done(log) => {
                    if !log.is_empty() {
                        info!(node = %to, steps = ?log, "converged: {what}");
                    }
                    None
                }
                Sent::Failed(e, _) | Sent::Unreachable(e) => Some(e),
            };
            if let Ok(mut f) = failures.lock() {
                match failed {
                    None => {
                        f.remove(&key);
                    }
                    Some(e) => {
                        let n = f.get(&key).map(|(n, _)| n + 1).unwrap_or(1);
                        warn!(node = %to, error = %e, retry_in = ?backoff(n), "could not {what}");
                        f.insert(key.clone(), (n, Instant::now() + backoff(n)));
                    }
                }
            }
            release(&in_flight, &key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::agentproto::{DomainPower, DomainReport};
    use skiff_cluster::state::tasks::open_task;
    use skiff_cluster::state::ServerSpec;

    /// A node's `Changed` hint, taken by the agent handler, wakes the reconciler well before
    /// its interval; without a hint it sleeps the interval.
    #[tokio::test]
    async fn a_changed_hint_wakes_the_reconciler() {
        let wake = Arc::new(tokio::sync::Notify::new());
        let (_tx, mut active) = tokio::sync::watch::channel(Some(1u64));
        let handler = crate::compute::agent_handler::AgentHandler::new(
            "leader".into(),
            Some(Arc::new(crate::compute::fake::FakeHypervisor::new())),
        )
        .with_reconcile_wake(wake.clone());

        let t0 = Instant::now();
        let reply = handler
            .serve(AgentRequest::Changed {
                node: "n1".into(),
                server: "web".into(),
            })
            .await;
        assert!(matches!(reply, AgentReply::Done { .. }), "{reply:?}");
        // A burst makes one early pass, not one each.
        for _ in 0..5 {
            handler
                .serve(AgentRequest::Changed {
                    node: "n1".into(),
                    server: "web".into(),
                })
                .await;
        }
        let woken = until_next_pass(&wake, &mut active, t0).await;
        assert_eq!(woken, Woken::Hint);
        assert!(t0.elapsed() < PASS_INTERVAL / 2, "{:?}", t0.elapsed());
        assert!(t0.elapsed() >= MIN_WAKE_GAP, "{:?}", t0.elapsed());

        let t1 = Instant::now();
        assert_eq!(
            until_next_pass(&wake, &mut active, t1).await,
            Woken::Interval
        );
        assert!(t1.elapsed() >= PASS_INTERVAL);

        // A node that runs no servers (the leader may be one) takes hints too.
        let bare = crate::compute::agent_handler::AgentHandler::new("leader".into(), None)
            .with_reconcile_wake(wake.clone());
        let reply = bare
            .serve(AgentRequest::Changed {
                node: "n1".into(),
                server: "web".into(),
            })
            .await;
        assert!(matches!(reply, AgentReply::Done { .. }), "{reply:?}");
        assert_eq!(
            until_next_pass(&wake, &mut active, Instant::now()).await,
            Woken::Hint
        );
    }

    fn server(name: &str, node: &str, desired: PowerState, generation: u64) -> ServerRecord {
        ServerRecord {
            name: name.into(),
            owner: "alice".into(),
            spec: ServerSpec::new(512, 1),
            node: Some(node.into()),
            desired,
            created_at: 1,
            generation,
        }
    }

    fn state_with(servers: &[ServerRecord]) -> ClusterState {
        let mut s = ClusterState::default();
        for srv in servers {
            s.servers.insert(srv.name.clone(), srv.clone());
        }
        s
    }

    fn report(node: &str, domains: &[(&str, DomainPower, u64)]) -> NodeReport {
        NodeReport::Report(AgentReport {
            node: node.into(),
            agent_generation: 1,
            hypervisor: "fake".into(),
            figures: Vec::new(),
            images: None,
            pools: None,
            domains: domains
                .iter()
                .map(|(n, p, g)| DomainReport {
                    name: (*n).into(),
                    power: *p,
                    generation: *g,
                })
                .collect(),
        })
    }

    #[test]
    fn image_files_nothing_explains_are_set_aside_once_old_enough() {
        use skiff_cluster::agentproto::ImageFileReport;
        use skiff_cluster::state::ImageRecord;
        let mut state = state_with(&[
            server("web", "n1", PowerState::Running, 1),
            server("moving", "n2", PowerState::Running, 1),
        ]);
        let image = |name: &str, node: &str| ImageRecord {
            name: name.into(),
            owner: "alice".into(),
            node: node.into(),
            pool: "local".into(),
            size_gib: 1,
            master: false,
            parent: None,
            snapshots: Vec::new(),
            created_at: 1,
            ready: true,
            pending: None,
        };
        state.images.insert("base".into(), image("base", "n1"));
        state
            .images
            .insert("elsewhere".into(), image("elsewhere", "n2"));
        let mut tasks = HashMap::new();
        tasks.insert("moving".to_string(), ServerTasks::Open(7));
        let old = ORPHAN_IMAGE_SECS;
        let files = [
            ("base", old),         // an image of this node
            ("web-disk0", old),    // a disk of a server placed here
            ("web-disk3", old),    // any disk of it
            ("moving-disk0", old), // placed elsewhere, but a task is moving it
            ("elsewhere", old),    // recorded on another node: not this file
            ("gone-disk0", old),   // a disk of no server
            ("stray", old),        // no record at all
            ("fresh", old - 1),    // too new to judge
            ("web-diskette", old), // not a disk name: an image nothing records
        ];
        let mut r = match report("n1", &[]) {
            NodeReport::Report(r) => r,
            _ => unreachable!(),
        };
        r.images = Some(
            files
                .iter()
                .map(|(name, age)| ImageFileReport {
                    pool: "local".into(),
                    name: (*name).into(),
                    bytes: 1,
                    age_secs: *age,
                })
                .collect(),
        );
        // Recorded here, made, and not in the pool: missing. Not yet made, or under way: not.
        state.images.insert("lost".into(), image("lost", "n1"));
        let mut unmade = image("unmade", "n1");
        unmade.ready = false;
        state.images.insert("unmade".into(), unmade);
        assert_eq!(missing_images(&state, "n1", &r), ["lost"]);
        let mut unlisted = r.clone();
        unlisted.images = None;
        assert!(missing_images(&state, "n1", &unlisted).is_empty());

        let mut reports = BTreeMap::new();
        reports.insert("n1".to_string(), NodeReport::Report(r));
        let (actions, _) = plan_drift(&state, &reports, &tasks, &is_shared_pool);
        let aside: Vec<String> = actions
            .iter()
            .filter(|a| matches!(a, DriftAction::SetAside { .. }))
            .map(DriftAction::key)
            .collect();
        assert_eq!(
            aside,
            [
                "image:local/elsewhere@n1",
                "image:local/gone-disk0@n1",
                "image:local/stray@n1",
                "image:local/web-diskette@n1"
            ]
        );
        assert_eq!(disk_owner("web-disk12"), Some("web"));
        assert_eq!(disk_owner("-disk1"), None);
        assert_eq!(disk_owner("web-disk"), None);
    }

    #[test]
    fn pools_are_handed_over_and_shared_pool_files_judged_on_every_node() {
        use skiff_cluster::agentproto::{ImageFileReport, PoolReport};
        use skiff_cluster::state::pools::{PoolKind, PoolRecord};
        let mut state = state_with(&[server("web", "n1", PowerState::Running, 1)]);
        let dir = |p: &str| PoolKind::Dir { path: p.into() };
        state.pools.insert(
            "0".into(),
            PoolRecord {
                name: "0".into(),
                node: None,
                kind: dir("/mnt/shared"),
                token: "t".into(),
                created_at: 1,
            },
        );
        state.pools.insert(
            "fast".into(),
            PoolRecord {
                name: "fast".into(),
                node: Some("n2".into()),
                kind: dir("/srv/fast"),
                token: String::new(),
                created_at: 1,
            },
        );
        let mut img = skiff_cluster::state::ImageRecord {
            name: "base".into(),
            owner: "alice".into(),
            node: "n1".into(),
            pool: "0".into(),
            size_gib: 1,
            master: true,
            parent: None,
            snapshots: Vec::new(),
            created_at: 1,
            ready: true,
            pending: None,
        };
        state.images.insert("base".into(), img.clone());
        img.name = "quick".into();
        img.node = "n2".into();
        img.pool = "fast".into();
        state.images.insert("quick".into(), img);
        let pool = |name: &str, path: &str, error: Option<&str>| PoolReport {
            name: name.into(),
            kind: "dir".into(),
            path: path.into(),
            error: error.map(String::from),
            total: 10,
            used: 1,
        };
        let file = |pool: &str, name: &str| ImageFileReport {
            pool: pool.into(),
            name: name.into(),
            bytes: 1,
            age_secs: ORPHAN_IMAGE_SECS,
        };
        let with = |node: &str, pools: Vec<PoolReport>, files: Vec<ImageFileReport>| {
            let NodeReport::Report(mut r) = report(node, &[]) else {
                unreachable!()
            };
            r.pools = Some(pools);
            r.images = Some(files);
            NodeReport::Report(r)
        };
        let local = pool("local", "/d/pools/local", None);
        let mut reports = BTreeMap::new();
        // n1 has the shared pool; n2 has neither pool open yet; n3 is an older agent.
        reports.insert(
            "n1".to_string(),
            with(
                "n1",
                vec![local.clone(), pool("0", "/mnt/shared", None)],
                vec![
                    file("0", "base"),
                    file("0", "stray"),
                    file("0", "web-disk1"),
                ],
            ),
        );
        reports.insert(
            "n2".to_string(),
            with(
                "n2",
                vec![
                    local.clone(),
                    pool("0", "/mnt/shared", Some("marker missing")),
                ],
                // The same shared files as n1 sees, and a node-local image elsewhere's.
                vec![
                    file("0", "base"),
                    file("0", "stray"),
                    file("local", "quick"),
                ],
            ),
        );
        reports.insert("n3".to_string(), report("n3", &[]));
        let (actions, _) = plan_drift(&state, &reports, &HashMap::new(), &is_shared_pool);
        let keys: Vec<String> = actions.iter().map(DriftAction::key).collect();
        assert_eq!(
            keys,
            [
                // (the server's domain is missing on n1)
                "web@n1",
                // The shared pool's files are judged the same from every node: a master
                // recorded on n1 and a disk of a server anywhere are explained there.
                "image:0/stray@n1",
                "pools@n2",
                "image:0/stray@n2",
                // `quick` is recorded in pool fast, not in n2's local pool.
                "image:local/quick@n2",
            ]
        );
        let handed = actions.iter().find_map(|a| match a {
            DriftAction::Pools { node, pools } if node == "n2" => Some(pools.clone()),
            _ => None,
        });
        let handed = handed.expect("n2 gets its pools");
        assert_eq!(
            handed
                .iter()
                .map(|p| (p.name.as_str(), p.writes_marker))
                .collect::<Vec<_>>(),
            [("0", false), ("fast", false)]
        );
        // The first reporting node writes the shared marker; nothing to hand it now.
        assert!(!keys.contains(&"pools@n1".to_string()));
        assert!(pools_differ(
            &pools_of(&state, "n1", true),
            Some(std::slice::from_ref(&local))
        ));
        // Images in a pool the node cannot use are not judged missing.
        let NodeReport::Report(n2) = &reports["n2"] else {
            unreachable!()
        };
        assert!(missing_images(&state, "n2", n2).is_empty());
    }

    #[test]
    fn drift_ensures_what_differs_and_removes_orphans() {
        let state = state_with(&[
            server("ok", "n1", PowerState::Running, 2),
            server("missing", "n1", PowerState::Running, 1),
            server("old", "n1", PowerState::Running, 3),
            server("off", "n1", PowerState::Stopped, 1),
            server("dead", "n2", PowerState::Running, 1),
        ]);
        let mut reports = BTreeMap::new();
        reports.insert(
            "n1".to_string(),
            report(
                "n1",
                &[
                    ("ok", DomainPower::Running, 2),
                    ("old", DomainPower::Running, 2),
                    ("off", DomainPower::Running, 1),
                    ("stray", DomainPower::Running, 1),
                ],
            ),
        );
        reports.insert("n2".to_string(), NodeReport::Dead);
        let (actions, view) = plan_drift(&state, &reports, &HashMap::new(), &is_shared_pool);
        let keys: Vec<String> = actions.iter().map(DriftAction::key).collect();
        assert_eq!(keys, ["missing@n1", "off@n1", "old@n1", "stray@n1"]);
        assert!(matches!(actions[3], DriftAction::Remove { .. }));
        let conv: BTreeMap<&str, Convergence> = view
            .iter()
            .map(|a| (a.name.as_str(), a.convergence))
            .collect();
        assert_eq!(conv["ok"], Convergence::InSync);
        assert_eq!(conv["missing"], Convergence::Converging);
        assert_eq!(conv["dead"], Convergence::NodeDead);
    }

    #[test]
    fn drift_leaves_servers_with_tasks_alone() {
        let mut state = state_with(&[
            server("busy", "n1", PowerState::Running, 1),
            server("paused", "n1", PowerState::Running, 1),
        ]);
        open_task(
            &mut state,
            "alice",
            "server.start",
            "busy",
            Some("n1".into()),
            1,
        );
        let id = open_task(&mut state, "alice", "server.start", "paused", None, 1);
        state.tasks.get_mut(&id).unwrap().state = TaskState::Cancelled;
        let mut reports = BTreeMap::new();
        reports.insert("n1".to_string(), report("n1", &[]));
        let tasks = server_tasks(&state);
        let (actions, view) = plan_drift(&state, &reports, &tasks, &is_shared_pool);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(view[0].convergence, Convergence::TaskOpen);
        assert_eq!(view[1].convergence, Convergence::Paused);
        // A newer finished task lifts the pause.
        let later = open_task(&mut state, "alice", "server.stop", "paused", None, 2);
        state.tasks.get_mut(&later).unwrap().state = TaskState::Succeeded;
        let (actions, _) = plan_drift(&state, &reports, &server_tasks(&state), &is_shared_pool);
        assert_eq!(actions.len(), 1);
    }

    #[test]
    fn tasks_map_to_agent_requests() {
        let mut state = state_with(&[server("web", "n2", PowerState::Running, 4)]);
        let mut t = |kind: &str, target: &str, node: Option<&str>| {
            let id = open_task(&mut state, "alice", kind, target, node.map(String::from), 1);
            (state.tasks[&id].clone(), state.clone())
        };
        let (task, st) = t("server.reboot", "web", Some("n2"));
        match plan_task(&task, &st, &["n1".into(), "n2".into()]) {
            TaskPlan::Ensure {
                node,
                action,
                remove_from,
                server,
                ..
            } => {
                assert_eq!(node, "n2");
                assert_eq!(action, Some(PowerAction::Reboot));
                assert_eq!(remove_from, vec!["n1".to_string()]);
                assert_eq!(server.generation, 4);
            }
            other => panic!("{other:?}"),
        }
        let (task, st) = t("server.destroy", "web", Some("n2"));
        assert!(matches!(
            plan_task(&task, &st, &[]),
            TaskPlan::Ensure {
                action: Some(PowerAction::ForceStop),
                ..
            }
        ));
        let (task, st) = t("server.start", "gone", Some("n2"));
        assert!(matches!(plan_task(&task, &st, &[]), TaskPlan::Fail(_)));
        let (task, st) = t("server.remove", "gone", Some("n3"));
        assert_eq!(
            plan_task(&task, &st, &[]),
            TaskPlan::Remove {
                node: "n3".into(),
                name: "gone".into()
            }
        );
        let (task, st) = t("network.apply", "net0", Some("n3"));
        assert_eq!(plan_task(&task, &st, &[]), TaskPlan::NotOurs);
        // An image task whose image has no pending operation of it fails (nothing to carry out).
        let (task, st) = t("image.clone", "disk", Some("n3"));
        assert!(matches!(plan_task(&task, &st, &[]), TaskPlan::Fail(_)));
    }

    #[test]
    fn ha_restarts_only_shared_disk_ha_servers() {
        let shared = |pool: Option<&str>| DiskSpec {
            image: None,
            size_gib: 1,
            pool: pool.map(String::from),
        };
        let mut s = server("db", "n1", PowerState::Running, 1);
        assert_eq!(ha_decision(&s, true, &is_shared_pool), HaDecision::Stay);
        assert!(matches!(
            ha_decision(&s, false, &is_shared_pool),
            HaDecision::NotEligible(_)
        ));
        s.spec.ha = true;
        s.spec.disks = vec![shared(Some("0")), shared(Some("12"))];
        assert_eq!(
            ha_decision(&s, false, &is_shared_pool),
            HaDecision::RestartElsewhere
        );
        s.spec.disks.push(shared(None));
        s.spec.disks.push(shared(Some("fast-nvme")));
        assert_eq!(
            ha_decision(&s, false, &is_shared_pool),
            HaDecision::NotEligible("disk(s) 2, 3 are not on shared storage".into())
        );
        s.spec.disks.truncate(2);
        s.spec.lock_to_node = Some("n1".into());
        assert!(matches!(
            ha_decision(&s, false, &is_shared_pool),
            HaDecision::NotEligible(_)
        ));
        s.spec.lock_to_node = None;
        s.desired = PowerState::Stopped;
        assert_eq!(ha_decision(&s, false, &is_shared_pool), HaDecision::Stay);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }
}
