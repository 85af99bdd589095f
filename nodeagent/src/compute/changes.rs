//! Changes reach the cluster at once: on a node whose hypervisor is libvirt, domain lifecycle
//! events ([`super::libvirt_events`]) become `Changed` hints to the leader (ALPN
//! `skiff-agent/1`), which reconciles right away instead of at its next pass.
//!
//! The events are listened to in the hypervisor helper (`skiff-hv serve`, [`super::helper`]),
//! which forwards them. Hints are coalesced: one is in flight at a time, and every event that
//! arrives meanwhile makes one more hint after it. A hint that fails is logged at debug level
//! only: the leader's periodic pass ([`crate::reconciler::PASS_INTERVAL`]) stays the fallback, as
//! it is when events cannot be had at all (a driver without events: the helper says so once in
//! the log, then polling alone).

use std::sync::{Arc, Weak};

use skiff_cluster::agentproto::{AgentReply, AgentRequest};
use skiff_cluster::transport::ALPN_AGENT;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::debug;

use super::libvirt_events::LifecycleEvent;
use crate::agent::Node;

/// Hints the leader on each lifecycle event of `rx` (the hypervisor helper's, see
/// [`super::helper`]), until the node shuts down.
pub async fn run(node: Weak<Node>, mut rx: UnboundedReceiver<LifecycleEvent>) {
    let Some(mut stop) = node.upgrade().map(|n| n.shutdown_signal()) else {
        return;
    };
    loop {
        let latest = tokio::select! {
            _ = stop.changed() => break,
            ev = next_burst(&mut rx) => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let Some(n) = node.upgrade() else { break };
        hint(&n, &latest.domain).await;
    }
}

/// Waits for an event, then takes every one already queued (a burst); answers the last one, or
/// `None` when the channel ended.
pub async fn next_burst(rx: &mut UnboundedReceiver<LifecycleEvent>) -> Option<LifecycleEvent> {
    let mut latest = rx.recv().await?;
    let mut count = 1usize;
    while let Ok(ev) = rx.try_recv() {
        latest = ev;
        count += 1;
    }
    debug!(domain = %latest.domain, event = ?latest.event, detail = latest.detail, burst = count, "libvirt lifecycle event");
    Some(latest)
}

/// Tells the leader that `server` changed here (wakes the reconciler directly when this node
/// leads). Failures are logged at debug level: the leader's pass is the fallback.
async fn hint(node: &Arc<Node>, server: &str) {
    let Some(leader) = node.leader_hint().await else {
        debug!(%server, "no leader known: the change waits for the next pass");
        return;
    };
    if leader.name == node.name {
        node.reconcile_wake.notify_one();
        return;
    }
    let req = AgentRequest::Changed {
        node: node.name.clone(),
        server: server.to_string(),
    };
    let sent = node
        .endpoint
        .request(leader.addr, ALPN_AGENT, req.encode(), req.timeout())
        .await;
    match sent.map(|b| AgentReply::decode(&b)) {
        Ok(Ok(AgentReply::Done { .. })) => {}
        Ok(Ok(other)) => {
            debug!(leader = %leader.name, reply = ?other, "the leader did not take the change hint")
        }
        Ok(Err(e)) => debug!(leader = %leader.name, error = %e, "garbled answer to a change hint"),
        Err(e) => debug!(leader = %leader.name, error = %e, "change hint not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::libvirt_events::LifecycleKind;

    #[tokio::test]
    async fn a_burst_makes_one_hint() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for (d, k) in [
            ("a", LifecycleKind::Defined),
            ("a", LifecycleKind::Started),
            ("b", LifecycleKind::Stopped),
        ] {
            tx.send(LifecycleEvent {
                domain: d.into(),
                event: k,
                detail: 0,
            })
            .unwrap();
        }
        let ev = next_burst(&mut rx).await.unwrap();
        assert_eq!(
            (ev.domain.as_str(), ev.event),
            ("b", LifecycleKind::Stopped)
        );
        drop(tx);
        assert!(next_burst(&mut rx).await.is_none());
    }
}
