//! The control API's backup routes (`/api/v1/backups`, `/api/v1/backups/schedules`).
//!
//! Permissions: a user backs up, restores and removes backups of their own images and servers;
//! an admin, of all; a read-only user sees their own and cannot act. Others' backups answer 404.
//! Creating, restoring and removing answer 202 with the task that does it on the node (see
//! `skiff_cluster::state::backups`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use skiff_cluster::api::backups::{BackupTargetRequest, BackupView, ScheduleRequest};
use skiff_cluster::state::backups::{BackupSchedule, BackupTarget};
use skiff_cluster::state::{BackupCommand, ClusterState, Command, CommandOutcome, UserRole};

use super::{leader_gate, ok, principal, propose, refused, task_accepted, Caller, Failure};
use crate::agent::Node;

/// The backup routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/backups", get(list).post(create))
        .route("/api/v1/backups/schedules", get(schedules).post(schedule))
        .route("/api/v1/backups/{id}", delete(remove))
        .route("/api/v1/backups/{id}/restore", post(restore))
}

/// The owner of a target, if the caller may see it (404 otherwise, as if it did not exist).
fn owner_of(
    state: &ClusterState,
    user: &str,
    role: UserRole,
    target: &BackupTarget,
) -> Result<String, Failure> {
    let (owner, what) = match target {
        BackupTarget::Image { name } => (
            state.images.get(name).map(|i| i.owner.clone()),
            format!("no image named {name:?}"),
        ),
        BackupTarget::Server { name } => (
            state.servers.get(name).map(|s| s.owner.clone()),
            format!("no server named {name:?}"),
        ),
        // Whole pools are admins' (other callers are told the pool does not exist).
        BackupTarget::Pool { name } => (
            state
                .pools
                .contains_key(name)
                .then(|| skiff_cluster::state::backups::ADMIN_OWNER.to_string())
                .filter(|_| role == UserRole::Admin),
            format!("no pool named {name:?}"),
        ),
    };
    owner
        .filter(|o| role == UserRole::Admin || o == user)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "not_found", what))
}

fn parse_id(id: &str) -> Result<u64, Failure> {
    id.parse()
        .map_err(|_| Failure::bad_request(format!("{id:?} is not a backup id (a number)")))
}

/// The node of backup `id`, if the caller may see it.
fn visible(state: &ClusterState, user: &str, role: UserRole, id: u64) -> Result<String, Failure> {
    state
        .backups
        .get(&id)
        .filter(|b| role == UserRole::Admin || b.owner == user)
        .map(|b| b.node.clone())
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no backup {id}"),
            )
        })
}

pub(super) async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let views: Vec<BackupView> = state
        .backups
        .values()
        .filter(|b| p.may_see(&b.owner))
        .map(|b| BackupView::of(&state, b))
        .collect();
    ok(views)
}

pub(super) async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<BackupTargetRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let target = req.target().map_err(Failure::bad_request)?;
    let owner = owner_of(&state, &p.name, p.role, &target)?;
    let at = skiff_cluster::state::backups::target_files(&state, &target)
        .ok()
        .map(|t| t.node);
    let cmd = BackupCommand::Create {
        target,
        owner,
        scheduled: false,
    };
    let outcome = propose(&node, &caller, Command::Backup(cmd)).await?;
    task_accepted(outcome, at)
}

pub(super) async fn restore(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    act(node, caller, uri, &id, |id| BackupCommand::Restore { id }).await
}

pub(super) async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    act(node, caller, uri, &id, |id| BackupCommand::Remove { id }).await
}

/// Restore or remove: the caller must see backup `id`; the task runs on its node.
async fn act(
    node: Arc<Node>,
    caller: Caller,
    uri: Uri,
    id: &str,
    command: fn(u64) -> BackupCommand,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let id = parse_id(id)?;
    let at = visible(&state, &p.name, p.role, id)?;
    let outcome = propose(&node, &caller, Command::Backup(command(id))).await?;
    task_accepted(outcome, Some(at))
}

fn visible_schedules(state: &ClusterState, user: &str, role: UserRole) -> Vec<BackupSchedule> {
    state
        .backup_schedules
        .values()
        .filter(|s| role == UserRole::Admin || s.owner == user)
        .cloned()
        .collect()
}

pub(super) async fn schedules(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(visible_schedules(&state, &p.name, p.role))
}

pub(super) async fn schedule(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<ScheduleRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let target = req.target().map_err(Failure::bad_request)?;
    let owner = owner_of(&state, &p.name, p.role, &target)?;
    if req.hour_utc.is_some() != req.keep.is_some() {
        return Err(Failure::bad_request(
            "give both hour_utc and keep to set a schedule, neither to drop it",
        ));
    }
    let cmd = BackupCommand::Schedule {
        target,
        owner,
        hour_utc: req.hour_utc,
        keep: req.keep,
    };
    match propose(&node, &caller, Command::Backup(cmd)).await? {
        CommandOutcome::Done => {
            let fresh = node.state().unwrap_or(state);
            ok(visible_schedules(&fresh, &p.name, p.role))
        }
        other => Err(refused(other)),
    }
}
