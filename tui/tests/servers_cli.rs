//! `skiff server ...`, `skiff maintenance` and `skiff evacuate` end to end against a fake node:
//! what reaches the API, what is printed, and exit statuses.

mod support;

use std::sync::Arc;

use skiff_cluster::api::servers::{
    CreateServerRequest, EvacuationMove, EvacuationView, MaintenanceRequest, MaintenanceView,
    ServerActionRequest, ServerView, TaskAccepted,
};
use skiff_cluster::api::tasks::{TaskRecord, TaskState};
use skiff_cluster::api::ApiError;
use skiff_cluster::state::servers::{DiskSpec, PowerState};
use skiff_cluster::state::ServerSpec;
use support::{text, Cli, Handler, Reply, Request};

fn web() -> ServerView {
    ServerView {
        name: "web".into(),
        owner: "alice".into(),
        node: Some("n1".into()),
        desired: PowerState::Stopped,
        spec: ServerSpec {
            memory_mib: 512,
            vcpus: 1,
            disks: vec![DiskSpec {
                image: Some("debian".into()),
                size_gib: 10,
                pool: None,
            }],
            nics: vec![],
            boot_order: vec![],
            autostart: true,
            lock_to_node: None,
            ha: false,
            iso: None,
        },
        created_at: 0,
        generation: 1,
    }
}

fn task_record(id: u64, state: TaskState, progress: u8, log: &[&str], result: &str) -> TaskRecord {
    TaskRecord {
        id,
        owner: "alice".into(),
        kind: "server.start".into(),
        target: "web".into(),
        node: Some("n1".into()),
        state,
        progress,
        log: log.iter().map(|l| l.to_string()).collect(),
        result: (!result.is_empty()).then(|| result.to_string()),
        created_at: 0,
        updated_at: 0,
    }
}

fn leader() -> Handler {
    // Task 8 runs on the first ask and has succeeded on the next.
    let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |req: &Request| {
        let task = |id| {
            Reply::json(
                202,
                &TaskAccepted {
                    task_id: id,
                    node: Some("n1".into()),
                },
            )
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/v1/servers") => {
                let body: CreateServerRequest = serde_json::from_slice(&req.body).unwrap();
                if body.name == "big" {
                    return Reply::json(
                        409,
                        &ApiError::new(
                            "no_placement",
                            "no node can take the server: n1: in maintenance",
                        ),
                    );
                }
                assert_eq!(body.disks.len(), 1, "{body:?}");
                assert_eq!(body.disks[0].size_gib, 10);
                assert!(body.autostart);
                task(7)
            }
            ("GET", "/api/v1/servers") => Reply::json(200, &vec![web()]),
            ("GET", "/api/v1/servers/web") => Reply::json(200, &web()),
            ("POST", "/api/v1/servers/web/move") => {
                let body: ServerActionRequest = serde_json::from_slice(&req.body).unwrap();
                assert_eq!(body.to.as_deref(), Some("n2"));
                task(9)
            }
            ("POST", "/api/v1/servers/web/start") => task(8),
            ("DELETE", "/api/v1/servers/web") => task(10),
            ("GET", "/api/v1/tasks/8") => {
                if polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    Reply::json(
                        200,
                        &task_record(8, TaskState::Running, 50, &["started on n1"], ""),
                    )
                } else {
                    Reply::json(
                        200,
                        &task_record(
                            8,
                            TaskState::Succeeded,
                            100,
                            &["started on n1", "running"],
                            "web is running",
                        ),
                    )
                }
            }
            ("GET", "/api/v1/tasks/7") => Reply::json(
                200,
                &task_record(7, TaskState::Succeeded, 100, &["defined"], "created"),
            ),
            ("GET", "/api/v1/tasks/9") => Reply::json(
                200,
                &task_record(9, TaskState::Failed, 30, &["n2: no room"], "n2 refused"),
            ),
            ("GET", "/api/v1/tasks/10") => {
                Reply::json(200, &task_record(10, TaskState::Cancelled, 0, &[], ""))
            }
            ("POST", "/api/v1/nodes/n1/maintenance") => {
                let body: MaintenanceRequest = serde_json::from_slice(&req.body).unwrap();
                Reply::json(
                    200,
                    &MaintenanceView {
                        node: "n1".into(),
                        maintenance: body.on,
                    },
                )
            }
            ("POST", "/api/v1/nodes/n1/evacuate") => Reply::json(
                202,
                &EvacuationView {
                    node: "n1".into(),
                    moves: vec![EvacuationMove {
                        server: "web".into(),
                        to: "n2".into(),
                        task_id: 11,
                    }],
                },
            ),
            _ => Reply::json(404, &ApiError::new("not_found", "no server named \"x\"")),
        }
    })
}

#[test]
fn server_commands_print_tasks_tables_and_exit_codes() {
    let cli = Cli::start(leader());
    let run = |args: &[&str]| cli.run(args);

    let cases: Vec<(&[&str], i32, &str)> = vec![
        (
            &[
                "server",
                "create",
                "web",
                "--memory",
                "512",
                "--vcpus",
                "1",
                "--image",
                "debian",
                "--autostart",
            ],
            0,
            "create web: task 7 queued (node n1)\n",
        ),
        (&["server", "start", "web"], 0, "start web: task 8 queued (node n1)\n"),
        (
            &["server", "move", "web", "--to", "n2"],
            0,
            "move web: task 9 queued (node n1)\n",
        ),
        (&["server", "rm", "web"], 0, "remove web: task 10 queued (node n1)\n"),
        (
            &["server", "list"],
            0,
            "NAME  OWNER  NODE  DESIRED  VCPUS  MEM      DISK\nweb   alice  n1    stopped  1      512 MiB  10 GiB\n",
        ),
        (&["maintenance", "n1", "on"], 0, "node n1: maintenance on\n"),
        (
            &["evacuate", "n1"],
            0,
            "node n1: maintenance on\nSERVER  TO  TASK\nweb     n2  11\n",
        ),
        (&["server", "show", "x"], 1, ""),
    ];
    for (args, code, stdout) in cases {
        cli.expect(args, code, stdout);
    }

    let out = run(&[
        "server",
        "create",
        "big",
        "--memory",
        "512",
        "--vcpus",
        "1",
        "--disk-gib",
        "10",
        "--autostart",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: no node can take the server: n1: in maintenance\n"
    );

    let out = run(&["server", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let list: Vec<ServerView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list, vec![web()]);

    let out = run(&["server", "create", "web", "--vcpus", "1"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn wait_follows_the_task_and_sets_the_exit_status() {
    let cli = Cli::start(leader());
    let run = |args: &[&str]| cli.run(args);

    let out = run(&["server", "start", "web", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "start web: task 8 queued (node n1)\ntask 8 succeeded: web is running\n"
    );
    assert_eq!(
        text(&out.stderr),
        "task 8: started on n1\ntask 8 running 50%\ntask 8: running\ntask 8 succeeded 100%\n"
    );

    // With -o json, stdout is only the JSON answer.
    let out = run(&[
        "server",
        "create",
        "web",
        "--memory",
        "512",
        "--vcpus",
        "1",
        "--image",
        "debian",
        "--autostart",
        "-o",
        "json",
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let accepted: TaskAccepted = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(accepted.task_id, 7);
    assert!(text(&out.stderr).ends_with("task 7 succeeded: created\n"));

    let out = run(&["server", "move", "web", "--to", "n2", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("task 9: n2: no room\n"), "{err}");
    assert!(err.ends_with("error: task 9 failed: n2 refused\n"), "{err}");

    let out = run(&["server", "rm", "web", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).ends_with("error: task 10 cancelled: \n"),
        "{}",
        text(&out.stderr)
    );
}
