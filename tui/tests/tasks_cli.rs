//! `skiff task ...` end to end against a fake node: what is printed, and the exit statuses that
//! `skiff task wait` promises scripts (0 succeeded, 1 failed or cancelled).

mod support;

use std::sync::Arc;

use skiff_cluster::api::tasks::{TaskRecord, TaskState};
use skiff_cluster::api::ApiError;
use support::{Cli, Handler, Reply, Request};

fn task(id: u64, state: TaskState, result: Option<&str>) -> TaskRecord {
    TaskRecord {
        id,
        owner: "admin".into(),
        kind: "server.start".into(),
        target: "web".into(),
        node: Some("n1".into()),
        state,
        progress: if state == TaskState::Succeeded {
            100
        } else {
            40
        },
        log: vec!["started on n1".into(), "n1: started web".into()],
        result: result.map(String::from),
        created_at: 0,
        updated_at: 0,
    }
}

fn leader() -> Handler {
    Arc::new(
        |req: &Request| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/tasks") => Reply::json(
                200,
                &vec![
                    task(2, TaskState::Failed, Some("no such image")),
                    task(1, TaskState::Succeeded, Some("done")),
                ],
            ),
            ("GET", "/api/v1/tasks/1") => {
                Reply::json(200, &task(1, TaskState::Succeeded, Some("done")))
            }
            ("GET", "/api/v1/tasks/2") => {
                Reply::json(200, &task(2, TaskState::Failed, Some("no such image")))
            }
            ("GET", "/api/v1/tasks/3") => Reply::json(200, &task(3, TaskState::Running, None)),
            ("POST", "/api/v1/tasks/3/cancel") => Reply::json(
                200,
                &task(3, TaskState::Cancelled, Some("cancelled by admin")),
            ),
            _ => Reply::json(404, &ApiError::new("not_found", "no task 9")),
        },
    )
}

#[test]
fn task_commands_print_and_exit_as_promised() {
    let cli = Cli::start(leader());
    let run = |args: &[&str]| cli.run(args);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let cases: Vec<(&[&str], i32, &str)> = vec![
        (&["task", "list"], 0, "server.start"),
        (&["task", "show", "2"], 0, "no such image"),
        (&["task", "wait", "1"], 0, "task 1 succeeded: done"),
        (&["task", "cancel", "3"], 0, "task 3 cancelled"),
        (&["task", "show", "9"], 1, ""),
    ];
    for (args, code, want) in cases {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains(want),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    let out = run(&["task", "wait", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("task 2 failed: no such image"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["task", "list", "-o", "json"]);
    let tasks: Vec<TaskRecord> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tasks.len(), 2);
    // A task that never ends within the timeout: exit 1 too.
    let out = run(&["task", "wait", "3", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("did not finish"),
        "{}",
        text(&out.stderr)
    );
}
