//! The control API over HTTPS (axum on hyper, rustls, mutual TLS with the user's certificate).
//!
//! Every node listens (TCP, same port as its QUIC endpoint) so that clients can start anywhere:
//! only the node running leader services answers; the others redirect (307) to the leader, or say
//! 503 `no_leader` while there is none. One file per entity: [`nodes`], ...

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use skiff_cluster::api::ApiError;
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, UserRole};
use skiff_cluster::tls::{peer_identity, Subject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info};

use crate::agent::Node;

/// The user behind a request, from their client certificate.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    pub(crate) user: Option<String>,
    pub(crate) serial: Option<String>,
}

/// An API failure: a status and the JSON body every client understands.
#[derive(Debug)]
pub struct Failure(pub(crate) StatusCode, pub(crate) ApiError);

impl Failure {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Failure(status, ApiError::new(code, message))
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, Failure>;

/// Serves the API until the node shuts down.
pub async fn serve(node: Arc<Node>) {
    let cfg = match node.tls.api_server_config() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot set up the API's TLS");
            return;
        }
    };
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let listener = match TcpListener::bind(node.config.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %node.config.listen, error = %e, "cannot listen for the API");
            return;
        }
    };
    info!(addr = %node.config.listen, "control API listening (HTTPS)");
    let app = router(node.clone());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(peer = %remote, error = %e, "API TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(peer_identity);
            let caller = match id {
                Some(p) => match p.subject {
                    Subject::User(u) => Caller {
                        user: Some(u),
                        serial: Some(p.serial_hex),
                    },
                    Subject::Node(_) => Caller {
                        user: None,
                        serial: None,
                    },
                },
                None => Caller {
                    user: None,
                    serial: None,
                },
            };
            let svc = hyper_util::service::TowerToHyperService::new(app.layer(Extension(caller)));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/nodes", get(nodes::list))
        .route("/api/v1/cluster", get(nodes::cluster))
        .route("/api/v1/nodes/tokens", post(nodes::create_token))
        .route("/api/v1/nodes/promote", post(nodes::promote))
        .route("/api/v1/nodes/demote", post(nodes::demote))
        .route("/api/v1/nodes/{name}", delete(nodes::remove))
        .merge(users::routes())
        .merge(servers::routes())
        .merge(tasks::routes())
        .fallback(|| async {
            Failure::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
        })
        .with_state(node)
}

/// Sends the request to the leader unless this node runs leader services.
pub(crate) async fn leader_gate(node: &Node, uri: &Uri) -> Result<ClusterState, Response> {
    if node.serving_term().is_some() {
        if let Some(state) = node.state() {
            return Ok(state);
        }
    }
    match node.leader_hint().await {
        Some(h) if h.addr != node.config.advertise_addr() => {
            let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = format!("https://{}{}", h.addr, path);
            let body = ApiError {
                code: ApiError::NOT_LEADER.into(),
                message: format!(
                    "{} is not the leader; the leader is {} at {}",
                    node.name, h.name, h.addr
                ),
                leader: Some(h.addr.to_string()),
            };
            Err((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
                Json(body),
            )
                .into_response())
        }
        _ => Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            "no leader is known right now (an election may be under way); retry in a moment",
        )
        .into_response()),
    }
}

/// Checks the caller is a known, enabled user holding a current certificate; `admin` for writes.
pub(crate) fn authorize(
    state: &ClusterState,
    caller: &Caller,
    admin: bool,
) -> Result<UserRole, Failure> {
    let (Some(name), Some(serial)) = (&caller.user, &caller.serial) else {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "present a user certificate (a skiff credential)",
        ));
    };
    let user = state
        .users
        .get(name)
        .filter(|u| !u.disabled && u.cert_serials.contains(serial))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("user {name:?} is unknown, disabled, or this credential was replaced"),
            )
        })?;
    if admin && user.role != UserRole::Admin {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this operation needs the admin role",
        ));
    }
    Ok(user.role)
}

/// Sends the request to the leader, or checks the caller may act (`$admin`: needs the admin
/// role); evaluates to the desired state the handler works on.
macro_rules! gate {
    ($node:expr, $uri:expr, $caller:expr, $admin:expr) => {{
        let state = match leader_gate(&$node, &$uri).await {
            Ok(s) => s,
            Err(resp) => return Ok(resp),
        };
        if let Err(f) = authorize(&state, &$caller, $admin) {
            return Ok(f.into_response());
        }
        state
    }};
}

mod nodes;
mod servers;
mod tasks;
mod users;

pub(crate) fn ok<T: Serialize>(v: T) -> Result<Response, Failure> {
    Ok(Json(v).into_response())
}

#[derive(Serialize)]
struct Status {
    name: String,
    node_id: u64,
    cluster_id: String,
    serving_term: Option<u64>,
    leader: Option<String>,
}

/// Answered by every node itself (no redirect): who it is and whom it follows.
async fn status(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Status> {
    if caller.user.is_none() {
        return Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "present a user certificate",
        ));
    }
    Ok(Json(Status {
        name: node.name.clone(),
        node_id: node.node_id,
        cluster_id: node.cluster_id.clone(),
        serving_term: node.serving_term(),
        leader: node.leader_hint().await.map(|h| h.name),
    }))
}

pub(crate) async fn propose(
    node: &Node,
    caller: &Caller,
    cmd: Command,
) -> Result<CommandOutcome, Failure> {
    let actor = format!("user:{}", caller.user.as_deref().unwrap_or("?"));
    node.propose(&actor, cmd).await.map_err(|e| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            e.to_string(),
        )
    })
}

pub(crate) fn refused(outcome: CommandOutcome) -> Failure {
    match outcome {
        CommandOutcome::Refused { code, message } => {
            let status = match code {
                skiff_cluster::state::RefusalCode::NotFound => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            Failure(
                status,
                ApiError::new(format!("{code:?}").to_lowercase(), message),
            )
        }
        other => Failure::internal(format!("unexpected outcome {other:?}")),
    }
}
