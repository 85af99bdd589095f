//! Storage pools through the API on an in-process 3-node cluster, with real qcow2 files made by
//! `qemu-img`: an admin adds a node-local pool and a shared pool (numbered from 0, the default of
//! new images once it exists); images land in the pool's directory; a child in one pool is a
//! clone of a master in another; every node opens the shared pool (its marker written once);
//! a pool in use cannot be removed; removing one leaves its files; bad input and non-admins
//! change nothing.

use std::path::Path;
use std::time::Duration;

use skiff_cluster::api::backups::BackupTargetRequest;
use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::images::{CreateImageRequest, ImageActionRequest};
use skiff_cluster::api::pools::{AddPoolRequest, PoolView};
use skiff_cluster::api::servers::{CreateServerRequest, TaskAccepted};
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::state::servers::DiskSpec;
use skiff_cluster::state::UserRole;
use skiff_tests::clients::user_client;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(60);

fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api {
            status, message, ..
        }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn done(c: &ApiClient, t: TaskAccepted) {
    let task = c.wait_task(t.task_id, LIMIT).await.expect("task");
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
}

fn local_pool(name: &str, node: &str, path: &Path) -> AddPoolRequest {
    AddPoolRequest {
        name: Some(name.into()),
        node: Some(node.into()),
        path: Some(path.display().to_string()),
        ..Default::default()
    }
}

fn image(name: &str, pool: Option<&str>) -> CreateImageRequest {
    CreateImageRequest {
        name: name.into(),
        size_gib: 1,
        node: None,
        pool: pool.map(String::from),
    }
}

/// `backing-filename` of a qcow2 file, if any.
fn backing_of(file: &Path) -> Option<String> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(file)
        .output()
        .expect("qemu-img");
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["backing-filename"].as_str().map(String::from)
}

fn find<'a>(pools: &'a [PoolView], name: &str) -> &'a PoolView {
    pools
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no pool {name} in {pools:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_hold_images_and_refuse_what_would_break_them() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let places = tempfile::tempdir().expect("tempdir");
    let fast = places.path().join("fast");
    let shared = places.path().join("shared");
    let n1 = c.names[1].clone();

    // Before any pool is added: every node has `local`, and nothing else.
    let pools = admin.pools().await.unwrap();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(find(&pools, "local").nodes.len(), 3);

    // A node-local pool on the second node: the answer comes once that node has opened it.
    let added = admin
        .add_pool(&local_pool("fast", &n1, &fast))
        .await
        .unwrap();
    assert_eq!(
        (added.shared, added.node.as_deref()),
        (false, Some(n1.as_str()))
    );
    assert_eq!(added.nodes.len(), 1);
    assert!(
        added.nodes[0].reported && added.nodes[0].error.is_none(),
        "{added:?}"
    );
    assert!(added.nodes[0].total_bytes > 0);
    assert!(fast.is_dir());

    // An image in it lands on its node, in its directory; a clone of that master goes into
    // the node's `local` pool, backed by the file in `fast`.
    done(
        &admin,
        admin
            .create_image(&image("base", Some("fast")))
            .await
            .unwrap(),
    )
    .await;
    let base = admin.image("base").await.unwrap();
    assert_eq!(
        (base.node.as_str(), base.pool.as_str()),
        (n1.as_str(), "fast")
    );
    assert!(fast.join("base.qcow2").is_file());
    let none = ImageActionRequest::default();
    done(
        &admin,
        admin.image_action("base", "master", &none).await.unwrap(),
    )
    .await;
    let clone_into_local = ImageActionRequest {
        name: Some("web".into()),
        pool: Some("local".into()),
        ..Default::default()
    };
    done(
        &alice,
        alice
            .image_action("base", "clone", &clone_into_local)
            .await
            .unwrap(),
    )
    .await;
    let web_file = c.dirs[1].join("pools/local/web.qcow2");
    assert!(web_file.is_file());
    let backing = backing_of(&web_file).expect("a clone has a backing file");
    assert!(backing.ends_with("/fast/base.qcow2"), "{backing}");
    // Converted into `fast`, from `local`.
    let convert = ImageActionRequest {
        to: Some("web-copy".into()),
        pool: Some("fast".into()),
        ..Default::default()
    };
    done(
        &alice,
        alice
            .image_action("web", "convert", &convert)
            .await
            .unwrap(),
    )
    .await;
    assert!(fast.join("web-copy.qcow2").is_file());
    assert_eq!(backing_of(&fast.join("web-copy.qcow2")), None);

    // A shared pool: numbered 0, opened by every node (the marker written once), and from
    // now on the default pool of new images.
    let req = AddPoolRequest {
        shared: true,
        path: Some(shared.display().to_string()),
        ..Default::default()
    };
    let zero = admin.add_pool(&req).await.unwrap();
    assert_eq!((zero.name.as_str(), zero.shared), ("0", true));
    assert_eq!(zero.nodes.len(), 3);
    for n in &zero.nodes {
        assert!(n.reported && n.error.is_none(), "{zero:?}");
    }
    let marker = std::fs::read_to_string(shared.join(".skiff-pool")).expect("marker");
    assert_eq!(marker.trim().len(), 32, "{marker:?}");
    done(
        &alice,
        alice.create_image(&image("data", None)).await.unwrap(),
    )
    .await;
    assert_eq!(alice.image("data").await.unwrap().pool, "0");
    assert!(shared.join("data.qcow2").is_file());

    // A master in the shared pool pins no node: a server whose disk is its clone may go on
    // any node that has pool 0 open (here: one the master was not made on). A disk in a pool
    // its node does not have is refused.
    done(
        &admin,
        admin.image_action("data", "master", &none).await.unwrap(),
    )
    .await;
    let data_node = admin.image("data").await.unwrap().node;
    let elsewhere = c.names.iter().find(|n| **n != data_node).unwrap().clone();
    skiff_tests::inprocess::wait_until(LIMIT, "every node gossips pool 0", || async {
        admin.nodes().await.is_ok_and(|nodes| {
            nodes
                .iter()
                .all(|n| n.storage.iter().any(|p| p.name == "0"))
        })
    })
    .await;
    let server =
        |name: &str, image: Option<&str>, pool: Option<&str>, node: &str| CreateServerRequest {
            name: name.into(),
            memory_mib: 64,
            vcpus: 1,
            disks: vec![DiskSpec {
                image: image.map(String::from),
                size_gib: 1,
                pool: pool.map(String::from),
            }],
            nics: vec![],
            boot_order: vec![],
            autostart: false,
            lock_to_node: None,
            node: Some(node.into()),
            ha: false,
            iso: None,
            start: false,
        };
    done(
        &alice,
        alice
            .create_server(&server("app", Some("data"), None, &elsewhere))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        alice.server("app").await.unwrap().node.as_deref(),
        Some(elsewhere.as_str())
    );
    // Cloned through the image API onto another node: the child is in that node's `local`
    // pool, backed by the master's file in the shared directory. A master in a node-local pool
    // is cloned on its own node only.
    let onto = |node: &str| ImageActionRequest {
        name: Some("data-child".into()),
        pool: Some("local".into()),
        node: Some(node.into()),
        ..Default::default()
    };
    done(
        &alice,
        alice
            .image_action("data", "clone", &onto(&elsewhere))
            .await
            .unwrap(),
    )
    .await;
    let idx = c.names.iter().position(|n| *n == elsewhere).unwrap();
    let child_file = c.dirs[idx].join("pools/local/data-child.qcow2");
    let backing = backing_of(&child_file).expect("a clone has a backing file");
    assert!(backing.ends_with("/shared/data.qcow2"), "{backing}");
    let mut to_n2 = onto(&c.names[2]);
    to_n2.name = Some("base-child".into());
    if n1 != c.names[2] {
        let (status, msg) = refusal(admin.image_action("base", "clone", &to_n2).await);
        assert_eq!(status, 400, "{msg}");
    }
    done(&alice, alice.remove_image("data-child").await.unwrap()).await;

    let n2 = c.names[2].clone();
    let (status, msg) = refusal(
        admin
            .create_server(&server("quick", None, Some("fast"), &n2))
            .await,
    );
    assert!(status == 404 || status == 409, "{status} {msg}");
    assert!(admin.server("quick").await.is_err());

    // The list: per node, usable, with the images counted.
    let pools = admin.pools().await.unwrap();
    assert_eq!(
        pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["local", "0", "fast"]
    );
    assert_eq!(find(&pools, "fast").images, 2);
    assert_eq!(find(&pools, "0").images, 1);
    assert_eq!(find(&pools, "local").images, 1);

    // Refusals change nothing.
    let before = admin.pools().await.unwrap();
    let (status, msg) = refusal(admin.remove_pool("fast").await);
    assert_eq!(status, 409, "{msg}");
    assert!(
        msg.contains("image base") && msg.contains("image web-copy"),
        "{msg}"
    );
    let (status, _) = refusal(admin.remove_pool("local").await);
    assert_eq!(status, 400);
    let (status, _) = refusal(admin.remove_pool("nope").await);
    assert_eq!(status, 404);
    let (status, _) = refusal(
        alice
            .add_pool(&local_pool("mine", &n1, &places.path().join("m")))
            .await,
    );
    assert_eq!(status, 403);
    let (status, _) = refusal(alice.pools().await);
    assert_eq!(status, 403);
    let (status, _) = refusal(alice.remove_pool("0").await);
    assert_eq!(status, 403);
    let bad = [
        (
            local_pool("fast", &c.names[2], &places.path().join("x")),
            409,
        ),
        (local_pool("inner", &n1, &fast.join("inner")), 409),
        (local_pool("under", &c.names[2], &shared.join("under")), 409),
        (local_pool("x", "nope", &places.path().join("x")), 404),
        (local_pool("Bad", &n1, &places.path().join("x")), 400),
        (local_pool("local", &n1, &places.path().join("x")), 400),
        (local_pool("x", &n1, Path::new("relative/path")), 400),
        (local_pool("x", &n1, Path::new("/proc/skiff")), 400),
        (
            AddPoolRequest {
                name: Some("x".into()),
                node: Some(n1.clone()),
                path: Some("/srv/x".into()),
                dataset: Some("tank/x".into()),
                ..Default::default()
            },
            400,
        ),
        (
            AddPoolRequest {
                shared: true,
                name: Some("x".into()),
                path: Some("/srv/x".into()),
                ..Default::default()
            },
            400,
        ),
    ];
    for (req, want) in bad {
        let (status, msg) = refusal(admin.add_pool(&req).await);
        assert_eq!(status, want, "{req:?}: {msg}");
    }
    // Images in a pool their node does not have, or that does not exist.
    let mut on_n2 = image("x", Some("fast"));
    on_n2.node = Some(c.names[2].clone());
    let (status, msg) = refusal(admin.create_image(&on_n2).await);
    assert_eq!(status, 400, "{msg}");
    let (status, _) = refusal(admin.create_image(&image("x", Some("nope"))).await);
    assert_eq!(status, 404);
    let (status, _) = refusal(admin.create_image(&image("x", Some("../etc"))).await);
    assert_eq!(status, 400);
    let after = admin.pools().await.unwrap();
    let names = |v: &[PoolView]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    assert!(admin.image("x").await.is_err());

    // Whole-pool backups are for ZFS pools (and admins): a directory pool says so. A ZFS pool
    // on a node without ZFS is recorded and listed as unusable there, with the reason.
    let whole = |name: &str| BackupTargetRequest {
        pool: Some(name.into()),
        ..Default::default()
    };
    let (status, msg) = refusal(admin.create_backup(&whole("fast")).await);
    assert_eq!(status, 409, "{msg}");
    assert!(msg.contains("not on ZFS"), "{msg}");
    let (status, _) = refusal(alice.create_backup(&whole("fast")).await);
    assert_eq!(status, 404);
    let zfs = AddPoolRequest {
        name: Some("z".into()),
        node: Some(c.names[2].clone()),
        dataset: Some("tank/skiff".into()),
        backup_dataset: Some("backup/skiff".into()),
        ..Default::default()
    };
    let z = admin.add_pool(&zfs).await.unwrap();
    let err = z.nodes[0].error.clone().unwrap_or_default();
    assert!(err.contains("ZFS"), "{z:?}");
    admin.remove_pool("z").await.unwrap();

    // Emptied, `fast` can go: the node forgets it, the directory and its files stay.
    for name in ["web", "web-copy"] {
        done(&alice, alice.remove_image(name).await.unwrap()).await;
    }
    done(
        &admin,
        admin.image_action("base", "unmaster", &none).await.unwrap(),
    )
    .await;
    done(&admin, admin.remove_image("base").await.unwrap()).await;
    assert!(!fast.join("base.qcow2").exists());
    std::fs::write(fast.join("keep.txt"), "operator's file").unwrap();
    let removed = admin.remove_pool("fast").await.unwrap();
    assert_eq!(removed.name, "fast");
    let pools = admin.pools().await.unwrap();
    assert_eq!(names(&pools), ["local", "0"]);
    assert!(fast.join("keep.txt").is_file());
    skiff_tests::inprocess::wait_until(LIMIT, "node 1 forgets pool fast", || async {
        c.node(1).pools.get("fast").is_err()
    })
    .await;
    c.shutdown().await;
}
