//! Tasks: every long operation (id, owner, node, progress, log, result), as Proxmox keeps them.
//! The API returns a task id at once; the reconciler and the agents move the task along.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandOutcome, RefusalCode};

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

/// Changes to tasks. Only the leader's reconciler proposes `Start`, `Progress` and `Finish`; users
/// propose `Cancel` through the API.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "task_op", rename_all = "snake_case")]
pub enum TaskCommand {
    /// The task is being worked on (by `node`). Allowed from `Queued`, and from `Running` again
    /// when a new leader takes over the work of the old one.
    Start { id: u64, node: Option<String> },
    /// A step of a running task: a new progress figure and one log line.
    Progress {
        id: u64,
        progress: u8,
        line: Option<String>,
    },
    /// The task ended; `result` says how (the error message when it failed).
    Finish { id: u64, ok: bool, result: String },
    /// Stop a queued or running task.
    Cancel { id: u64 },
}

impl TaskCommand {
    /// The task this command changes.
    pub fn id(&self) -> u64 {
        match self {
            TaskCommand::Start { id, .. }
            | TaskCommand::Progress { id, .. }
            | TaskCommand::Finish { id, .. }
            | TaskCommand::Cancel { id } => *id,
        }
    }

    /// The operation and its target, for the audit log.
    pub fn describe(&self) -> (&'static str, String) {
        let op = match self {
            TaskCommand::Start { .. } => "task.start",
            TaskCommand::Progress { .. } => "task.progress",
            TaskCommand::Finish { .. } => "task.finish",
            TaskCommand::Cancel { .. } => "task.cancel",
        };
        (op, self.id().to_string())
    }
}

/// Longest log line kept (longer ones are cut, on a character boundary).
pub const TASK_LINE_MAX: usize = 1024;

fn push_line(task: &mut TaskRecord, line: &str) {
    let mut line = line.to_string();
    if line.len() > TASK_LINE_MAX {
        let mut cut = TASK_LINE_MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    task.log.push(line);
    if task.log.len() > TASK_LOG_KEEP {
        let extra = task.log.len() - TASK_LOG_KEEP;
        task.log.drain(..extra);
    }
}

pub(super) fn apply(
    state: &mut ClusterState,
    cmd: &TaskCommand,
    actor: &str,
    at: u64,
) -> CommandOutcome {
    let id = cmd.id();
    let Some(task) = state.tasks.get_mut(&id) else {
        return CommandOutcome::refused(RefusalCode::NotFound, format!("no task {id}"));
    };
    if task.state.is_final() {
        return CommandOutcome::refused(
            RefusalCode::TaskFinished,
            format!("task {id} already ended ({:?})", task.state).to_lowercase(),
        );
    }
    match cmd {
        TaskCommand::Start { node, .. } => {
            let again = task.state == TaskState::Running;
            task.state = TaskState::Running;
            if node.is_some() {
                task.node = node.clone();
            }
            let line = match (again, node) {
                (false, Some(n)) => format!("started on {n}"),
                (false, None) => "started".to_string(),
                (true, _) => {
                    format!("resumed by {actor} (after a change of leader or a failed attempt)")
                }
            };
            push_line(task, &line);
        }
        TaskCommand::Progress { progress, line, .. } => {
            if task.state != TaskState::Running {
                return CommandOutcome::refused(
                    RefusalCode::Conflict,
                    format!("task {id} is not running"),
                );
            }
            task.progress = (*progress).min(100).max(task.progress);
            if let Some(l) = line {
                push_line(task, l);
            }
        }
        TaskCommand::Finish { ok, result, .. } => {
            task.state = if *ok {
                TaskState::Succeeded
            } else {
                TaskState::Failed
            };
            if *ok {
                task.progress = 100;
            }
            push_line(task, if *ok { "succeeded" } else { "failed" });
            task.result = Some(result.clone());
        }
        TaskCommand::Cancel { .. } => {
            task.state = TaskState::Cancelled;
            push_line(task, &format!("cancelled by {actor}"));
            task.result = Some(format!("cancelled by {actor}"));
        }
    }
    task.updated_at = at;
    CommandOutcome::Done
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Proposal};

    fn run(s: &mut ClusterState, c: TaskCommand) -> CommandOutcome {
        s.apply(&Proposal::new("system", 9, Command::Task(c)))
    }

    fn with_task() -> (ClusterState, u64) {
        let mut s = ClusterState::default();
        let id = open_task(&mut s, "alice", "server.start", "web", Some("n1".into()), 5);
        (s, id)
    }

    fn refused_with(out: &CommandOutcome, want: RefusalCode) -> bool {
        matches!(out, CommandOutcome::Refused { code, .. } if *code == want)
    }

    #[test]
    fn a_task_runs_to_success() {
        let (mut s, id) = with_task();
        assert_eq!(id, 1);
        let start = TaskCommand::Start {
            id,
            node: Some("n1".into()),
        };
        assert_eq!(run(&mut s, start.clone()), CommandOutcome::Done);
        assert_eq!(s.tasks[&id].state, TaskState::Running);
        // A new leader starts it again: allowed, and logged.
        assert_eq!(run(&mut s, start), CommandOutcome::Done);
        let progress = TaskCommand::Progress {
            id,
            progress: 50,
            line: Some("defined".into()),
        };
        assert_eq!(run(&mut s, progress), CommandOutcome::Done);
        // Progress never goes back and never passes 100.
        run(
            &mut s,
            TaskCommand::Progress {
                id,
                progress: 20,
                line: None,
            },
        );
        assert_eq!(s.tasks[&id].progress, 50);
        let out = run(
            &mut s,
            TaskCommand::Finish {
                id,
                ok: true,
                result: "running".into(),
            },
        );
        assert_eq!(out, CommandOutcome::Done);
        let t = &s.tasks[&id];
        assert_eq!(
            (t.state, t.progress, t.result.as_deref(), t.updated_at),
            (TaskState::Succeeded, 100, Some("running"), 9)
        );
        assert_eq!(t.log.len(), 4, "{:?}", t.log);
        assert_eq!(s.audit.back().map(|a| a.op.as_str()), Some("task.finish"));
    }

    #[test]
    fn final_states_are_final() {
        for end in [
            TaskCommand::Finish {
                id: 1,
                ok: false,
                result: "boom".into(),
            },
            TaskCommand::Cancel { id: 1 },
        ] {
            let (mut s, id) = with_task();
            assert_eq!(run(&mut s, end), CommandOutcome::Done);
            let before = s.tasks.clone();
            for c in [
                TaskCommand::Start { id, node: None },
                TaskCommand::Progress {
                    id,
                    progress: 1,
                    line: None,
                },
                TaskCommand::Finish {
                    id,
                    ok: true,
                    result: String::new(),
                },
                TaskCommand::Cancel { id },
            ] {
                assert!(refused_with(&run(&mut s, c), RefusalCode::TaskFinished));
            }
            assert_eq!(s.tasks, before);
        }
    }

    #[test]
    fn cancel_from_queued_and_running_only() {
        let (mut s, id) = with_task();
        assert_eq!(
            run(&mut s, TaskCommand::Cancel { id }),
            CommandOutcome::Done
        );
        assert_eq!(s.tasks[&id].state, TaskState::Cancelled);
        assert_eq!(s.tasks[&id].result.as_deref(), Some("cancelled by system"));
        let (mut s, id) = with_task();
        run(&mut s, TaskCommand::Start { id, node: None });
        assert_eq!(
            run(&mut s, TaskCommand::Cancel { id }),
            CommandOutcome::Done
        );
        assert!(refused_with(
            &run(&mut s, TaskCommand::Cancel { id: 99 }),
            RefusalCode::NotFound
        ));
    }

    #[test]
    fn progress_needs_a_running_task_and_the_log_is_bounded() {
        let (mut s, id) = with_task();
        let p = |n: usize| TaskCommand::Progress {
            id,
            progress: 1,
            line: Some(format!("line {n} {}", "é".repeat(TASK_LINE_MAX))),
        };
        assert!(refused_with(&run(&mut s, p(0)), RefusalCode::Conflict));
        run(&mut s, TaskCommand::Start { id, node: None });
        for n in 0..TASK_LOG_KEEP + 10 {
            assert_eq!(run(&mut s, p(n)), CommandOutcome::Done);
        }
        let log = &s.tasks[&id].log;
        assert_eq!(log.len(), TASK_LOG_KEEP);
        assert!(log.last().is_some_and(|l| l.starts_with("line 209 ")));
        assert!(log.iter().all(|l| l.len() <= TASK_LINE_MAX));
    }

    #[test]
    fn commands_round_trip_as_json() {
        let c = Command::Task(TaskCommand::Finish {
            id: 3,
            ok: false,
            result: "x".into(),
        });
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), c);
    }
}
