//! API types and client calls for tasks (`/api/v1/tasks`) and the reconciler's view of what
//! actually exists (`/api/v1/actual`).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::client::{ApiClient, ClientError};
use crate::agentproto::DomainPower;
use crate::state::servers::PowerState;
pub use crate::state::{TaskRecord, TaskState};

/// How a server compares with its desired state, as the leader's reconciler last saw it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Convergence {
    /// It exists on its node as desired.
    InSync,
    /// It differs; the reconciler is bringing it to the desired state.
    Converging,
    /// A task is working on it; the reconciler leaves it to the task.
    TaskOpen,
    /// Its newest task was cancelled: the reconciler leaves it alone until its next change.
    Paused,
    /// Its node is down (gossip): nothing is known of it.
    NodeDead,
    /// Its node did not answer the last report.
    NodeUnreachable,
    /// It is not placed on any node.
    Unplaced,
}

/// One server: desired against actual (`GET /api/v1/actual`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServerActual {
    pub name: String,
    pub owner: String,
    pub node: Option<String>,
    pub desired: PowerState,
    pub generation: u64,
    /// What the node reported (`None`: no domain, or nothing known).
    pub power: Option<DomainPower>,
    /// The generation the domain was defined from.
    pub actual_generation: Option<u64>,
    pub convergence: Convergence,
    /// Why, in words (e.g. the last failure, or the high-availability decision).
    pub note: String,
    /// Live figures while it runs (from its node's last report).
    #[serde(default)]
    pub figures: Option<crate::agentproto::ServerFigures>,
}

/// One compute node as the reconciler last heard from it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeActual {
    pub name: String,
    pub alive: bool,
    /// The agent's incarnation (changes when it restarts).
    pub agent_generation: Option<u64>,
    pub hypervisor: Option<String>,
    pub domains: usize,
    /// Image files in its local pool (`None`: not listed).
    #[serde(default)]
    pub images: Option<usize>,
    /// Images recorded as made on it whose file its pool does not hold.
    #[serde(default)]
    pub missing_images: Vec<String>,
    /// Its pools as it has them open (`None`: not reported).
    #[serde(default)]
    pub pools: Option<Vec<crate::agentproto::PoolReport>>,
    /// Why the last report failed.
    pub error: Option<String>,
}

/// The reconciler's last view (`GET /api/v1/actual`; admins see every server, users their own).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActualView {
    /// The leader that made it.
    pub leader: String,
    /// Unix seconds of the pass that made it (0: no pass yet).
    pub updated_at: u64,
    pub servers: Vec<ServerActual>,
    pub nodes: Vec<NodeActual>,
}

/// Why waiting for a task ended without it finishing.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("task {id} did not finish within {secs}s (it is {state:?})")]
    Timeout {
        id: u64,
        secs: u64,
        state: TaskState,
    },
}

/// How often [`ApiClient::wait_task`] asks.
pub const WAIT_POLL: Duration = Duration::from_millis(250);

impl ApiClient {
    /// `GET /api/v1/tasks`: the caller's tasks (every task for admins), newest first.
    pub async fn tasks(&self) -> Result<Vec<TaskRecord>, ClientError> {
        self.call::<(), _>(Method::GET, "/tasks", None).await
    }

    /// `GET /api/v1/tasks/{id}`.
    pub async fn task(&self, id: u64) -> Result<TaskRecord, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/tasks/{id}"), None)
            .await
    }

    /// `POST /api/v1/tasks/{id}/cancel`: stops a queued or running task; answers the task.
    pub async fn cancel_task(&self, id: u64) -> Result<TaskRecord, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/tasks/{id}/cancel"), None)
            .await
    }

    /// `GET /api/v1/actual`: the reconciler's view of what exists.
    pub async fn actual(&self) -> Result<ActualView, ClientError> {
        self.call::<(), _>(Method::GET, "/actual", None).await
    }

    /// Polls the task until it reaches a final state (succeeded, failed or cancelled) and returns
    /// it; errors that say no leader is serving (an election) are waited out too.
    pub async fn wait_task(&self, id: u64, timeout: Duration) -> Result<TaskRecord, WaitError> {
        self.wait_task_with(id, timeout, |_| {}).await
    }

    /// [`ApiClient::wait_task`] that also hands every answer (each poll's task, the final one
    /// included) to `on_update`, e.g. to print progress and new log lines.
    pub async fn wait_task_with(
        &self,
        id: u64,
        timeout: Duration,
        mut on_update: impl FnMut(&TaskRecord),
    ) -> Result<TaskRecord, WaitError> {
        let start = Instant::now();
        let mut last_state = TaskState::Queued;
        loop {
            match self.task(id).await {
                Ok(t) if t.state.is_final() => {
                    on_update(&t);
                    return Ok(t);
                }
                Ok(t) => {
                    on_update(&t);
                    last_state = t.state;
                }
                Err(e) if is_transient(&e) && start.elapsed() < timeout => {}
                Err(e) => return Err(e.into()),
            }
            if start.elapsed() >= timeout {
                return Err(WaitError::Timeout {
                    id,
                    secs: timeout.as_secs(),
                    state: last_state,
                });
            }
            tokio::time::sleep(WAIT_POLL).await;
        }
    }
}

/// Errors worth waiting out while following a task: no leader, or no endpoint reachable for now.
fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Api { code, .. } => code == super::ApiError::NO_LEADER,
        ClientError::Unreachable { .. } | ClientError::LeaderLoop { .. } => true,
        _ => false,
    }
}
