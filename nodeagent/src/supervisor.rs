//! The leader services supervisor: runs the leader-only services on this node exactly while it
//! holds a confirmed lease on a committed Raft term.
//!
//! The lease: every check asks a quorum to confirm our leadership (openraft's read-index round).
//! A confirmation that *started* at `t` keeps services running until `t + lease`. Followers reset
//! their election timers only on hearing from us after `t`, so none of them can start an election
//! before `t + election_min`; with `lease < election_min`, a cut-off leader stops its services
//! before anyone else can be elected. The term is the fencing token: services are started with it,
//! and it is published in gossip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_cluster::raft::ClusterRaft;
use skiff_cluster::state::NodeId;
use tokio::sync::watch;
use tracing::{info, warn};

/// A service that only the leader runs (the control API's write side now; NFS, routing and the
/// proxy register here as they land).
#[async_trait::async_trait]
pub trait LeaderService: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Starts serving for `term`. Must not block for long.
    async fn start(&self, term: u64);
    /// Stops serving. Must not block for long.
    async fn stop(&self);
}

/// One start or stop, kept so tests can prove no two nodes ever served at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    /// `Some(term)` when services started, `None` when they stopped.
    pub term: Option<u64>,
}

/// The leader services of one node and their state.
pub struct LeaderServices {
    services: Vec<Arc<dyn LeaderService>>,
    active: watch::Sender<Option<u64>>,
    history: Mutex<Vec<Transition>>,
}

impl LeaderServices {
    pub fn new(services: Vec<Arc<dyn LeaderService>>) -> Arc<Self> {
        Arc::new(LeaderServices {
            services,
            active: watch::channel(None).0,
            history: Mutex::new(Vec::new()),
        })
    }

    /// The term this node serves as leader for, if it runs leader services now.
    pub fn active_term(&self) -> Option<u64> {
        *self.active.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<Option<u64>> {
        self.active.subscribe()
    }

    /// Every start and stop so far.
    pub fn history(&self) -> Vec<Transition> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    async fn set(&self, term: Option<u64>) {
        let current = self.active_term();
        if current == term {
            return;
        }
        if current.is_some() {
            // Stop first, and record the stop before anything else can happen.
            self.active.send_replace(None);
            self.record(None);
            for s in &self.services {
                s.stop().await;
            }
            info!(term = ?current, "leader services stopped");
        }
        if let Some(t) = term {
            for s in &self.services {
                s.start(t).await;
            }
            self.record(Some(t));
            self.active.send_replace(Some(t));
            info!(term = t, "leader services started");
        }
    }

    fn record(&self, term: Option<u64>) {
        if let Ok(mut h) = self.history.lock() {
            h.push(Transition {
                at: Instant::now(),
                term,
            });
        }
    }

    /// Runs the supervision loop until `shutdown` fires; stops the services on the way out.
    pub async fn supervise(
        self: Arc<Self>,
        raft: ClusterRaft,
        me: NodeId,
        lease: Duration,
        check_every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut lease_until: Option<(Instant, u64)> = None;
        loop {
            let mut unconfirmed = false;
            if *shutdown.borrow() {
                break;
            }
            let m = raft.metrics().borrow().clone();
            let committed_leader = m.current_leader == Some(me)
                && m.state.is_leader()
                && m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term);
            let now = Instant::now();
            if committed_leader {
                let budget = match lease_until {
                    Some((until, _)) if until > now => until - now,
                    Some(_) => Duration::ZERO,
                    None => lease,
                };
                let started = Instant::now();
                let confirm = tokio::time::timeout(
                    budget.max(Duration::from_millis(1)),
                    raft.get_read_log_id(),
                );
                // The only voter needs no quorum round: nobody else can be elected, and every
                // membership change goes through it. (Under heavy fsync load the round can be
                // slower than the lease, which would stop a single-node cluster's API for nothing.)
                let sole_voter = {
                    let mut voters = m.membership_config.membership().voter_ids();
                    voters.next() == Some(me) && voters.next().is_none()
                };
                let confirmed = sole_voter
                    || tokio::select! {
                        r = confirm => matches!(r, Ok(Ok(_))),
                        _ = shutdown.changed() => false,
                    };
                let term = raft.metrics().borrow().current_term;
                if confirmed && term == m.current_term {
                    lease_until = Some((started + lease, term));
                } else {
                    unconfirmed = true;
                }
            }
            match lease_until {
                Some((until, term)) if Instant::now() < until && committed_leader => {
                    self.set(Some(term)).await;
                }
                Some((_, term)) => {
                    if self.active_term().is_some() {
                        warn!(
                            term,
                            "leadership not confirmed within the lease: stopping leader services"
                        );
                    }
                    lease_until = None;
                    self.set(None).await;
                }
                None => self.set(None).await,
            }
            // Sleep until the next check, but never past the lease's end. A round that failed
            // (one slow reply on a busy machine) is tried again at once while the lease lasts:
            // waiting a whole heartbeat would leave room for one more try at most.
            let pause = if unconfirmed && lease_until.is_some() {
                Duration::from_millis(5)
            } else {
                check_every
            };
            let mut wake = Instant::now() + pause;
            if let Some((until, _)) = lease_until {
                wake = wake.min(until);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.set(None).await;
    }
}
