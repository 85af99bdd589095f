//! The control API's connection routes (`/api/v1/connections`) and the address plan
//! (`/api/v1/network`).
//!
//! Permissions: a user creates, activates, deactivates and removes their own connections; an
//! admin, anyone's (and may create one for another user with `owner`); a read-only user sees
//! their own and cannot act. Others' connections answer 404. Everyone signed in reads the address
//! plan; only admins change it. Addresses are chosen when the write is applied (see
//! `skiff_cluster::state::connections`), so the answer to a create carries them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use skiff_cluster::api::connections::{
    ConnectionView, CreateConnectionRequest, NetworkView, SetNetworkRequest,
};
use skiff_cluster::state::connections::{check_connection_name, check_ports, Ipv4Cidr};
use skiff_cluster::state::{
    ClusterState, Command, CommandOutcome, ConnectionCommand, ConnectionRecord, UserRole,
};

use super::{leader_gate, ok, principal, propose, refused, Caller, Failure, Principal};
use crate::agent::Node;

/// The connection and network routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/connections", get(list).post(create))
        .route("/api/v1/connections/{name}", get(show).delete(remove))
        .route("/api/v1/connections/{name}/activate", post(activate))
        .route("/api/v1/connections/{name}/deactivate", post(deactivate))
        .route("/api/v1/network", get(network).put(set_network))
}

/// Connection `name` if the caller may see it (404 otherwise, as if it did not exist).
fn visible<'a>(
    state: &'a ClusterState,
    p: &Principal,
    name: &str,
) -> Result<&'a ConnectionRecord, Failure> {
    state
        .connections
        .get(name)
        .filter(|c| p.may_see(&c.owner))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no connection named {name:?}"),
            )
        })
}

/// Proposes `cmd`; a refusal becomes its 4xx answer.
async fn commit(node: &Node, caller: &Caller, cmd: ConnectionCommand) -> Result<(), Failure> {
    match propose(node, caller, Command::Connection(cmd)).await? {
        CommandOutcome::Done => Ok(()),
        other => Err(refused(other)),
    }
}

/// The connection as the leader's state has it after a write.
fn view_now(node: &Node, name: &str) -> Result<ConnectionView, Failure> {
    let state = node
        .state()
        .ok_or_else(|| Failure::internal("this node has no state"))?;
    let c = state
        .connections
        .get(name)
        .ok_or_else(|| Failure::internal(format!("connection {name} vanished after its write")))?;
    Ok(ConnectionView::of(&state, c))
}

async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let views: Vec<ConnectionView> = state
        .connections
        .values()
        .filter(|c| p.may_see(&c.owner))
        .map(|c| ConnectionView::of(&state, c))
        .collect();
    ok(views)
}

async fn show(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    ok(ConnectionView::of(&state, visible(&state, &p, &name)?))
}

async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<CreateConnectionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    check_connection_name(&req.name).map_err(Failure::bad_request)?;
    check_ports(req.kind, &req.ports).map_err(Failure::bad_request)?;
    let owner = match req.owner {
        Some(o) if o != p.name => {
            if p.role != UserRole::Admin {
                return Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "only an admin creates connections for another user",
                ));
            }
            if !state.users.contains_key(&o) {
                return Err(Failure::bad_request(format!("no user named {o:?}")));
            }
            o
        }
        _ => p.name.clone(),
    };
    let cmd = ConnectionCommand::Create {
        name: req.name.clone(),
        owner,
        kind: req.kind,
        internal_ip: req.internal_ip,
        external_ip: req.external_ip,
        ports: req.ports,
        active: req.active.unwrap_or(true),
    };
    commit(&node, &caller, cmd).await?;
    Ok((StatusCode::CREATED, Json(view_now(&node, &req.name)?)).into_response())
}

async fn set_active(
    node: Arc<Node>,
    caller: Caller,
    uri: Uri,
    name: String,
    active: bool,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    visible(&state, &p, &name)?;
    let cmd = if active {
        ConnectionCommand::Activate { name: name.clone() }
    } else {
        ConnectionCommand::Deactivate { name: name.clone() }
    };
    commit(&node, &caller, cmd).await?;
    ok(view_now(&node, &name)?)
}

async fn activate(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_active(node, caller, uri, name, true).await
}

async fn deactivate(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    set_active(node, caller, uri, name, false).await
}

async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let view = ConnectionView::of(&state, visible(&state, &p, &name)?);
    commit(&node, &caller, ConnectionCommand::Remove { name }).await?;
    ok(view)
}

async fn network(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, _p) = gate_as!(node, uri, caller, false);
    ok(NetworkView::of(&state))
}

async fn set_network(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<SetNetworkRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (_state, _p) = gate_as!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    if let Some(cidr) = &req.internal_cidr {
        Ipv4Cidr::parse(cidr).map_err(Failure::bad_request)?;
    }
    let pool = req.pool().map_err(Failure::bad_request)?;
    let cmd = ConnectionCommand::SetNetwork {
        internal_cidr: req.internal_cidr,
        external_pool: pool,
    };
    commit(&node, &caller, cmd).await?;
    let state = node
        .state()
        .ok_or_else(|| Failure::internal("this node has no state"))?;
    ok(NetworkView::of(&state))
}
