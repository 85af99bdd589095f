//! Fencing, so that a highly available server never runs twice.
//!
//! When a compute node is lost, the leader restarts its highly available servers elsewhere. A node
//! that is merely cut off (a partition, a dead switch port) may still run them on the same shared
//! disks, so before the leader may restart a server elsewhere the old copy must be known dead.
//! Skiff does what Proxmox VE's HA stack does, with a lease instead of a hardware watchdog:
//!
//! - Every compute node renews a **lease** with the leader (ALPN `skiff-lease/1`) every
//!   [`renew_interval`]. A renewal counts only when the leader's answer comes back: a node that can
//!   send but not hear (a one-way partition) loses its lease too. The lease runs for the leader's
//!   `[ha] fence_after_secs` from when the node *sent* the request.
//! - A node whose lease ran out **fences itself**: it powers off (destroys) the highly available
//!   servers it runs, and keeps them off until it holds a lease again (the leader's reconciler then
//!   tells it what should run where).
//! - The leader answers renewals only while it serves as leader, and remembers when it last
//!   *received* one from each node. It restarts a server elsewhere only when the node's last
//!   renewal (or, if none reached this leader, the start of its term) is older than
//!   `fence_after + `[`FENCE_MARGIN`]. Since the node counts from before the leader's receipt,
//!   its lease has run out first. A new leader counts from its own start: an old leader answers
//!   renewals only under its lease, which ends before a new leader is elected.
//!
//! Which servers are highly available is kept with each domain (libvirt: in Skiff's metadata), and
//! the lease's end is written to `DATA_DIR/ha-lease` at each renewal, so an agent that restarts
//! (during a partition, say) still knows both and fences in time. Without that file (a first
//! start) a node's lease counts as run out until its first renewal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use skiff_cluster::agentproto::{DomainPower, LeaseReply};
use skiff_cluster::transport::{PeerInfo, RequestHandler, ALPN_LEASE};
use tracing::{info, warn};

use crate::agent::Node;
use crate::compute::Hypervisor;

/// Extra wait of the leader beyond `fence_after`, for clock rates and the node's fencing work.
pub const FENCE_MARGIN: Duration = Duration::from_secs(5);

/// How often a node renews its lease: a quarter of the lease, at least every 250 ms.
pub fn renew_interval(fence_after: Duration) -> Duration {
    (fence_after / 4).max(Duration::from_millis(250))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Both sides of fencing on one node (every node may be a compute node and the leader).
pub struct Fencing {
    /// This node's `[ha] fence_after_secs` (in force while it leads).
    fence_after: Duration,
    // Compute side.
    /// Until when this node may run them; `None` until the first renewal.
    lease_until: Mutex<Option<Instant>>,
    /// Servers this node powered off by fencing, in order (for logs and tests).
    fenced: Mutex<Vec<String>>,
    // Leader side.
    /// When this node, as leader, last received a renewal from each node.
    renewals: Mutex<HashMap<String, Instant>>,
}

impl Fencing {
    pub fn new(fence_after: Duration) -> Arc<Self> {
        Arc::new(Fencing {
            fence_after,
            lease_until: Mutex::new(None),
            fenced: Mutex::new(Vec::new()),
            renewals: Mutex::new(HashMap::new()),
        })
    }

    pub fn fence_after(&self) -> Duration {
        self.fence_after
    }

    /// Compute side: whether this node holds a lease now.
    pub fn holds_lease(&self) -> bool {
        lock(&self.lease_until).is_some_and(|t| Instant::now() < t)
    }

    /// Servers this node powered off by fencing, oldest first.
    pub fn fenced(&self) -> Vec<String> {
        lock(&self.fenced).clone()
    }

    /// Leader side: records a renewal from `node`.
    fn renewed(&self, node: &str) {
        lock(&self.renewals).insert(node.to_string(), Instant::now());
    }

    /// Leader side: whether the servers of `node` may be restarted elsewhere, i.e. its lease has
    /// surely run out. `term_start`: when this node began to serve as leader.
    pub fn lost_long_enough(&self, node: &str, term_start: Instant) -> bool {
        let last = lock(&self.renewals)
            .get(node)
            .copied()
            .map_or(term_start, |r| r.max(term_start));
        last.elapsed() >= self.fence_after + FENCE_MARGIN
    }
}

/// Serves `skiff-lease/1` on every node; only the serving leader grants.
pub struct LeaseHandler {
    node: Weak<Node>,
}

impl LeaseHandler {
    pub fn new(node: Weak<Node>) -> Self {
        LeaseHandler { node }
    }
}

#[async_trait::async_trait]
impl RequestHandler for LeaseHandler {
    async fn handle(&self, peer: PeerInfo, _body: Vec<u8>) -> Vec<u8> {
        let Some(node) = self.node.upgrade() else {
            return LeaseReply::NotLeader.encode();
        };
        let Some(name) = peer.node_name() else {
            return LeaseReply::NotLeader.encode();
        };
        if node.serving_term().is_none() {
            return LeaseReply::NotLeader.encode();
        }
        node.fencing.renewed(name);
        LeaseReply::Granted {
            fence_after_ms: node.fencing.fence_after.as_millis() as u64,
        }
        .encode()
    }
}

/// Registers the lease handler on the node's endpoint.
pub fn serve(node: &Arc<Node>) {
    node.endpoint.set_request_handler(
        ALPN_LEASE,
        Arc::new(LeaseHandler::new(Arc::downgrade(node))),
    );
}

/// Compute side: renews the lease with the leader and fences when it runs out, until the node
/// shuts down.
pub async fn run(node: Weak<Node>, hypervisor: Arc<dyn Hypervisor>) {
    let Some(mut stop) = node.upgrade().map(|n| n.shutdown_signal()) else {
        return;
    };
    if let Some(n) = node.upgrade() {
        let until = saved_lease(&n.data_dir).unwrap_or_else(Instant::now);
        lock(&n.fencing.lease_until).get_or_insert(until);
    }
    loop {
        let Some(n) = node.upgrade() else { return };
        let fencing = n.fencing.clone();
        let interval = renew_interval(fencing.fence_after);
        renew(&n, interval).await;
        drop(n);
        // The lease is set from the start (saved, or run out): a node without one fences.
        if !fencing.holds_lease() {
            fence(&fencing, &hypervisor).await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

const LEASE_FILE: &str = "ha-lease";

/// Writes the lease's end (Unix milliseconds) for the next start of the agent.
fn save_lease(data_dir: &std::path::Path, until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    let at = std::time::SystemTime::now() + left;
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let tmp = data_dir.join(format!("{LEASE_FILE}.tmp"));
    let ok = std::fs::write(&tmp, ms.to_string())
        .and_then(|()| std::fs::rename(&tmp, data_dir.join(LEASE_FILE)));
    if let Err(e) = ok {
        warn!(error = %e, "cannot save the HA lease");
    }
}

/// The lease's end a previous run of the agent saved, as an instant of this run.
fn saved_lease(data_dir: &std::path::Path) -> Option<Instant> {
    let text = std::fs::read_to_string(data_dir.join(LEASE_FILE)).ok()?;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(text.trim().parse().ok()?);
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

/// One renewal attempt with the leader the node knows of.
async fn renew(node: &Node, timeout: Duration) {
    let Some(leader) = node.leader_hint().await else {
        return;
    };
    let sent = Instant::now();
    let reply = node
        .endpoint
        .request(leader.addr, ALPN_LEASE, Vec::new(), timeout)
        .await;
    if let Ok(Ok(LeaseReply::Granted { fence_after_ms })) = reply.as_deref().map(LeaseReply::decode)
    {
        let until = sent + Duration::from_millis(fence_after_ms);
        let mut lease = lock(&node.fencing.lease_until);
        if lease.is_some_and(|t| Instant::now() >= t) {
            info!("HA lease renewed with the leader after it had run out");
        }
        *lease = Some(until);
        drop(lease);
        save_lease(&node.data_dir, until);
    }
}

/// Powers off the highly available servers this node runs.
async fn fence(fencing: &Arc<Fencing>, hypervisor: &Arc<dyn Hypervisor>) {
    let h = hypervisor.clone();
    let Ok(Ok(domains)) = tokio::task::spawn_blocking(move || h.list()).await else {
        return;
    };
    for d in domains {
        if !d.ha || !matches!(d.power, DomainPower::Running | DomainPower::Paused) {
            continue;
        }
        warn!(server = %d.name, "HA lease lost: powering the server off (fencing) so that it can restart elsewhere");
        let h = hypervisor.clone();
        let name = d.name.clone();
        match tokio::task::spawn_blocking(move || h.destroy(&name)).await {
            Ok(Ok(())) => lock(&fencing.fenced).push(d.name.clone()),
            Ok(Err(e)) => warn!(server = %d.name, error = %e, "fencing failed"),
            Err(e) => warn!(server = %d.name, error = %e, "fencing failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_waits_longer_than_the_lease() {
        let f = Fencing::new(Duration::from_millis(100));
        let start = Instant::now();
        assert!(!f.lost_long_enough("n1", start));
        f.renewed("n1");
        assert!(!f.lost_long_enough("n1", start - Duration::from_secs(60)));
        // A renewal older than fence_after + margin: lost long enough.
        lock(&f.renewals).insert("n1".into(), Instant::now() - FENCE_MARGIN * 2);
        assert!(f.lost_long_enough("n1", Instant::now() - FENCE_MARGIN * 2));
        // ...unless this leader's term began later.
        assert!(!f.lost_long_enough("n1", Instant::now()));
    }

    #[test]
    fn the_saved_lease_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(saved_lease(dir.path()).is_none(), "first start: no lease");
        save_lease(dir.path(), Instant::now() + Duration::from_secs(30));
        let left = saved_lease(dir.path())
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(28) && left <= Duration::from_secs(30));
        save_lease(dir.path(), Instant::now());
        assert!(saved_lease(dir.path()).unwrap() <= Instant::now());
        std::fs::write(dir.path().join(LEASE_FILE), "garbage").unwrap();
        assert!(
            saved_lease(dir.path()).is_none(),
            "a damaged file is no lease"
        );
    }

    #[test]
    fn renewal_interval_is_a_quarter_of_the_lease() {
        assert_eq!(
            renew_interval(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            renew_interval(Duration::from_millis(100)),
            Duration::from_millis(250)
        );
    }
}
