//! Images through the API on in-process clusters (real qcow2 files made by `qemu-img` in the
//! nodes' local pools): create, master, clone, snapshot, revert, resize, flatten, convert, remove;
//! the rules that protect masters; who sees and may act on what; bad input changes nothing.

use std::path::PathBuf;
use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::images::{CreateImageRequest, ImageActionRequest};
use skiff_cluster::api::servers::{CreateServerRequest, TaskAccepted};
use skiff_cluster::api::tasks::TaskState;
use skiff_cluster::state::servers::DiskSpec;
use skiff_cluster::state::UserRole;
use skiff_tests::clients::user_client;
use skiff_tests::guest::qemu_io;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(60);

/// The API error code of a refusal (panics on success or a transport failure).
fn code<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Api { status, code, .. }) => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Waits for the task to end and asserts it succeeded.
async fn done(c: &ApiClient, t: TaskAccepted) {
    let task = c.wait_task(t.task_id, LIMIT).await.expect("task");
    assert_eq!(
        task.state,
        TaskState::Succeeded,
        "task {} {}: {:?} {:?}",
        task.id,
        task.kind,
        task.result,
        task.log
    );
}

fn action(name: Option<&str>, snapshot: Option<&str>, size: Option<u64>) -> ImageActionRequest {
    ImageActionRequest {
        name: name.map(Into::into),
        snapshot: snapshot.map(Into::into),
        size_gib: size,
        ..Default::default()
    }
}

/// The body of `convert`: the new image's name, compressed or not.
fn convert_to(to: &str, compress: bool) -> ImageActionRequest {
    ImageActionRequest {
        to: Some(to.into()),
        compress,
        ..Default::default()
    }
}

/// `qemu-img info --output=json -U` of a file.
fn qemu_info(file: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(file)
        .output()
        .expect("qemu-img (Debian's qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img info {}: {out:?}",
        file.display()
    );
    serde_json::from_slice(&out.stdout).expect("qemu-img info JSON")
}

/// File names in a directory, sorted.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatten_and_convert_free_masters_and_make_standalone_images() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let bob = user_client(&c, "bob", UserRole::User).await;
    let carol = user_client(&c, "carol", UserRole::ReadOnly).await;
    let pool0: PathBuf = c.dirs[0].join("pools/local");
    let none = ImageActionRequest::default();

    // An admin's master with data in it; alice's clone with data of its own.
    let req = CreateImageRequest {
        pool: None,
        name: "base".into(),
        size_gib: 1,
        node: None,
    };
    done(&admin, admin.create_image(&req).await.unwrap()).await;
    assert!(qemu_io(&pool0.join("base.qcow2"), "write -P 0x11 0 1M"));
    done(
        &admin,
        admin.image_action("base", "master", &none).await.unwrap(),
    )
    .await;
    let t = alice
        .image_action("base", "clone", &action(Some("web"), None, None))
        .await
        .unwrap();
    done(&alice, t).await;
    let web_file = pool0.join("web.qcow2");
    assert!(qemu_io(&web_file, "write -P 0x22 1M 1M"));

    // Convert: a new standalone image of alice's, compressed; the source stays a clone.
    let t = alice
        .image_action("web", "convert", &convert_to("web-copy", true))
        .await
        .unwrap();
    let task = alice.wait_task(t.task_id, LIMIT).await.unwrap();
    assert_eq!(
        (task.state, task.kind.as_str()),
        (TaskState::Succeeded, "image.convert"),
        "{task:?}"
    );
    assert!(
        task.log.iter().any(|l| l.contains("compressed")),
        "{:?}",
        task.log
    );
    let copy = alice.image("web-copy").await.unwrap();
    assert_eq!(
        (
            copy.owner.as_str(),
            copy.parent.as_deref(),
            copy.size_gib,
            copy.ready
        ),
        ("alice", None, 1, true)
    );
    let copy_file = pool0.join("web-copy.qcow2");
    let info = qemu_info(&copy_file);
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(info["virtual-size"], qemu_info(&web_file)["virtual-size"]);
    assert!(
        qemu_io(&copy_file, "read -P 0x11 0 1M"),
        "the master's data"
    );
    assert!(
        qemu_io(&copy_file, "read -P 0x22 1M 1M"),
        "the clone's data"
    );
    let web = alice.image("web").await.unwrap();
    assert_eq!(web.parent.as_deref(), Some("base"));
    assert!(qemu_info(&web_file).get("backing-filename").is_some());

    // Refusals: others do not see alice's image, read-only users cannot act, alice cannot
    // rewrite or copy the admin's master; bad input is a clear 4xx. Nothing changes.
    let before = files_in(&pool0);
    let refusals = [
        (bob.image_action("web", "flatten", &none).await, 404),
        (
            bob.image_action("web", "convert", &convert_to("mine", false))
                .await,
            404,
        ),
        (carol.image_action("base", "flatten", &none).await, 403),
        (
            carol
                .image_action("base", "convert", &convert_to("mine", false))
                .await,
            403,
        ),
        (alice.image_action("base", "flatten", &none).await, 404),
        (
            alice
                .image_action("base", "convert", &convert_to("mine", false))
                .await,
            404,
        ),
        (alice.image_action("ghost", "flatten", &none).await, 404),
        (
            alice
                .image_action("ghost", "convert", &convert_to("mine", false))
                .await,
            404,
        ),
        (
            alice
                .image_action("web", "convert", &convert_to("base", false))
                .await,
            409,
        ),
        (
            alice
                .image_action("web", "convert", &convert_to("Bad/Name", false))
                .await,
            400,
        ),
        (
            alice
                .image_action("web", "convert", &convert_to("x-disk0", false))
                .await,
            400,
        ),
        (alice.image_action("web", "convert", &none).await, 400),
        // The master is the base of web: it is not rewritten.
        (admin.image_action("base", "flatten", &none).await, 409),
    ];
    for (i, (r, status)) in refusals.into_iter().enumerate() {
        assert_eq!(code(r).0, status, "refusal {i}");
    }
    let mut names: Vec<String> = admin
        .images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names, ["base", "web", "web-copy"], "nothing was made");
    assert_eq!(files_in(&pool0), before, "no file was touched");

    // Flatten: web keeps its data and drops its master, which then can be unmastered.
    assert_eq!(
        code(admin.image_action("base", "unmaster", &none).await),
        (409, "invalid_state".into())
    );
    done(
        &alice,
        alice.image_action("web", "flatten", &none).await.unwrap(),
    )
    .await;
    let web = alice.image("web").await.unwrap();
    assert_eq!((web.parent, web.size_gib, web.ready), (None, 1, true));
    assert!(qemu_info(&web_file).get("backing-filename").is_none());
    assert!(qemu_io(&web_file, "read -P 0x11 0 1M"), "the master's data");
    assert!(qemu_io(&web_file, "read -P 0x22 1M 1M"), "the clone's data");
    assert!(admin.image("base").await.unwrap().children.is_empty());

    // Flattened again: nothing to do, and the task says so.
    let t = alice.image_action("web", "flatten", &none).await.unwrap();
    let task = alice.wait_task(t.task_id, LIMIT).await.unwrap();
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    assert_eq!(task.kind, "image.flatten");
    assert!(
        task.log.iter().any(|l| l.contains("nothing to flatten")),
        "{:?}",
        task.log
    );

    // A server whose disk is a clone of the master keeps it from being rewritten (409).
    let server = CreateServerRequest {
        name: "app".into(),
        memory_mib: 64,
        vcpus: 1,
        disks: vec![DiskSpec {
            image: Some("base".into()),
            size_gib: 1,
            pool: None,
        }],
        nics: vec![],
        boot_order: vec![],
        autostart: false,
        lock_to_node: None,
        node: None,
        ha: false,
        iso: None,
        start: true,
    };
    done(&alice, alice.create_server(&server).await.unwrap()).await;
    match admin.image_action("base", "flatten", &none).await {
        Err(ClientError::Api {
            status, message, ..
        }) => {
            assert_eq!(status, 409);
            assert!(message.contains("servers app"), "{message}");
        }
        other => panic!("flattening a master in use: {other:?}"),
    }
    done(&alice, alice.remove_server("app").await.unwrap()).await;

    // The master, free now, is unmastered and removed; web does not need it.
    done(
        &admin,
        admin.image_action("base", "unmaster", &none).await.unwrap(),
    )
    .await;
    done(&admin, admin.remove_image("base").await.unwrap()).await;
    assert!(!pool0.join("base.qcow2").exists());
    assert!(qemu_io(&web_file, "read -P 0x11 0 1M"));
    assert_eq!(
        files_in(&pool0),
        ["web-copy.qcow2", "web.qcow2"],
        "nothing left aside"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_masters_clones_snapshots_and_permissions() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let bob = user_client(&c, "bob", UserRole::User).await;
    let carol = user_client(&c, "carol", UserRole::ReadOnly).await;
    // Node 0's local pool (its data dir is dirs[0]).
    let pool0: PathBuf = c.dirs[0].join("pools/local");

    // An admin's blank image, made on node-0 and turned into a master.
    let node0 = c.node(0).name.clone();
    let req = CreateImageRequest {
        pool: None,
        name: "debian".into(),
        size_gib: 1,
        node: Some(node0.clone()),
    };
    done(&admin, admin.create_image(&req).await.unwrap()).await;
    assert!(pool0.join("debian.qcow2").is_file());
    let none = ImageActionRequest::default();
    done(
        &admin,
        admin.image_action("debian", "master", &none).await.unwrap(),
    )
    .await;
    let view = admin.image("debian").await.unwrap();
    assert!(view.master && view.ready && view.busy_task.is_none());

    // Alice sees the admin's master (a template), clones it into her own image.
    let names = |v: Vec<skiff_cluster::api::images::ImageView>| -> Vec<String> {
        v.into_iter().map(|i| i.name).collect()
    };
    assert_eq!(names(alice.images().await.unwrap()), ["debian"]);
    let t = alice
        .image_action("debian", "clone", &action(Some("web"), None, None))
        .await
        .unwrap();
    done(&alice, t).await;
    let web = alice.image("web").await.unwrap();
    assert_eq!(
        (web.owner.as_str(), web.parent.as_deref(), web.size_gib),
        ("alice", Some("debian"), 1)
    );
    assert!(pool0.join("web.qcow2").is_file());
    // ... but cannot change the master, and bob does not see her image.
    assert_eq!(
        code(alice.image_action("debian", "unmaster", &none).await).0,
        404
    );
    assert_eq!(code(bob.image("web").await), (404, "not_found".into()));
    assert_eq!(names(bob.images().await.unwrap()), ["debian"]);
    // Carol (read-only) sees her nothing and cannot act.
    assert_eq!(
        code(
            carol
                .create_image(&CreateImageRequest {
                    pool: None,
                    name: "x".into(),
                    size_gib: 1,
                    node: None
                })
                .await
        )
        .0,
        403
    );

    // Snapshot, revert, grow.
    let snap = action(None, Some("clean"), None);
    done(
        &alice,
        alice.image_action("web", "snapshot", &snap).await.unwrap(),
    )
    .await;
    assert_eq!(alice.image("web").await.unwrap().snapshots, ["clean"]);
    done(
        &alice,
        alice.image_action("web", "revert", &snap).await.unwrap(),
    )
    .await;
    let grow = action(None, None, Some(3));
    done(
        &alice,
        alice.image_action("web", "resize", &grow).await.unwrap(),
    )
    .await;
    assert_eq!(alice.image("web").await.unwrap().size_gib, 3);

    // The master is protected while its clone exists.
    assert_eq!(
        code(admin.remove_image("debian").await),
        (409, "invalid_state".into())
    );
    assert_eq!(
        code(admin.image_action("debian", "unmaster", &none).await),
        (409, "invalid_state".into())
    );
    assert!(pool0.join("debian.qcow2").is_file());

    // Bad input: a clear 4xx, nothing made.
    let bad = [
        admin
            .create_image(&CreateImageRequest {
                pool: None,
                name: "Bad/Name".into(),
                size_gib: 1,
                node: None,
            })
            .await,
        admin
            .create_image(&CreateImageRequest {
                pool: None,
                name: "zero".into(),
                size_gib: 0,
                node: None,
            })
            .await,
        admin
            .create_image(&CreateImageRequest {
                pool: None,
                name: "web-disk0".into(),
                size_gib: 1,
                node: None,
            })
            .await,
        admin
            .create_image(&CreateImageRequest {
                pool: None,
                name: "x".into(),
                size_gib: 1,
                node: Some("no-such-node".into()),
            })
            .await,
        alice
            .image_action("web", "resize", &action(None, None, Some(2)))
            .await,
        alice
            .image_action("web", "revert", &action(None, Some("nope"), None))
            .await,
        alice.image_action("web", "explode", &none).await,
        alice
            .image_action("web", "snapshot", &action(None, Some("clean"), None))
            .await,
    ];
    let got: Vec<u16> = bad.into_iter().map(|r| code(r).0).collect();
    assert_eq!(got, [400, 400, 400, 400, 400, 404, 404, 409]);
    assert_eq!(
        names(admin.images().await.unwrap()),
        ["debian", "web"],
        "nothing was made"
    );

    // Taken down in order: the clone, then the master.
    done(&alice, alice.remove_image("web").await.unwrap()).await;
    assert!(!pool0.join("web.qcow2").exists());
    // A server whose disk is a clone of the master is placed on the master's node, and keeps
    // the master a master; a disk cannot be a clone of an image that is not one.
    let server = |image: &str| CreateServerRequest {
        name: "app".into(),
        memory_mib: 64,
        vcpus: 1,
        disks: vec![DiskSpec {
            image: Some(image.into()),
            size_gib: 1,
            pool: None,
        }],
        nics: vec![],
        boot_order: vec![],
        autostart: false,
        lock_to_node: None,
        node: None,
        ha: false,
        iso: None,
        start: false,
    };
    assert_eq!(code(alice.create_server(&server("nope")).await).0, 400);
    let t = alice.create_server(&server("debian")).await.unwrap();
    assert_eq!(t.node.as_deref(), Some(node0.as_str()));
    done(&alice, t).await;
    assert_eq!(
        code(admin.image_action("debian", "unmaster", &none).await),
        (409, "invalid_state".into())
    );
    done(&alice, alice.remove_server("app").await.unwrap()).await;

    let t = admin.image_action("debian", "unmaster", &none).await;
    done(&admin, t.unwrap()).await;
    assert_eq!(code(alice.create_server(&server("debian")).await).0, 400);
    done(&admin, admin.remove_image("debian").await.unwrap()).await;
    assert!(!pool0.join("debian.qcow2").exists());
    assert!(admin.images().await.unwrap().is_empty());
    c.shutdown().await;
}

fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (Debian's qemu-utils)");
    assert!(out.status.success(), "qemu-img {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_download_check_what_they_carry() {
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let carol = user_client(&c, "carol", UserRole::ReadOnly).await;
    let pool0: PathBuf = c.dirs[0].join("pools/local");
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).display().to_string();

    // A qcow2 image goes in as it is; a raw one is converted.
    qemu_img(&["create", "-q", "-f", "qcow2", &file("a.qcow2"), "1G"]);
    let up = admin
        .upload_image("uploaded", None, None, &dir.path().join("a.qcow2"))
        .await
        .unwrap();
    assert_eq!((up.size_gib, up.ready, up.busy_task), (1, true, None));
    assert_eq!(
        std::fs::read(pool0.join("uploaded.qcow2")).unwrap(),
        std::fs::read(dir.path().join("a.qcow2")).unwrap()
    );
    std::fs::write(dir.path().join("r.raw"), vec![7u8; 1 << 20]).unwrap();
    let raw = admin
        .upload_image("fromraw", None, None, &dir.path().join("r.raw"))
        .await
        .unwrap();
    assert_eq!(raw.size_gib, 1);
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(pool0.join("fromraw.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");

    // Downloaded, it is the pool's file; an existing target is not overwritten.
    let back = dir.path().join("back.qcow2");
    let n = admin.download_image("uploaded", &back).await.unwrap();
    assert_eq!(std::fs::read(&back).unwrap().len() as u64, n);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(pool0.join("uploaded.qcow2")).unwrap()
    );
    assert!(admin.download_image("uploaded", &back).await.is_err());

    // Refused: an image with a backing file (it would read other host files), a taken name, a
    // read-only user, a bad name. Nothing is left behind.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &file("a.qcow2"),
        "-F",
        "qcow2",
        &file("child.qcow2"),
    ]);
    let refused = admin
        .upload_image("sneaky", None, None, &dir.path().join("child.qcow2"))
        .await;
    assert_eq!(code(refused).0, 400);
    assert_eq!(
        code(
            admin
                .upload_image("uploaded", None, None, &dir.path().join("a.qcow2"))
                .await
        )
        .0,
        409
    );
    assert_eq!(
        code(
            carol
                .upload_image("mine", None, None, &dir.path().join("a.qcow2"))
                .await
        )
        .0,
        403
    );
    assert_eq!(
        code(
            admin
                .upload_image("Bad", None, None, &dir.path().join("a.qcow2"))
                .await
        )
        .0,
        400
    );
    let mut names: Vec<String> = admin
        .images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    names.sort();
    assert_eq!(names, ["fromraw", "uploaded"]);
    let mut files: Vec<String> = std::fs::read_dir(&pool0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["fromraw.qcow2", "uploaded.qcow2"]);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restore_what_was_copied_and_keep_to_their_owners() {
    use skiff_cluster::api::backups::{BackupTargetRequest, ScheduleRequest};
    let c = TestCluster::start(ClusterSpec::new(1, 1)).await;
    c.wait_single_leader(LIMIT).await;
    c.wait_figures(LIMIT).await;
    let admin = c.client();
    let alice = user_client(&c, "alice", UserRole::User).await;
    let carol = user_client(&c, "carol", UserRole::ReadOnly).await;
    let pool0: PathBuf = c.dirs[0].join("pools/local");
    let req = CreateImageRequest {
        pool: None,
        name: "data".into(),
        size_gib: 1,
        node: None,
    };
    done(&admin, admin.create_image(&req).await.unwrap()).await;
    let file = pool0.join("data.qcow2");
    assert!(qemu_io(&file, "write -P 0xab 0 64k"));

    // Backed up, overwritten, restored: the first bytes are back.
    let target = BackupTargetRequest {
        pool: None,
        image: Some("data".into()),
        server: None,
    };
    done(&admin, admin.create_backup(&target).await.unwrap()).await;
    let backups = admin.backups().await.unwrap();
    assert_eq!(backups.len(), 1);
    assert!(backups[0].ready && !backups[0].scheduled);
    let id = backups[0].id;
    assert!(qemu_io(&file, "write -P 0xcd 0 64k"));
    assert!(!qemu_io(&file, "read -P 0xab 0 64k"));
    done(&admin, admin.restore_backup(id).await.unwrap()).await;
    assert!(qemu_io(&file, "read -P 0xab 0 64k"), "restored");

    // Others do not see it; read-only users cannot back up; bad requests change nothing.
    assert!(alice.backups().await.unwrap().is_empty());
    assert_eq!(code(alice.restore_backup(id).await).0, 404);
    assert_eq!(code(carol.create_backup(&target).await).0, 403);
    assert_eq!(
        code(admin.create_backup(&BackupTargetRequest::default()).await).0,
        400
    );
    let nope = BackupTargetRequest {
        pool: None,
        image: None,
        server: Some("nope".into()),
    };
    assert_eq!(code(admin.create_backup(&nope).await).0, 404);
    let bad = |hour, keep| ScheduleRequest {
        pool: None,
        image: Some("data".into()),
        server: None,
        hour_utc: hour,
        keep,
    };
    assert_eq!(
        code(admin.set_backup_schedule(&bad(Some(24), Some(1))).await).0,
        400
    );
    assert_eq!(
        code(admin.set_backup_schedule(&bad(Some(1), None)).await).0,
        400
    );
    assert!(admin.backup_schedules().await.unwrap().is_empty());

    // A daily schedule is listed, and dropped.
    let s = admin
        .set_backup_schedule(&bad(Some(2), Some(7)))
        .await
        .unwrap();
    assert_eq!((s.len(), s[0].hour_utc, s[0].keep), (1, 2, 7));
    assert!(admin
        .set_backup_schedule(&bad(None, None))
        .await
        .unwrap()
        .is_empty());

    // Removed: the copies go too.
    done(&admin, admin.remove_backup(id).await.unwrap()).await;
    assert!(admin.backups().await.unwrap().is_empty());
    assert!(!pool0.join(".backups").join(id.to_string()).exists());
    c.shutdown().await;
}
