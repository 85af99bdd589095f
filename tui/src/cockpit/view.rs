//! Drawing of the cockpit: a pure function of [`App`], so every screen is a snapshot test.
//!
//! Layout, top to bottom: a two-line header (cluster, leader, term, user, role, endpoint, link;
//! plus the link's error), the screen on top of the breadcrumbs in a box titled with them, a
//! status line (command or filter input, operation progress, errors) and the key hints.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Level, Link, Mode, Screen, ServerOp};
use super::command;
use super::keymap::Action;
use super::views::{self, describe, help, overview, table, tasks};

/// Draws the whole cockpit.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let error_lines = match link_error(app) {
        Some(error) => {
            let width = usize::from(area.width.max(1));
            (error.chars().count() + 2).div_ceil(width).clamp(1, 2) as u16
        }
        None => 0,
    };
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(2 + error_lines),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, frame, header);
    render_body(app, frame, body);
    render_status(app, frame, status);
    render_footer(app, frame, footer);
    match &app.mode {
        Mode::Help { scroll } => help::render(&app.keymap, &app.theme, *scroll, frame, area),
        Mode::Confirm(confirm) => render_confirm(app, confirm, frame, area),
        Mode::MoveTo { server, input } => render_move(app, server, input, frame, area),
        Mode::Argument { op, target, input } => {
            render_argument(app, *op, target, input, frame, area)
        }
        _ => {}
    }
}

fn link_error(app: &App) -> Option<&str> {
    match &app.link {
        Link::Unreachable { error } | Link::Refused { error } | Link::Reconnecting { error } => {
            Some(error)
        }
        _ => None,
    }
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let sep = || Span::styled(" · ", theme.label);
    let field = |label: &str, value: String| {
        [
            Span::styled(format!("{label} "), theme.label),
            Span::styled(value, theme.value),
        ]
    };
    let mut first = vec![Span::styled(" Skiff ", theme.accent)];
    first.extend(field("cluster", app.cluster_id.clone()));
    match &app.cluster {
        Some(c) => {
            first.push(sep());
            match &c.leader {
                Some(leader) => first.extend(field("leader", leader.clone())),
                None => first.push(Span::styled("no leader", theme.bad)),
            }
            first.push(sep());
            first.extend(field("term", c.term.to_string()));
            let alive = app.nodes.iter().filter(|n| n.alive).count();
            first.push(sep());
            first.push(Span::styled("nodes ", theme.label));
            first.push(Span::styled(
                format!("{alive}/{}", app.nodes.len()),
                if alive == app.nodes.len() {
                    theme.value
                } else {
                    theme.bad
                },
            ));
        }
        None => {
            first.push(sep());
            first.push(Span::styled("leader unknown", theme.label));
        }
    }
    let mut second = vec![Span::raw(" ")];
    second.extend(field("user", app.user.clone()));
    let role = match (app.role, app.read_only) {
        (_, true) => "read-only cockpit".to_owned(),
        (Some(r), false) => r.as_str().to_owned(),
        (None, false) => "role ?".to_owned(),
    };
    second.push(Span::styled(format!(" ({role})"), theme.label));
    second.push(sep());
    second.extend(field("endpoint", app.endpoint.clone()));
    second.push(sep());
    second.push(match &app.link {
        Link::Connecting => Span::styled("◌ connecting…", theme.warn),
        Link::Live => Span::styled("● live", theme.good),
        Link::Reconnecting { .. } => Span::styled("↻ reconnecting", theme.warn),
        Link::Unreachable { .. } => Span::styled("✗ unreachable", theme.bad),
        Link::Refused { .. } => Span::styled("! refused", theme.bad),
    });
    let mut lines = vec![Line::from(first), Line::from(second)];
    if let Some(error) = link_error(app) {
        let style = if matches!(app.link, Link::Reconnecting { .. }) {
            theme.warn
        } else {
            theme.bad
        };
        lines.push(Line::styled(format!(" {error}"), style));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// The breadcrumbs: `overview › nodes › servers@node-1`.
pub fn breadcrumbs(app: &App) -> String {
    app.stack
        .iter()
        .map(|s| match s {
            Screen::Overview => "overview".to_owned(),
            Screen::List(ls) => match &ls.scope {
                Some(super::app::Scope::Node(n)) => format!("{}@{n}", ls.view.name()),
                Some(super::app::Scope::Stack(st)) => format!("{}@stack:{st}", ls.view.name()),
                None => ls.view.name().to_owned(),
            },
            Screen::Describe { key, .. } => format!("describe {key}"),
            Screen::TaskLog { id, .. } => format!("task {id} log"),
            Screen::Console(p) => format!("console {}", p.server),
        })
        .collect::<Vec<_>>()
        .join(" › ")
}

fn render_body(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let mut title = vec![Span::styled(
        format!(" {} ", breadcrumbs(app)),
        theme.accent,
    )];
    if let Screen::List(ls) = app.screen() {
        let total = views::len(app, ls.view);
        let count = if ls.rows.len() == total {
            format!("[{total}] ")
        } else {
            format!("[{}/{total}] ", ls.rows.len())
        };
        title.push(Span::styled(count, theme.value));
        if !ls.filter.text.is_empty() {
            title.push(Span::styled(format!("/{} ", ls.filter.text), theme.warn));
        }
    }
    if app.is_stale() && app.refreshes > 0 {
        title.push(Span::styled("last known state ", theme.warn));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.label)
        .title(Line::from(title));
    match app.screen() {
        Screen::Overview => {
            frame.render_widget(Clear, area);
            overview::render(app, frame, area);
        }
        Screen::List(ls) => table::render(app, ls, block, frame, area),
        Screen::Describe { view, key, scroll } => {
            describe::render(app, *view, key, *scroll, block, frame, area)
        }
        Screen::TaskLog { id, scroll } => tasks::render_log(app, *id, *scroll, block, frame, area),
        Screen::Console(pane) => views::console::render(pane, theme, block, frame, area),
    }
}

fn render_status(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let line = match &app.mode {
        Mode::Command { input } => {
            let mut spans = vec![
                Span::styled(":", theme.accent),
                Span::raw(input.clone()),
                Span::styled("▏", theme.accent),
            ];
            let candidates = command::candidates(input);
            if !input.is_empty() && !candidates.is_empty() {
                spans.push(Span::styled(
                    format!("  {}", candidates.join(" ")),
                    theme.label,
                ));
            }
            Line::from(spans)
        }
        Mode::Filter => {
            let text = app
                .list()
                .map(|ls| ls.filter.text.clone())
                .unwrap_or_default();
            Line::from(vec![
                Span::styled("/", theme.accent),
                Span::raw(text),
                Span::styled("▏", theme.accent),
                Span::styled("  ~fuzzy !invert · Enter keeps · Esc clears", theme.label),
            ])
        }
        _ => match &app.status {
            Some(status) => {
                let style = match status.level {
                    Level::Info => theme.label,
                    Level::Warn => theme.warn,
                    Level::Error => theme.bad,
                };
                Line::styled(format!(" {}", status.text), style)
            }
            None => tracked_line(app),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The newest operation's task: its state, progress and last log line; for a stack, its tasks
/// together.
fn tracked_line(app: &App) -> Line<'static> {
    let theme = &app.theme;
    let Some((operation, ids)) = app.tracked.last() else {
        return Line::raw("");
    };
    let id = match ids.as_slice() {
        [] => {
            return Line::raw(format!(
                " {} {}: nothing to do",
                operation.op.verb(),
                operation.server
            ))
        }
        [id] => id,
        _ => return tracked_tasks_line(app, operation, ids),
    };
    let head = format!(" {} {} · task {id} ", operation.op.verb(), operation.server);
    match app.tasks.iter().find(|t| t.id == *id) {
        None => Line::styled(format!("{head}queued"), theme.warn),
        Some(t) => {
            let mut spans = vec![
                Span::raw(head),
                Span::styled(
                    tasks::state_name(t.state),
                    tasks::state_style(t.state, theme),
                ),
                Span::raw(format!(" {}%", t.progress)),
            ];
            let detail = match (&t.result, t.log.last()) {
                (Some(result), _) if t.state.is_final() => Some(result.clone()),
                (_, Some(line)) => Some(line.clone()),
                _ => None,
            };
            if let Some(detail) = detail {
                spans.push(Span::styled(format!(" · {detail}"), theme.label));
            }
            Line::from(spans)
        }
    }
}

/// Several tasks of one operation (a stack's servers): the first id and how many more, the
/// overall state (failed as soon as one failed, succeeded once all did), the mean progress, how
/// many ended, and the first failure's result with its server.
fn tracked_tasks_line(app: &App, operation: &super::app::Operation, ids: &[u64]) -> Line<'static> {
    use skiff_cluster::state::TaskState;
    let theme = &app.theme;
    let found: Vec<_> = ids
        .iter()
        .filter_map(|id| app.tasks.iter().find(|t| t.id == *id))
        .collect();
    let head = format!(
        " {} {} · tasks {} +{} ",
        operation.op.verb(),
        operation.server,
        ids[0],
        ids.len() - 1
    );
    if found.is_empty() {
        return Line::styled(format!("{head}queued"), theme.warn);
    }
    let failed: Vec<_> = found
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    let ended = found.iter().filter(|t| t.state.is_final()).count();
    let state = if !failed.is_empty() {
        TaskState::Failed
    } else if ended == ids.len() && found.iter().all(|t| t.state == TaskState::Succeeded) {
        TaskState::Succeeded
    } else if ended == ids.len() {
        TaskState::Cancelled
    } else if found.iter().any(|t| t.state == TaskState::Running) {
        TaskState::Running
    } else {
        TaskState::Queued
    };
    let progress: u64 = found.iter().map(|t| u64::from(t.progress)).sum::<u64>() / ids.len() as u64;
    let mut spans = vec![
        Span::raw(head),
        Span::styled(tasks::state_name(state), tasks::state_style(state, theme)),
        Span::raw(format!(" {progress}%")),
        Span::styled(format!(" · {ended} of {} ended", ids.len()), theme.label),
    ];
    if let Some(t) = failed.first() {
        let result = t.result.clone().unwrap_or_default();
        spans.push(Span::styled(
            format!(" · {}: {result}", t.target),
            theme.bad,
        ));
    }
    Line::from(spans)
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let keys = |a: Action| app.keymap.describe_keys(a);
    let mut hints: Vec<(String, &str)> = match (app.screen(), &app.mode) {
        (_, Mode::Command { .. }) => vec![
            ("tab".into(), "complete"),
            ("enter".into(), "go"),
            ("esc".into(), "cancel"),
        ],
        (_, Mode::Filter) => vec![("enter".into(), "keep"), ("esc".into(), "clear")],
        (Screen::Console(_), _) => vec![(keys(Action::LeaveConsole), "leave the console")],
        _ => vec![
            (keys(Action::Help), "help"),
            (keys(Action::Command), "view"),
            (keys(Action::Filter), "filter"),
            (keys(Action::Drill), "open"),
            (keys(Action::Describe), "describe"),
            (keys(Action::Back), "back"),
            (keys(Action::Quit), "quit"),
        ],
    };
    if matches!(app.mode, Mode::Normal) && app.operations_refused().is_none() {
        if app.selected_server().is_some() {
            hints.insert(4, (keys(Action::Start), "start"));
            hints.insert(5, (keys(Action::Shutdown), "shutdown"));
            hints.insert(6, (keys(Action::Console), "console"));
        } else if let Some(c) = app.selected_connection() {
            let toggle = if c.active {
                (keys(Action::Shutdown), "deactivate")
            } else {
                (keys(Action::Start), "activate")
            };
            hints.insert(4, toggle);
            hints.insert(5, (keys(Action::Delete), "delete"));
        } else if app.selected_stack().is_some() {
            hints.insert(4, (keys(Action::Start), "start"));
            hints.insert(5, (keys(Action::Shutdown), "stop"));
            hints.insert(6, (keys(Action::Delete), "delete"));
        }
    }
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for (k, what) in hints {
        let len = k.chars().count() + what.len() + 3;
        if used + len > usize::from(area.width) {
            break;
        }
        used += len;
        spans.push(Span::styled(format!("<{k}>"), theme.accent));
        spans.push(Span::raw(format!("{what} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A centred pop-up of `width` × `height` inside `area`.
fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn render_confirm(app: &App, confirm: &super::app::Confirm, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let op = &confirm.operation;
    let target = match (op.op, &op.to) {
        (ServerOp::Move, Some(to)) => format!("{} to node {to}", op.server),
        (ServerOp::Move, None) => format!("{} to the scheduler's choice of node", op.server),
        (ServerOp::CloneImage, Some(to)) => format!("{} into a new image {to}", op.server),
        (ServerOp::SnapshotImage, Some(to)) => format!("{} as {to}", op.server),
        (ServerOp::RevertImage, Some(to)) => format!("{} to snapshot {to}", op.server),
        _ => op.server.clone(),
    };
    let mut lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw(format!("{} {} ", capital(op.op.verb()), op.op.noun())),
            Span::styled(target, theme.value),
            Span::raw("?"),
        ]),
        Line::raw(""),
    ];
    if op.op.is_destructive() {
        let warning: String = match op.op {
            ServerOp::DeleteStack => format!(
                "This removes the stack, its {} and their disks. It cannot be undone.",
                servers_named(&stack_members(app, &op.server))
            ),
            ServerOp::Delete => {
                "This removes the server and its disks. It cannot be undone.".into()
            }
            ServerOp::DeleteImage => "This removes the image. It cannot be undone.".into(),
            ServerOp::DeleteBackup => {
                "This removes the backup's copies. It cannot be undone.".into()
            }
            ServerOp::DeleteConnection => {
                "Its addresses go back to the pool. It cannot be undone.".into()
            }
            ServerOp::RevertImage => "What was written since the snapshot is lost.".into(),
            ServerOp::RestoreBackup => {
                "The image, or the server's disks, become the backup's copies.".into()
            }
            _ => "This cuts the power: the guest loses what it did not write to disk.".into(),
        };
        lines.push(Line::styled(warning, theme.bad));
        if let Some(server) = used_by(app, op) {
            lines.push(Line::styled(
                format!("Server {server} uses it: the cluster refuses until it is detached."),
                theme.warn,
            ));
        }
        lines.push(Line::from(vec![
            Span::raw(if op.op.noun() == "backup" {
                "Type the backup's id to confirm: ".to_owned()
            } else {
                format!("Type the {}'s name to confirm: ", op.op.noun())
            }),
            Span::styled(confirm.typed.clone(), theme.value),
            Span::styled("▏", theme.accent),
        ]));
        if let Some(e) = &confirm.error {
            lines.push(Line::styled(e.clone(), theme.bad));
        }
        lines.push(Line::styled("Enter confirms · Esc cancels", theme.label));
    } else {
        if op.op == ServerOp::DeactivateConnection {
            lines.push(Line::styled(
                "Its traffic stops; the addresses stay reserved for it.",
                theme.warn,
            ));
        }
        let members = stack_members(app, &op.server);
        if op.op == ServerOp::StartStack {
            lines.push(Line::styled(
                format!("Starts its {}.", servers_named(&members)),
                theme.label,
            ));
        } else if op.op == ServerOp::StopStack {
            lines.push(Line::styled(
                format!(
                    "Shuts down its {}; any still running after 60 s is forced off.",
                    servers_named(&members)
                ),
                theme.warn,
            ));
        }
        lines.push(Line::from(vec![
            Span::styled("y", theme.accent),
            Span::raw(" confirms · any other key cancels"),
        ]));
    }
    // Long lines (a long name, an error) wrap: the dialog grows so the prompt stays in view.
    let inner = usize::from(64.min(area.width).saturating_sub(2)).max(1);
    let rows: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let rect = popup(area, 64, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {} ", op.op.verb()))
                .border_style(if op.op.is_destructive() {
                    theme.bad
                } else {
                    theme.accent
                }),
        ),
        rect,
    );
}

/// The names of the servers of stack `name`, in the stack's order.
fn stack_members<'a>(app: &'a App, name: &str) -> Vec<&'a str> {
    app.stacks
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.servers.iter().map(|m| m.name.as_str()).collect())
        .unwrap_or_default()
}

/// `2 servers (shop-web, shop-db)`; past six names, how many more.
fn servers_named(members: &[&str]) -> String {
    const SHOWN: usize = 6;
    let count = match members.len() {
        1 => "1 server".to_owned(),
        n => format!("{n} servers"),
    };
    if members.is_empty() {
        return count;
    }
    let mut names = members[..members.len().min(SHOWN)].join(", ");
    if members.len() > SHOWN {
        names.push_str(&format!(" and {} more", members.len() - SHOWN));
    }
    format!("{count} ({names})")
}

/// The server whose interface uses the connection a delete names.
fn used_by<'a>(app: &'a App, op: &super::app::Operation) -> Option<&'a str> {
    if op.op != ServerOp::DeleteConnection {
        return None;
    }
    app.connections
        .iter()
        .find(|c| c.name == op.server)
        .and_then(|c| c.server.as_deref())
}

fn render_move(app: &App, server: &str, input: &str, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let nodes: Vec<&str> = app
        .nodes
        .iter()
        .filter(|n| n.alive)
        .map(|n| n.name.as_str())
        .collect();
    let lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw("Move server "),
            Span::styled(server.to_owned(), theme.value),
            Span::raw(" to node: "),
            Span::styled(input.to_owned(), theme.value),
            Span::styled("▏", theme.accent),
        ]),
        Line::styled(format!("alive: {}", nodes.join(" ")), theme.label),
        Line::styled(
            "Empty: the scheduler chooses · Tab completes · Enter · Esc cancels",
            theme.label,
        ),
    ];
    let rect = popup(area, 72, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" move ")
                .border_style(theme.accent),
        ),
        rect,
    );
}

fn render_argument(
    app: &App,
    op: ServerOp,
    target: &str,
    input: &str,
    frame: &mut Frame,
    area: Rect,
) {
    let theme = &app.theme;
    let mut lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw(format!("{} {} ", capital(op.verb()), op.noun())),
            Span::styled(target.to_owned(), theme.value),
            Span::raw(format!(": {} ", op.argument().unwrap_or("name"))),
            Span::styled(input.to_owned(), theme.value),
            Span::styled("▏", theme.accent),
        ]),
    ];
    if op == ServerOp::RevertImage {
        let snapshots: Vec<&str> = app
            .images
            .iter()
            .filter(|i| i.name == target)
            .flat_map(|i| i.snapshots.iter().map(String::as_str))
            .collect();
        lines.push(Line::styled(
            format!("snapshots: {}", snapshots.join(" ")),
            theme.label,
        ));
    }
    lines.push(Line::styled(
        "Enter · Esc cancels".to_owned()
            + if op == ServerOp::RevertImage {
                " · Tab completes"
            } else {
                ""
            },
        theme.label,
    ));
    let rect = popup(area, 72, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" {} ", op.verb()))
                .border_style(theme.accent),
        ),
        rect,
    );
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
