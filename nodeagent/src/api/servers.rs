//! The control API's servers routes, and node maintenance and evacuation (which decide where
//! servers may go). The leader places servers with [`crate::scheduler`] before proposing.
//!
//! Permissions: a user sees and acts on their own servers only (others' are answered 404, as if
//! they did not exist); an admin sees and acts on all; a read-only user sees their own and cannot
//! act (403). Maintenance and evacuation are for admins. Writes that start work on a node answer
//! 202 with the task's id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use skiff_cluster::agentproto;
use skiff_cluster::api::servers::{
    ConsoleView, CreateServerRequest, EvacuationMove, EvacuationView, MaintenanceRequest,
    MaintenanceView, ServerActionRequest, ServerView, TaskAccepted,
};
use skiff_cluster::state::servers::{check_name, check_spec, PlannedMove, ServerRecord};
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, ServerCommand, UserRole};

use super::{authorize, leader_gate, ok, principal, propose, refused, Caller, Failure};
use crate::agent::Node;
use crate::scheduler::{self, Demand, SchedulerPolicy};

/// The servers routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/servers", get(list).post(create))
        .route("/api/v1/servers/{name}", get(show).delete(remove))
        .route("/api/v1/servers/{name}/console", get(console))
        .route("/api/v1/servers/{name}/{action}", post(action))
        .route("/api/v1/nodes/{name}/maintenance", post(maintenance))
        .route("/api/v1/nodes/{name}/evacuate", post(evacuate))
}

fn accepted<T: Serialize>(v: T) -> Result<Response, Failure> {
    Ok((StatusCode::ACCEPTED, Json(v)).into_response())
}

fn not_found(name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no server named {name:?}"),
    )
}

fn forbidden_read_only() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a read-only user cannot change servers",
    )
}

fn no_placement(e: scheduler::NoPlacement) -> Failure {
    Failure::new(StatusCode::CONFLICT, "no_placement", e.to_string())
}

/// The caller's name and role (the gate has already authenticated them).
fn who(state: &ClusterState, caller: &Caller) -> Result<(String, UserRole), Failure> {
    let p = principal(state, caller, false)?;
    Ok((p.name, p.role))
}

/// The server `name` if the caller may see it.
fn visible<'a>(
    state: &'a ClusterState,
    user: &str,
    role: UserRole,
    name: &str,
) -> Result<&'a ServerRecord, Failure> {
    state
        .servers
        .get(name)
        .filter(|s| role == UserRole::Admin || s.owner == user)
        .ok_or_else(|| not_found(name))
}

/// Placements on this leader happen one at a time: each is decided on a state that includes
/// the one before (the lock is held from reading the state to the end of the proposal), so
/// concurrent creates cannot all take the last free room of a node. (`apply` cannot re-check
/// capacity: gossip figures are not replicated.) One lock per process is enough: only the
/// leader places, and in-process test clusters merely serialize a little more.
static PLACING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the placement lock and reads the newest desired state (`fallback`: the gate's).
async fn placing(
    node: &Node,
    fallback: &ClusterState,
) -> (tokio::sync::MutexGuard<'static, ()>, ClusterState) {
    let guard = PLACING.lock().await;
    let fresh = node.state().unwrap_or_else(|| fallback.clone());
    (guard, fresh)
}

/// The overcommit rules in force: this (leading) node's `[scheduler]` settings.
fn policy(node: &Node) -> SchedulerPolicy {
    SchedulerPolicy::from(&node.config.scheduler)
}

fn task_of(outcome: CommandOutcome, node: Option<String>) -> Result<Response, Failure> {
    match outcome {
        CommandOutcome::TaskStarted { task_id } => accepted(TaskAccepted { task_id, node }),
        other => Err(refused(other)),
    }
}

pub(super) async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    let views: Vec<ServerView> = state
        .servers
        .values()
        .filter(|s| role == UserRole::Admin || s.owner == user)
        .map(ServerView::from)
        .collect();
    ok(views)
}

pub(super) async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    ok(ServerView::from(visible(&state, &user, role, &name)?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleQuery {
    bytes: Option<u64>,
}

/// The end of a server's serial console output, read by its node's agent.
pub(super) async fn console(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<ConsoleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let axum::extract::Query(q) = query.map_err(|e| Failure::bad_request(e.body_text()))?;
    let max_bytes = q.bytes.unwrap_or(agentproto::CONSOLE_BYTES);
    if !(1..=agentproto::MAX_CONSOLE_BYTES).contains(&max_bytes) {
        return Err(Failure::bad_request(format!(
            "bytes must be between 1 and {}",
            agentproto::MAX_CONSOLE_BYTES
        )));
    }
    let (user, role) = who(&state, &caller)?;
    let server = visible(&state, &user, role, &name)?;
    let unavailable = |m: String| Failure::new(StatusCode::CONFLICT, "node_unavailable", m);
    let on = server
        .node
        .clone()
        .ok_or_else(|| unavailable(format!("server {name} is on no node")))?;
    let req = agentproto::AgentRequest::Console {
        name: name.clone(),
        max_bytes,
    };
    match node.call_agent(&on, &req).await {
        Ok(agentproto::AgentReply::Console { text, truncated }) => ok(ConsoleView {
            server: name,
            node: on,
            text,
            truncated,
        }),
        Ok(agentproto::AgentReply::Error { message, .. }) => Err(unavailable(format!(
            "node {on} cannot show the console of {name}: {message}"
        ))),
        Ok(_) => Err(unavailable(format!("node {on} gave an unexpected answer"))),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

pub(super) async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<CreateServerRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    if role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    check_name(&req.name).map_err(Failure::bad_request)?;
    let spec = req.spec();
    check_spec(&spec).map_err(Failure::bad_request)?;
    for n in [&req.node, &req.lock_to_node].into_iter().flatten() {
        if !state.nodes.contains_key(n) {
            return Err(Failure::bad_request(format!("no node named {n:?}")));
        }
    }
    if let (Some(n), Some(l)) = (&req.node, &req.lock_to_node) {
        if n != l {
            return Err(Failure::bad_request(format!(
                "node {n} differs from lock_to_node {l}"
            )));
        }
    }
    let (_placing, state) = placing(&node, &state).await;
    if state.servers.contains_key(&req.name) {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!("a server named {:?} already exists", req.name),
        ));
    }
    let gossip = node.gossip_nodes().await;
    let mut demand = Demand::of(&spec);
    if let Some(n) = &req.node {
        demand.lock_to_node = Some(n.clone());
    }
    let target = scheduler::place(
        &scheduler::candidates(&state, &gossip, None),
        &demand,
        &policy(&node),
    )
    .map_err(no_placement)?;
    let outcome = propose(
        &node,
        &caller,
        Command::Server(ServerCommand::Create {
            name: req.name.clone(),
            owner: user,
            spec,
            node: target.clone(),
            start: req.start,
        }),
    )
    .await?;
    task_of(outcome, Some(target))
}

pub(super) async fn action(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    let rec = visible(&state, &user, role, &name)?;
    if role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let req: ServerActionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ServerActionRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Failure::bad_request(e.to_string()))?
    };
    let name = name.clone();
    let mut placed = rec.node.clone();
    let mut _placing = None;
    let cmd = match action.as_str() {
        "start" => ServerCommand::Start { name },
        "shutdown" => ServerCommand::Shutdown {
            name,
            force_after_secs: req
                .force_after_secs
                .unwrap_or(skiff_cluster::state::servers::SHUTDOWN_FORCE_AFTER_SECS),
        },
        "destroy" => ServerCommand::Destroy { name },
        "suspend" => ServerCommand::Suspend { name },
        "resume" => ServerCommand::Resume { name },
        "reboot" => ServerCommand::Reboot { name },
        "move" => {
            let (guard, fresh) = placing(&node, &state).await;
            _placing = Some(guard);
            let rec = fresh.servers.get(&name).ok_or_else(|| not_found(&name))?;
            let mut demand = Demand::of(&rec.spec);
            demand.exclude = rec.node.clone();
            if let Some(to) = &req.to {
                if !state.nodes.contains_key(to) {
                    return Err(Failure::bad_request(format!("no node named {to:?}")));
                }
                if let Some(lock) = rec.spec.lock_to_node.as_ref().filter(|l| *l != to) {
                    return Err(Failure::new(
                        StatusCode::CONFLICT,
                        "node_unavailable",
                        format!("server {name} is locked to node {lock}"),
                    ));
                }
                demand.lock_to_node = Some(to.clone());
            }
            let gossip = node.gossip_nodes().await;
            let to = scheduler::place(
                &scheduler::candidates(&fresh, &gossip, Some(&name)),
                &demand,
                &policy(&node),
            )
            .map_err(no_placement)?;
            placed = Some(to.clone());
            ServerCommand::Move { name, to }
        }
        "attach_disk" => ServerCommand::AttachDisk {
            name,
            disk: req
                .disk
                .ok_or_else(|| Failure::bad_request("attach_disk needs a disk"))?,
        },
        "detach_disk" => ServerCommand::DetachDisk {
            name,
            index: req
                .index
                .ok_or_else(|| Failure::bad_request("detach_disk needs an index"))?,
        },
        "mount_iso" => ServerCommand::MountIso {
            name,
            iso: req
                .iso
                .ok_or_else(|| Failure::bad_request("mount_iso needs an iso"))?,
        },
        "unmount_iso" => ServerCommand::UnmountIso { name },
        other => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no server action {other:?} (one of {})",
                    skiff_cluster::api::servers::SERVER_ACTIONS.join(", ")
                ),
            ))
        }
    };
    let outcome = propose(&node, &caller, Command::Server(cmd)).await?;
    task_of(outcome, placed)
}

pub(super) async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    let rec = visible(&state, &user, role, &name)?;
    if role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let placed = rec.node.clone();
    let outcome = propose(
        &node,
        &caller,
        Command::Server(ServerCommand::Remove { name }),
    )
    .await?;
    task_of(outcome, placed)
}

pub(super) async fn maintenance(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    body: Result<Json<MaintenanceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let _state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let cmd = if req.on {
        ServerCommand::MaintenanceOn { node: name.clone() }
    } else {
        ServerCommand::MaintenanceOff { node: name.clone() }
    };
    match propose(&node, &caller, Command::Server(cmd)).await? {
        CommandOutcome::Done => ok(MaintenanceView {
            node: name,
            maintenance: req.on,
        }),
        other => Err(refused(other)),
    }
}

/// Plans where each server of `from` goes: the scheduler places them one after the other, each
/// seeing the ones placed before it.
fn plan_evacuation(
    policy: &SchedulerPolicy,
    state: &ClusterState,
    gossip: &[skiff_cluster::gossip::GossipNode],
    from: &str,
) -> Result<Vec<PlannedMove>, Failure> {
    let mut cands = scheduler::candidates(state, gossip, None);
    let mut moves = Vec::new();
    let mut problems = Vec::new();
    for s in state
        .servers
        .values()
        .filter(|s| s.node.as_deref() == Some(from))
    {
        if s.spec.lock_to_node.as_deref() == Some(from) {
            problems.push(format!("{} is locked to {from}", s.name));
            continue;
        }
        let mut demand = Demand::of(&s.spec);
        demand.exclude = Some(from.to_string());
        match scheduler::place(&cands, &demand, policy) {
            Ok(to) => {
                if let Some(c) = cands.iter_mut().find(|c| c.name == to) {
                    c.placed_memory_mib += s.spec.memory_mib;
                    c.placed_vcpus += s.spec.vcpus as u64;
                }
                moves.push(PlannedMove {
                    server: s.name.clone(),
                    to,
                });
            }
            Err(e) => problems.push(format!("{} ({e})", s.name)),
        }
    }
    if !problems.is_empty() {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "no_placement",
            format!(
                "cannot evacuate {from}: {}; nothing was changed",
                problems.join("; ")
            ),
        ));
    }
    Ok(moves)
}

pub(super) async fn evacuate(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    if !state.nodes.contains_key(&name) {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no node named {name:?}"),
        ));
    }
    let (_placing, state) = placing(&node, &state).await;
    let gossip = node.gossip_nodes().await;
    let moves = plan_evacuation(&policy(&node), &state, &gossip, &name)?;
    let outcome = propose(
        &node,
        &caller,
        Command::Server(ServerCommand::Evacuate {
            node: name.clone(),
            moves: moves.clone(),
        }),
    )
    .await?;
    let first = match outcome {
        CommandOutcome::TaskStarted { task_id } => task_id,
        CommandOutcome::Done => 0,
        other => return Err(refused(other)),
    };
    // Apply opens the moves' tasks one after the other: their ids follow the first.
    let moves = moves
        .into_iter()
        .enumerate()
        .map(|(i, m)| EvacuationMove {
            server: m.server,
            to: m.to,
            task_id: first + i as u64,
        })
        .collect();
    accepted(EvacuationView { node: name, moves })
}
