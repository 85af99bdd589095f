//! Two-way serial consoles end to end on in-process nodes running the in-memory
//! `FakeHypervisor` (whose console echoes what is typed and answers `echo` lines like the test
//! guest's shell): through the API client (full duplex over HTTP/2), through an HTTP/1.1 upgrade,
//! and through the real `skiff server console NAME --attach` (stdin piped, and on a terminal in
//! tmux). The leader reaches the server's node over QUIC (`skiff-console/1`); a client that asks
//! a follower first is sent to the leader. Agents answer malformed console headers with errors.

use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::servers::CreateServerRequest;
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::api::users::{Method, TokenClient};
use skiff_cluster::state::{Quotas, UserRole};
use skiff_tests::bins;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(30);
/// What the test types, and what the (fake or real) guest answers.
const COMMAND: &[u8] = b"echo skiff-$((6*7))\r";
const ANSWER: &str = "skiff-42";

/// Reads until the output holds `want` (fails after [`LIMIT`]); returns all of it.
async fn read_until(r: &mut (impl AsyncRead + Unpin), want: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = tokio::time::timeout_at(deadline, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {want:?} within {LIMIT:?}; got {:?}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .expect("read");
        assert!(
            n > 0,
            "the console ended before {want:?}; got {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads to the end of the output (fails when it does not end within [`LIMIT`]).
async fn read_to_end(r: &mut (impl AsyncRead + Unpin)) -> String {
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, r.read_to_end(&mut rest))
        .await
        .expect("the console did not end")
        .expect("read");
    String::from_utf8_lossy(&rest).into_owned()
}

async fn create(api: &ApiClient, name: &str, node: &str, start: bool) {
    let req: CreateServerRequest = serde_json::from_value(serde_json::json!({
        "name": name, "memory_mib": 128, "vcpus": 1, "start": start, "node": node,
    }))
    .unwrap();
    let t = api.create_server(&req).await.unwrap();
    let done = api.wait_task(t.task_id, LIMIT).await.unwrap();
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
}

fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_types_and_reads_back_through_the_leader() {
    let c = TestCluster::start(ClusterSpec::new(2, 1)).await;
    let leader = c.wait_single_leader(LIMIT).await;
    let follower = 1 - leader;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    // On the follower: the leader reaches the console over QUIC.
    create(&admin, "web", &c.names[follower], true).await;
    create(&admin, "idle", &c.names[follower], false).await;

    // A client asking the follower first is sent to the leader.
    let mut cred = c.cred.clone();
    cred.endpoints = vec![c.addrs[follower].to_string()];
    let api = ApiClient::new(&cred).unwrap();
    let mut con = api.attach_console("web").await.unwrap();
    assert_eq!(con.endpoint(), c.addrs[leader].to_string());
    con.write_all(COMMAND).await.unwrap();
    let seen = read_until(&mut con, &format!("{ANSWER}\r\n# ")).await;
    assert!(seen.contains("echo skiff-$((6*7))\r\n"), "{seen:?}");
    // Typed in pieces, still one line.
    con.write_all(b"echo a").await.unwrap();
    con.write_all(b"b\r").await.unwrap();
    read_until(&mut con, "ab\r\n# ").await;
    // The read-only tail keeps showing the console's output.
    let tail = api.server_console("web", None).await.unwrap();
    assert!(tail.text.contains(ANSWER), "{:?}", tail.text);
    // Detaching ends the output.
    con.shutdown().await.unwrap();
    read_to_end(&mut con).await;

    // The console closes when the server stops.
    let mut con = api.attach_console("web").await.unwrap();
    con.write_all(b"echo still-here\r").await.unwrap();
    read_until(&mut con, "still-here\r\n").await;
    let t = admin
        .server_action("web", "destroy", &Default::default())
        .await
        .unwrap();
    admin.wait_task(t.task_id, LIMIT).await.unwrap();
    read_to_end(&mut con).await;

    // A stopped server, a missing one.
    assert_eq!(
        refusal(api.attach_console("idle").await),
        (409, "not_running".to_string())
    );
    assert_eq!(refusal(api.attach_console("web").await).0, 409);
    assert_eq!(
        refusal(api.attach_console("nobody").await),
        (404, "not_found".to_string())
    );
    assert_eq!(refusal(api.attach_console("../x").await).0, 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_or_an_admin_may_type() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    create(&admin, "web", "n0", true).await;
    let mut clients = Vec::new();
    for (name, role) in [("alice", UserRole::User), ("ro", UserRole::ReadOnly)] {
        admin
            .add_user(name, role, Quotas::default())
            .await
            .expect(name);
        let t = admin.create_api_token(name, "test", None).await.unwrap();
        clients.push(TokenClient::new(c.cred.endpoints.clone(), &c.cred.ca_pem, &t.token).unwrap());
    }
    let none: Option<&()> = None;
    for (cl, want) in [(&clients[0], 404), (&clients[1], 403)] {
        for method in [Method::POST, Method::GET] {
            let r = cl
                .call::<(), serde_json::Value>(method.clone(), "/servers/web/console/attach", none)
                .await;
            assert_eq!(refusal(r).0, want, "{method}");
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_upgrade_gives_a_raw_pipe() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    create(&admin, "web", "n0", true).await;
    let mut tls = skiff_cluster::tls::api_client_config(&c.cred).unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .build()
        .unwrap();
    let url = format!("https://{}/api/v1/servers/web/console/attach", c.addrs[0]);
    // Without the upgrade headers: told how to ask.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .get(&url)
        .header("connection", "Upgrade")
        .header("upgrade", "skiff-console")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 101);
    let mut pipe = r.upgrade().await.unwrap();
    pipe.write_all(COMMAND).await.unwrap();
    read_until(&mut pipe, &format!("{ANSWER}\r\n")).await;
    pipe.shutdown().await.unwrap();
    read_to_end(&mut pipe).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_server_console_attach_pipes_stdin() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    create(&admin, "web", "n0", true).await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("admin.credential");
    std::fs::write(&cred, c.cred.to_toml()).unwrap();
    let run = |args: &'static [&'static str], stdin: &'static [u8]| {
        let cred = cred.clone();
        async move {
            let mut child = tokio::process::Command::new(bins::path("skiff"))
                .arg("--cred")
                .arg(&cred)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run skiff");
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin).await.unwrap();
            drop(input);
            tokio::time::timeout(LIMIT, child.wait_with_output())
                .await
                .expect("skiff did not end after stdin ended")
                .unwrap()
        }
    };
    let started = std::time::Instant::now();
    let out = run(&["server", "console", "web", "--attach"], COMMAND).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains(&format!("{ANSWER}\r\n")), "{stdout:?}");
    assert!(
        stderr.contains("attached to the console of web"),
        "{stderr:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // A missing server: the API's refusal and a non-zero exit.
    let out = run(&["server", "console", "nobody", "-i"], b"").await;
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server named"),
        "{out:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_keys_go_to_the_guest_and_ctrl_bracket_leaves() {
    use skiff_tests::tmux::Tmux;
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    create(&admin, "web", "n0", true).await;
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join("admin.credential");
    std::fs::write(&cred, c.cred.to_toml()).unwrap();
    // After skiff: its exit status, then whether the terminal is back in cooked mode.
    let command = format!(
        "'{}' --cred '{}' server console web --attach; echo \"exit=$?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo; sleep 60",
        bins::path("skiff").display(),
        cred.display()
    );
    let screen = tokio::task::spawn_blocking(move || {
        let t = Tmux::start("console", 100, 30, &command, &[])?;
        t.wait_text("leave with ctrl-]", LIMIT)?;
        t.type_text("echo skiff-$((6*7))")?;
        t.keys(&["Enter"])?;
        t.wait_text(ANSWER, LIMIT)?;
        // Raw mode: ctrl-C goes to the guest, skiff keeps running.
        t.keys(&["C-c"])?;
        t.type_text("echo still")?;
        t.keys(&["Enter"])?;
        t.wait_for("the guest's answer after ctrl-C", LIMIT, |s| {
            s.lines().any(|l| l.trim() == "still")
        })?;
        t.keys(&["C-]"])?;
        t.wait_for("skiff's exit and the terminal's modes", LIMIT, |s| {
            s.contains("exit=0") && s.lines().any(|l| ["echo", "-echo"].contains(&l.trim()))
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        screen.contains("detached from the console of web"),
        "{screen}"
    );
    let modes: Vec<&str> = screen
        .lines()
        .map(str::trim)
        .filter(|l| ["icanon", "-icanon", "echo", "-echo"].contains(l))
        .collect();
    assert_eq!(
        modes,
        ["icanon", "echo"],
        "the terminal is restored: {screen}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_answers_bad_console_headers_with_an_error() {
    use skiff_cluster::agentproto::console::{
        read_frame, write_frame, ConsoleAnswer, ConsoleErrorCode, ConsoleOpen,
    };
    use skiff_cluster::transport::ALPN_CONSOLE;
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    let ep = &c.node(0).endpoint;
    let to = c.addrs[0];
    let code = |a: ConsoleAnswer| match a {
        ConsoleAnswer::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    };
    // A length over the limit, a frame that is not JSON, one with an unknown field.
    let bad: [&[u8]; 3] = [
        &[0xff, 0xff, 0xff, 0xff],
        &[0, 0, 0, 3, b'a', b'b', b'c'],
        &[
            0, 0, 0, 18, b'{', b'"', b'n', b'a', b'm', b'e', b'"', b':', b'"', b'a', b'"', b',',
            b'"', b'x', b'"', b':', b'1', b'}',
        ],
    ];
    for garbage in bad {
        let (mut send, mut recv) = ep.open_stream(to, ALPN_CONSOLE, LIMIT).await.unwrap();
        send.write_all(garbage).await.unwrap();
        let answer: ConsoleAnswer = tokio::time::timeout(LIMIT, read_frame(&mut recv))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code(answer), ConsoleErrorCode::BadRequest, "{garbage:?}");
    }
    // A name no domain has.
    let (mut send, mut recv) = ep.open_stream(to, ALPN_CONSOLE, LIMIT).await.unwrap();
    write_frame(
        &mut send,
        &ConsoleOpen {
            name: "nobody\0../x".into(),
        },
    )
    .await
    .unwrap();
    let answer: ConsoleAnswer = read_frame(&mut recv).await.unwrap();
    assert_eq!(code(answer), ConsoleErrorCode::NotFound);
    // The node still serves consoles after all that.
    let admin = c.client();
    c.wait_figures(LIMIT).await;
    create(&admin, "web", "n0", true).await;
    let mut con = admin.attach_console("web").await.unwrap();
    con.write_all(COMMAND).await.unwrap();
    read_until(&mut con, ANSWER).await;
    c.shutdown().await;
}
