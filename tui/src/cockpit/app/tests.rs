//! Key handling and data updates of [`App`], binding by binding.

use skiff_cluster::agentproto::ServerFigures;
use skiff_cluster::state::servers::PowerState;
use skiff_cluster::state::TaskState;

use super::*;
use crate::cockpit::fixtures::{self, live_app, server, task, user};
use crate::output::tests::{sample_node, sample_nodes};

fn keys(app: &mut App, keys: &[Key]) -> Effect {
    let mut last = Effect::None;
    for k in keys {
        last = app.handle_key(*k);
    }
    last
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(Key::Char(c));
    }
}

fn command(app: &mut App, line: &str) -> Effect {
    app.handle_key(Key::Char(':'));
    typed(app, line);
    app.handle_key(Key::Enter)
}

fn selected(app: &App) -> Option<String> {
    app.list().and_then(|ls| ls.selected.clone())
}

fn shown(app: &App) -> Vec<String> {
    let ls = app.list().expect("a list");
    ls.rows
        .iter()
        .filter_map(|&i| views::key(app, ls.view, i))
        .collect()
}

fn servers_app() -> App {
    let mut app = live_app();
    command(&mut app, "servers");
    app
}

#[test]
fn first_snapshot_fills_every_view() {
    let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
    assert_eq!(app.link, Link::Connecting);
    assert_eq!(app.screen(), &Screen::Overview);
    app.apply(fixtures::snapshot());
    assert_eq!(app.link, Link::Live);
    assert_eq!(app.endpoint, "10.0.0.1:7000");
    assert_eq!(app.role, Some(UserRole::Admin));
    let names: Vec<_> = app.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-1", "node-2", "node-3"]);
    let names: Vec<_> = app.servers.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["batch", "db-1", "web-1", "web-2"]);
    assert!(app.servers[2].figures.is_some());
    assert_eq!(app.pools.len(), 3);
    assert_eq!(app.users.len(), 2);
    assert_eq!(app.tasks.len(), 3);
    assert_eq!(app.audit.len(), 1);
    let names: Vec<_> = app.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["batch-out", "db-lan", "ssh-all", "web-http", "web-ip"]
    );
    assert!(app.network.is_some());
    let names: Vec<_> = app.stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "lab", "web"]);
    assert_eq!(app.history["node-1"].memory.len(), 1);
}

#[test]
fn a_round_without_connections_keeps_the_previous_copy() {
    let mut app = live_app();
    let s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(app.connections.len(), 5);
    assert!(app.network.is_some());
}

#[test]
fn a_non_admin_sees_only_themselves() {
    let mut app = App::new("c", "bob", "e");
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.me = Some(user("bob", UserRole::User));
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(app.users.len(), 1);
    assert_eq!(app.users[0].name, "bob");
    assert_eq!(app.role, Some(UserRole::User));
}

#[test]
fn command_mode_switches_views() {
    let mut app = live_app();
    for (line, view) in [
        ("nodes", ViewKind::Nodes),
        ("vm", ViewKind::Servers),
        ("task", ViewKind::Tasks),
        ("users", ViewKind::Users),
        ("ev", ViewKind::Events),
        ("audit", ViewKind::Audit),
        ("pool", ViewKind::Pools),
        ("img", ViewKind::Images),
        ("bk", ViewKind::Backups),
        ("connections", ViewKind::Connections),
        ("conn", ViewKind::Connections),
        ("cn", ViewKind::Connections),
        ("stacks", ViewKind::Stacks),
        ("stack", ViewKind::Stacks),
        ("st", ViewKind::Stacks),
    ] {
        assert_eq!(command(&mut app, line), Effect::Redraw);
        assert_eq!(app.list().map(|ls| ls.view), Some(view), "{line}");
        assert_eq!(app.stack.len(), 1);
    }
    command(&mut app, "ov");
    assert_eq!(app.screen(), &Screen::Overview);
    command(&mut app, "nope");
    assert_eq!(
        app.status.as_ref().map(|s| (s.level, s.text.as_str())),
        Some((Level::Error, "unknown command :nope (try :help)"))
    );
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(command(&mut app, "q"), Effect::Quit);
    assert_eq!(command(&mut app, "quit"), Effect::Quit);
    command(&mut app, "help");
    assert_eq!(app.mode, Mode::Help { scroll: 0 });
}

#[test]
fn command_mode_completes_and_cancels() {
    let mut app = live_app();
    app.handle_key(Key::Char(':'));
    typed(&mut app, "serv");
    app.handle_key(Key::Tab);
    assert_eq!(
        app.mode,
        Mode::Command {
            input: "server".into()
        }
    );
    app.handle_key(Key::Char('s'));
    app.handle_key(Key::Backspace);
    app.handle_key(Key::Enter);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Servers));
    // Esc leaves without doing anything; so does backspace on an empty line.
    app.handle_key(Key::Char(':'));
    typed(&mut app, "nodes");
    app.handle_key(Key::Esc);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Servers));
    app.handle_key(Key::Char(':'));
    app.handle_key(Key::Backspace);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn movement_keys() {
    let mut app = servers_app();
    assert_eq!(selected(&app).as_deref(), Some("batch"));
    for (key, want) in [
        (Key::Char('j'), "db-1"),
        (Key::Down, "web-1"),
        (Key::Char('k'), "db-1"),
        (Key::Up, "batch"),
        (Key::Up, "batch"),
        (Key::Char('G'), "web-2"),
        (Key::Down, "web-2"),
        (Key::Char('g'), "batch"),
        (Key::End, "web-2"),
        (Key::Home, "batch"),
        (Key::Ctrl('d'), "web-2"),
        (Key::Ctrl('u'), "batch"),
        (Key::PageDown, "web-2"),
        (Key::PageUp, "batch"),
    ] {
        assert_eq!(app.handle_key(key), Effect::Redraw, "{key:?}");
        assert_eq!(selected(&app).as_deref(), Some(want), "{key:?}");
    }
}

#[test]
fn half_page_moves_and_scrolls_in_a_long_list() {
    let mut app = fixtures::app_with_servers(1000);
    app.resize(80, 24);
    command(&mut app, "servers");
    let page = app.page_rows();
    assert_eq!(page, 17);
    app.handle_key(Key::Ctrl('d'));
    assert_eq!(app.list().map(|ls| ls.cursor), Some(page / 2));
    for _ in 0..4 {
        app.handle_key(Key::Ctrl('d'));
    }
    let ls = app.list().expect("list");
    assert_eq!(ls.cursor, 5 * (page / 2));
    assert!(ls.offset <= ls.cursor && ls.cursor < ls.offset + page);
    app.handle_key(Key::Char('G'));
    let ls = app.list().expect("list");
    assert_eq!((ls.cursor, ls.offset), (999, 1000 - page));
    assert_eq!(ls.selected.as_deref(), Some("srv-00999"));
}

#[test]
fn selection_follows_the_object_across_refreshes() {
    let mut app = servers_app();
    keys(&mut app, &[Key::Char('j')]);
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
    // A new server sorts before the selected one: the selection stays on db-1.
    let (mut views, actual) = fixtures::servers();
    views.push(server("aaa", "node-1", PowerState::Running));
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.servers = Some(views.clone());
    s.actual = Some(actual.clone());
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
    assert_eq!(app.list().map(|ls| ls.cursor), Some(2));
    // db-1 leaves: the selection stays on its row.
    views.retain(|v| v.name != "db-1");
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.servers = Some(views);
    s.actual = Some(actual);
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(selected(&app).as_deref(), Some("web-1"));
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.servers = Some(vec![]);
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(selected(&app), None);
    assert_eq!(app.handle_key(Key::Down), Effect::Redraw);
}

#[test]
fn filter_substring_fuzzy_invert() {
    let mut app = servers_app();
    app.handle_key(Key::Char('/'));
    assert_eq!(app.mode, Mode::Filter);
    typed(&mut app, "web");
    assert_eq!(shown(&app), ["web-1", "web-2"]);
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(shown(&app), ["web-1", "web-2"]);
    // Filters see every column: node names too.
    app.handle_key(Key::Char('/'));
    for _ in 0..3 {
        app.handle_key(Key::Backspace);
    }
    typed(&mut app, "node-3");
    assert_eq!(shown(&app), ["batch"]);
    for _ in 0..6 {
        app.handle_key(Key::Backspace);
    }
    typed(&mut app, "~dbn2");
    assert_eq!(shown(&app), ["db-1"]);
    for _ in 0..5 {
        app.handle_key(Key::Backspace);
    }
    typed(&mut app, "!web");
    assert_eq!(shown(&app), ["batch", "db-1"]);
    // Esc while typing clears it.
    app.handle_key(Key::Esc);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(shown(&app).len(), 4);
}

#[test]
fn the_selection_survives_a_filter_that_keeps_it() {
    let mut app = servers_app();
    app.handle_key(Key::Char('G'));
    app.handle_key(Key::Char('/'));
    typed(&mut app, "web");
    assert_eq!(selected(&app).as_deref(), Some("web-2"));
    app.handle_key(Key::Esc);
    assert_eq!(selected(&app).as_deref(), Some("web-2"));
    // A filter that hides it moves the selection to the first row shown.
    app.handle_key(Key::Char('/'));
    typed(&mut app, "db");
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
}

#[test]
fn esc_clears_the_filter_before_going_back() {
    let mut app = live_app();
    command(&mut app, "nodes");
    app.handle_key(Key::Enter); // node-1's servers
    app.handle_key(Key::Char('/'));
    typed(&mut app, "zzz");
    app.handle_key(Key::Enter);
    assert!(shown(&app).is_empty());
    app.handle_key(Key::Esc);
    assert_eq!(shown(&app), ["web-1"]);
    assert_eq!(app.stack.len(), 2);
    app.handle_key(Key::Esc);
    assert_eq!(app.stack.len(), 1);
    assert_eq!(app.handle_key(Key::Esc), Effect::None);
}

#[test]
fn the_filter_needs_a_list() {
    let mut app = live_app();
    app.handle_key(Key::Char('/'));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Warn));
}

#[test]
fn sort_cycles_and_reverses_keeping_the_selection() {
    let mut app = servers_app();
    keys(&mut app, &[Key::Char('j')]); // db-1
    app.handle_key(Key::Char('O'));
    assert_eq!(shown(&app), ["web-2", "web-1", "db-1", "batch"]);
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
    assert_eq!(app.list().map(|ls| ls.cursor), Some(2));
    // Next column (owner, all alike: ties stay by name), then node.
    app.handle_key(Key::Char('o'));
    app.handle_key(Key::Char('o'));
    let ls = app.list().expect("list");
    assert_eq!((ls.sort_col, ls.sort_desc), (2, false));
    assert_eq!(shown(&app), ["web-1", "db-1", "web-2", "batch"]);
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
    // Around the columns back to the name.
    for _ in 0..6 {
        app.handle_key(Key::Char('o'));
    }
    assert_eq!(app.list().map(|ls| ls.sort_col), Some(0));
}

#[test]
fn drill_down_back_and_breadcrumbs() {
    let mut app = live_app();
    assert_eq!(crate::cockpit::view::breadcrumbs(&app), "overview");
    app.handle_key(Key::Enter);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Nodes));
    app.handle_key(Key::Char('j')); // node-2
    app.handle_key(Key::Enter);
    assert_eq!(shown(&app), ["db-1", "web-2"]);
    assert_eq!(
        crate::cockpit::view::breadcrumbs(&app),
        "overview › nodes › servers@node-2"
    );
    app.handle_key(Key::Enter);
    assert!(matches!(app.screen(), Screen::Describe { key, .. } if key == "db-1"));
    assert_eq!(
        crate::cockpit::view::breadcrumbs(&app),
        "overview › nodes › servers@node-2 › describe db-1"
    );
    app.handle_key(Key::Char('j'));
    assert!(matches!(app.screen(), Screen::Describe { scroll: 1, .. }));
    app.handle_key(Key::Esc);
    assert_eq!(selected(&app).as_deref(), Some("db-1"));
    app.handle_key(Key::Esc);
    assert_eq!(selected(&app).as_deref(), Some("node-2"));
    app.handle_key(Key::Esc);
    assert_eq!(app.screen(), &Screen::Overview);
}

#[test]
fn tasks_drill_into_their_log_and_d_describes() {
    let mut app = live_app();
    command(&mut app, "tasks");
    assert_eq!(shown(&app), ["12", "11", "10"]);
    app.handle_key(Key::Enter);
    assert_eq!(
        app.screen(),
        &Screen::TaskLog {
            id: 12,
            scroll: None
        }
    );
    app.handle_key(Key::Char('g'));
    assert_eq!(
        app.screen(),
        &Screen::TaskLog {
            id: 12,
            scroll: Some(0)
        }
    );
    app.handle_key(Key::Char('G'));
    assert_eq!(
        app.screen(),
        &Screen::TaskLog {
            id: 12,
            scroll: None
        }
    );
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('d'));
    assert!(
        matches!(app.screen(), Screen::Describe { view: ViewKind::Tasks, key, .. } if key == "12")
    );
    for view in ["users", "events", "audit", "pools", "nodes"] {
        command(&mut app, view);
        app.handle_key(Key::Char('d'));
        if view != "events" {
            assert!(matches!(app.screen(), Screen::Describe { .. }), "{view}");
        }
    }
}

#[test]
fn non_destructive_operations_ask_y() {
    let mut app = servers_app();
    keys(&mut app, &[Key::Char('G')]); // web-2
    for (key, op) in [
        ('s', ServerOp::Start),
        ('h', ServerOp::Shutdown),
        ('R', ServerOp::Reboot),
        ('p', ServerOp::Suspend),
        ('u', ServerOp::Resume),
    ] {
        assert_eq!(app.handle_key(Key::Char(key)), Effect::Redraw);
        assert!(matches!(&app.mode, Mode::Confirm(c) if c.operation.op == op));
        assert_eq!(
            app.handle_key(Key::Char('y')),
            Effect::Operate(Operation {
                op,
                server: "web-2".into(),
                to: None
            })
        );
        assert_eq!(app.mode, Mode::Normal);
        // Any other key cancels.
        app.handle_key(Key::Char(key));
        assert_eq!(app.handle_key(Key::Char('n')), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(
            app.status.as_ref().map(|s| s.text.as_str()),
            Some("cancelled")
        );
    }
}

#[test]
fn destructive_operations_need_the_name() {
    for (key, op) in [('K', ServerOp::ForceOff), ('X', ServerOp::Delete)] {
        let mut app = servers_app();
        keys(&mut app, &[Key::Char('j')]); // db-1
        app.handle_key(Key::Char(key));
        // y is not enough.
        assert_eq!(app.handle_key(Key::Char('y')), Effect::Redraw);
        assert!(matches!(app.mode, Mode::Confirm(_)));
        app.handle_key(Key::Backspace);
        typed(&mut app, "db-2");
        assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
        let Mode::Confirm(c) = &app.mode else {
            panic!("the dialog closed on a wrong name");
        };
        assert!(c.error.as_deref().is_some_and(|e| e.contains("type db-1")));
        assert!(c.typed.is_empty());
        typed(&mut app, "db-1");
        assert_eq!(
            app.handle_key(Key::Enter),
            Effect::Operate(Operation {
                op,
                server: "db-1".into(),
                to: None
            })
        );
        // Esc cancels.
        app.handle_key(Key::Char(key));
        typed(&mut app, "db-1");
        assert_eq!(app.handle_key(Key::Esc), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal);
    }
}

#[test]
fn move_asks_for_a_destination() {
    let mut app = servers_app();
    app.handle_key(Key::Char('m'));
    assert!(matches!(&app.mode, Mode::MoveTo { server, .. } if server == "batch"));
    typed(&mut app, "node-9");
    app.handle_key(Key::Enter);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("no node named node-9")
    );
    for _ in 0..6 {
        app.handle_key(Key::Backspace);
    }
    typed(&mut app, "node-");
    app.handle_key(Key::Tab); // three candidates: unchanged
    app.handle_key(Key::Char('2'));
    app.handle_key(Key::Enter);
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::Move,
            server: "batch".into(),
            to: Some("node-2".into())
        })
    );
    // Empty: the scheduler chooses.
    app.handle_key(Key::Char('m'));
    app.handle_key(Key::Enter);
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::Move,
            server: "batch".into(),
            to: None
        })
    );
    app.handle_key(Key::Char('m'));
    app.handle_key(Key::Esc);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn operations_need_a_selected_server() {
    let mut app = live_app();
    command(&mut app, "nodes");
    assert_eq!(app.handle_key(Key::Char('s')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Warn));
    assert_eq!(app.handle_key(Key::Char('c')), Effect::Redraw);
    assert_eq!(app.stack.len(), 1);
}

#[test]
fn read_only_refuses_operations() {
    let mut app = servers_app().read_only(true);
    for key in ['s', 'h', 'K', 'R', 'p', 'u', 'm', 'X'] {
        assert_eq!(app.handle_key(Key::Char(key)), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal, "{key}");
        assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Error));
    }
    // The read-only role too, even with a dialog already open.
    let mut app = servers_app();
    app.handle_key(Key::Char('s'));
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.me = Some(user("admin", UserRole::ReadOnly));
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(app.handle_key(Key::Char('y')), Effect::Redraw);
    assert!(app
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("read-only role")));
    assert_eq!(app.handle_key(Key::Char('X')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn operation_results_show_in_the_status_line() {
    let mut app = servers_app();
    let operation = Operation {
        op: ServerOp::Start,
        server: "batch".into(),
        to: None,
    };
    app.apply(Update::OperationFailed {
        operation: operation.clone(),
        error: "quota exceeded: memory".into(),
    });
    assert_eq!(
        app.status,
        Some(Status {
            level: Level::Error,
            text: "start batch failed: quota exceeded: memory".into()
        })
    );
    app.apply(Update::OperationStarted {
        operation,
        task_id: 13,
    });
    assert_eq!(app.status, None);
    assert_eq!(app.tracked.last().map(|t| t.1.clone()), Some(vec![13]));
    app.apply(Update::Event(ApiEvent::Task {
        task: task(13, "server.start", "batch", TaskState::Running, 50),
    }));
    assert_eq!(app.tasks[0].id, 13);
    assert_eq!(app.events.back().map(|e| e.kind), Some("task"));
}

#[test]
fn console_mode_sends_keys_and_leaves_with_ctrl_bracket() {
    let mut app = servers_app();
    assert_eq!(
        app.handle_key(Key::Char('c')),
        Effect::OpenConsole("batch".into())
    );
    assert!(matches!(app.screen(), Screen::Console(p) if p.server == "batch"));
    // Every key goes to the server, even q and esc.
    assert_eq!(
        app.handle_key(Key::Char('q')),
        Effect::ConsoleInput(b"q".to_vec())
    );
    assert_eq!(app.handle_key(Key::Esc), Effect::ConsoleInput(vec![0x1b]));
    assert_eq!(
        app.handle_key(Key::Enter),
        Effect::ConsoleInput(b"\r".to_vec())
    );
    assert_eq!(
        app.handle_key(Key::Ctrl('c')),
        Effect::ConsoleInput(vec![3])
    );
    app.apply(Update::ConsoleOutput(b"login: ".to_vec()));
    app.apply(Update::Notice(
        crate::cockpit::refresh::CONSOLE_READ_ONLY.into(),
    ));
    let Screen::Console(pane) = app.screen() else {
        panic!("not in the console");
    };
    assert_eq!(pane.output.tail(1), ["login: "]);
    assert!(pane.notice.is_some());
    app.apply(Update::ConsoleClosed("server stopped".into()));
    assert_eq!(app.handle_key(Key::Ctrl(']')), Effect::CloseConsole);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Servers));
}

#[test]
fn help_opens_scrolls_and_closes() {
    let mut app = live_app();
    app.handle_key(Key::Char('?'));
    assert_eq!(app.mode, Mode::Help { scroll: 0 });
    app.handle_key(Key::Char('j'));
    app.handle_key(Key::Ctrl('d'));
    assert_eq!(app.mode, Mode::Help { scroll: 11 });
    app.handle_key(Key::Char('k'));
    assert_eq!(app.mode, Mode::Help { scroll: 10 });
    app.handle_key(Key::Esc);
    assert_eq!(app.mode, Mode::Normal);
    app.handle_key(Key::Char('?'));
    assert_eq!(app.handle_key(Key::Ctrl('c')), Effect::Quit);
}

#[test]
fn quit_and_refresh() {
    let mut app = live_app();
    assert_eq!(app.handle_key(Key::Char('q')), Effect::Quit);
    assert_eq!(app.handle_key(Key::Ctrl('c')), Effect::Quit);
    assert_eq!(app.handle_key(Key::Char('r')), Effect::Refresh);
    assert_eq!(app.handle_key(Key::Char('x')), Effect::None);
    assert_eq!(app.handle_key(Key::Left), Effect::None);
}

#[test]
fn rebound_keys() {
    let keymap = crate::cockpit::keymap::KeyMap::from_toml("start = \"S\"\nquit = \"ctrl-q\"")
        .expect("valid");
    let mut app = servers_app().with_keymap(keymap);
    assert_eq!(app.handle_key(Key::Char('q')), Effect::None);
    assert_eq!(app.handle_key(Key::Ctrl('q')), Effect::Quit);
    app.handle_key(Key::Char('s'));
    assert_eq!(app.mode, Mode::Normal);
    app.handle_key(Key::Char('S'));
    assert!(matches!(app.mode, Mode::Confirm(_)));
}

#[test]
fn stream_events_apply_deltas() {
    let mut app = live_app();
    // Nodes: new figures and one more history sample.
    let mut nodes = sample_nodes();
    nodes[1].cpu_milli = 4000;
    app.apply(Update::Event(ApiEvent::Nodes { nodes }));
    assert_eq!(app.history["node-1"].cpu.len(), 2);
    assert_eq!(app.history["node-1"].cpu.back(), Some(&50));
    // Servers: figures of the running ones; the others lose theirs.
    app.apply(Update::Event(ApiEvent::Servers {
        servers: vec![ServerFigures {
            name: "db-1".into(),
            cpu_milli: 1000,
            memory_mib: 1024,
            ..ServerFigures::default()
        }],
    }));
    let db = app
        .servers
        .iter()
        .find(|s| s.name() == "db-1")
        .expect("db-1");
    assert_eq!(db.cpu_percent(), Some(50));
    assert_eq!(db.memory_mib(), 1024);
    assert!(app
        .servers
        .iter()
        .find(|s| s.name() == "web-1")
        .expect("web-1")
        .figures
        .is_none());
    // State: audit records, and an event line each.
    let mut record = fixtures::audit().remove(0);
    record.seq = 42;
    app.apply(Update::Event(ApiEvent::State {
        records: vec![record.clone()],
    }));
    assert_eq!(app.audit.len(), 2);
    // A record already known is not added twice.
    app.apply(Update::Event(ApiEvent::State {
        records: vec![record],
    }));
    assert_eq!(app.audit.len(), 2);
    assert_eq!(app.events.back().map(|e| e.kind), Some("state"));
    app.apply(Update::Event(ApiEvent::Lagged));
    assert_eq!(app.events.back().map(|e| e.kind), Some("lagged"));
    app.apply(Update::Event(ApiEvent::Unknown));
    assert_eq!(app.events.len(), 3);
    // Task: replaces the task of the same id.
    app.apply(Update::Event(ApiEvent::Task {
        task: task(12, "server.start", "db-1", TaskState::Succeeded, 100),
    }));
    assert_eq!(app.tasks.len(), 3);
    assert_eq!(app.tasks[0].state, TaskState::Succeeded);
}

#[test]
fn link_states() {
    let mut app = live_app();
    app.apply(Update::Streaming {
        endpoint: "10.0.0.1:7000".into(),
    });
    assert_eq!(app.link, Link::Live);
    app.apply(Update::Reconnecting {
        error: "the event stream from 10.0.0.1:7000 ended".into(),
    });
    assert!(matches!(app.link, Link::Reconnecting { .. }));
    assert!(!app.is_stale());
    // A full round while reconnecting does not claim the stream is back.
    app.apply(fixtures::snapshot());
    assert!(matches!(app.link, Link::Reconnecting { .. }));
    app.apply(Update::Streaming {
        endpoint: "10.0.0.2:7000".into(),
    });
    assert_eq!(app.link, Link::Live);
    assert_eq!(app.endpoint, "10.0.0.2:7000");
    assert!(app
        .events
        .iter()
        .any(|e| e.text == "event stream now on 10.0.0.2:7000"));
    app.apply(Update::Unreachable {
        error: "cannot reach the cluster at a:1: refused".into(),
    });
    assert!(app.is_stale());
    assert_eq!(app.nodes.len(), 3);
    app.apply(Update::Refused {
        endpoint: "10.0.0.3:7000".into(),
        error: "no leader".into(),
    });
    assert_eq!(app.endpoint, "10.0.0.3:7000");
    app.apply(fixtures::snapshot());
    assert_eq!(app.link, Link::Live);
    assert_eq!(app.refreshes, 3);
}

#[test]
fn history_is_bounded_and_forgets_removed_nodes() {
    let mut app = live_app();
    for _ in 0..100 {
        app.apply(Update::Event(ApiEvent::Nodes {
            nodes: vec![sample_node("node-1", 1)],
        }));
    }
    assert_eq!(app.history.len(), 1);
    assert_eq!(
        app.history["node-1"].cpu.len(),
        crate::cockpit::model::HISTORY
    );
    assert_eq!(app.pools.len(), 1);
}

#[test]
fn events_are_bounded() {
    let mut app = live_app();
    for _ in 0..crate::cockpit::model::MAX_EVENTS + 5 {
        app.apply(Update::Event(ApiEvent::Lagged));
    }
    assert_eq!(app.events.len(), crate::cockpit::model::MAX_EVENTS);
    assert_eq!(app.events.front().map(|e| e.seq), Some(6));
}

#[test]
fn image_and_backup_operations_ask_then_confirm() {
    let mut app = live_app();
    command(&mut app, "img");
    assert_eq!(shown(&app), ["debian-12", "scratch", "web-data"]);
    // Clone: the new image's name, then y.
    app.handle_key(Key::Char('C'));
    assert!(matches!(
        app.mode,
        Mode::Argument {
            op: ServerOp::CloneImage,
            ..
        }
    ));
    assert_eq!(app.handle_key(Key::Enter), Effect::None, "a name is needed");
    typed(&mut app, "web-2");
    app.handle_key(Key::Enter);
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::CloneImage,
            server: "debian-12".into(),
            to: Some("web-2".into()),
        })
    );
    // Revert loses data: Tab completes the snapshot, then the image's name must be typed.
    app.handle_key(Key::Char('G'));
    assert_eq!(selected(&app).as_deref(), Some("web-data"));
    app.handle_key(Key::Char('V'));
    app.handle_key(Key::Tab);
    app.handle_key(Key::Enter);
    typed(&mut app, "nope");
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    assert!(matches!(&app.mode, Mode::Confirm(c) if c.error.is_some()));
    typed(&mut app, "web-data");
    assert_eq!(
        app.handle_key(Key::Enter),
        Effect::Operate(Operation {
            op: ServerOp::RevertImage,
            server: "web-data".into(),
            to: Some("clean".into()),
        })
    );
    // Backups: restore and delete need the id typed.
    command(&mut app, "bk");
    app.handle_key(Key::Char('T'));
    typed(&mut app, "1");
    assert_eq!(
        app.handle_key(Key::Enter),
        Effect::Operate(Operation {
            op: ServerOp::RestoreBackup,
            server: "1".into(),
            to: None,
        })
    );
    // Servers: b backs up (y/n); an image key on the servers view only says what to select.
    command(&mut app, "srv");
    app.handle_key(Key::Char('b'));
    assert!(matches!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::BackupServer,
            ..
        })
    ));
    assert_eq!(app.handle_key(Key::Char('S')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    // Read-only: refused.
    let mut ro = live_app().read_only(true);
    command(&mut ro, "img");
    ro.handle_key(Key::Char('C'));
    assert_eq!(ro.mode, Mode::Normal);
}

fn connections_app() -> App {
    let mut app = live_app();
    command(&mut app, "cn");
    app
}

#[test]
fn connections_list_filter_sort_and_describe() {
    let mut app = connections_app();
    assert_eq!(
        shown(&app),
        ["batch-out", "db-lan", "ssh-all", "web-http", "web-ip"]
    );
    // The filter sees every column: kinds, addresses, ports, state, server.
    app.handle_key(Key::Char('/'));
    typed(&mut app, "ip mapping");
    assert_eq!(shown(&app), ["ssh-all", "web-http"]);
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('/'));
    typed(&mut app, "203.0.113.1");
    assert_eq!(shown(&app), ["ssh-all", "web-http", "web-ip"]);
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('/'));
    typed(&mut app, "inactive");
    assert_eq!(shown(&app), ["batch-out", "ssh-all"]);
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('/'));
    typed(&mut app, "web-1");
    assert_eq!(shown(&app), ["web-ip"]);
    app.handle_key(Key::Enter);
    app.handle_key(Key::Esc);
    assert_eq!(shown(&app).len(), 5);
    assert_eq!(selected(&app).as_deref(), Some("web-ip"));
    app.handle_key(Key::Char('g'));
    // Every column sorts; the selection follows its object.
    for (col, want) in [
        (1, ["db-lan", "web-ip", "ssh-all", "web-http", "batch-out"]),
        (2, ["web-ip", "web-http", "db-lan", "batch-out", "ssh-all"]),
        (3, ["batch-out", "db-lan", "web-ip", "web-http", "ssh-all"]),
        (4, ["batch-out", "db-lan", "web-http", "ssh-all", "web-ip"]),
        (5, ["batch-out", "ssh-all", "db-lan", "web-http", "web-ip"]),
        (6, ["batch-out", "ssh-all", "db-lan", "web-ip", "web-http"]),
        (7, ["ssh-all", "db-lan", "web-http", "web-ip", "batch-out"]),
    ] {
        app.handle_key(Key::Char('o'));
        assert_eq!(app.list().map(|ls| ls.sort_col), Some(col));
        assert_eq!(shown(&app), want, "column {col}");
        assert_eq!(selected(&app).as_deref(), Some("batch-out"));
    }
    app.handle_key(Key::Char('o'));
    assert_eq!(app.list().map(|ls| ls.sort_col), Some(0));
    // d and Enter describe it in full.
    app.handle_key(Key::Char('d'));
    assert!(matches!(
        app.screen(),
        Screen::Describe { view: ViewKind::Connections, key, .. } if key == "batch-out"
    ));
    let object = crate::cockpit::views::describe::object(&app, ViewKind::Connections, "batch-out")
        .expect("described");
    for field in [
        "name",
        "owner",
        "kind",
        "internal_ip",
        "external_ip",
        "ports",
        "active",
        "server",
        "created_at",
        "created",
        "address_plan",
    ] {
        assert!(object.get(field).is_some(), "{field} missing: {object}");
    }
    assert_eq!(object["kind"], "gateway");
    assert_eq!(object["created"], "2023-11-15 03:13:20 UTC");
    app.handle_key(Key::Esc);
    app.handle_key(Key::Enter);
    assert!(matches!(app.screen(), Screen::Describe { .. }));
}

#[test]
fn connections_activate_and_deactivate_ask_y() {
    let mut app = connections_app();
    // batch-out is inactive: s activates, h says it already is inactive.
    assert_eq!(app.handle_key(Key::Char('h')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("batch-out is already inactive")
    );
    app.handle_key(Key::Char('s'));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(c) if c.operation.op == ServerOp::ActivateConnection
    ));
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::ActivateConnection,
            server: "batch-out".into(),
            to: None
        })
    );
    // db-lan is active: h deactivates; any other key cancels.
    app.handle_key(Key::Char('j'));
    app.handle_key(Key::Char('s'));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("db-lan is already active")
    );
    app.handle_key(Key::Char('h'));
    assert_eq!(app.handle_key(Key::Char('n')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    app.handle_key(Key::Char('h'));
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::DeactivateConnection,
            server: "db-lan".into(),
            to: None
        })
    );
    assert!(ServerOp::DeactivateConnection.is_immediate());
    assert!(!ServerOp::Start.is_immediate());
    // Server-only keys on a connection only say what to select.
    app.handle_key(Key::Char('K'));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Warn));
}

#[test]
fn deleting_a_connection_needs_its_name() {
    let mut app = connections_app();
    app.handle_key(Key::Char('G')); // web-ip
    app.handle_key(Key::Char('X'));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(c) if c.operation.op == ServerOp::DeleteConnection
    ));
    // y is not enough, a wrong name is refused and cleared.
    assert_eq!(app.handle_key(Key::Char('y')), Effect::Redraw);
    assert!(matches!(app.mode, Mode::Confirm(_)));
    app.handle_key(Key::Backspace);
    typed(&mut app, "web-http");
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    let Mode::Confirm(c) = &app.mode else {
        panic!("the dialog closed on a wrong name");
    };
    assert!(c
        .error
        .as_deref()
        .is_some_and(|e| e.contains("type web-ip")));
    assert!(c.typed.is_empty());
    typed(&mut app, "web-ip");
    assert_eq!(
        app.handle_key(Key::Enter),
        Effect::Operate(Operation {
            op: ServerOp::DeleteConnection,
            server: "web-ip".into(),
            to: None
        })
    );
    // Esc cancels.
    app.handle_key(Key::Char('X'));
    typed(&mut app, "web-ip");
    assert_eq!(app.handle_key(Key::Esc), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn read_only_refuses_connection_operations() {
    let mut app = connections_app().read_only(true);
    for key in ['s', 'h', 'X'] {
        assert_eq!(app.handle_key(Key::Char(key)), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal, "{key}");
        assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Error));
    }
    // The read-only role too, even with the dialog already open.
    let mut app = connections_app();
    app.handle_key(Key::Char('X'));
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.me = Some(user("admin", UserRole::ReadOnly));
    app.apply(Update::Snapshot(Box::new(s)));
    typed(&mut app, "batch-out");
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    assert!(app
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("read-only role")));
    assert_eq!(app.handle_key(Key::Char('s')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn immediate_results_update_the_list_and_the_status_line() {
    let mut app = connections_app();
    let activate = Operation {
        op: ServerOp::ActivateConnection,
        server: "batch-out".into(),
        to: None,
    };
    let mut batch_out = app.connections[0].clone();
    batch_out.active = true;
    app.apply(Update::OperationDone {
        operation: activate.clone(),
        connection: batch_out,
    });
    assert_eq!(
        app.status,
        Some(Status {
            level: Level::Info,
            text: "activate batch-out: done, now active".into()
        })
    );
    assert!(app.connections[0].active);
    assert!(app.tracked.is_empty(), "no task to follow");
    // A delete removes the row; the selection moves to the row where it was.
    let removed = app.connections[0].clone();
    app.apply(Update::OperationDone {
        operation: Operation {
            op: ServerOp::DeleteConnection,
            ..activate.clone()
        },
        connection: removed,
    });
    assert_eq!(shown(&app), ["db-lan", "ssh-all", "web-http", "web-ip"]);
    assert_eq!(selected(&app).as_deref(), Some("db-lan"));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("delete batch-out: done, removed")
    );
    app.apply(Update::OperationFailed {
        operation: Operation {
            op: ServerOp::DeleteConnection,
            server: "web-ip".into(),
            to: None,
        },
        error: "connection web-ip is in use by server web-1".into(),
    });
    assert_eq!(
        app.status,
        Some(Status {
            level: Level::Error,
            text: "delete web-ip failed: connection web-ip is in use by server web-1".into()
        })
    );
    assert_eq!(shown(&app).len(), 4);
}

fn stacks_app() -> App {
    let mut app = live_app();
    command(&mut app, "st");
    app
}

#[test]
fn stack_aliases_complete() {
    let mut app = live_app();
    app.handle_key(Key::Char(':'));
    typed(&mut app, "sta");
    app.handle_key(Key::Tab);
    assert_eq!(
        app.mode,
        Mode::Command {
            input: "stack".into()
        }
    );
    app.handle_key(Key::Enter);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Stacks));
    assert_eq!(crate::cockpit::view::breadcrumbs(&app), "stacks");
}

#[test]
fn stacks_list_filter_sort_and_describe() {
    let mut app = stacks_app();
    assert_eq!(shown(&app), ["db", "lab", "web"]);
    // The filter sees every column: owner, description.
    app.handle_key(Key::Char('/'));
    typed(&mut app, "bob");
    assert_eq!(shown(&app), ["lab"]);
    app.handle_key(Key::Esc);
    app.handle_key(Key::Char('/'));
    typed(&mut app, "shop's");
    assert_eq!(shown(&app), ["db", "web"]);
    app.handle_key(Key::Char('~'));
    app.handle_key(Key::Enter);
    assert_eq!(shown(&app), Vec::<String>::new());
    app.handle_key(Key::Esc);
    assert_eq!(shown(&app).len(), 3);
    app.handle_key(Key::Char('g'));
    assert_eq!(selected(&app).as_deref(), Some("db"));
    // Every column sorts; the selection follows its object. RUNNING: db 0, lab 1, web 2.
    for (col, want) in [
        (1, ["db", "lab", "web"]),
        (2, ["db", "lab", "web"]),
        (3, ["db", "web", "lab"]),
        (4, ["db", "lab", "web"]),
        (5, ["lab", "db", "web"]),
    ] {
        app.handle_key(Key::Char('o'));
        assert_eq!(app.list().map(|ls| ls.sort_col), Some(col));
        assert_eq!(shown(&app), want, "column {col}");
        assert_eq!(selected(&app).as_deref(), Some("db"));
    }
    app.handle_key(Key::Char('O'));
    assert_eq!(shown(&app), ["web", "db", "lab"]);
    app.handle_key(Key::Char('o'));
    assert_eq!(
        app.list().map(|ls| (ls.sort_col, ls.sort_desc)),
        Some((0, false))
    );
    // d describes every field, and lists the servers.
    app.handle_key(Key::Char('G'));
    app.handle_key(Key::Char('d'));
    assert!(matches!(
        app.screen(),
        Screen::Describe { view: ViewKind::Stacks, key, .. } if key == "web"
    ));
    assert_eq!(
        crate::cockpit::view::breadcrumbs(&app),
        "stacks › describe web"
    );
    let object =
        crate::cockpit::views::describe::object(&app, ViewKind::Stacks, "web").expect("described");
    for field in [
        "name",
        "owner",
        "description",
        "created_at",
        "created",
        "servers",
        "running",
        "members",
    ] {
        assert!(object.get(field).is_some(), "{field} missing: {object}");
    }
    assert_eq!(object["running"], "2 of 2");
    assert_eq!(
        object["members"],
        serde_json::json!([
            "web-1: running on node-1 (desired running)",
            "web-2: running on node-2 (desired running)"
        ])
    );
    let lab =
        crate::cockpit::views::describe::object(&app, ViewKind::Stacks, "lab").expect("described");
    assert_eq!(
        lab["members"][1],
        "lab-b: not seen on node-3 (desired stopped)"
    );
    app.handle_key(Key::Esc);
    assert_eq!(selected(&app).as_deref(), Some("web"));
}

#[test]
fn enter_on_a_stack_shows_its_servers_and_esc_comes_back() {
    let mut app = stacks_app();
    app.handle_key(Key::Char('G')); // web
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Servers));
    assert_eq!(shown(&app), ["web-1", "web-2"]);
    assert_eq!(
        crate::cockpit::view::breadcrumbs(&app),
        "stacks › servers@stack:web"
    );
    // The scope holds across a refresh; the servers' own keys work there.
    app.apply(fixtures::snapshot());
    assert_eq!(shown(&app), ["web-1", "web-2"]);
    app.handle_key(Key::Char('s'));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(c) if c.operation.op == ServerOp::Start && c.operation.server == "web-1"
    ));
    app.handle_key(Key::Esc);
    // Enter on a server describes it; Esc goes back one breadcrumb at a time.
    app.handle_key(Key::Enter);
    assert_eq!(
        crate::cockpit::view::breadcrumbs(&app),
        "stacks › servers@stack:web › describe web-1"
    );
    app.handle_key(Key::Esc);
    app.handle_key(Key::Esc);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Stacks));
    assert_eq!(selected(&app).as_deref(), Some("web"));
    // A stack whose servers the cockpit does not know shows none.
    app.handle_key(Key::Char('k')); // lab
    app.handle_key(Key::Enter);
    assert_eq!(shown(&app), Vec::<String>::new());
    app.handle_key(Key::Esc);
    assert_eq!(selected(&app).as_deref(), Some("lab"));
    assert_eq!(app.stack.len(), 1);
}

#[test]
fn stack_start_and_stop_ask_y() {
    let mut app = stacks_app();
    app.handle_key(Key::Char('G')); // web
    app.handle_key(Key::Char('s'));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(c) if c.operation.op == ServerOp::StartStack
    ));
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::StartStack,
            server: "web".into(),
            to: None
        })
    );
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("start web: sending…")
    );
    app.handle_key(Key::Char('h'));
    assert_eq!(app.handle_key(Key::Char('n')), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
    app.handle_key(Key::Char('h'));
    assert_eq!(
        app.handle_key(Key::Char('y')),
        Effect::Operate(Operation {
            op: ServerOp::StopStack,
            server: "web".into(),
            to: None
        })
    );
    assert!(!ServerOp::StopStack.is_immediate());
    assert!(!ServerOp::StopStack.is_destructive());
    // Server-only keys on a stack only say what to select.
    for key in ['K', 'R', 'm', 'c'] {
        app.handle_key(Key::Char(key));
        assert_eq!(app.mode, Mode::Normal, "{key}");
        assert_eq!(app.stack.len(), 1, "{key}");
        assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Warn));
    }
}

#[test]
fn deleting_a_stack_needs_its_name() {
    let mut app = stacks_app();
    app.handle_key(Key::Char('G')); // web
    app.handle_key(Key::Char('X'));
    assert!(matches!(
        &app.mode,
        Mode::Confirm(c) if c.operation.op == ServerOp::DeleteStack
    ));
    // y is not enough; a member's name is not the stack's.
    assert_eq!(app.handle_key(Key::Char('y')), Effect::Redraw);
    assert!(matches!(app.mode, Mode::Confirm(_)));
    app.handle_key(Key::Backspace);
    typed(&mut app, "web-1");
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    let Mode::Confirm(c) = &app.mode else {
        panic!("the dialog closed on a wrong name");
    };
    assert!(c.error.as_deref().is_some_and(|e| e.contains("type web")));
    assert!(c.typed.is_empty());
    typed(&mut app, "web");
    assert_eq!(
        app.handle_key(Key::Enter),
        Effect::Operate(Operation {
            op: ServerOp::DeleteStack,
            server: "web".into(),
            to: None
        })
    );
    // Esc cancels.
    app.handle_key(Key::Char('X'));
    typed(&mut app, "web");
    assert_eq!(app.handle_key(Key::Esc), Effect::Redraw);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn read_only_refuses_stack_operations() {
    let mut app = stacks_app().read_only(true);
    for key in ['s', 'h', 'X'] {
        assert_eq!(app.handle_key(Key::Char(key)), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal, "{key}");
        assert_eq!(app.status.as_ref().map(|s| s.level), Some(Level::Error));
    }
    // Enter and d still work.
    app.handle_key(Key::Enter);
    assert_eq!(app.list().map(|ls| ls.view), Some(ViewKind::Servers));
    // The read-only role too, even with the dialog already open.
    let mut app = stacks_app();
    app.handle_key(Key::Char('X'));
    let mut s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    s.me = Some(user("admin", UserRole::ReadOnly));
    app.apply(Update::Snapshot(Box::new(s)));
    typed(&mut app, "db");
    assert_eq!(app.handle_key(Key::Enter), Effect::Redraw);
    assert!(app
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("read-only role")));
    for key in ['s', 'h'] {
        assert_eq!(app.handle_key(Key::Char(key)), Effect::Redraw);
        assert_eq!(app.mode, Mode::Normal);
    }
}

#[test]
fn stack_tasks_are_followed_together() {
    let mut app = stacks_app();
    let operation = Operation {
        op: ServerOp::DeleteStack,
        server: "web".into(),
        to: None,
    };
    app.apply(Update::TasksStarted {
        operation: operation.clone(),
        task_ids: vec![21, 22],
    });
    assert_eq!(app.status, None);
    assert_eq!(app.tracked.last(), Some(&(operation.clone(), vec![21, 22])));
    app.apply(Update::OperationFailed {
        operation,
        error: "stack web: no such stack".into(),
    });
    assert_eq!(
        app.status,
        Some(Status {
            level: Level::Error,
            text: "delete web failed: stack web: no such stack".into()
        })
    );
    // A round without stacks (an older leader) keeps the previous copy.
    let s = Snapshot::new("e", fixtures::cluster(), sample_nodes());
    app.apply(Update::Snapshot(Box::new(s)));
    assert_eq!(app.stacks.len(), 3);
}
