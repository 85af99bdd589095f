//! Tasks: every long operation (id, owner, node, progress, log, result), as Proxmox keeps them.
//! The API returns a task id at once; the reconciler and the agents move the task along.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome};

/// Lines of log a task keeps (the newest).
pub const TASK_LOG_KEEP: usize = 200;

/// Where a task is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// A task in the desired state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskRecord {
    pub id: u64,
    /// The user who started it.
    pub owner: String,
    /// What it does, e.g. `server.start`.
    pub kind: String,
    /// What it acts on, e.g. the server's name.
    pub target: String,
    /// The node doing the work.
    pub node: Option<String>,
    pub state: TaskState,
    /// 0 to 100.
    pub progress: u8,
    /// The newest [`TASK_LOG_KEEP`] lines.
    pub log: Vec<String>,
    /// What it ended with (an error message when it failed).
    pub result: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// Changes to tasks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "task_op", rename_all = "snake_case")]
pub enum TaskCommand {}

impl TaskCommand {
    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        match *self {}
    }
}

pub(super) fn apply(
    _state: &mut ClusterState,
    cmd: &TaskCommand,
    _actor: &str,
    _at: u64,
) -> CommandOutcome {
    match *cmd {}
}

/// Opens a task in the queued state and returns its id (for commands that start long operations).
pub fn open_task(
    state: &mut ClusterState,
    owner: &str,
    kind: &str,
    target: &str,
    node: Option<String>,
    at: u64,
) -> u64 {
    state.next_task_id = state.next_task_id.max(1);
    let id = state.next_task_id;
    state.next_task_id += 1;
    state.tasks.insert(
        id,
        TaskRecord {
            id,
            owner: owner.to_string(),
            kind: kind.to_string(),
            target: target.to_string(),
            node,
            state: TaskState::Queued,
            progress: 0,
            log: Vec::new(),
            result: None,
            created_at: at,
            updated_at: at,
        },
    );
    id
}

/// Tasks by id.
pub type Tasks = BTreeMap<u64, TaskRecord>;
