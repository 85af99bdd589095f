//! `skiffd`, the Skiff node agent: joins the cluster, gossips its health and figures, takes part in
//! the admin election (admin-eligible nodes), and hosts the leader-only services while it leads.
//!
//! Code map: [`cli`] parses the command line; [`init`] and [`join`] make a data dir; [`agent`] runs
//! a node from one; [`supervisor`] starts and stops the leader services under the Raft lease;
//! [`api`] is the HTTPS control API; [`ssh`] serves the cockpit over SSH while this node leads;
//! [`figures`] measures the machine.

pub mod agent;
pub mod api;
pub mod cli;
pub mod compute;
pub mod fencing;
pub mod figures;
pub mod init;
pub mod join;
pub mod reconciler;
pub mod scheduler;
pub mod ssh;
pub mod storage;
pub mod supervisor;

pub use agent::Node;
