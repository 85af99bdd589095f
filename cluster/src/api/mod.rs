//! The control API's contract: the JSON types every node's `skiffd` serves over HTTPS, and the
//! client that `skiff` (CLI and cockpit) uses to reach the leader.
//!
//! Architecture invariant: the terminal front end talks to the cluster only through [`client::ApiClient`].

pub mod backups;
pub mod client;
pub mod connections;
pub mod events;
#[cfg(any(test, feature = "testsuite"))]
pub mod fake_node;
pub mod images;
pub mod pools;
pub mod servers;
pub mod stacks;
pub mod tasks;
pub mod types;
pub mod users;

pub use types::*;

/// Percent-encodes a name so that it is always exactly one path segment.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
