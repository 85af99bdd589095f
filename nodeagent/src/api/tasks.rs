//! The control API's tasks routes: list, show and cancel tasks, and the reconciler's view of what
//! actually exists (`GET /api/v1/actual`). Users see their own tasks and servers; admins see all.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use skiff_cluster::api::tasks::ActualView;
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, TaskCommand, TaskRecord};

use super::{leader_gate, ok, principal, propose, refused, Caller, Failure, Principal};
use crate::agent::Node;

/// The tasks routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/tasks", get(list))
        .route("/api/v1/tasks/{id}", get(show))
        .route("/api/v1/tasks/{id}/cancel", post(cancel))
        .route("/api/v1/actual", get(actual))
}

fn parse_id(text: &str) -> Result<u64, Failure> {
    text.parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            Failure::bad_request(format!("{text:?} is not a task id (a positive number)"))
        })
}

/// The task, if the caller may see it (others' tasks are "not found", so their ids leak nothing).
fn visible(state: &ClusterState, who: &Principal, id: u64) -> Result<TaskRecord, Failure> {
    state
        .tasks
        .get(&id)
        .filter(|t| who.may_see(&t.owner))
        .cloned()
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "not_found", format!("no task {id}")))
}

async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, who) = gate_as!(node, uri, caller, false);
    let tasks: Vec<&TaskRecord> = state
        .tasks
        .values()
        .rev()
        .filter(|t| who.may_see(&t.owner))
        .collect();
    ok(tasks)
}

async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, who) = gate_as!(node, uri, caller, false);
    let id = parse_id(&id)?;
    ok(visible(&state, &who, id)?)
}

async fn cancel(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, who) = gate_as!(node, uri, caller, false);
    let id = parse_id(&id)?;
    let task = visible(&state, &who, id)?;
    who.may_act_on(&task.owner)?;
    match propose(&node, &caller, Command::Task(TaskCommand::Cancel { id })).await? {
        CommandOutcome::Done => {}
        other => return Err(refused(other)),
    }
    let after = node
        .state()
        .and_then(|s| s.tasks.get(&id).cloned())
        .ok_or_else(|| Failure::internal("the task vanished"))?;
    ok(after)
}

async fn actual(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (_, who) = gate_as!(node, uri, caller, false);
    let mut view = crate::reconciler::actual_view(&node).unwrap_or_else(|| ActualView {
        leader: node.name.clone(),
        ..Default::default()
    });
    if !who.is_admin() {
        view.servers.retain(|s| who.may_see(&s.owner));
        view.nodes.clear();
    }
    ok(view)
}
