//! `skiff pool list|add|remove` end to end against a fake node: what reaches the API, what is
//! printed, and exit statuses.

mod support;

use std::sync::Arc;

use skiff_cluster::api::pools::{AddPoolRequest, PoolOnNode, PoolView};
use skiff_cluster::api::ApiError;
use support::{text, Cli, Handler, Reply, Request};

fn fast(reported: bool) -> PoolView {
    PoolView {
        name: "fast".into(),
        shared: false,
        node: Some("n1".into()),
        kind: "dir".into(),
        place: "/srv/fast".into(),
        created_at: 0,
        images: 2,
        servers: 1,
        nodes: vec![PoolOnNode {
            node: "n1".into(),
            path: "/srv/fast".into(),
            error: (!reported).then(|| "cannot make /srv/fast: permission denied".into()),
            reported: true,
            total_bytes: 8 << 30,
            used_bytes: 2 << 30,
        }],
    }
}

fn leader() -> Handler {
    Arc::new(|req: &Request| {
        let body = || -> AddPoolRequest { serde_json::from_slice(&req.body).unwrap() };
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/pools") => Reply::json(200, &vec![fast(true), fast(false)]),
            ("POST", "/api/v1/pools") => {
                let b = body();
                if b.shared {
                    assert_eq!((b.name.as_deref(), b.node.as_deref()), (None, None));
                    let mut zero = fast(true);
                    zero.name = "0".into();
                    zero.shared = true;
                    zero.node = None;
                    zero.place = b.path.unwrap_or_default();
                    Reply::json(201, &zero)
                } else if b.name.as_deref() == Some("fast") {
                    assert_eq!(b.node.as_deref(), Some("n1"));
                    assert_eq!(b.path.as_deref(), Some("/srv/fast"));
                    Reply::json(201, &fast(true))
                } else {
                    Reply::json(
                        409,
                        &ApiError::new("conflict", "pool fast already uses /srv/fast"),
                    )
                }
            }
            ("DELETE", "/api/v1/pools/fast") => Reply::json(200, &fast(true)),
            ("DELETE", "/api/v1/pools/busy") => Reply::json(
                409,
                &ApiError::new("conflict", "pool busy is in use by image base"),
            ),
            _ => Reply::json(404, &ApiError::new("not_found", "no pool named \"x\"")),
        }
    })
}

#[test]
fn pool_commands_send_their_requests_and_exit_codes() {
    let cli = Cli::start(leader());
    cli.expect(
        &["pool", "add", "fast", "--node", "n1", "--path", "/srv/fast"],
        0,
        "added pool fast (dir at /srv/fast) on node n1\n",
    );
    cli.expect(
        &["pool", "add", "--shared", "--path", "/mnt/shared"],
        0,
        "added pool 0 (dir at /mnt/shared) on every node\n",
    );
    cli.expect(
        &[
            "pool",
            "add",
            "other",
            "--node",
            "n1",
            "--path",
            "/srv/fast/x",
        ],
        1,
        "",
    );
    cli.expect(
        &["pool", "rm", "fast"],
        0,
        "removed pool fast (its files stay)\n",
    );
    cli.expect(&["pool", "remove", "busy"], 1, "");
    // Grammar errors never reach the API.
    cli.expect(&["pool", "add", "x", "--node", "n1"], 2, "");

    let out = cli.run(&["pool", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("POOL"), "{table}");
    assert!(
        table.contains("2.0/8.0 GiB") && table.contains("2 images, 1 servers"),
        "{table}"
    );
    assert!(table.contains("unusable: cannot make /srv/fast"), "{table}");
    let out = cli.run(&["pool", "list", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["name"], "fast");
    assert_eq!(v[0]["nodes"][0]["total_bytes"], 8u64 << 30);
    let err = text(&cli.run(&["pool", "remove", "busy"]).stderr);
    assert!(err.contains("in use by image base"), "{err}");
}
