//! The live event stream (`GET /api/v1/events`): Server-Sent Events for the cockpit, served by the
//! leader only (followers redirect like every route).
//!
//! Each event is one JSON [`ApiEvent`] with a `kind`: `state` (after each applied Raft write: the
//! audit records since the last event), `task` (a task the subscriber may see appeared or changed),
//! `nodes` (the node figures every [`NODES_EVERY`]), and `lagged` (events were dropped, see below).
//! Admins see everything; other users see audit records of their own writes and of writes about
//! their own servers and tasks, and only their own tasks. The subscriber is authenticated again
//! against every new state, so a disabled user or a revoked token ends the stream.
//!
//! The stream ends when this node stops serving the leader term it started under (or shuts
//! down): the client reconnects and reaches the new leader.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use skiff_cluster::api::events::{ApiEvent, KEEP_ALIVE};
use skiff_cluster::api::ApiError;
use skiff_cluster::state::{AuditRecord, ClusterState, TaskRecord};
use tokio::sync::mpsc::{self, error::TrySendError};

use super::nodes::node_views;
use super::{leader_gate, principal, Caller, Failure, Principal};
use crate::agent::Node;

/// How often the node figures are sent.
pub const NODES_EVERY: Duration = Duration::from_secs(2);

/// Events queued per subscriber, at most. Memory per subscriber is bounded: this queue, the
/// baseline of its visible tasks, and one copy of the state while a change is diffed. The leader
/// never waits for a slow client: when the queue is full, `nodes` events are dropped (a fresh one
/// follows in 2 s) and `state`/`task` events are dropped too, after which a `lagged` event is
/// queued as soon as there is room, telling the client to re-read what it shows.
pub const QUEUE: usize = 256;

/// `GET /api/v1/events`.
pub(super) async fn stream(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
) -> Result<Response, Failure> {
    let (state, who) = gate_as!(node, uri, caller, false);
    let (Some(replica), Some(leader), Some(term)) = (
        node.replica.clone(),
        node.leader.clone(),
        node.serving_term(),
    ) else {
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NO_LEADER,
            "this node stopped leading; retry",
        ));
    };
    let (tx, rx) = mpsc::channel::<Event>(QUEUE);
    let mut sub = Subscriber::new(who, &state);
    let changes = replica.state.subscribe();
    let active = leader.watch();
    let shutdown = node.shutdown_signal();
    tokio::spawn(async move {
        sub.run(node, replica, caller, term, changes, active, shutdown, tx)
            .await
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// What one subscriber has been told so far.
struct Subscriber {
    who: Principal,
    /// The sequence number of the last audit record looked at.
    last_seq: u64,
    /// The tasks it may see, as last sent.
    tasks: BTreeMap<u64, TaskRecord>,
    /// Servers it owns (now or before the last change), for filtering audit records.
    servers: BTreeSet<String>,
    /// Events were dropped: a `lagged` event is owed.
    lagged: bool,
}

impl Subscriber {
    fn new(who: Principal, state: &ClusterState) -> Self {
        let mut sub = Subscriber {
            last_seq: state.writes,
            tasks: BTreeMap::new(),
            servers: BTreeSet::new(),
            lagged: false,
            who,
        };
        sub.tasks = sub.visible_tasks(state);
        sub.servers = sub.own_servers(state);
        sub
    }

    fn visible_tasks(&self, state: &ClusterState) -> BTreeMap<u64, TaskRecord> {
        state
            .tasks
            .iter()
            .filter(|(_, t)| self.who.may_see(&t.owner))
            .map(|(id, t)| (*id, t.clone()))
            .collect()
    }

    fn own_servers(&self, state: &ClusterState) -> BTreeSet<String> {
        state
            .servers
            .values()
            .filter(|s| s.owner == self.who.name)
            .map(|s| s.name.clone())
            .collect()
    }

    /// Whether the subscriber may see this audit record.
    fn may_see(&self, state: &ClusterState, r: &AuditRecord) -> bool {
        if self.who.is_admin() {
            return true;
        }
        if r.actor.strip_prefix("user:") == Some(self.who.name.as_str()) {
            return true;
        }
        if r.op.starts_with("server.") {
            return self.servers.contains(&r.target)
                || state
                    .servers
                    .get(&r.target)
                    .is_some_and(|s| s.owner == self.who.name);
        }
        if r.op.starts_with("task.") {
            return r
                .target
                .parse::<u64>()
                .ok()
                .and_then(|id| state.tasks.get(&id))
                .is_some_and(|t| t.owner == self.who.name);
        }
        false
    }

    /// The events a new state makes, moving the baselines on.
    fn diff(&mut self, state: &ClusterState) -> Vec<ApiEvent> {
        let mut out = Vec::new();
        let records: Vec<AuditRecord> = state
            .audit
            .iter()
            .filter(|r| r.seq > self.last_seq && self.may_see(state, r))
            .cloned()
            .collect();
        self.last_seq = self.last_seq.max(state.writes);
        if !records.is_empty() {
            out.push(ApiEvent::State { records });
        }
        let tasks = self.visible_tasks(state);
        for (id, t) in &tasks {
            if self.tasks.get(id) != Some(t) {
                out.push(ApiEvent::Task { task: t.clone() });
            }
        }
        self.tasks = tasks;
        self.servers = self.own_servers(state);
        out
    }

    /// Queues one event without waiting (see [`QUEUE`]); false when the client is gone.
    fn send(&mut self, tx: &mpsc::Sender<Event>, ev: &ApiEvent) -> bool {
        if self.lagged {
            match tx.try_send(to_sse(&ApiEvent::Lagged)) {
                Ok(()) => self.lagged = false,
                Err(TrySendError::Full(_)) => return true,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match tx.try_send(to_sse(ev)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // Missing node figures are made good by the next ones; anything else is owed.
                if !matches!(ev, ApiEvent::Nodes { .. } | ApiEvent::Servers { .. }) {
                    self.lagged = true;
                }
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        node: Arc<Node>,
        replica: crate::agent::Replica,
        caller: Caller,
        term: u64,
        mut changes: tokio::sync::watch::Receiver<u64>,
        mut active: tokio::sync::watch::Receiver<Option<u64>>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        tx: mpsc::Sender<Event>,
    ) {
        let mut tick = tokio::time::interval(NODES_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // `changes` is not marked seen: a write applied between the handler's snapshot and now
        // is diffed at once (a diff with nothing new sends nothing).
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                r = active.changed() => {
                    if r.is_err() || *active.borrow_and_update() != Some(term) {
                        return;
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow_and_update() {
                        return;
                    }
                }
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let state = replica.state.read();
                    match principal(&state, &caller, false) {
                        Ok(p) => self.who = p,
                        // Disabled, removed, or the token was revoked: the stream ends.
                        Err(_) => return,
                    }
                    for ev in self.diff(&state) {
                        if !self.send(&tx, &ev) {
                            return;
                        }
                    }
                }
                _ = tick.tick() => {
                    if node.serving_term() != Some(term) {
                        return;
                    }
                    let state = replica.state.read();
                    let nodes = node_views(&node, &state).await;
                    if !self.send(&tx, &ApiEvent::Nodes { nodes }) {
                        return;
                    }
                    let servers: Vec<_> = crate::reconciler::actual_view(&node)
                        .map(|v| v.servers)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|s| self.who.may_see(&s.owner))
                        .filter_map(|s| s.figures)
                        .collect();
                    if !self.send(&tx, &ApiEvent::Servers { servers }) {
                        return;
                    }
                }
            }
        }
    }
}

fn to_sse(ev: &ApiEvent) -> Event {
    Event::default().data(serde_json::to_string(ev).unwrap_or_else(|_| "{}".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_cluster::state::{TaskState, UserRole};

    fn task(id: u64, owner: &str, progress: u8) -> TaskRecord {
        TaskRecord {
            id,
            owner: owner.into(),
            kind: "server.start".into(),
            target: format!("{owner}-srv"),
            node: None,
            state: TaskState::Running,
            progress,
            log: vec![],
            result: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn audit(seq: u64, actor: &str, op: &str, target: &str) -> AuditRecord {
        AuditRecord {
            seq,
            at: 0,
            actor: actor.into(),
            op: op.into(),
            target: target.into(),
            result: "ok".into(),
        }
    }

    #[test]
    fn users_see_their_own_and_admins_all() {
        let mut state = ClusterState::default();
        let bob = Principal {
            name: "bob".into(),
            role: UserRole::User,
        };
        let admin = Principal {
            name: "root".into(),
            role: UserRole::Admin,
        };
        let mut b = Subscriber::new(bob, &state);
        let mut a = Subscriber::new(admin, &state);
        state.tasks.insert(1, task(1, "alice", 0));
        state.tasks.insert(2, task(2, "bob", 0));
        state
            .audit
            .push_back(audit(1, "user:alice", "server.create", "x"));
        state
            .audit
            .push_back(audit(2, "user:bob", "server.create", "y"));
        state
            .audit
            .push_back(audit(3, "node:n1", "task.progress", "2"));
        state
            .audit
            .push_back(audit(4, "node:n1", "task.progress", "1"));
        state.writes = 4;
        let ev = b.diff(&state);
        assert_eq!(
            ev,
            vec![
                ApiEvent::State {
                    records: vec![
                        audit(2, "user:bob", "server.create", "y"),
                        audit(3, "node:n1", "task.progress", "2")
                    ]
                },
                ApiEvent::Task {
                    task: task(2, "bob", 0)
                }
            ]
        );
        assert_eq!(a.diff(&state).len(), 3);
        // Nothing new: nothing sent; a change of a task: one event.
        assert!(b.diff(&state).is_empty());
        state.tasks.insert(2, task(2, "bob", 50));
        assert_eq!(
            b.diff(&state),
            vec![ApiEvent::Task {
                task: task(2, "bob", 50)
            }]
        );
    }

    #[test]
    fn a_full_queue_drops_and_owes_a_lagged_event() {
        let state = ClusterState::default();
        let who = Principal {
            name: "bob".into(),
            role: UserRole::User,
        };
        let mut sub = Subscriber::new(who, &state);
        let (tx, mut rx) = mpsc::channel(1);
        let ev = ApiEvent::Task {
            task: task(1, "bob", 1),
        };
        assert!(sub.send(&tx, &ev));
        assert!(sub.send(&tx, &ev));
        assert!(sub.lagged);
        let _ = rx.try_recv().unwrap();
        // The lagged event takes the free place; the new event did not fit and is owed again.
        assert!(sub.send(&tx, &ev));
        assert!(sub.lagged);
        let _ = rx.try_recv().unwrap();
        let (tx2, mut rx2) = mpsc::channel(2);
        assert!(sub.send(&tx2, &ev));
        assert!(!sub.lagged);
        assert_eq!(rx2.len(), 2, "lagged, then the event");
        let _ = rx2.try_recv();
        drop(rx);
        assert!(!sub.send(&tx, &ev));
    }
}
