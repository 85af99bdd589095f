//! The control API's storage pool routes (`/api/v1/pools`), for admins only: list every pool with
//! how each node has it, add a node-local or shared pool, remove one that nothing uses. The
//! rules are `skiff_cluster::state::pools`'s; the nodes open their pools when the reconciler
//! hands them over (within a pass or two), and the list shows each node's answer.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use skiff_cluster::api::pools::{AddPoolRequest, PoolView};
use skiff_cluster::state::pools::{check_pool_kind, check_pool_name};
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, PoolCommand};

use super::{leader_gate, ok, principal, propose, refused, Caller, Failure};
use crate::agent::Node;

/// How long adding a pool waits for its nodes to open it.
const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long it waits once every node answered but some could not open it.
const RETRY_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The pool routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/pools", get(list).post(add))
        .route("/api/v1/pools/{name}", delete(remove))
}

/// Every pool, with the nodes' last reports.
fn views(node: &Node, state: &ClusterState) -> Vec<PoolView> {
    PoolView::all(state, &crate::reconciler::reported_pools(node))
}

fn view_of(node: &Node, name: &str) -> Result<PoolView, Failure> {
    let state = node
        .state()
        .ok_or_else(|| Failure::internal("this node has no state"))?;
    views(node, &state)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Failure::internal(format!("pool {name} vanished after its write")))
}

async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, _p) = gate_as!(node, uri, caller, true);
    ok(views(&node, &state))
}

async fn add(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<AddPoolRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, _p) = gate_as!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let kind = req.kind().map_err(Failure::bad_request)?;
    check_pool_kind(&kind).map_err(Failure::bad_request)?;
    let cmd = match (req.shared, req.name, req.node) {
        (true, None, None) => PoolCommand::Add {
            name: None,
            node: None,
            kind,
            token: {
                let bytes: [u8; 16] = rand::random();
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            },
        },
        (false, Some(name), Some(on)) => {
            check_pool_name(&name).map_err(Failure::bad_request)?;
            PoolCommand::Add {
                name: Some(name),
                node: Some(on),
                kind,
                token: String::new(),
            }
        }
        _ => {
            return Err(Failure::bad_request(
                "give a name and a node for a node-local pool, or shared: true (and neither) for a shared pool",
            ))
        }
    };
    let _ = state;
    // A shared pool is found again by its token (its number is chosen when the write applies).
    let wanted = match &cmd {
        PoolCommand::Add {
            name: Some(name), ..
        } => Ok(name.clone()),
        PoolCommand::Add { token, .. } => Err(token.clone()),
        PoolCommand::Remove { name } => Ok(name.clone()),
    };
    match propose(&node, &caller, Command::Pool(cmd)).await? {
        CommandOutcome::Done => {}
        other => return Err(refused(other)),
    }
    let name = match wanted {
        Ok(name) => name,
        Err(token) => node
            .state()
            .and_then(|s| {
                s.pools
                    .values()
                    .find(|p| p.token == token)
                    .map(|p| p.name.clone())
            })
            .ok_or_else(|| Failure::internal("the new pool is not in the state"))?,
    };
    // Hand it to the nodes soon, and answer once each has opened it, or after OPEN_WAIT with
    // what each said (unusable and why, or not reported), so the pool can be used at once.
    let started = std::time::Instant::now();
    let mut all_reported: Option<std::time::Instant> = None;
    let view = loop {
        node.reconcile_wake.notify_one();
        let view = view_of(&node, &name)?;
        let opened = view.nodes.iter().all(|n| n.reported && n.error.is_none());
        if view.nodes.iter().all(|n| n.reported) {
            all_reported.get_or_insert_with(std::time::Instant::now);
        }
        // A node that could not open it is asked again after 1 s: one more try is worth waiting
        // for (a shared pool's marker may have just been written), a lasting error is not.
        let settled = all_reported.is_some_and(|t| t.elapsed() >= RETRY_WAIT);
        if opened || settled || started.elapsed() >= OPEN_WAIT {
            break view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, _p) = gate_as!(node, uri, caller, true);
    let view = views(&node, &state)
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no pool named {name:?}"),
            )
        })?;
    match propose(&node, &caller, Command::Pool(PoolCommand::Remove { name })).await? {
        CommandOutcome::Done => {}
        other => return Err(refused(other)),
    }
    node.reconcile_wake.notify_one();
    ok(view)
}
