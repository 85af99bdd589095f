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

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`), for dates shown to people and snapshot names.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Seconds since the Unix epoch, the clock every timestamp in the replicated state uses.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
