//! Snapshots of every view and dialog (ratatui `TestBackend` + insta).

use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use skiff_cluster::api::events::ApiEvent;
use skiff_cluster::state::TaskState;

use super::*;
use crate::cockpit::app::{Key, Operation, Snapshot, Update};
use crate::cockpit::fixtures::{self, live_app, task, user};
use crate::cockpit::theme::Theme;
use crate::output::tests::sample_nodes;

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
    terminal
        .draw(|f| render(app, f))
        .expect("drawing never fails on a test backend");
    terminal
}

fn sized(mut app: App, width: u16, height: u16) -> App {
    app.resize(width, height);
    app
}

fn command(app: &mut App, line: &str) {
    app.handle_key(Key::Char(':'));
    for c in line.chars() {
        app.handle_key(Key::Char(c));
    }
    app.handle_key(Key::Enter);
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(Key::Char(c));
    }
}

fn on(view: &str) -> App {
    let mut app = live_app();
    command(&mut app, view);
    app
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    let buffer = t.backend().buffer();
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

macro_rules! snap {
    ($name:ident, $app:expr, $w:expr, $h:expr) => {
        #[test]
        fn $name() {
            let app = sized($app, $w, $h);
            // Next to the other cockpit snapshots, not in view/snapshots.
            insta::with_settings!({ snapshot_path => "../snapshots" }, {
                insta::assert_snapshot!(draw(&app, $w, $h).backend());
            });
        }
    };
}

// ----- overview -------------------------------------------------------------------------------

snap!(
    overview_connecting,
    App::new("c-42", "admin", "10.0.0.9:7000"),
    80,
    24
);
snap!(overview_live_80x24, live_app(), 80, 24);
snap!(
    overview_live_wide,
    {
        let mut app = live_app();
        for cpu in [500, 2000, 4000, 6000, 3000] {
            let mut nodes = sample_nodes();
            for n in &mut nodes {
                n.cpu_milli = cpu * u64::from(n.cores) / 8;
            }
            app.apply(Update::Event(ApiEvent::Nodes { nodes }));
        }
        app
    },
    120,
    30
);
snap!(
    overview_no_leader,
    {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        let mut cluster = fixtures::cluster();
        cluster.leader = None;
        let nodes = sample_nodes();
        app.apply(Update::Snapshot(Box::new(Snapshot::new(
            "10.0.0.2:7000",
            cluster,
            nodes,
        ))));
        app
    },
    80,
    24
);

// ----- lists: typical -------------------------------------------------------------------------

snap!(nodes_80x24, on("nodes"), 80, 24);
snap!(nodes_wide, on("nodes"), 120, 30);
snap!(servers_80x24, on("servers"), 80, 24);
snap!(servers_wide, on("servers"), 120, 30);
snap!(tasks_80x24, on("tasks"), 80, 24);
snap!(users_80x24, on("users"), 80, 24);
snap!(
    users_non_admin,
    {
        let mut app = App::new("c-42", "bob", "10.0.0.9:7000");
        let mut s = Snapshot::new("10.0.0.1:7000", fixtures::cluster(), sample_nodes());
        s.me = Some(user("bob", skiff_cluster::state::UserRole::User));
        app.apply(Update::Snapshot(Box::new(s)));
        command(&mut app, "users");
        app
    },
    80,
    24
);
snap!(
    events_80x24,
    {
        let mut app = on("events");
        app.apply(Update::Event(ApiEvent::State {
            records: fixtures::audit(),
        }));
        app.apply(Update::Event(ApiEvent::Task {
            task: task(12, "server.start", "db-1", TaskState::Running, 60),
        }));
        app.apply(Update::Event(ApiEvent::Lagged));
        app.apply(Update::Reconnecting {
            error: "the event stream from 10.0.0.1:7000 ended".into(),
        });
        app.apply(Update::Streaming {
            endpoint: "10.0.0.2:7000".into(),
        });
        app
    },
    80,
    24
);
snap!(audit_80x24, on("audit"), 80, 24);
snap!(pools_80x24, on("pools"), 80, 24);
snap!(images_80x24, on("images"), 80, 24);
snap!(backups_80x24, on("backups"), 80, 24);
snap!(connections_80x24, on("connections"), 80, 24);
snap!(connections_wide, on("connections"), 120, 30);
snap!(
    connections_sorted_by_external_descending,
    {
        let mut a = on("cn");
        for _ in 0..3 {
            a.handle_key(Key::Char('o'));
        }
        a.handle_key(Key::Char('O'));
        a
    },
    120,
    30
);
snap!(
    connection_delete_confirmation,
    {
        let mut a = on("connections");
        a.handle_key(Key::Char('G')); // web-ip, used by web-1
        a.handle_key(Key::Char('X'));
        typed(&mut a, "web");
        a
    },
    80,
    24
);
snap!(
    connection_deactivate_confirmation,
    {
        let mut a = on("connections");
        a.handle_key(Key::Char('j')); // db-lan
        a.handle_key(Key::Char('h'));
        a
    },
    80,
    24
);
snap!(
    describe_connection,
    {
        let mut a = on("connections");
        a.handle_key(Key::Char('G'));
        a.handle_key(Key::Char('d'));
        a
    },
    80,
    24
);
snap!(
    connections_read_only,
    on("connections").read_only(true),
    80,
    24
);
snap!(stacks_80x24, on("stacks"), 80, 24);
snap!(stacks_wide, on("st"), 120, 30);
snap!(stacks_read_only, on("stacks").read_only(true), 80, 24);
snap!(
    stack_delete_confirmation,
    {
        let mut a = on("stacks");
        a.handle_key(Key::Char('G')); // web
        a.handle_key(Key::Char('X'));
        typed(&mut a, "we");
        a
    },
    80,
    24
);
snap!(
    stack_stop_confirmation,
    {
        let mut a = on("stacks");
        a.handle_key(Key::Char('G'));
        a.handle_key(Key::Char('h'));
        a
    },
    80,
    24
);
snap!(
    describe_stack,
    {
        let mut a = on("stacks");
        a.handle_key(Key::Char('G'));
        a.handle_key(Key::Char('d'));
        a
    },
    80,
    24
);
snap!(
    stack_servers_drill_down,
    {
        let mut a = on("stacks");
        a.handle_key(Key::Char('G')); // web
        a.handle_key(Key::Enter);
        a
    },
    80,
    24
);
snap!(
    stack_operation_in_progress,
    {
        let mut app = on("stacks");
        app.apply(Update::TasksStarted {
            operation: Operation {
                op: ServerOp::StartStack,
                server: "web".into(),
                to: None,
            },
            task_ids: vec![21, 22],
        });
        app.apply(Update::Event(ApiEvent::Task {
            task: task(21, "server.start", "web-1", TaskState::Succeeded, 100),
        }));
        app.apply(Update::Event(ApiEvent::Task {
            task: task(22, "server.start", "web-2", TaskState::Running, 40),
        }));
        app
    },
    80,
    24
);
snap!(
    stack_operation_failed_task,
    {
        let mut app = on("stacks");
        app.apply(Update::TasksStarted {
            operation: Operation {
                op: ServerOp::StopStack,
                server: "web".into(),
                to: None,
            },
            task_ids: vec![21, 22],
        });
        app.apply(Update::Event(ApiEvent::Task {
            task: task(21, "server.shutdown", "web-1", TaskState::Failed, 30),
        }));
        app
    },
    80,
    24
);
snap!(
    revert_prompt,
    {
        let mut a = on("images");
        a.handle_key(Key::Char('G'));
        a.handle_key(Key::Char('V'));
        a
    },
    80,
    24
);
snap!(
    restore_confirmation,
    {
        let mut a = on("backups");
        a.handle_key(Key::Char('T'));
        a
    },
    80,
    24
);
snap!(
    node_servers_drill_down,
    {
        let mut app = on("nodes");
        app.handle_key(Key::Char('j'));
        app.handle_key(Key::Enter);
        app
    },
    80,
    24
);

// ----- lists: empty ---------------------------------------------------------------------------

fn empty_app() -> App {
    let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
    let mut s = Snapshot::new("10.0.0.9:7000", fixtures::cluster(), vec![]);
    s.servers = Some(vec![]);
    s.tasks = Some(vec![]);
    s.users = Some(vec![]);
    s.audit = Some(vec![]);
    s.connections = Some(vec![]);
    s.stacks = Some(vec![]);
    app.apply(Update::Snapshot(Box::new(s)));
    app
}

snap!(overview_empty, empty_app(), 80, 24);
snap!(
    nodes_empty,
    {
        let mut a = empty_app();
        command(&mut a, "nodes");
        a
    },
    80,
    24
);
snap!(
    servers_empty,
    {
        let mut a = empty_app();
        command(&mut a, "servers");
        a
    },
    80,
    24
);
snap!(
    tasks_empty,
    {
        let mut a = empty_app();
        command(&mut a, "tasks");
        a
    },
    80,
    24
);
snap!(
    users_empty,
    {
        let mut a = empty_app();
        command(&mut a, "users");
        a
    },
    80,
    24
);
snap!(
    events_empty,
    {
        let mut a = empty_app();
        command(&mut a, "events");
        a
    },
    80,
    24
);
snap!(
    audit_empty,
    {
        let mut a = empty_app();
        command(&mut a, "audit");
        a
    },
    80,
    24
);
snap!(
    connections_empty,
    {
        let mut a = empty_app();
        command(&mut a, "connections");
        a
    },
    80,
    24
);
snap!(
    stacks_empty,
    {
        let mut a = empty_app();
        command(&mut a, "stacks");
        a
    },
    80,
    24
);
snap!(
    pools_empty,
    {
        let mut a = empty_app();
        command(&mut a, "pools");
        a
    },
    80,
    24
);

// ----- 10,000 servers -------------------------------------------------------------------------

snap!(
    servers_10000_200x50,
    {
        let mut app = fixtures::app_with_servers(10_000);
        command(&mut app, "servers");
        app
    },
    200,
    50
);
snap!(
    servers_10000_80x24_scrolled,
    {
        let mut app = sized(fixtures::app_with_servers(10_000), 80, 24);
        command(&mut app, "servers");
        for _ in 0..300 {
            app.handle_key(Key::Ctrl('d'));
        }
        app
    },
    80,
    24
);

// ----- error states ---------------------------------------------------------------------------

snap!(
    unreachable_without_data,
    {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        app.apply(Update::Unreachable {
        error: "cannot reach the cluster at 10.0.0.9:7000, 10.0.0.8:7000: Connection refused (os error 111)".into(),
    });
        command(&mut app, "servers");
        app
    },
    80,
    24
);
snap!(
    unreachable_with_last_known_state,
    {
        let mut app = on("servers");
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at 10.0.0.1:7000: connection timed out".into(),
        });
        app
    },
    80,
    24
);
snap!(
    refused_no_leader,
    {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        app.apply(Update::Refused {
            endpoint: "10.0.0.2:7000".into(),
            error: "no leader is known right now (election in progress)".into(),
        });
        app
    },
    80,
    24
);
snap!(
    reconnecting_to_another_leader,
    {
        let mut app = on("nodes");
        app.apply(Update::Reconnecting {
            error: "the event stream from 10.0.0.1:7000 ended".into(),
        });
        app
    },
    80,
    24
);
snap!(
    operation_failed,
    {
        let mut app = on("servers");
        app.apply(Update::OperationFailed {
            operation: Operation {
                op: ServerOp::Start,
                server: "batch".into(),
                to: None,
            },
            error: "quota exceeded: alice may use 16384 MiB, this needs 18432 MiB".into(),
        });
        app
    },
    80,
    24
);
snap!(
    operation_in_progress,
    {
        let mut app = on("servers");
        app.apply(Update::OperationStarted {
            operation: Operation {
                op: ServerOp::Start,
                server: "db-1".into(),
                to: None,
            },
            task_id: 12,
        });
        app
    },
    80,
    24
);

snap!(
    connections_unreachable_with_last_known_state,
    {
        let mut app = on("connections");
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at 10.0.0.1:7000: connection timed out".into(),
        });
        app
    },
    80,
    24
);
snap!(
    stacks_unreachable_with_last_known_state,
    {
        let mut app = on("stacks");
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at 10.0.0.1:7000: connection timed out".into(),
        });
        app
    },
    80,
    24
);
snap!(
    connection_operation_failed,
    {
        let mut app = on("connections");
        app.apply(Update::OperationFailed {
            operation: Operation {
                op: ServerOp::DeleteConnection,
                server: "web-ip".into(),
                to: None,
            },
            error:
                "connection web-ip is in use by server web-1: detach it or remove the server first"
                    .into(),
        });
        app
    },
    80,
    24
);
snap!(
    connection_operation_done,
    {
        let mut app = on("connections");
        let mut connection = fixtures::connections().remove(3);
        connection.active = true;
        app.apply(Update::OperationDone {
            operation: Operation {
                op: ServerOp::ActivateConnection,
                server: "batch-out".into(),
                to: None,
            },
            connection,
        });
        app
    },
    80,
    24
);

// ----- dialogs and panes ----------------------------------------------------------------------

snap!(
    help_80x24,
    {
        let mut a = live_app();
        a.handle_key(Key::Char('?'));
        a
    },
    80,
    24
);
snap!(
    help_scrolled,
    {
        let mut a = live_app();
        a.handle_key(Key::Char('?'));
        for _ in 0..20 {
            a.handle_key(Key::Char('j'));
        }
        a
    },
    80,
    24
);
snap!(
    command_mode_completion,
    {
        let mut a = live_app();
        a.handle_key(Key::Char(':'));
        typed(&mut a, "s");
        a
    },
    80,
    24
);
snap!(
    command_unknown,
    {
        let mut a = live_app();
        command(&mut a, "frobnicate");
        a
    },
    80,
    24
);
snap!(
    filter_active,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('/'));
        typed(&mut a, "~wb");
        a
    },
    80,
    24
);
snap!(
    filter_kept_no_match,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('/'));
        typed(&mut a, "zzz");
        a.handle_key(Key::Enter);
        a
    },
    80,
    24
);
snap!(
    sorted_by_node_descending,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('o'));
        a.handle_key(Key::Char('o'));
        a.handle_key(Key::Char('O'));
        a
    },
    80,
    24
);
snap!(
    confirm_yes_no,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('h'));
        a
    },
    80,
    24
);
snap!(
    confirm_type_name_wrong,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('X'));
        typed(&mut a, "bach");
        a.handle_key(Key::Enter);
        a
    },
    80,
    24
);
snap!(
    move_prompt,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('m'));
        typed(&mut a, "node-2");
        a
    },
    80,
    24
);
snap!(
    describe_server,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('j'));
        a.handle_key(Key::Char('d'));
        a
    },
    80,
    24
);
snap!(
    task_log,
    {
        let mut a = on("tasks");
        a.handle_key(Key::Char('G'));
        a.handle_key(Key::Enter);
        a
    },
    80,
    24
);
snap!(
    console_pane,
    {
        let mut a = on("servers");
        a.handle_key(Key::Char('c'));
        a.apply(Update::ConsoleOutput(
        b"\x1b[0m[    0.000000] Linux version 6.12\r\n[    1.2] Run /init\r\n\r\nbusybox login: ".to_vec(),
    ));
        a.apply(Update::Notice(
            crate::cockpit::refresh::CONSOLE_READ_ONLY.into(),
        ));
        a
    },
    80,
    24
);
snap!(read_only_cockpit, on("servers").read_only(true), 80, 24);

#[test]
fn stacks_and_connections_are_live() {
    let text = screen_text(&draw(&sized(on("stacks"), 100, 24), 100, 24));
    assert!(!text.contains("not served"), "{text}");
    assert!(text.contains("The shop's database"), "{text}");
    let text = screen_text(&draw(&sized(on("connections"), 100, 24), 100, 24));
    assert!(!text.contains("not served"), "{text}");
    assert!(text.contains("203.0.113.10"), "{text}");
}

#[test]
fn stack_descriptions_cut_at_80_columns_end_in_an_ellipsis() {
    let text = screen_text(&draw(&sized(on("stacks"), 80, 24), 80, 24));
    let web = text
        .lines()
        .find(|l| l.contains(" web "))
        .expect("the web stack shown");
    assert!(web.trim_end_matches([' ', '│']).ends_with('…'), "{web}");
    let text = screen_text(&draw(&sized(on("stacks"), 160, 24), 160, 24));
    assert!(!text.contains('…'), "{text}");
}

#[test]
fn mono_theme_has_no_colour() {
    let mut app = on("servers").with_theme(Theme::mono());
    app.apply(Update::Unreachable {
        error: "down".into(),
    });
    let terminal = draw(&app, 80, 24);
    let buffer = terminal.backend().buffer();
    for cell in buffer.content() {
        assert_eq!(cell.fg, Color::Reset);
        assert_eq!(cell.bg, Color::Reset);
    }
}

#[test]
fn default_theme_marks_dead_nodes_red() {
    let app = on("nodes");
    let terminal = draw(&app, 80, 24);
    let text = screen_text(&terminal);
    let (y, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("node-3"))
        .expect("node-3 shown");
    let x = line
        .chars()
        .take_while(|_| true)
        .collect::<Vec<_>>()
        .windows(6)
        .position(|w| w.iter().collect::<String>() == "node-3")
        .expect("column");
    assert_eq!(
        terminal.backend().buffer()[(x as u16, y as u16)].fg,
        Color::Red
    );
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut apps = vec![
        live_app(),
        on("servers"),
        on("tasks"),
        on("images"),
        on("connections"),
        on("stacks"),
    ];
    let mut a = on("stacks");
    a.handle_key(Key::Char('X'));
    apps.push(a);
    let mut a = on("stacks");
    a.handle_key(Key::Char('d'));
    apps.push(a);
    let mut a = on("connections");
    a.handle_key(Key::Char('X'));
    apps.push(a);
    let mut a = on("servers");
    a.handle_key(Key::Char('X'));
    apps.push(a);
    let mut a = on("servers");
    a.handle_key(Key::Char('c'));
    apps.push(a);
    let mut a = live_app();
    a.handle_key(Key::Char('?'));
    apps.push(a);
    let mut a = on("servers");
    a.handle_key(Key::Char('d'));
    apps.push(a);
    for app in &apps {
        for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (0, 0), (80, 6)] {
            draw(app, w, h);
        }
    }
}

#[test]
fn an_out_of_range_cursor_does_not_panic() {
    let mut app = on("servers");
    if let Some(Screen::List(ls)) = app.stack.last_mut() {
        ls.cursor = 99_999;
        ls.offset = 99_999;
    }
    let text = screen_text(&draw(&app, 80, 24));
    assert!(text.contains("web-2"), "{text}");
}
