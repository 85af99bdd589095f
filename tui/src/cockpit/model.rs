//! The cockpit's copy of the cluster: what the API said, merged into the rows the views show.
//! Pure data, built by [`super::app::App::apply`].

use std::collections::VecDeque;

use serde::Serialize;
use skiff_cluster::agentproto::ServerFigures;
use skiff_cluster::api::servers::ServerView;
use skiff_cluster::api::tasks::ServerActual;
use skiff_cluster::api::NodeView;

/// Samples of history kept per node for the overview's sparklines.
pub const HISTORY: usize = 60;
/// Lines the events view keeps.
pub const MAX_EVENTS: usize = 1000;

/// One server: what is desired (`GET /servers`), what the reconciler saw (`GET /actual`) and
/// the newest live figures (the `servers` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRow {
    #[serde(flatten)]
    pub view: ServerView,
    pub actual: Option<ServerActual>,
    pub figures: Option<ServerFigures>,
}

impl ServerRow {
    /// The server's name.
    pub fn name(&self) -> &str {
        &self.view.name
    }

    /// CPU in use as a percentage of the server's own vCPUs, while it runs.
    pub fn cpu_percent(&self) -> Option<u64> {
        let f = self.figures.as_ref()?;
        let vcpus = u64::from(self.view.spec.vcpus.max(1));
        Some(f.cpu_milli / (vcpus * 10))
    }

    /// Memory in MiB: what the guest has while it runs, else what it is given.
    pub fn memory_mib(&self) -> u64 {
        self.figures
            .as_ref()
            .map(|f| f.memory_mib)
            .filter(|m| *m > 0)
            .unwrap_or(self.view.spec.memory_mib)
    }
}

/// One storage pool on one node (from `NodeView::storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolRow {
    pub node: String,
    pub name: String,
    pub total: u64,
    pub used: u64,
}

impl PoolRow {
    /// Rows for every pool of every node, by node then pool.
    pub fn from_nodes(nodes: &[NodeView]) -> Vec<PoolRow> {
        nodes
            .iter()
            .flat_map(|n| {
                n.storage.iter().map(|p| PoolRow {
                    node: n.name.clone(),
                    name: p.name.clone(),
                    total: p.total,
                    used: p.used,
                })
            })
            .collect()
    }

    /// `node/pool`, unique in the cluster.
    pub fn key(&self) -> String {
        format!("{}/{}", self.node, self.name)
    }
}

/// One line of the events view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLine {
    /// Arrival order in this session, from 1.
    pub seq: u64,
    /// Unix seconds when the cluster stamped it (audit records), if it did.
    pub at: Option<u64>,
    /// `state`, `task`, `lagged` or `link`.
    pub kind: &'static str,
    pub text: String,
}

/// Recent load of one node, oldest first, in percent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHistory {
    pub cpu: VecDeque<u64>,
    pub memory: VecDeque<u64>,
}

impl NodeHistory {
    /// Adds one sample of each, dropping the oldest past [`HISTORY`].
    pub fn push(&mut self, cpu: u64, memory: u64) {
        for (series, value) in [(&mut self.cpu, cpu), (&mut self.memory, memory)] {
            series.push_back(value);
            while series.len() > HISTORY {
                series.pop_front();
            }
        }
    }
}

/// CPU in use on a node, in percent of all its cores.
pub fn node_cpu_percent(n: &NodeView) -> u64 {
    let cores = u64::from(n.cores.max(1));
    (n.cpu_milli / (cores * 10)).min(100)
}

/// Storage in use on a node over all its pools, in percent.
pub fn node_storage_percent(n: &NodeView) -> Option<u64> {
    let total: u64 = n.storage.iter().map(|p| p.total).sum();
    let used: u64 = n.storage.iter().map(|p| p.used).sum();
    (total > 0).then(|| crate::output::percent(used, total))
}
