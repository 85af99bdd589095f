//! Storage on a node: qcow2 images of a pool directory through `qemu-img` ([`images`]).

pub mod images;
