//! `skiff image flatten` and `skiff image convert` end to end against a fake node: what reaches
//! the API, what is printed, `--wait`, and exit statuses.

mod support;

use std::sync::Arc;

use skiff_cluster::api::images::ImageActionRequest;
use skiff_cluster::api::servers::TaskAccepted;
use skiff_cluster::api::tasks::{TaskRecord, TaskState};
use skiff_cluster::api::ApiError;
use support::{text, Cli, Handler, Reply, Request};

fn task_record(id: u64, kind: &str, state: TaskState, log: &[&str], result: &str) -> TaskRecord {
    TaskRecord {
        id,
        owner: "alice".into(),
        kind: kind.into(),
        target: "web".into(),
        node: Some("n1".into()),
        state,
        progress: 100,
        log: log.iter().map(|l| l.to_string()).collect(),
        result: Some(result.into()),
        created_at: 0,
        updated_at: 0,
    }
}

fn leader() -> Handler {
    Arc::new(|req: &Request| {
        let task = |id| {
            Reply::json(
                202,
                &TaskAccepted {
                    task_id: id,
                    node: Some("n1".into()),
                },
            )
        };
        let body = || -> ImageActionRequest { serde_json::from_slice(&req.body).unwrap() };
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/v1/images/web/flatten") => {
                assert_eq!(body(), ImageActionRequest::default());
                task(41)
            }
            ("POST", "/api/v1/images/debian/flatten") => Reply::json(
                409,
                &ApiError::new(
                    "invalid_state",
                    "image debian is a master: it has no master of its own to fold in",
                ),
            ),
            ("POST", "/api/v1/images/web/convert") => {
                let b = body();
                match b.to.as_deref() {
                    Some("web-copy") => {
                        assert!(b.compress, "{b:?}");
                        task(42)
                    }
                    Some("plain") => {
                        assert!(!b.compress, "{b:?}");
                        task(43)
                    }
                    _ => Reply::json(
                        409,
                        &ApiError::new("name_taken", "an image named \"taken\" already exists"),
                    ),
                }
            }
            ("GET", "/api/v1/tasks/41") => Reply::json(
                200,
                &task_record(
                    41,
                    "image.flatten",
                    TaskState::Succeeded,
                    &["n1: flattened web"],
                    "done",
                ),
            ),
            ("GET", "/api/v1/tasks/42") => Reply::json(
                200,
                &task_record(
                    42,
                    "image.convert",
                    TaskState::Failed,
                    &["image.convert web-copy: sent to n1"],
                    "image.convert web-copy on n1 failed: no space left",
                ),
            ),
            _ => Reply::json(404, &ApiError::new("not_found", "no image named \"x\"")),
        }
    })
}

#[test]
fn flatten_and_convert_send_their_requests_and_exit_codes() {
    let cli = Cli::start(leader());
    let run = |args: &[&str]| cli.run(args);

    let cases: Vec<(&[&str], i32, &str)> = vec![
        (
            &["image", "flatten", "web"],
            0,
            "image flatten web: task 41 queued (node n1)\n",
        ),
        (
            &["image", "flatten", "web", "--wait"],
            0,
            "image flatten web: task 41 queued (node n1)\ntask 41 succeeded: done\n",
        ),
        (
            &["image", "convert", "web", "--to", "web-copy", "--compress"],
            0,
            "image convert web-copy: task 42 queued (node n1)\n",
        ),
        (
            &["image", "convert", "web", "--to", "plain"],
            0,
            "image convert plain: task 43 queued (node n1)\n",
        ),
        (&["image", "flatten", "nope"], 1, ""),
    ];
    for (args, code, stdout) in cases {
        cli.expect(args, code, stdout);
    }

    // --wait follows the task: its log lines go to stderr, a failure exits 1 with its result.
    let out = run(&["image", "flatten", "web", "--wait"]);
    assert!(
        text(&out.stderr).contains("task 41: n1: flattened web\n"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "image",
        "convert",
        "web",
        "--to",
        "web-copy",
        "--compress",
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.ends_with(
            "error: task 42 failed: image.convert web-copy on n1 failed: no space left\n"
        ),
        "{err}"
    );

    // Refusals from the API: their message, exit 1.
    let out = run(&["image", "convert", "web", "--to", "taken"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: an image named \"taken\" already exists\n"
    );
    let out = run(&["image", "flatten", "debian"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: image debian is a master: it has no master of its own to fold in\n"
    );

    // Usage errors: convert needs --to.
    let out = run(&["image", "convert", "web"]);
    assert_eq!(out.status.code(), Some(2));
}
