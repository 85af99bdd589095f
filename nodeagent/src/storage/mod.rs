//! Storage on a node: qcow2 images of a pool directory through `qemu-img` ([`images`]), and the
//! image work the leader sends ([`work`]), and image uploads and downloads ([`stream`]).

pub mod images;
pub mod stream;
pub mod work;
