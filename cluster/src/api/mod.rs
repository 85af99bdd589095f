//! The control API's contract: the JSON types every node's `skiffd` serves over HTTPS, and the
//! client that `skiff` (CLI and cockpit) uses to reach the leader.
//!
//! Architecture invariant: the terminal front end talks to the cluster only through [`client::ApiClient`].

pub mod client;
pub mod events;
#[cfg(any(test, feature = "testsuite"))]
pub mod fake_node;
pub mod servers;
pub mod tasks;
pub mod types;
pub mod users;

pub use types::*;
