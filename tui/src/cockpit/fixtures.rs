//! Sample cluster data for the cockpit's tests.

use skiff_cluster::agentproto::{DomainPower, ServerFigures};
use skiff_cluster::api::servers::ServerView;
use skiff_cluster::api::tasks::{ActualView, Convergence, ServerActual};
use skiff_cluster::api::users::UserView;
use skiff_cluster::api::ClusterView;
use skiff_cluster::state::servers::{PowerState, ServerSpec};
use skiff_cluster::state::{AuditRecord, Quotas, TaskRecord, TaskState, UserRole};

use super::app::{App, Snapshot, Update};
use crate::output::tests::sample_nodes;

pub fn cluster() -> ClusterView {
    ClusterView {
        cluster_id: "c-42".into(),
        leader: Some("node-1".into()),
        term: 7,
        voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
        learners: vec![],
    }
}

pub fn server(name: &str, node: &str, desired: PowerState) -> ServerView {
    ServerView {
        name: name.into(),
        owner: "alice".into(),
        node: Some(node.into()),
        desired,
        spec: ServerSpec::new(2048, 2),
        created_at: 1_700_000_000,
        generation: 1,
    }
}

pub fn actual_of(
    s: &ServerView,
    power: Option<DomainPower>,
    convergence: Convergence,
) -> ServerActual {
    ServerActual {
        name: s.name.clone(),
        owner: s.owner.clone(),
        node: s.node.clone(),
        desired: s.desired,
        generation: s.generation,
        power,
        actual_generation: Some(s.generation),
        convergence,
        note: String::new(),
        figures: (power == Some(DomainPower::Running)).then(|| ServerFigures {
            name: s.name.clone(),
            cpu_milli: 500,
            memory_mib: 2048,
            ..ServerFigures::default()
        }),
    }
}

pub fn servers() -> (Vec<ServerView>, ActualView) {
    let views = vec![
        server("web-1", "node-1", PowerState::Running),
        server("web-2", "node-2", PowerState::Running),
        server("db-1", "node-2", PowerState::Running),
        server("batch", "node-3", PowerState::Stopped),
    ];
    let actual = ActualView {
        leader: "node-1".into(),
        updated_at: 1_700_000_100,
        servers: vec![
            actual_of(&views[0], Some(DomainPower::Running), Convergence::InSync),
            actual_of(&views[1], Some(DomainPower::Running), Convergence::InSync),
            actual_of(
                &views[2],
                Some(DomainPower::Shutoff),
                Convergence::Converging,
            ),
            actual_of(&views[3], None, Convergence::NodeDead),
        ],
        nodes: vec![],
    };
    (views, actual)
}

/// `count` servers spread over three nodes, all running.
pub fn many_servers(count: usize) -> (Vec<ServerView>, ActualView) {
    let mut views = Vec::with_capacity(count);
    let mut actual = ActualView::default();
    for i in 0..count {
        let s = server(
            &format!("srv-{i:05}"),
            &format!("node-{}", i % 3 + 1),
            PowerState::Running,
        );
        actual.servers.push(actual_of(
            &s,
            Some(DomainPower::Running),
            Convergence::InSync,
        ));
        views.push(s);
    }
    (views, actual)
}

pub fn task(id: u64, kind: &str, target: &str, state: TaskState, progress: u8) -> TaskRecord {
    TaskRecord {
        id,
        owner: "alice".into(),
        kind: kind.into(),
        target: target.into(),
        node: Some("node-2".into()),
        state,
        progress,
        log: vec!["defining the domain".into(), "starting".into()],
        result: match state {
            TaskState::Failed => Some("libvirt: not enough memory".into()),
            TaskState::Succeeded => Some("ok".into()),
            _ => None,
        },
        created_at: 1_700_000_000,
        updated_at: 1_700_000_010 + id,
    }
}

pub fn tasks() -> Vec<TaskRecord> {
    vec![
        task(12, "server.start", "db-1", TaskState::Running, 40),
        task(11, "server.create", "web-2", TaskState::Succeeded, 100),
        task(10, "server.start", "batch", TaskState::Failed, 30),
    ]
}

pub fn user(name: &str, role: UserRole) -> UserView {
    UserView {
        name: name.into(),
        role,
        disabled: false,
        quotas: Quotas {
            memory_mib: Some(16384),
            vcpus: Some(8),
            ..Quotas::default()
        },
        ssh_keys: vec!["ssh-ed25519 AAAA alice@laptop".into()],
        credentials: vec!["0a1b".into()],
        tokens: vec![],
    }
}

pub fn audit() -> Vec<AuditRecord> {
    vec![AuditRecord {
        seq: 41,
        at: 1_700_000_050,
        actor: "user:alice".into(),
        op: "server.create".into(),
        target: "web-2".into(),
        result: "ok".into(),
    }]
}

/// Images: a master, a clone of it, one busy with a task.
pub fn images() -> Vec<skiff_cluster::api::images::ImageView> {
    let image = |name: &str, master: bool, parent: Option<&str>, busy: Option<u64>| {
        skiff_cluster::api::images::ImageView {
            name: name.into(),
            owner: "admin".into(),
            node: "node-1".into(),
            pool: "local".into(),
            size_gib: 10,
            master,
            parent: parent.map(Into::into),
            children: Vec::new(),
            snapshots: if master { vec![] } else { vec!["clean".into()] },
            created_at: 1_700_000_000,
            ready: true,
            busy_task: busy,
        }
    };
    vec![
        image("debian-12", true, None, None),
        image("web-data", false, Some("debian-12"), None),
        image("scratch", false, None, Some(42)),
    ]
}

/// Backups: one of an image (manual), one of a server (daily).
pub fn backups() -> Vec<skiff_cluster::api::backups::BackupView> {
    use skiff_cluster::state::backups::BackupTarget;
    let backup =
        |id: u64, target: BackupTarget, scheduled: bool| skiff_cluster::api::backups::BackupView {
            id,
            target,
            owner: "admin".into(),
            node: "node-1".into(),
            files: vec!["web-data".into()],
            created_at: 1_700_000_000 + id * 86_400,
            scheduled,
            ready: true,
            busy_task: None,
        };
    vec![
        backup(
            1,
            BackupTarget::Image {
                name: "web-data".into(),
            },
            false,
        ),
        backup(
            2,
            BackupTarget::Server {
                name: "web-1".into(),
            },
            true,
        ),
    ]
}

/// Connections of every kind: active and not, used by a server and not, an IP mapping with
/// ports and one with all of them.
pub fn connections() -> Vec<skiff_cluster::api::connections::ConnectionView> {
    use skiff_cluster::state::ConnectionKind;
    let connection = |name: &str, kind: ConnectionKind, n: u8, external: Option<u8>| {
        skiff_cluster::api::connections::ConnectionView {
            name: name.into(),
            owner: "alice".into(),
            kind,
            internal_ip: std::net::Ipv4Addr::new(10, 47, 0, n),
            external_ip: external.map(|e| std::net::Ipv4Addr::new(203, 0, 113, e)),
            ports: Vec::new(),
            active: true,
            server: None,
            created_at: 1_700_000_000 + u64::from(n) * 3_600,
        }
    };
    let mut web_ip = connection("web-ip", ConnectionKind::ExternalIp, 2, Some(10));
    web_ip.server = Some("web-1".into());
    let mut web_http = connection("web-http", ConnectionKind::IpMapping, 3, Some(11));
    web_http.ports = vec![443, 80];
    web_http.server = Some("web-2".into());
    let mut db_lan = connection("db-lan", ConnectionKind::InternalIp, 4, None);
    db_lan.server = Some("db-1".into());
    let mut batch_out = connection("batch-out", ConnectionKind::Gateway, 5, None);
    batch_out.active = false;
    batch_out.owner = "bob".into();
    let mut ssh_all = connection("ssh-all", ConnectionKind::IpMapping, 6, Some(12));
    ssh_all.active = false;
    ssh_all.owner = "admin".into();
    vec![web_ip, web_http, db_lan, batch_out, ssh_all]
}

/// The address plan that goes with [`connections`].
pub fn network() -> skiff_cluster::api::connections::NetworkView {
    skiff_cluster::api::connections::NetworkView {
        internal_cidr: "10.47.0.0/16".into(),
        internal_gateway: std::net::Ipv4Addr::new(10, 47, 0, 1),
        internal_used: 5,
        external_pool: vec!["203.0.113.10-203.0.113.20".into()],
        external_total: 11,
        external_used: 3,
    }
}

/// Stacks: `web` (web-1 and web-2, both running; a description too long for 80 columns), `db`
/// (db-1, which should run but was seen shut off) and bob's `lab`, whose servers the servers list
/// does not hold (so its own copy says what runs).
pub fn stacks() -> Vec<skiff_cluster::api::stacks::StackView> {
    let stack = |name: &str, owner: &str, description: &str, servers: Vec<ServerView>| {
        skiff_cluster::api::stacks::StackView {
            name: name.into(),
            owner: owner.into(),
            description: description.into(),
            created_at: 1_700_000_000 + servers.len() as u64 * 86_400,
            servers,
        }
    };
    let (views, _) = servers();
    let of = |name: &str| {
        views
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .expect("a fixture server")
    };
    let mut lab_a = server("lab-a", "node-3", PowerState::Running);
    lab_a.owner = "bob".into();
    let mut lab_b = server("lab-b", "node-3", PowerState::Stopped);
    lab_b.owner = "bob".into();
    vec![
        stack(
            "web",
            "alice",
            "The shop's web front: two servers behind the external address web-ip",
            vec![of("web-1"), of("web-2")],
        ),
        stack("db", "alice", "The shop's database", vec![of("db-1")]),
        stack("lab", "bob", "", vec![lab_a, lab_b]),
    ]
}

/// A full round as an admin would get it.
pub fn snapshot() -> Update {
    let (views, actual) = servers();
    let mut s = Snapshot::new("10.0.0.1:7000", cluster(), sample_nodes());
    s.servers = Some(views);
    s.actual = Some(actual);
    s.tasks = Some(tasks());
    s.me = Some(user("admin", UserRole::Admin));
    s.users = Some(vec![
        user("alice", UserRole::User),
        user("admin", UserRole::Admin),
    ]);
    s.audit = Some(audit());
    s.images = Some(images());
    s.backups = Some(backups());
    s.connections = Some(connections());
    s.network = Some(network());
    s.stacks = Some(stacks());
    Update::Snapshot(Box::new(s))
}

/// An app that got one full round.
pub fn live_app() -> App {
    let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
    app.apply(snapshot());
    app
}

/// An app showing `count` servers.
pub fn app_with_servers(count: usize) -> App {
    let (views, actual) = many_servers(count);
    let mut s = Snapshot::new("10.0.0.1:7000", cluster(), sample_nodes());
    s.servers = Some(views);
    s.actual = Some(actual);
    s.me = Some(user("admin", UserRole::Admin));
    let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
    app.apply(Update::Snapshot(Box::new(s)));
    app
}
