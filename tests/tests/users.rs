//! Users and permissions on an in-process 3-node cluster: a permission matrix (admin, user alice,
//! other user bob, read-only carol × every users and nodes operation), bearer tokens for scripts, disabled
//! and removed users, validation of bad input, and the audit log.

use std::time::Duration;

use skiff_cluster::api::client::{ApiClient, ClientError};
use skiff_cluster::api::users::{BearerToken, Method, TokenClient};
use skiff_cluster::identity;
use skiff_cluster::state::users::ApiTokenRecord;
use skiff_cluster::state::{Command, CommandOutcome, Quotas, UserCommand, UserRole};
use skiff_tests::clients::credential_for;
use skiff_tests::inprocess::{ClusterSpec, TestCluster};

const LIMIT: Duration = Duration::from_secs(30);
const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a@x";

/// A valid ed25519 key line (blob of 32 bytes `n`), different per `n`.
fn key(n: u8) -> String {
    let blob = match n {
        1 => "AAAAC3NzaC1lZDI1NTE5AAAAIAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
        2 => "AAAAC3NzaC1lZDI1NTE5AAAAIAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC",
        3 => "AAAAC3NzaC1lZDI1NTE5AAAAIAMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD",
        4 => "AAAAC3NzaC1lZDI1NTE5AAAAIAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE",
        _ => "AAAAC3NzaC1lZDI1NTE5AAAAIDIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIy",
    };
    format!("ssh-ed25519 {blob} k{n}")
}

/// Status of a refusal, or 200 for a success.
fn status<T>(r: &Result<T, ClientError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(ClientError::Api { status, .. }) => *status,
        Err(e) => panic!("not an API answer: {e}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Admin,
    Alice,
    Bob,
    Carol,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_permissions_tokens_and_audit() {
    let c = TestCluster::start(ClusterSpec::new(3, 3)).await;
    c.wait_single_leader(LIMIT).await;
    let admin = c.client();
    for (n, r) in [
        ("alice", UserRole::User),
        ("bob", UserRole::User),
        ("carol", UserRole::ReadOnly),
    ] {
        let u = admin.add_user(n, r, Quotas::default()).await.unwrap();
        assert_eq!((u.name.as_str(), u.role), (n, r));
    }
    let alice_cred = credential_for(&admin, &c.cred, "alice").await;
    let alice = ApiClient::new(&alice_cred).unwrap();
    let bob = ApiClient::new(&credential_for(&admin, &c.cred, "bob").await).unwrap();
    let carol = ApiClient::new(&credential_for(&admin, &c.cred, "carol").await).unwrap();
    // Fixtures the denied callers aim at.
    admin.add_ssh_key("alice", KEY_A).await.unwrap();
    let fixture_token = admin
        .create_api_token("alice", "fixture", None)
        .await
        .unwrap();

    // ---- The permission matrix. ----
    let who = [
        (Who::Admin, &admin),
        (Who::Alice, &alice),
        (Who::Bob, &bob),
        (Who::Carol, &carol),
    ];
    let mut table: Vec<String> = Vec::new();
    for (w, client) in who {
        let allow_self = matches!(w, Who::Admin | Who::Alice);
        let is_admin = w == Who::Admin;
        let mut check = |op: &str, got: u16, allowed: bool| {
            table.push(format!("{op:<18} {w:?}: {got}"));
            if allowed {
                assert_eq!(got, 200, "{w:?} {op} should be allowed");
            } else {
                assert!(
                    matches!(got, 403 | 404),
                    "{w:?} {op} should be refused, got {got}"
                );
                if w == Who::Carol && op != "show alice" && op != "token list" {
                    assert_eq!(got, 403, "read-only {op} is forbidden");
                }
            }
        };
        // Reads.
        let list = client.users().await;
        check("list", status(&list), true);
        let names: Vec<String> = list.unwrap().into_iter().map(|u| u.name).collect();
        if is_admin {
            assert_eq!(names.len(), 4, "{names:?}");
        } else {
            assert_eq!(names, vec![format!("{w:?}").to_lowercase()]);
        }
        check(
            "show alice",
            status(&client.user("alice").await),
            allow_self,
        );
        let me = client.whoami().await.unwrap();
        assert_eq!(me.name, format!("{w:?}").to_lowercase());
        check(
            "token list",
            status(&client.tokens("alice").await),
            allow_self,
        );
        check("audit", status(&client.audit(Some(10)).await), is_admin);
        // Nodes: everyone sees them; only an admin changes them.
        check("node list", status(&client.nodes().await), true);
        check("cluster", status(&client.cluster().await), true);
        check(
            "node token",
            status(&client.create_token(600).await),
            is_admin,
        );
        check(
            "maintenance on",
            status(&client.set_maintenance("n2", true).await),
            is_admin,
        );
        check(
            "maintenance off",
            status(&client.set_maintenance("n2", false).await),
            is_admin,
        );
        check("evacuate", status(&client.evacuate("n2").await), is_admin);
        check(
            "node remove (none)",
            status(&client.remove_node("no-such-node").await),
            false,
        );
        // Admin-only writes.
        let tmp = format!("tmp-{w:?}").to_lowercase();
        let r = client
            .add_user(&tmp, UserRole::User, Quotas::default())
            .await;
        check("add", status(&r), is_admin);
        admin
            .add_user(
                &format!("victim-{w:?}").to_lowercase(),
                UserRole::User,
                Quotas::default(),
            )
            .await
            .ok();
        let r = client
            .remove_user(&format!("victim-{w:?}").to_lowercase())
            .await;
        check("remove", status(&r), is_admin);
        if is_admin {
            admin.remove_user(&tmp).await.unwrap();
        }
        check(
            "disable",
            status(&client.set_user_disabled("alice", true).await),
            is_admin,
        );
        check(
            "enable",
            status(&client.set_user_disabled("alice", false).await),
            is_admin,
        );
        check(
            "role",
            status(&client.set_user_role("alice", UserRole::User).await),
            is_admin,
        );
        let q = Quotas {
            memory_mib: Some(8192),
            vcpus: Some(8),
            storage_gib: None,
            external_ips: Some(1),
        };
        check(
            "quotas",
            status(&client.set_user_quotas("alice", &q).await),
            is_admin,
        );
        // Writes a user may do on themselves.
        let k = key(w as u8 + 1);
        let r = client.add_ssh_key("alice", &k).await;
        check("ssh-key add", status(&r), allow_self);
        let target = if allow_self {
            k.clone()
        } else {
            KEY_A.to_string()
        };
        check(
            "ssh-key remove",
            status(&client.remove_ssh_key("alice", &target).await),
            allow_self,
        );
        let kc = identity::new_key_and_csr("alice").unwrap();
        check(
            "credential",
            status(&client.issue_credential("alice", &kc.csr_pem, false).await),
            allow_self,
        );
        let r = client.create_api_token("alice", "matrix", Some(3600)).await;
        check("token create", status(&r), allow_self);
        let id = match r {
            Ok(t) => t.id,
            Err(_) => fixture_token.id.clone(),
        };
        check(
            "token revoke",
            status(&client.revoke_api_token("alice", &id).await),
            allow_self,
        );
    }
    eprintln!("{}", table.join("\n"));
    // The fixtures the denied callers aimed at are untouched.
    let a = admin.user("alice").await.unwrap();
    assert_eq!(a.ssh_keys, vec![KEY_A.to_string()]);
    assert!(a.tokens.iter().any(|t| t.id == fixture_token.id));
    assert!(admin.user("victim-bob").await.is_ok());
    assert_eq!(a.quotas.memory_mib, Some(8192));

    // ---- Bearer tokens for scripts. ----
    // The first endpoint is a follower: the token client follows it to the leader.
    let leader = c.wait_single_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let mut endpoints = vec![c.addrs[follower].to_string()];
    endpoints.extend(c.addrs.iter().map(|a| a.to_string()));
    let t = alice.create_api_token("alice", "ci", None).await.unwrap();
    assert!(t.token.starts_with("skt_"));
    let script = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &t.token).unwrap();
    let me: serde_json::Value = script
        .call::<(), _>(Method::GET, "/whoami", None)
        .await
        .unwrap();
    assert_eq!(me["name"], "alice");
    assert!(
        !me.to_string().contains(&t.token[t.token.len() - 20..]),
        "secrets are never shown again"
    );
    let added: serde_json::Value = script
        .call(
            Method::POST,
            "/users/alice/ssh-keys",
            Some(&serde_json::json!({"key": key(50)})),
        )
        .await
        .unwrap();
    assert_eq!(added["ssh_keys"].as_array().unwrap().len(), 2);
    let r = script
        .call::<(), serde_json::Value>(Method::GET, "/audit", None)
        .await;
    assert_eq!(status(&r), 403, "a user's token is not an admin's");
    // Revoked: refused.
    alice.revoke_api_token("alice", &t.id).await.unwrap();
    let r = script
        .call::<(), serde_json::Value>(Method::GET, "/whoami", None)
        .await;
    assert_eq!(status(&r), 401, "{r:?}");
    // Disabled user: token and certificate refused; enabled again: both work.
    let t2 = alice
        .create_api_token("alice", "ci2", Some(3600))
        .await
        .unwrap();
    let script = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &t2.token).unwrap();
    assert_eq!(status(&whoami(&script).await), 200);
    admin.set_user_disabled("alice", true).await.unwrap();
    assert_eq!(status(&whoami(&script).await), 401);
    assert_eq!(
        status(&alice.whoami().await),
        401,
        "a disabled user's certificate is refused"
    );
    admin.set_user_disabled("alice", false).await.unwrap();
    assert_eq!(status(&whoami(&script).await), 200);
    assert_eq!(status(&alice.whoami().await), 200);
    // A read-only user's token reads but never writes.
    let ct = admin
        .create_api_token("carol", "monitor", None)
        .await
        .unwrap();
    let monitor = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &ct.token).unwrap();
    assert_eq!(status(&whoami(&monitor).await), 200);
    let r = monitor
        .call::<_, serde_json::Value>(
            Method::POST,
            "/users/carol/tokens",
            Some(&serde_json::json!({})),
        )
        .await;
    assert_eq!(status(&r), 403);
    // An expired token is refused (made with a past expiry straight through Raft).
    let old = BearerToken::generate();
    let out = c
        .node(leader)
        .propose(
            "user:admin",
            Command::User(UserCommand::CreateToken {
                name: "alice".into(),
                token: ApiTokenRecord {
                    id: old.id.clone(),
                    secret_sha256: old.secret_sha256(),
                    label: "expired".into(),
                    created_at: 1,
                    expires_at: Some(2),
                },
            }),
        )
        .await
        .unwrap();
    assert_eq!(out, CommandOutcome::Done);
    let expired = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &old.to_string()).unwrap();
    assert_eq!(status(&whoami(&expired).await), 401);
    // A token with a wrong secret is refused.
    let forged = BearerToken {
        id: t2.id.clone(),
        secret: "0".repeat(64),
    };
    let forged = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &forged.to_string()).unwrap();
    assert_eq!(status(&whoami(&forged).await), 401);
    // A read-only user cannot change even themselves.
    assert_eq!(status(&carol.add_ssh_key("carol", &key(4)).await), 403);
    // Malformed tokens.
    for bad in ["skt_nothex_zz", "garbage"] {
        let s = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, bad).unwrap();
        assert_eq!(status(&whoami(&s).await), 401, "{bad}");
    }

    // ---- Bad input: clear 4xx, nothing changed. ----
    let at = admin
        .create_api_token("admin", "raw", Some(600))
        .await
        .unwrap();
    let raw = TokenClient::new(endpoints.clone(), &c.cred.ca_pem, &at.token).unwrap();
    let before = admin.users().await.unwrap();
    for (method, path, body) in [
        (
            "POST",
            "/users",
            serde_json::json!({"name": "Bad Name", "role": "user"}),
        ),
        (
            "POST",
            "/users",
            serde_json::json!({"name": "x", "role": "root"}),
        ),
        (
            "POST",
            "/users",
            serde_json::json!({"name": "x", "role": "user", "extra": 1}),
        ),
        (
            "POST",
            "/users",
            serde_json::json!({"name": "x", "role": "user", "quotas": {"memory_mib": -1}}),
        ),
        ("PUT", "/users/alice/quotas", serde_json::json!({"cpus": 3})),
        (
            "PUT",
            "/users/alice/role",
            serde_json::json!({"role": "god"}),
        ),
        (
            "POST",
            "/users/alice/ssh-keys",
            serde_json::json!({"key": "ssh-dss AAAA"}),
        ),
        (
            "POST",
            "/users/alice/ssh-keys",
            serde_json::json!({"key": "ssh-ed25519 bm90IGEga2V5"}),
        ),
        (
            "POST",
            "/users/alice/credentials",
            serde_json::json!({"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}),
        ),
        (
            "POST",
            "/users/alice/credentials",
            serde_json::json!({"csr_pem": "hello"}),
        ),
        (
            "POST",
            "/users/alice/tokens",
            serde_json::json!({"ttl_secs": 1}),
        ),
        (
            "POST",
            "/users/alice/tokens",
            serde_json::json!({"label": "x".repeat(65)}),
        ),
    ] {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let r = raw.call::<_, serde_json::Value>(m, path, Some(&body)).await;
        match &r {
            Err(ClientError::Api {
                status: 400,
                code,
                message,
            }) => {
                assert!(!code.is_empty() && !message.is_empty())
            }
            other => panic!("{method} {path} {body}: expected 400, got {other:?}"),
        }
    }
    let r = raw
        .call::<(), serde_json::Value>(Method::GET, "/audit?limit=0", None)
        .await;
    assert_eq!(status(&r), 400);
    let r = raw
        .call::<(), serde_json::Value>(Method::GET, "/audit?limit=2&x=1", None)
        .await;
    assert_eq!(status(&r), 400);
    let after = admin.users().await.unwrap();
    assert_eq!(before, after, "bad input changed nothing");
    // Conflicts: duplicate user, the last admin, oneself.
    assert_eq!(
        status(
            &admin
                .add_user("bob", UserRole::User, Quotas::default())
                .await
        ),
        409
    );
    assert_eq!(status(&admin.remove_user("admin").await), 409);
    assert_eq!(status(&admin.set_user_disabled("admin", true).await), 409);
    assert_eq!(
        status(&admin.set_user_role("admin", UserRole::User).await),
        409
    );
    assert_eq!(status(&admin.remove_user("nobody").await), 404);

    // ---- Removing a user revokes their certificate. ----
    admin.remove_user("bob").await.unwrap();
    let r = bob.whoami().await;
    assert!(
        matches!(&r, Err(ClientError::Api { status: 401, .. }))
            || r.as_ref().is_err_and(|e| e.is_unreachable()),
        "a removed user is refused: {r:?}"
    );

    // ---- The audit log: who did what. ----
    let audit = admin.audit(Some(10_000)).await.unwrap();
    let has = |actor: &str, op: &str, target: &str| {
        audit.iter().any(|r| {
            r.actor == actor && r.op == op && r.target.starts_with(target) && r.result == "ok"
        })
    };
    assert!(has("user:admin", "user.add", "carol"));
    assert!(has("user:admin", "user.disable", "alice"));
    assert!(has("user:admin", "user.enable", "alice"));
    assert!(
        has("user:alice", "user.ssh_key.add", "alice"),
        "the token's owner is the actor"
    );
    assert!(has("user:alice", "user.token.revoke", "alice"));
    assert!(has("user:alice", "user.credential.issue", "alice"));
    assert!(has("user:admin", "user.remove", "bob"));
    assert!(audit.iter().any(|r| r.actor == "user:admin"
        && r.op == "user.remove"
        && r.target == "admin"
        && r.result.starts_with("refused")));
    assert!(audit.windows(2).all(|w| w[0].seq < w[1].seq));
    let last2 = admin.audit(Some(2)).await.unwrap();
    assert_eq!(last2.len(), 2);
    assert_eq!(last2[1].seq, audit.last().unwrap().seq);
    // No secret ever reaches the audit log.
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains(&t2.token[t2.token.len() - 64..]));

    c.shutdown().await;
}

async fn whoami(s: &TokenClient) -> Result<serde_json::Value, ClientError> {
    s.call::<(), serde_json::Value>(Method::GET, "/whoami", None)
        .await
}
