//! Skiff's shared core: node identity and the cluster CA, the QUIC transport every node-to-node
//! message rides on, gossip membership (chitchat), the Raft-replicated desired-state store, and the
//! control API's types and client.
//!
//! Architecture invariant: this crate never touches libvirt, storage pools or the terminal.

pub mod agentproto;
pub mod api;
pub mod config;
pub mod credential;
pub mod gossip;
pub mod identity;
pub mod raft;
pub mod state;
pub mod tls;
pub mod token;
pub mod transport;

/// Agent version published in gossip and shown by `skiff node list`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Seconds since the Unix epoch, the clock every timestamp in the replicated state uses.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
