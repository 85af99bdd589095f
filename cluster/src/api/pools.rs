//! API types and client calls for storage pools (`/api/v1/pools`).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use super::seg;
use crate::agentproto::PoolReport;
use crate::state::pools::{users_of, PoolKind, LOCAL_POOL};
use crate::state::ClusterState;

/// A pool as the API shows it: what the desired state says and how each node has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// A node-local pool's name, a shared pool's number, or `local`.
    pub name: String,
    pub shared: bool,
    /// The node of a node-local pool (`None` for shared pools and `local`, which every node has).
    pub node: Option<String>,
    /// `dir` or `zfs`.
    pub kind: String,
    /// The directory or dataset (`DATA_DIR/pools/local` for `local`, per node: see `nodes`).
    pub place: String,
    /// Unix seconds when an admin added it (0 for `local`).
    pub created_at: u64,
    /// Images recorded in it.
    pub images: usize,
    /// Servers with a disk in it (disks without a pool are in `local`).
    pub servers: usize,
    /// How the nodes that should have it report it (as of the leader's last reconciler pass).
    pub nodes: Vec<PoolOnNode>,
}

/// One node's view of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolOnNode {
    pub node: String,
    /// Its directory there.
    pub path: String,
    /// Why the node cannot use it (`None`: usable; also `None` with `reported` false).
    pub error: Option<String>,
    /// Whether the node reported the pool at all (false: not yet opened, or the node is down).
    pub reported: bool,
    pub total_bytes: u64,
    pub used_bytes: u64,
}

impl PoolView {
    /// Every pool (`local` first, then by name) from the desired state and the nodes' last
    /// reports of their pools (`reports`: node → its pools, when it reported them).
    pub fn all(state: &ClusterState, reports: &BTreeMap<String, Vec<PoolReport>>) -> Vec<PoolView> {
        let on = |name: &str, nodes: Vec<&String>| -> Vec<PoolOnNode> {
            nodes
                .into_iter()
                .map(|n| {
                    let r = reports
                        .get(n)
                        .and_then(|ps| ps.iter().find(|p| p.name == name));
                    PoolOnNode {
                        node: n.clone(),
                        path: r.map(|r| r.path.clone()).unwrap_or_default(),
                        error: r.and_then(|r| r.error.clone()),
                        reported: r.is_some(),
                        total_bytes: r.map_or(0, |r| r.total),
                        used_bytes: r.map_or(0, |r| r.used),
                    }
                })
                .collect()
        };
        let count = |name: &str| {
            let users = users_of(state, name);
            (
                users.iter().filter(|u| u.starts_with("image ")).count(),
                users.iter().filter(|u| u.starts_with("server ")).count(),
            )
        };
        let reporting: Vec<&String> = reports.keys().collect();
        let (images, _) = count(LOCAL_POOL);
        let servers = state
            .servers
            .values()
            .filter(|s| {
                s.spec
                    .disks
                    .iter()
                    .any(|d| d.pool.as_deref().is_none_or(|p| p == LOCAL_POOL))
            })
            .count();
        let mut out = vec![PoolView {
            name: LOCAL_POOL.into(),
            shared: false,
            node: None,
            kind: "dir".into(),
            place: "DATA_DIR/pools/local".into(),
            created_at: 0,
            images,
            servers,
            nodes: on(LOCAL_POOL, reporting.clone()),
        }];
        for p in state.pools.values() {
            let (images, servers) = count(&p.name);
            let nodes: Vec<&String> = match &p.node {
                Some(n) => state
                    .nodes
                    .get_key_value(n)
                    .map(|(k, _)| k)
                    .into_iter()
                    .collect(),
                None => reporting.clone(),
            };
            out.push(PoolView {
                name: p.name.clone(),
                shared: p.is_shared(),
                node: p.node.clone(),
                kind: p.kind.as_str().into(),
                place: p.kind.place().into(),
                created_at: p.created_at,
                images,
                servers,
                nodes: on(&p.name, nodes),
            });
        }
        out
    }
}

/// Body of `POST /api/v1/pools`: a node-local pool (`name` and `node`) or the next shared pool
/// (`shared: true`, numbered by the cluster), in a directory (`path`) or a ZFS dataset
/// (`dataset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPoolRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// With `dataset`: the dataset its whole-pool backups are sent to (normally in another ZFS
    /// pool); without it, a backup is the pool's own snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_dataset: Option<String>,
}

impl AddPoolRequest {
    /// The place it names: exactly one of `path` and `dataset`.
    pub fn kind(&self) -> Result<PoolKind, String> {
        match (&self.path, &self.dataset) {
            (Some(_), None) if self.backup_dataset.is_some() => {
                Err("backup_dataset goes with a ZFS dataset, not a directory".into())
            }
            (Some(path), None) => Ok(PoolKind::Dir { path: path.clone() }),
            (None, Some(dataset)) => Ok(PoolKind::Zfs {
                dataset: dataset.clone(),
                backup: self.backup_dataset.clone(),
            }),
            _ => Err("give exactly one of path (a directory) and dataset (ZFS)".into()),
        }
    }
}

impl ApiClient {
    /// `GET /api/v1/pools` (admins).
    pub async fn pools(&self) -> Result<Vec<PoolView>, ClientError> {
        self.call::<(), _>(Method::GET, "/pools", None).await
    }

    /// `POST /api/v1/pools` (admins): the pool as recorded.
    pub async fn add_pool(&self, req: &AddPoolRequest) -> Result<PoolView, ClientError> {
        self.call(Method::POST, "/pools", Some(req)).await
    }

    /// `DELETE /api/v1/pools/{name}` (admins; refused while images or disks are in it).
    pub async fn remove_pool(&self, name: &str) -> Result<PoolView, ClientError> {
        self.call::<(), _>(Method::DELETE, &format!("/pools/{}", seg(name)), None)
            .await
    }
}
