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
    MaintenanceView, ServerActionRequest, ServerView,
};
use skiff_cluster::state::servers::{check_name, check_spec, PlannedMove, ServerRecord};
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, ServerCommand, UserRole};

use super::{
    authorize, leader_gate, ok, principal, propose, refused, task_accepted, Caller, Failure,
};
use crate::agent::Node;
use crate::scheduler::{self, Demand, SchedulerPolicy};

/// The servers routes (merged into the API router).
pub(super) fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/servers", get(list).post(create))
        .route("/api/v1/servers/{name}", get(show).delete(remove))
        .route("/api/v1/servers/{name}/console", get(console))
        .route(
            "/api/v1/servers/{name}/console/attach",
            get(attach_console_upgrade).post(attach_console),
        )
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

pub(super) fn no_placement(e: scheduler::NoPlacement) -> Failure {
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

/// The node holding the masters that `disks` are clones of (`None`: no disk is a clone, or
/// every master is in a shared pool, which every node has). Each must be a ready master the user
/// may use (their own, or an admin's); those in node-local pools all on one node, since a clone
/// is made on the node of its master.
pub(super) fn masters_node(
    state: &ClusterState,
    user: &str,
    role: UserRole,
    disks: &[skiff_cluster::state::servers::DiskSpec],
) -> Result<Option<String>, Failure> {
    let mut at: Option<String> = None;
    for m in disks.iter().filter_map(|d| d.image.as_deref()) {
        let usable = state.images.get(m).filter(|i| {
            role == UserRole::Admin
                || i.owner == user
                || state
                    .users
                    .get(&i.owner)
                    .is_some_and(|u| u.role == UserRole::Admin)
        });
        let Some(image) = usable else {
            return Err(Failure::bad_request(format!("no image named {m:?}")));
        };
        if !image.master || !image.ready {
            return Err(Failure::bad_request(format!(
                "image {m} is not a master: disks are clones of masters (skiff image master {m})"
            )));
        }
        if state.pools.get(&image.pool).is_some_and(|p| p.is_shared()) {
            continue;
        }
        match &at {
            Some(n) if *n != image.node => {
                return Err(Failure::bad_request(format!(
                    "the masters are on different nodes ({n} and {}): clones must be made next to their master",
                    image.node
                )))
            }
            _ => at = Some(image.node.clone()),
        }
    }
    Ok(at)
}

/// Adds to `demand` the shared pools of the masters `disks` are clones of (with no space: the
/// clone takes it in its own pool), so only nodes that have those pools open are chosen.
pub(super) fn need_master_pools(
    state: &ClusterState,
    disks: &[skiff_cluster::state::servers::DiskSpec],
    demand: &mut Demand,
) {
    for image in disks
        .iter()
        .filter_map(|d| state.images.get(d.image.as_deref()?))
    {
        if state.pools.get(&image.pool).is_some_and(|p| p.is_shared()) {
            demand.storage_gib.entry(image.pool.clone()).or_insert(0);
        }
    }
}

/// Placements on this leader happen one at a time: each is decided on a state that includes
/// the one before (the lock is held from reading the state to the end of the proposal), so
/// concurrent creates cannot all take the last free room of a node. (`apply` cannot re-check
/// capacity: gossip figures are not replicated.) One lock per process is enough: only the
/// leader places, and in-process test clusters merely serialize a little more.
static PLACING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the placement lock and reads the newest desired state (`fallback`: the gate's).
pub(super) async fn placing(
    node: &Node,
    fallback: &Arc<ClusterState>,
) -> (tokio::sync::MutexGuard<'static, ()>, Arc<ClusterState>) {
    let guard = PLACING.lock().await;
    let fresh = node.state().unwrap_or_else(|| fallback.clone());
    (guard, fresh)
}

/// The overcommit rules in force: this (leading) node's `[scheduler]` settings.
pub(super) fn policy(node: &Node) -> SchedulerPolicy {
    SchedulerPolicy::from(&node.config.scheduler)
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

/// Attaches the leader to the serial console of `server` on its node (ALPN `skiff-console/1`):
/// the QUIC stream, once the agent said it attached, or the failure as the API answers it.
async fn open_console_stream(
    node: &Node,
    state: &ClusterState,
    server: &ServerRecord,
) -> Result<(quinn::SendStream, quinn::RecvStream), Failure> {
    use agentproto::console::{
        read_frame, write_frame, ConsoleAnswer, ConsoleErrorCode, ConsoleOpen, OPEN_TIMEOUT,
    };
    let name = &server.name;
    let unavailable = |m: String| Failure::new(StatusCode::CONFLICT, "node_unavailable", m);
    let on = server
        .node
        .clone()
        .ok_or_else(|| unavailable(format!("server {name} is on no node")))?;
    let addr = state
        .nodes
        .get(&on)
        .map(|n| n.addr)
        .ok_or_else(|| unavailable(format!("node {on} is not a member")))?;
    let (mut send, mut recv) = node
        .endpoint
        .open_stream(addr, skiff_cluster::transport::ALPN_CONSOLE, OPEN_TIMEOUT)
        .await
        .map_err(|e| unavailable(format!("node {on} did not answer: {e}")))?;
    let exchange = async {
        write_frame(&mut send, &ConsoleOpen { name: name.clone() }).await?;
        read_frame::<_, ConsoleAnswer>(&mut recv).await
    };
    match tokio::time::timeout(OPEN_TIMEOUT, exchange).await {
        Ok(Ok(ConsoleAnswer::Attached)) => Ok((send, recv)),
        Ok(Ok(ConsoleAnswer::Error { code, message })) => Err(match code {
            ConsoleErrorCode::NotFound => not_found(name),
            ConsoleErrorCode::NotRunning => Failure::new(
                StatusCode::CONFLICT,
                "not_running",
                format!("server {name} is not running: {message}"),
            ),
            _ => unavailable(format!(
                "node {on} cannot attach to the console of {name}: {message}"
            )),
        }),
        Ok(Err(e)) => Err(unavailable(format!(
            "node {on} gave an unexpected answer: {e}"
        ))),
        Err(_) => Err(unavailable(format!(
            "node {on} did not open the console of {name} in time"
        ))),
    }
}

/// Bytes of console output queued between the node and one HTTP client.
const ATTACH_QUEUE: usize = 16;

/// `POST /api/v1/servers/{name}/console/attach`: a two-way serial console as one full-duplex
/// HTTP exchange (what `skiff` uses, over HTTP/2): the request body is typed on the console, the
/// response body (`application/octet-stream`) is the console's output. Ending the request body
/// detaches; the response ends when the console closes. The owner or an admin; read-only users
/// are refused (typing acts on the server).
pub(super) async fn attach_console(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Result<Response, Failure> {
    use futures::StreamExt;
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    if role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let server = visible(&state, &user, role, &name)?;
    let (mut send, mut recv) = open_console_stream(&node, &state, server).await?;
    // Client -> console.
    tokio::spawn(async move {
        let mut typed = body.into_data_stream();
        while let Some(Ok(chunk)) = typed.next().await {
            if send.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    // Console -> client, through a bounded queue: a slow client holds the console back.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(ATTACH_QUEUE);
    tokio::spawn(async move {
        let mut buf = vec![0u8; crate::compute::CONSOLE_CHUNK];
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            if tx
                .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let output = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        axum::body::Body::from_stream(output),
    )
        .into_response())
}

/// The `Upgrade` protocol name of the raw console pipe (HTTP/1.1).
pub const CONSOLE_UPGRADE: &str = "skiff-console";

/// Whether the headers ask for the console upgrade (`Connection: Upgrade`,
/// `Upgrade: skiff-console`; tokens compared without case).
fn wants_console_upgrade(headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header;
    let has = |h: header::HeaderName, want: &str| {
        headers.get_all(h).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(want)))
        })
    };
    has(header::UPGRADE, CONSOLE_UPGRADE) && has(header::CONNECTION, "upgrade")
}

/// `GET /api/v1/servers/{name}/console/attach` with `Connection: Upgrade` and
/// `Upgrade: skiff-console` (HTTP/1.1 only): answers 101 and turns the connection into a raw byte
/// pipe to the console, both ways. Same permissions as the `POST` form.
pub(super) async fn attach_console_upgrade(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
    mut req: axum::extract::Request,
) -> Result<Response, Failure> {
    use axum::http::header;
    let state = gate!(node, uri, caller, false);
    let (user, role) = who(&state, &caller)?;
    if role == UserRole::ReadOnly {
        return Err(forbidden_read_only());
    }
    let server = visible(&state, &user, role, &name)?;
    if !wants_console_upgrade(req.headers()) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "upgrade_required",
            format!(
                "attach with `Connection: Upgrade` and `Upgrade: {CONSOLE_UPGRADE}` over \
                 HTTP/1.1, or POST for a full-duplex stream"
            ),
        ));
    }
    if req.version() != axum::http::Version::HTTP_11 {
        return Err(Failure::bad_request(
            "an upgrade needs HTTP/1.1; over HTTP/2, POST to this path instead",
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (mut send, mut recv) = open_console_stream(&node, &state, server).await?;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "console upgrade failed");
                return;
            }
        };
        let (mut from_client, mut to_client) = tokio::io::split(upgraded);
        let typing = async {
            let _ = tokio::io::copy(&mut from_client, &mut send).await;
            let _ = send.finish();
        };
        let showing = async {
            let _ = tokio::io::copy(&mut recv, &mut to_client).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_client).await;
        };
        let mut showing = std::pin::pin!(showing);
        tokio::select! {
            // The console closed: the client's half goes with it.
            () = &mut showing => {}
            // Detached: the agent drains the console's output and ends the stream.
            () = typing => showing.await,
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, "upgrade"),
            (header::UPGRADE, CONSOLE_UPGRADE),
        ],
    )
        .into_response())
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
    need_master_pools(&state, &spec.disks, &mut demand);
    if let Some(at) = masters_node(&state, &user, role, &spec.disks)? {
        if let Some(n) = req.node.as_ref().or(req.lock_to_node.as_ref()) {
            if *n != at {
                return Err(Failure::bad_request(format!(
                    "the server's disks are clones of masters on node {at} (local pool): it cannot go on {n}"
                )));
            }
        }
        demand.lock_to_node = Some(at);
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
    task_accepted(outcome, Some(target))
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
            need_master_pools(&state, &rec.spec.disks, &mut demand);
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
        "attach_disk" => {
            let disk = req
                .disk
                .ok_or_else(|| Failure::bad_request("attach_disk needs a disk"))?;
            if let Some(at) = masters_node(&state, &user, role, std::slice::from_ref(&disk))? {
                if rec.node.as_deref() != Some(at.as_str()) {
                    return Err(Failure::bad_request(format!(
                        "master {} is on node {at}, the server on {}: a clone must be made where its master is",
                        disk.image.as_deref().unwrap_or_default(),
                        rec.node.as_deref().unwrap_or("no node")
                    )));
                }
            }
            ServerCommand::AttachDisk { name, disk }
        }
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
    task_accepted(outcome, placed)
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
    task_accepted(outcome, placed)
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
        need_master_pools(state, &s.spec.disks, &mut demand);
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
