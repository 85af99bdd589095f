//! The control API's stack routes (`/api/v1/stacks`): install a stack from a recipe, start, stop
//! and remove all its servers together (see `skiff_cluster::state::stacks`).
//!
//! Permissions, as for servers: a user sees and acts on their own stacks (others' answer 404, as
//! if they did not exist); an admin on all; a read-only user sees their own and cannot act (403).
//! Every write answers 202 with one task per server of the stack.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use skiff_cluster::api::stacks::{
    InstallStackRequest, StackAccepted, StackActionRequest, StackTask, StackView,
};
use skiff_cluster::state::stacks::{StackMember, StackRecord};
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, StackCommand, UserRole};

use super::servers::{masters_node, need_master_pools, no_placement, placing, policy};
use super::{leader_gate, ok, principal, propose, refused, Caller, Failure, Principal};
use crate::agent::Node;
use crate::scheduler::{self, Demand};

const GIB: u64 = 1 << 30;

/// The stack routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/stacks", get(list).post(install))
        .route("/api/v1/stacks/{name}", get(show).delete(remove))
        .route("/api/v1/stacks/{name}/start", post(start))
        .route("/api/v1/stacks/{name}/stop", post(stop))
}

fn not_found(name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no stack named {name:?}"),
    )
}

fn forbidden_read_only() -> Failure {
    Failure::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "a read-only user cannot change stacks",
    )
}

/// The stack `name` if the caller may see it.
fn visible<'a>(
    state: &'a ClusterState,
    who: &Principal,
    name: &str,
) -> Result<&'a StackRecord, Failure> {
    state
        .stacks
        .get(name)
        .filter(|s| who.may_see(&s.owner))
        .ok_or_else(|| not_found(name))
}

/// `f` with `place` (the recipe's server at fault) put before its message.
fn at_server(place: &str, mut f: Failure) -> Failure {
    f.1.message = format!("recipe {place}: {}", f.1.message);
    f
}

/// The answer to a stack write: 202 with each member's task (apply opens them in the members'
/// order, so their ids follow the first), or the refusal.
fn stack_accepted(
    outcome: CommandOutcome,
    stack: &str,
    members: Vec<(String, Option<String>)>,
) -> Result<Response, Failure> {
    let first = match outcome {
        CommandOutcome::TaskStarted { task_id } => Some(task_id),
        CommandOutcome::Done => None,
        other => return Err(refused(other)),
    };
    let tasks = match first {
        Some(first) => members
            .into_iter()
            .enumerate()
            .map(|(i, (server, node))| StackTask {
                server,
                task_id: first + i as u64,
                node,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(StackAccepted {
            stack: stack.to_string(),
            tasks,
        }),
    )
        .into_response())
}

/// Each existing member of `rec` with its node, in the stack's order.
fn members_of(state: &ClusterState, rec: &StackRecord) -> Vec<(String, Option<String>)> {
    rec.servers
        .iter()
        .filter_map(|m| state.servers.get(m))
        .map(|s| (s.name.clone(), s.node.clone()))
        .collect()
}

pub(super) async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let views: Vec<StackView> = state
        .stacks
        .values()
        .filter(|s| p.may_see(&s.owner))
        .map(|s| StackView::of(&state, s))
        .collect();
    ok(views)
}

pub(super) async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(StackView::of(&state, visible(&state, &p, &name)?))
}

/// Validates the recipe, places every server with the scheduler (each placement sees the ones
/// before it) and proposes one install.
pub(super) async fn install(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<InstallStackRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    if p.role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    req.recipe
        .check(&req.name)
        .map_err(|e| Failure::bad_request(format!("recipe: {e}")))?;
    let (_placing, state) = placing(&node, &state).await;
    if state.stacks.contains_key(&req.name) {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!("a stack named {:?} already exists", req.name),
        ));
    }
    let members = req.recipe.members(&req.name);
    for (i, (full, _)) in members.iter().enumerate() {
        if state.servers.contains_key(full) {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                "name_taken",
                format!("recipe servers[{i}]: a server named {full:?} already exists"),
            ));
        }
    }
    let gossip = node.gossip_nodes().await;
    let mut cands = scheduler::candidates(&state, &gossip, None);
    let rules = policy(&node);
    let mut placed = Vec::with_capacity(members.len());
    for (i, (full, spec)) in members.into_iter().enumerate() {
        let place = format!("servers[{i}] ({full})");
        let mut demand = Demand::of(&spec);
        need_master_pools(&state, &spec.disks, &mut demand);
        if let Some(at) =
            masters_node(&state, &p.name, p.role, &spec.disks).map_err(|f| at_server(&place, f))?
        {
            demand.lock_to_node = Some(at);
        }
        let target = scheduler::place(&cands, &demand, &rules)
            .map_err(|e| at_server(&place, no_placement(e)))?;
        // The next servers see this one on its node: two cannot claim the same free room.
        if let Some(c) = cands.iter_mut().find(|c| c.name == target) {
            c.placed_memory_mib += spec.memory_mib;
            c.placed_vcpus += spec.vcpus as u64;
            for (pool, gib) in &demand.storage_gib {
                if let Some(u) = c.pools.iter_mut().find(|u| &u.name == pool) {
                    u.used = u.used.saturating_add(gib.saturating_mul(GIB));
                }
            }
        }
        placed.push(StackMember {
            name: full,
            spec,
            node: target,
        });
    }
    let members = placed
        .iter()
        .map(|m| (m.name.clone(), Some(m.node.clone())))
        .collect();
    let outcome = propose(
        &node,
        &caller,
        Command::Stack(StackCommand::Install {
            name: req.name.clone(),
            owner: p.name,
            description: req.recipe.description,
            servers: placed,
            start: req.start,
        }),
    )
    .await?;
    stack_accepted(outcome, &req.name, members)
}

/// Start or stop: the caller must see the stack and may act on it.
async fn act(
    node: Arc<Node>,
    caller: Caller,
    uri: Uri,
    name: String,
    body: Bytes,
    command: fn(String, StackActionRequest) -> StackCommand,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let rec = visible(&state, &p, &name)?;
    if p.role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let req: StackActionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StackActionRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Failure::bad_request(e.to_string()))?
    };
    let members = members_of(&state, rec);
    let outcome = propose(&node, &caller, Command::Stack(command(name.clone(), req))).await?;
    stack_accepted(outcome, &name, members)
}

pub(super) async fn start(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    act(node, caller, uri, name, body, |name, _| {
        StackCommand::Start { name }
    })
    .await
}

pub(super) async fn stop(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    act(node, caller, uri, name, body, |name, req| {
        StackCommand::Stop {
            name,
            force_after_secs: req
                .force_after_secs
                .unwrap_or(skiff_cluster::state::servers::SHUTDOWN_FORCE_AFTER_SECS),
        }
    })
    .await
}

pub(super) async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let rec = visible(&state, &p, &name)?;
    if p.role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let members = members_of(&state, rec);
    let outcome = propose(
        &node,
        &caller,
        Command::Stack(StackCommand::Remove { name: name.clone() }),
    )
    .await?;
    stack_accepted(outcome, &name, members)
}
