//! Test harnesses shared by the integration tests.
//!
//! - [`inprocess`]: clusters of N nodes in one process over real QUIC on 127.0.0.1, with fault
//!   injection for partitions. Fast; used by most cluster tests and the gossip benchmark.
//! - [`netns`]: hosts built from network namespaces and veth pairs on a bridge (198.18.0.0/15),
//!   running the real `skiffd` binary; cleaned up by guards even when a test fails.
//! - [`bins`]: where the workspace's binaries are; [`clients`]: API clients of other users.
//! - [`guest`]: a tiny bootable guest (Debian kernel + busybox initramfs) for the libvirt tests;
//!   [`guest_disk`]: the same guest as a bootable disk image, for servers made through the API.
//! - [`bench`]: settings and logging of the benchmarks.
//! - [`tmux`]: a terminal program driven through tmux (`send-keys`, `capture-pane`).

pub mod bench;
pub mod bins;
pub mod clients;
pub mod guest;
pub mod guest_disk;
pub mod inprocess;
pub mod netns;
pub mod tmux;
