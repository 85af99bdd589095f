//! The control API's image routes (`/api/v1/images`).
//!
//! Permissions: a user sees and acts on their own images (converting one into a new image of
//! their own included); the masters of admins are templates every user sees and may clone (into
//! an image of their own); an admin sees and acts on all; a read-only user sees and cannot act
//! (403). Images of others are answered 404, as if they did
//! not exist. Every write answers 202 with the task that carries it out on the image's node; the
//! state changes only once the node has done it (see `skiff_cluster::state::images`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use skiff_cluster::agentproto::console::{read_frame, write_frame};
use skiff_cluster::agentproto::image_stream::{
    Direction, ImageStreamAnswer, ImageStreamOpen, ImageStreamResult, OPEN_TIMEOUT,
};
use skiff_cluster::api::images::{
    CreateImageRequest, ImageActionRequest, ImageView, IMAGE_ACTIONS,
};
use skiff_cluster::state::images::{
    check_image_name, check_image_size, default_pool, ImageRecord, LOCAL_POOL,
};
use skiff_cluster::state::{
    ClusterState, Command, CommandOutcome, ImageCommand, ImageOp, UserRole,
};
use skiff_cluster::transport::ALPN_IMAGE;

use super::{leader_gate, ok, principal, propose, refused, task_accepted, Caller, Failure};
use crate::agent::Node;

/// The image routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/images", get(list).post(create))
        .route("/api/v1/images/{name}", get(show).delete(remove))
        .route("/api/v1/images/{name}/{action}", post(action))
        .route("/api/v1/images/{name}/content", get(download).put(upload))
}

/// Uploads this leader is carrying (image names): the reconciler leaves their tasks alone.
static UPLOADS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether this leader is receiving an upload of image `name`.
pub(crate) fn uploading(name: &str) -> bool {
    UPLOADS.lock().map(|u| u.contains(name)).unwrap_or(false)
}

/// Marks an upload as carried by this leader until dropped.
struct Uploading(String);

impl Uploading {
    fn start(name: &str) -> Option<Uploading> {
        let mut u = UPLOADS.lock().ok()?;
        u.insert(name.to_string())
            .then(|| Uploading(name.to_string()))
    }
}

impl Drop for Uploading {
    fn drop(&mut self) {
        if let Ok(mut u) = UPLOADS.lock() {
            u.remove(&self.0);
        }
    }
}

fn not_found(name: &str) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no image named {name:?}"),
    )
}

/// Whether `user` (of `role`) may see `image`: their own, an admin's master, or any for admins.
fn may_see(state: &ClusterState, user: &str, role: UserRole, image: &ImageRecord) -> bool {
    role == UserRole::Admin
        || image.owner == user
        || (image.master
            && state
                .users
                .get(&image.owner)
                .is_some_and(|u| u.role == UserRole::Admin))
}

fn visible<'a>(
    state: &'a ClusterState,
    user: &str,
    role: UserRole,
    name: &str,
) -> Result<&'a ImageRecord, Failure> {
    state
        .images
        .get(name)
        .filter(|i| may_see(state, user, role, i))
        .ok_or_else(|| not_found(name))
}

pub(super) async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let views: Vec<ImageView> = state
        .images
        .values()
        .filter(|i| may_see(&state, &p.name, p.role, i))
        .map(|i| ImageView::of(&state, i))
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
    let image = visible(&state, &p.name, p.role, &name)?;
    ok(ImageView::of(&state, image))
}

/// Where a new image goes: the node asked for; else the node of a node-local pool; else the
/// alive compute node, not in maintenance, with the most free space in the pool (which it must
/// have open). The pool is the one asked for, or the default ([`default_pool`]).
async fn place_image(
    node: &Node,
    state: &ClusterState,
    want_node: Option<&String>,
    want_pool: Option<&String>,
) -> Result<(String, String), Failure> {
    let pool = match want_pool {
        Some(p) => {
            if !check_pool_ref(p) {
                return Err(Failure::bad_request(format!("invalid pool name {p:?}")));
            }
            p.clone()
        }
        None => default_pool(state).to_string(),
    };
    if let Some(n) = want_node {
        if !state.nodes.contains_key(n) {
            return Err(Failure::bad_request(format!("no node named {n:?}")));
        }
        return Ok((n.clone(), pool));
    }
    if let Some(n) = state.pools.get(&pool).and_then(|p| p.node.clone()) {
        return Ok((n, pool));
    }
    if pool != LOCAL_POOL && !state.pools.contains_key(&pool) {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no pool named {pool:?}"),
        ));
    }
    // Free space as the nodes' last reports to the reconciler say (fresher than gossip just
    // after a pool was added), else as gossiped.
    let reported: std::collections::BTreeMap<String, Option<u64>> =
        crate::reconciler::reported_pools(node)
            .into_iter()
            .filter_map(|(n, pools)| {
                let p = pools.into_iter().find(|p| p.name == pool)?;
                let free = p.error.is_none().then(|| p.total.saturating_sub(p.used));
                Some((n, free))
            })
            .collect();
    let gossip = node.gossip_nodes().await;
    crate::scheduler::candidates(state, &gossip, None)
        .into_iter()
        .filter(|c| c.alive && c.compute && !c.maintenance)
        .filter_map(|c| {
            let free = match reported.get(&c.name) {
                Some(free) => (*free)?,
                None => {
                    let p = c.pools.iter().find(|p| p.name == pool)?;
                    p.total.saturating_sub(p.used)
                }
            };
            Some((free, c.name))
        })
        .max()
        .map(|(_, name)| (name, pool.clone()))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::CONFLICT,
                "no_placement",
                format!("no alive compute node outside maintenance has pool {pool} open"),
            )
        })
}

/// Whether `p` could name a pool (a local pool's name or a shared pool's number).
fn check_pool_ref(p: &str) -> bool {
    p == LOCAL_POOL
        || skiff_cluster::state::pools::is_shared_name(p)
        || skiff_cluster::state::pools::check_pool_name(p).is_ok()
}

pub(super) async fn create(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<CreateImageRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    check_image_name("image", &req.name).map_err(Failure::bad_request)?;
    check_image_size(req.size_gib).map_err(Failure::bad_request)?;
    let (target, pool) = place_image(&node, &state, req.node.as_ref(), req.pool.as_ref()).await?;
    let cmd = ImageCommand::Create {
        name: req.name,
        owner: p.name,
        node: target.clone(),
        size_gib: req.size_gib,
        pool: Some(pool),
    };
    task_accepted(
        propose(&node, &caller, Command::Image(cmd)).await?,
        Some(target),
    )
}

pub(super) async fn action(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path((name, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let image = visible(&state, &p.name, p.role, &name)?;
    let req: ImageActionRequest = if body.is_empty() {
        ImageActionRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Failure::bad_request(e.to_string()))?
    };
    let needs = |what: &str, v: Option<String>| {
        v.ok_or_else(|| Failure::bad_request(format!("{action} needs {what}")))
    };
    // Only cloning may be done to another user's (an admin's) master.
    let own = p.may_see(&image.owner);
    if action != "clone" && !own {
        return Err(not_found(&name));
    }
    let cmd = match action.as_str() {
        "clone" => {
            let new = needs("a name (the new image's)", req.name)?;
            check_image_name("image", &new).map_err(Failure::bad_request)?;
            ImageCommand::Clone {
                name: new,
                from: name,
                owner: p.name,
                pool: req.pool,
                node: req.node,
            }
        }
        "master" => ImageCommand::Act {
            name,
            work: ImageOp::MakeMaster,
        },
        "unmaster" => ImageCommand::Act {
            name,
            work: ImageOp::Unmaster,
        },
        "snapshot" | "revert" => {
            let snapshot = needs("a snapshot", req.snapshot)?;
            check_image_name("snapshot", &snapshot).map_err(Failure::bad_request)?;
            let op = if action == "snapshot" {
                ImageOp::Snapshot { snapshot }
            } else {
                ImageOp::Revert { snapshot }
            };
            ImageCommand::Act { name, work: op }
        }
        "flatten" => ImageCommand::Act {
            name,
            work: ImageOp::Flatten,
        },
        "convert" => {
            let new = needs("to (the new image's name)", req.to)?;
            check_image_name("image", &new).map_err(Failure::bad_request)?;
            ImageCommand::Convert {
                name: new,
                from: name,
                owner: p.name,
                compress: req.compress,
                pool: req.pool,
            }
        }
        "resize" => {
            let size_gib = req
                .size_gib
                .ok_or_else(|| Failure::bad_request("resize needs size_gib"))?;
            check_image_size(size_gib).map_err(Failure::bad_request)?;
            ImageCommand::Act {
                name,
                work: ImageOp::Resize { size_gib },
            }
        }
        other => {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no image action {other:?} (one of {})",
                    IMAGE_ACTIONS.join(", ")
                ),
            ))
        }
    };
    let at = image.node.clone();
    task_accepted(
        propose(&node, &caller, Command::Image(cmd)).await?,
        Some(at),
    )
}

pub(super) async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let image = visible(&state, &p.name, p.role, &name)?;
    if p.role != UserRole::Admin && image.owner != p.name {
        return Err(not_found(&name));
    }
    let at = image.node.clone();
    let cmd = ImageCommand::Act {
        name,
        work: ImageOp::Remove,
    };
    task_accepted(
        propose(&node, &caller, Command::Image(cmd)).await?,
        Some(at),
    )
}

/// `?node=NAME&pool=POOL` of an upload.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    pool: Option<String>,
}

const GIB: u64 = 1 << 30;
/// Time an agent gets to check and place an uploaded image (a raw image is converted).
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

fn node_unavailable(message: impl Into<String>) -> Failure {
    Failure::new(StatusCode::CONFLICT, "node_unavailable", message)
}

/// The QUIC address of member `name`.
fn address_of(state: &ClusterState, name: &str) -> Result<std::net::SocketAddr, Failure> {
    state
        .nodes
        .get(name)
        .map(|n| n.addr)
        .ok_or_else(|| node_unavailable(format!("node {name} is not a member")))
}

/// Opens an image stream to `to` and exchanges the opening frames.
async fn open_image_stream(
    node: &Node,
    addr: std::net::SocketAddr,
    name: &str,
    pool: &str,
    direction: Direction,
) -> Result<(quinn::SendStream, quinn::RecvStream, Option<u64>), Failure> {
    let (mut send, mut recv) = node
        .endpoint
        .open_stream(addr, ALPN_IMAGE, OPEN_TIMEOUT)
        .await
        .map_err(|e| node_unavailable(e.to_string()))?;
    let open = ImageStreamOpen {
        name: name.to_string(),
        direction,
        pool: pool.to_string(),
    };
    write_frame(&mut send, &open)
        .await
        .map_err(|e| node_unavailable(e.to_string()))?;
    let answer: ImageStreamAnswer = tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut recv))
        .await
        .map_err(|_| node_unavailable("the node did not answer in time"))?
        .map_err(|e| node_unavailable(e.to_string()))?;
    match answer {
        ImageStreamAnswer::Ready { size_bytes } => Ok((send, recv, size_bytes)),
        ImageStreamAnswer::Error { message } => {
            Err(Failure::new(StatusCode::CONFLICT, "refused", message))
        }
    }
}

/// Ends an upload's task: settles the image (`size_gib` when it worked) and finishes the task.
async fn end_upload(node: &Node, name: &str, task_id: u64, outcome: Result<u64, String>) {
    use skiff_cluster::state::TaskCommand;
    let (ok, size_gib, result) = match &outcome {
        Ok(size) => (true, Some(*size), format!("uploaded ({size} GiB)")),
        Err(e) => (false, None, e.clone()),
    };
    let settle = ImageCommand::Settle {
        name: name.to_string(),
        task_id,
        ok,
        size_gib,
    };
    let _ = node
        .propose(crate::reconciler::ACTOR, Command::Image(settle))
        .await;
    let finish = TaskCommand::Finish {
        id: task_id,
        ok,
        result,
    };
    let _ = node
        .propose(crate::reconciler::ACTOR, Command::Task(finish))
        .await;
}

/// `PUT /api/v1/images/{name}/content[?node=NODE]`: a new image from the request body (qcow2
/// without a backing file, or raw), streamed to the node's pool. Answers 201 with the image once
/// the node has checked and placed it; nothing is left behind otherwise.
pub(super) async fn upload(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Result<Response, Failure> {
    use futures::StreamExt as _;
    let (state, p) = gate_as!(node, uri, caller, false);
    let axum::extract::Query(q) = query.map_err(|e| Failure::bad_request(e.body_text()))?;
    check_image_name("image", &name).map_err(Failure::bad_request)?;
    let (target, pool) = place_image(&node, &state, q.node.as_ref(), q.pool.as_ref()).await?;
    let addr = address_of(&state, &target)?;
    let Some(_uploading) = Uploading::start(&name) else {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!("image {name:?} is being uploaded already"),
        ));
    };
    let cmd = ImageCommand::Upload {
        name: name.clone(),
        owner: p.name.clone(),
        node: target.clone(),
        pool: Some(pool.clone()),
    };
    let task_id = match propose(&node, &caller, Command::Image(cmd)).await? {
        CommandOutcome::TaskStarted { task_id } => task_id,
        other => return Err(refused(other)),
    };
    let start = skiff_cluster::state::TaskCommand::Start {
        id: task_id,
        node: Some(target.clone()),
    };
    let _ = node
        .propose(crate::reconciler::ACTOR, Command::Task(start))
        .await;
    let outcome: Result<u64, Failure> = async {
        let (mut send, mut recv, _) =
            open_image_stream(&node, addr, &name, &pool, Direction::Upload).await?;
        let mut body = body.into_data_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Failure::bad_request(format!("the upload broke off: {e}")))?;
            send.write_all(&chunk)
                .await
                .map_err(|e| node_unavailable(format!("node {target}: {e}")))?;
        }
        let _ = send.finish();
        let result: ImageStreamResult = tokio::time::timeout(IMPORT_TIMEOUT, read_frame(&mut recv))
            .await
            .map_err(|_| node_unavailable("the node did not place the image in time"))?
            .map_err(|e| node_unavailable(e.to_string()))?;
        match result {
            ImageStreamResult::Imported { virtual_size } => Ok(virtual_size.div_ceil(GIB)),
            ImageStreamResult::Error { message } => Err(Failure::bad_request(format!(
                "the upload is not a usable image: {message}"
            ))),
        }
    }
    .await;
    // The quota is checked against the image's real size before it is accepted.
    let outcome = match outcome {
        Ok(size) => {
            let fresh = node.state().unwrap_or(state);
            let over = fresh.users.get(&p.name).and_then(|u| {
                let limit = u.quotas.storage_gib?;
                let used = skiff_cluster::state::servers::storage_gib_of(&fresh, &p.name)
                    + skiff_cluster::state::images::owned_gib(&fresh, &p.name);
                (used + size > limit).then(|| {
                    format!(
                        "{}'s storage quota is {limit} GiB: {used} in use, the image has {size}",
                        p.name
                    )
                })
            });
            match over {
                Some(message) => {
                    let remove = skiff_cluster::agentproto::AgentRequest::Image {
                        name: name.clone(),
                        op: ImageOp::Remove,
                        pool: pool.clone(),
                    };
                    let _ = node.call_agent(&target, &remove).await;
                    Err(Failure::new(
                        StatusCode::CONFLICT,
                        "quota_exceeded",
                        message,
                    ))
                }
                None => Ok(size),
            }
        }
        Err(f) => Err(f),
    };
    match outcome {
        Ok(size) => {
            end_upload(&node, &name, task_id, Ok(size)).await;
            let state = node.state().ok_or_else(|| node_unavailable("no state"))?;
            let image = state
                .images
                .get(&name)
                .ok_or_else(|| node_unavailable("the image vanished"))?;
            Ok((StatusCode::CREATED, Json(ImageView::of(&state, image))).into_response())
        }
        Err(f) => {
            end_upload(&node, &name, task_id, Err(f.1.message.clone())).await;
            Err(f)
        }
    }
}

/// `GET /api/v1/images/{name}/content`: the image file (qcow2), streamed from its node.
pub(super) async fn download(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let (state, p) = gate_as!(node, uri, caller, false);
    let image = visible(&state, &p.name, p.role, &name)?;
    if !image.ready {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!("image {name} is not made yet"),
        ));
    }
    let addr = address_of(&state, &image.node)?;
    let (_send, recv, size) =
        open_image_stream(&node, addr, &name, &image.pool, Direction::Download).await?;
    let chunks = futures::stream::unfold(recv, |mut recv| async move {
        match recv.read_chunk(256 * 1024, true).await {
            Ok(Some(c)) => Some((Ok::<_, std::io::Error>(c.bytes), recv)),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), recv)),
        }
    });
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = size {
        headers.insert(axum::http::header::CONTENT_LENGTH, size.into());
    }
    Ok(response)
}
