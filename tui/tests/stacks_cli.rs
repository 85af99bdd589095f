//! `skiff stack ...` end to end against a fake node: the recipe file read and sent as the API's
//! JSON, bad recipes stopped locally with their file and line, what is printed, `--wait` over
//! every server's task, and exit statuses.

mod support;

use std::sync::Arc;

use skiff_cluster::api::servers::ServerView;
use skiff_cluster::api::stacks::{
    InstallStackRequest, StackAccepted, StackActionRequest, StackTask, StackView,
};
use skiff_cluster::api::tasks::{TaskRecord, TaskState};
use skiff_cluster::api::ApiError;
use skiff_cluster::state::servers::PowerState;
use skiff_cluster::state::ServerSpec;
use support::{text, Cli, Handler, Reply, Request};

const EXAMPLE: &str = include_str!("../../docs/examples/web-and-db.toml");

fn accepted(stack: &str, first: u64) -> StackAccepted {
    StackAccepted {
        stack: stack.into(),
        tasks: ["web", "db"]
            .iter()
            .enumerate()
            .map(|(i, s)| StackTask {
                server: format!("{stack}-{s}"),
                task_id: first + i as u64,
                node: Some(format!("n{}", i + 1)),
            })
            .collect(),
    }
}

fn shop() -> StackView {
    let server = |name: &str, node: &str| ServerView {
        name: name.into(),
        owner: "alice".into(),
        node: Some(node.into()),
        desired: PowerState::Running,
        spec: ServerSpec::new(512, 1),
        created_at: 0,
        generation: 2,
    };
    StackView {
        name: "shop".into(),
        owner: "alice".into(),
        description: "A web server and its database".into(),
        created_at: 0,
        servers: vec![server("shop-web", "n1"), server("shop-db", "n2")],
    }
}

fn task(id: u64, state: TaskState, result: &str) -> TaskRecord {
    TaskRecord {
        id,
        owner: "alice".into(),
        kind: "server.start".into(),
        target: "shop-web".into(),
        node: Some("n1".into()),
        state,
        progress: 100,
        log: vec![],
        result: Some(result.into()),
        created_at: 0,
        updated_at: 0,
    }
}

fn leader() -> Handler {
    Arc::new(|req: &Request| {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/v1/stacks") => {
                let body: InstallStackRequest = serde_json::from_slice(&req.body).unwrap();
                if body.name == "full" {
                    return Reply::json(
                        409,
                        &ApiError::new(
                            "quota_exceeded",
                            "stack full: alice's memory quota is 1024 MiB: 0 in use, 1536 more asked",
                        ),
                    );
                }
                // What the example file says, as JSON.
                let servers = &body.recipe.servers;
                assert_eq!(servers.len(), 2, "{body:?}");
                assert_eq!(servers[0].image.as_deref(), Some("debian-12"));
                assert_eq!(
                    (servers[1].memory_mib, servers[1].disk_gib),
                    (1024, Some(20))
                );
                assert_eq!(body.recipe.description, "A web server and its database");
                Reply::json(202, &accepted(&body.name, if body.start { 31 } else { 21 }))
            }
            ("GET", "/api/v1/stacks") => Reply::json(200, &vec![shop()]),
            ("GET", "/api/v1/stacks/shop") => Reply::json(200, &shop()),
            ("POST", "/api/v1/stacks/shop/start") => Reply::json(202, &accepted("shop", 23)),
            ("POST", "/api/v1/stacks/shop/stop") => {
                let body: StackActionRequest = serde_json::from_slice(&req.body).unwrap();
                assert_eq!(body.force_after_secs, Some(5));
                Reply::json(202, &accepted("shop", 25))
            }
            ("DELETE", "/api/v1/stacks/shop") => Reply::json(202, &accepted("shop", 27)),
            ("GET", "/api/v1/tasks/26") => {
                Reply::json(200, &task(26, TaskState::Failed, "shop-db did not stop"))
            }
            ("GET", p) if p.starts_with("/api/v1/tasks/") => {
                let id = p["/api/v1/tasks/".len()..].parse().unwrap();
                Reply::json(200, &task(id, TaskState::Succeeded, "done"))
            }
            _ => Reply::json(404, &ApiError::new("not_found", "no stack named \"x\"")),
        }
    })
}

#[test]
fn stack_commands_send_recipes_print_tasks_and_exit_codes() {
    let cli = Cli::start(leader());
    let recipe = cli.home().join("web-and-db.toml");
    std::fs::write(&recipe, EXAMPLE).unwrap();
    let recipe = recipe.to_str().unwrap();
    let run = |args: &[&str]| cli.run(args);

    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["stack", "install", recipe],
            0,
            "install web-and-db: web-and-db-web task 21 queued (node n1)\n\
             install web-and-db: web-and-db-db task 22 queued (node n2)\n"
                .into(),
        ),
        (
            vec!["stack", "install", recipe, "--name", "shop", "--start"],
            0,
            "install shop: shop-web task 31 queued (node n1)\n\
             install shop: shop-db task 32 queued (node n2)\n"
                .into(),
        ),
        (
            vec!["stack", "list"],
            0,
            "NAME  OWNER  SERVERS  DESIRED  DESCRIPTION\n\
             shop  alice  2        running  A web server and its database\n"
                .into(),
        ),
        (
            vec!["stack", "start", "shop", "--wait"],
            0,
            "start shop: shop-web task 23 queued (node n1)\n\
             start shop: shop-db task 24 queued (node n2)\n\
             task 23 succeeded: done\n\
             task 24 succeeded: done\n"
                .into(),
        ),
        (
            vec!["stack", "rm", "shop"],
            0,
            "remove shop: shop-web task 27 queued (node n1)\n\
             remove shop: shop-db task 28 queued (node n2)\n"
                .into(),
        ),
        (vec!["stack", "show", "x"], 1, String::new()),
    ];
    for (args, code, stdout) in cases {
        cli.expect(&args, code, &stdout);
    }

    let out = run(&["stack", "show", "shop"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.starts_with("NAME         shop\nOWNER        alice\n"),
        "{shown}"
    );
    assert!(shown.contains("shop-db   alice  n2"), "{shown}");

    let out = run(&["stack", "list", "-o", "json"]);
    let list: Vec<StackView> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list, vec![shop()]);

    // A task that fails makes --wait exit 1, naming the server; the others are still followed.
    let out = run(&["stack", "stop", "shop", "--force-after", "5", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).ends_with("task 25 succeeded: done\n"));
    let err = text(&out.stderr);
    assert!(
        err.ends_with("error: stop shop: 1 of 2 tasks did not succeed (shop-db)\n"),
        "{err}"
    );
    assert!(
        err.contains("shop-db: task 26 failed: shop-db did not stop\n"),
        "{err}"
    );

    // -o json: stdout is the API's answer only.
    let out = run(&["stack", "install", recipe, "-o", "json", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let a: StackAccepted = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a, accepted("web-and-db", 21));

    // A refusal from the API: its message, exit 1.
    let out = run(&["stack", "install", recipe, "--name", "full"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: stack full: alice's memory quota is 1024 MiB: 0 in use, 1536 more asked\n"
    );
}

#[test]
fn bad_recipes_are_refused_locally_with_file_and_line() {
    let cli = Cli::start(leader());
    let run = |args: &[&str]| cli.run(args);

    let unknown = EXAMPLE.replacen("vcpus = 1", "vcpus = 1\nnetwork = \"lan\"", 1);
    let line = unknown
        .lines()
        .position(|l| l.starts_with("network"))
        .unwrap()
        + 1;
    let duplicate = EXAMPLE.replace("name = \"db\"", "name = \"web\"");
    let second = duplicate
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("[[servers]]"))
        .nth(1)
        .unwrap()
        .0
        + 1;
    let cases = [
        (
            "unknown.toml",
            unknown,
            format!("unknown.toml:{line}:1: unknown field `network`"),
        ),
        (
            "dup.toml",
            duplicate,
            format!(
                "dup.toml:{second}: servers[1] (\"web\"): name: \"web\" is also the name of servers[0]"
            ),
        ),
        (
            "zero.toml",
            EXAMPLE.replace("memory_mib = 512", "memory_mib = 0"),
            "servers[0] (\"web\"): memory_mib must be between 16".into(),
        ),
        (
            "Bad_Name.toml",
            EXAMPLE.into(),
            "invalid stack name \"Bad_Name\"".into(),
        ),
    ];
    for (file, body, want) in cases {
        let path = cli.home().join(file);
        std::fs::write(&path, body).unwrap();
        let out = run(&["stack", "install", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = text(&out.stderr);
        assert!(err.contains(&want), "{file}: {err:?} should say {want:?}");
    }
    assert_eq!(cli.node.hits(), 0, "nothing reached the API");
}
