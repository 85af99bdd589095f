//! Storage on a node: the pools it has open ([`pools`]), qcow2 images of a pool directory
//! through `qemu-img` ([`images`]), the
//! image work the leader sends ([`work`]), image uploads and downloads ([`stream`]), and pools on
//! ZFS datasets with whole-pool snapshots and backups ([`zfs`]).

pub mod images;
pub mod pools;
pub mod stream;
pub mod work;
pub mod zfs;
