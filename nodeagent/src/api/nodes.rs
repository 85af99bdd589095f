//! Nodes and Raft membership: list, cluster view, join tokens, promote, demote, remove.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use openraft::ChangeMembers;
use skiff_cluster::api::{
    ClusterView, MembershipRequest, NodeView, PoolUsage, TokenRequest, TokenResponse,
};
use skiff_cluster::gossip::{keys, GossipNode};
use skiff_cluster::identity;
use skiff_cluster::state::{ClusterState, Command, CommandOutcome, JoinTokenRecord, NodeRecord};
use skiff_cluster::token::JoinToken;
use tracing::info;

use super::{authorize, leader_gate, ok, propose, refused, Caller, Failure};
use crate::agent::Node;

/// Join tokens live at least this long...
pub const MIN_TOKEN_TTL: u64 = 60;
/// ...and at most this long.
pub const MAX_TOKEN_TTL: u64 = 7 * 24 * 3600;

fn view_of(
    rec: &NodeRecord,
    g: Option<&GossipNode>,
    voters: &BTreeSet<u64>,
    leader: Option<u64>,
) -> NodeView {
    let storage = g
        .and_then(|g| g.get(keys::STORAGE))
        .and_then(|s| serde_json::from_str::<Vec<PoolUsage>>(s).ok())
        .unwrap_or_default();
    NodeView {
        name: rec.name.clone(),
        id: rec.id,
        address: rec.addr.to_string(),
        role: rec.role.as_str().into(),
        voter: voters.contains(&rec.id),
        alive: g.is_some_and(|g| g.alive),
        leader: leader == Some(rec.id),
        term: g.map(|g| g.get_u64(keys::TERM)).unwrap_or(0),
        generation: g.map(|g| g.generation).unwrap_or(0),
        version: g.and_then(|g| g.get(keys::VERSION)).unwrap_or("").into(),
        cores: g.map(|g| g.get_u64(keys::CORES) as u32).unwrap_or(0),
        memory_total: g.map(|g| g.get_u64(keys::MEMORY_TOTAL)).unwrap_or(0),
        memory_used: g.map(|g| g.get_u64(keys::MEMORY_USED)).unwrap_or(0),
        cpu_milli: g.map(|g| g.get_u64(keys::CPU)).unwrap_or(0),
        storage,
        servers: g.map(|g| g.get_u64(keys::SERVERS) as u32).unwrap_or(0),
    }
}

fn voters_and_leader(node: &Node) -> (BTreeSet<u64>, BTreeSet<u64>, Option<u64>, u64) {
    let Some(r) = &node.replica else {
        return (BTreeSet::new(), BTreeSet::new(), None, 0);
    };
    let m = r.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let learners: BTreeSet<u64> = membership.learner_ids().collect();
    (voters, learners, m.current_leader, m.current_term)
}

pub(super) async fn node_views(node: &Node, state: &ClusterState) -> Vec<NodeView> {
    let gossip = node.gossip_nodes().await;
    let (voters, _, leader, _) = voters_and_leader(node);
    state
        .nodes
        .values()
        .map(|rec| {
            view_of(
                rec,
                gossip.iter().find(|g| g.name == rec.name),
                &voters,
                leader,
            )
        })
        .collect()
}

pub(super) async fn list(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    ok(node_views(&node, &state).await)
}

fn cluster_view(node: &Node, state: &ClusterState) -> ClusterView {
    let (voters, learners, leader, term) = voters_and_leader(node);
    let name = |id: &u64| {
        state
            .node_by_id(*id)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| format!("node-{id}"))
    };
    ClusterView {
        cluster_id: state.cluster_id.clone(),
        leader: leader.as_ref().map(name),
        term,
        voters: voters.iter().map(name).collect(),
        learners: learners.iter().map(name).collect(),
    }
}

pub(super) async fn cluster(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, false);
    ok(cluster_view(&node, &state))
}

pub(super) async fn create_token(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    if !(MIN_TOKEN_TTL..=MAX_TOKEN_TTL).contains(&req.ttl_secs) {
        return Err(Failure::bad_request(format!(
            "ttl_secs must be between {MIN_TOKEN_TTL} and {MAX_TOKEN_TTL}"
        )));
    }
    let ca = state
        .ca
        .as_ref()
        .ok_or_else(|| Failure::internal("the cluster has no CA yet"))?;
    let fingerprint =
        identity::ca_fingerprint(&ca.cert_pem).map_err(|e| Failure::internal(e.to_string()))?;
    let token = JoinToken::generate(&fingerprint);
    let expires_at = skiff_cluster::unix_now() + req.ttl_secs;
    let outcome = propose(
        &node,
        &caller,
        Command::CreateJoinToken {
            token: JoinTokenRecord {
                id: token.id.clone(),
                secret_sha256: token.secret_sha256(),
                expires_at,
                created_by: caller.user.clone().unwrap_or_default(),
                used_by: None,
            },
        },
    )
    .await?;
    if outcome != CommandOutcome::Done {
        return Err(refused(outcome));
    }
    ok(TokenResponse {
        token: token.to_string(),
        expires_at,
    })
}

fn resolve_names(state: &ClusterState, names: &[String]) -> Result<Vec<NodeRecord>, Failure> {
    if names.is_empty() {
        return Err(Failure::bad_request("name at least one node"));
    }
    names
        .iter()
        .map(|n| {
            state.nodes.get(n).cloned().ok_or_else(|| {
                Failure::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no node named {n:?}"),
                )
            })
        })
        .collect()
}

fn check_voter_count(count: usize, allow_even: bool) -> Result<(), Failure> {
    if count == 0 {
        return Err(Failure::bad_request("the cluster needs at least one voter"));
    }
    if count % 2 == 0 && !allow_even {
        return Err(Failure::bad_request(format!(
            "that leaves {count} voters: an even number tolerates no more failures than one fewer. Change two nodes at once (1, 3 or 5 voters), or pass --allow-even"
        )));
    }
    Ok(())
}

fn membership_failure(e: impl std::fmt::Display) -> Failure {
    Failure::new(
        StatusCode::CONFLICT,
        "membership_change_failed",
        e.to_string(),
    )
}

pub(super) async fn promote(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<MembershipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let recs = resolve_names(&state, &req.names)?;
    if let Some(c) = recs
        .iter()
        .find(|r| r.role != skiff_cluster::state::NodeRole::AdminEligible)
    {
        return Err(Failure::bad_request(format!(
            "{} is a compute node; only admin-eligible nodes can vote",
            c.name
        )));
    }
    let (voters, learners, _, _) = voters_and_leader(&node);
    let new: BTreeSet<u64> = recs
        .iter()
        .map(|r| r.id)
        .filter(|id| !voters.contains(id))
        .collect();
    check_voter_count(voters.len() + new.len(), req.allow_even)?;
    let raft = &node
        .replica
        .as_ref()
        .ok_or_else(|| Failure::internal("no replica"))?
        .raft;
    for r in recs
        .iter()
        .filter(|r| new.contains(&r.id) && !learners.contains(&r.id))
    {
        raft.add_learner(r.id, openraft::BasicNode::new(r.addr.to_string()), true)
            .await
            .map_err(membership_failure)?;
    }
    if !new.is_empty() {
        raft.change_membership(ChangeMembers::AddVoterIds(new), true)
            .await
            .map_err(membership_failure)?;
    }
    ok(cluster_view(&node, &node.state().unwrap_or(state)))
}

pub(super) async fn demote(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Result<Json<MembershipRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let Json(req) = body.map_err(|e| Failure::bad_request(e.body_text()))?;
    let recs = resolve_names(&state, &req.names)?;
    let (voters, _, _, _) = voters_and_leader(&node);
    let gone: BTreeSet<u64> = recs
        .iter()
        .map(|r| r.id)
        .filter(|id| voters.contains(id))
        .collect();
    check_voter_count(voters.len() - gone.len(), req.allow_even)?;
    if !gone.is_empty() {
        let raft = &node
            .replica
            .as_ref()
            .ok_or_else(|| Failure::internal("no replica"))?
            .raft;
        raft.change_membership(ChangeMembers::RemoveVoters(gone), true)
            .await
            .map_err(membership_failure)?;
    }
    ok(cluster_view(&node, &node.state().unwrap_or(state)))
}

pub(super) async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let state = gate!(node, uri, caller, true);
    let rec = resolve_names(&state, std::slice::from_ref(&name))?.remove(0);
    if rec.id == node.node_id {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "is_leader",
            format!("{name} is the leader: demote it first (`skiff node demote {name}`), then remove it from the new leader"),
        ));
    }
    let view = node_views(&node, &state)
        .await
        .into_iter()
        .find(|v| v.name == name);
    let (voters, learners, _, _) = voters_and_leader(&node);
    let raft = &node
        .replica
        .as_ref()
        .ok_or_else(|| Failure::internal("no replica"))?
        .raft;
    if voters.contains(&rec.id) {
        check_voter_count(voters.len() - 1, true)?;
        raft.change_membership(ChangeMembers::RemoveVoters([rec.id].into()), false)
            .await
            .map_err(membership_failure)?;
    } else if learners.contains(&rec.id) {
        raft.change_membership(ChangeMembers::RemoveNodes([rec.id].into()), false)
            .await
            .map_err(membership_failure)?;
    }
    let outcome = propose(
        &node,
        &caller,
        Command::RemoveNode {
            name: name.clone(),
            now: skiff_cluster::unix_now(),
        },
    )
    .await?;
    match outcome {
        CommandOutcome::Removed { .. } => {
            info!(node = %name, "node removed and its certificate revoked");
            ok(view)
        }
        other => Err(refused(other)),
    }
}
