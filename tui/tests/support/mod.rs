//! The fake Skiff node for tests of the `skiff` binary lives in `skiff_cluster::api::fake_node`
//! (feature `testsuite`).
#![allow(unused_imports)]

pub use skiff_cluster::api::fake_node::*;
