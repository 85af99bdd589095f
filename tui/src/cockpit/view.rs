//! Drawing of the cockpit: a pure function of [`App`], so every screen is a snapshot test.

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, HighlightSpacing, Padding, Paragraph, Row, Table, TableState, Wrap,
};
use ratatui::Frame;
use skiff_cluster::api::NodeView;

use super::app::{App, Link};
use crate::output::{format_bytes, memory_pair, percent, short_role};

/// Below this height the selected node's details are left out.
const DETAILS_MIN_HEIGHT: u16 = 20;
const DETAILS_HEIGHT: u16 = 6;
const HIGHLIGHT: &str = "▶ ";

const LABEL: Style = Style::new().fg(Color::DarkGray);
const VALUE: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole cockpit.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    // Two lines of status, plus the error (up to two wrapped lines) when there is one.
    let error_lines = match &app.link {
        Link::Unreachable { error } | Link::Refused { error } => {
            let inner = area.width.saturating_sub(4).max(1) as usize;
            error.chars().count().div_ceil(inner).clamp(1, 2) as u16
        }
        _ => 0,
    };
    let header_height = 4 + error_lines;
    let show_details = area.height >= DETAILS_MIN_HEIGHT && app.selected_node().is_some();
    let [header, body, details, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(3),
        Constraint::Length(if show_details { DETAILS_HEIGHT } else { 0 }),
        Constraint::Length(1),
    ])
    .areas(area);

    render_header(app, frame, header);
    render_nodes(app, frame, body);
    if show_details {
        if let Some(node) = app.selected_node() {
            render_details(node, app.is_stale(), frame, details);
        }
    }
    render_footer(app, frame, footer);
    if app.show_help {
        render_help(frame, area);
    }
}

fn sep() -> Span<'static> {
    Span::styled(" · ", LABEL)
}

fn field<'a>(label: &'a str, value: impl Into<String>) -> [Span<'a>; 2] {
    [
        Span::styled(format!("{label} "), LABEL),
        Span::styled(value.into(), VALUE),
    ]
}

fn render_header(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .title(Line::from(vec![
            Span::raw(" "),
            Span::styled("Skiff", Style::new().fg(Color::Cyan).bold()),
            Span::raw(" "),
        ]));

    let mut first: Vec<Span> = Vec::new();
    first.extend(field("cluster", app.cluster_id.clone()));
    match &app.cluster {
        Some(c) => {
            first.push(sep());
            let leader = c.leader.clone().unwrap_or_else(|| "none".into());
            first.extend(field("leader", leader));
            first.push(sep());
            first.extend(field("term", c.term.to_string()));
            first.push(sep());
            first.extend(field("voters", c.voters.len().to_string()));
            if !c.learners.is_empty() {
                first.push(sep());
                first.extend(field("learners", c.learners.len().to_string()));
            }
            first.push(sep());
            let alive = app.nodes.iter().filter(|n| n.alive).count();
            let all_alive = alive == app.nodes.len();
            first.push(Span::styled("nodes ", LABEL));
            first.push(Span::styled(
                format!("{alive}/{} alive", app.nodes.len()),
                if all_alive {
                    VALUE
                } else {
                    VALUE.fg(Color::Red)
                },
            ));
        }
        None => {
            first.push(sep());
            first.push(Span::styled("leader unknown", LABEL));
        }
    }

    let mut second: Vec<Span> = Vec::new();
    second.extend(field("user", app.user.clone()));
    second.push(sep());
    second.extend(field("endpoint", app.endpoint.clone()));
    second.push(sep());
    second.push(match &app.link {
        Link::Connecting => Span::styled("◌ connecting…", Style::new().fg(Color::Yellow)),
        Link::Live => Span::styled("● live", Style::new().fg(Color::Green)),
        Link::Unreachable { .. } => {
            Span::styled("✗ cannot reach cluster", Style::new().fg(Color::Red).bold())
        }
        Link::Refused { .. } => Span::styled(
            "! cluster not answering",
            Style::new().fg(Color::Yellow).bold(),
        ),
    });

    let mut lines = vec![Line::from(first), Line::from(second)];
    match &app.link {
        Link::Unreachable { error } => {
            lines.push(Line::styled(error.clone(), Style::new().fg(Color::Red)))
        }
        Link::Refused { error } => {
            lines.push(Line::styled(error.clone(), Style::new().fg(Color::Yellow)))
        }
        _ => {}
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}

fn render_nodes(app: &App, frame: &mut Frame, area: Rect) {
    let stale = app.is_stale() && !app.nodes.is_empty();
    let mut title = vec![Span::raw(" "), Span::styled("Nodes", Style::new().bold())];
    if app.cluster.is_some() {
        title.push(Span::raw(format!(" ({})", app.nodes.len())));
    }
    if stale {
        title.push(Span::styled(
            " · last known state",
            Style::new().fg(Color::Yellow),
        ));
    }
    title.push(Span::raw(" "));
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::from(title));

    if app.nodes.is_empty() {
        render_empty(app, frame, block, area);
        return;
    }

    let inner_width = area.width.saturating_sub(2) as usize;
    let text_width = |items: &mut dyn Iterator<Item = usize>, header: usize, max: usize| {
        items.fold(header, usize::max).min(max)
    };
    let name_w = text_width(&mut app.nodes.iter().map(|n| n.name.chars().count()), 4, 20);
    let addr_w = text_width(
        &mut app.nodes.iter().map(|n| n.address.chars().count()),
        7,
        24,
    );
    let role_w = text_width(
        &mut app
            .nodes
            .iter()
            .map(|n| short_role(&n.role).chars().count()),
        4,
        14,
    );
    let term_w = text_width(
        &mut app.nodes.iter().map(|n| n.term.to_string().len()),
        4,
        12,
    );
    let cpu_w = text_width(
        &mut app.nodes.iter().map(|n| n.cores.to_string().len()),
        3,
        6,
    );
    let fixed = [name_w, addr_w, role_w, 5, 5, 6, term_w, cpu_w, 7];
    let spacing = fixed.len(); // one between each of the 10 columns
    let used = HIGHLIGHT.chars().count() + fixed.iter().sum::<usize>() + spacing;
    let mem_w = inner_width.saturating_sub(used).max(8);

    let header = Row::new(
        [
            "NAME", "ADDRESS", "ROLE", "VOTER", "ALIVE", "LEADER", "TERM", "CPU", "MEMORY",
            "SERVERS",
        ]
        .map(Cell::from),
    )
    .style(Style::new().fg(Color::DarkGray).bold());

    let rows = app.nodes.iter().map(|n| node_row(n, mem_w, stale));
    let widths = [
        Constraint::Length(name_w as u16),
        Constraint::Length(addr_w as u16),
        Constraint::Length(role_w as u16),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(term_w as u16),
        Constraint::Length(cpu_w as u16),
        Constraint::Length(mem_w as u16),
        Constraint::Length(7),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(
            Style::new()
                .bg(Color::Rgb(40, 44, 52))
                .add_modifier(Modifier::BOLD),
        );
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn node_row(n: &NodeView, mem_w: usize, stale: bool) -> Row<'static> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let alive = if n.alive {
        Span::styled("yes", Style::new().fg(Color::Green))
    } else {
        Span::styled("no", Style::new().fg(Color::Red).bold())
    };
    let leader = if n.leader {
        Span::styled("★", Style::new().fg(Color::Yellow).bold())
    } else {
        Span::raw("")
    };
    let name = if n.alive {
        Span::raw(n.name.clone())
    } else {
        Span::styled(n.name.clone(), Style::new().fg(Color::Red))
    };
    let row = Row::new(vec![
        Cell::from(name),
        Cell::from(n.address.clone()),
        Cell::from(short_role(&n.role).to_owned()),
        Cell::from(yes_no(n.voter)),
        Cell::from(alive),
        Cell::from(leader),
        Cell::from(n.term.to_string()),
        Cell::from(n.cores.to_string()),
        Cell::from(memory_gauge(n.memory_used, n.memory_total, mem_w)),
        Cell::from(n.servers.to_string()),
    ]);
    if stale {
        row.style(Style::new().add_modifier(Modifier::DIM))
    } else {
        row
    }
}

/// A text bar filling `width` cells: `████░░░░ 4.5/16.0 GiB` when there is room, else `██░░ 28%`.
pub fn memory_gauge(used: u64, total: u64, width: usize) -> Line<'static> {
    if total == 0 {
        return Line::styled("-", LABEL);
    }
    let pct = percent(used, total);
    // Padded so that bars of usual sizes line up from row to row.
    let long = format!(" {:>13}", memory_pair(used, total));
    let short = format!(" {pct:>3}%");
    let label = if width >= long.chars().count() + 8 {
        long
    } else {
        short
    };
    let bar_w = width.saturating_sub(label.chars().count());
    let filled = ((bar_w as u64 * pct + 50) / 100) as usize;
    let filled = if pct > 0 { filled.max(1) } else { 0 }.min(bar_w);
    let color = match pct {
        0..=69 => Color::Green,
        70..=89 => Color::Yellow,
        _ => Color::Red,
    };
    Line::from(vec![
        Span::styled("█".repeat(filled), Style::new().fg(color)),
        Span::styled("░".repeat(bar_w - filled), Style::new().fg(Color::DarkGray)),
        Span::raw(label),
    ])
}

fn render_empty(app: &App, frame: &mut Frame, block: Block, area: Rect) {
    let text: Text = match &app.link {
        Link::Connecting => Text::from(vec![
            Line::raw(""),
            Line::from(format!("Connecting to {}…", app.endpoint)),
        ]),
        Link::Live => Text::from(vec![
            Line::raw(""),
            Line::from("The cluster reports no nodes."),
        ]),
        // The error itself is in the header.
        Link::Unreachable { .. } | Link::Refused { .. } => {
            let headline = if matches!(app.link, Link::Unreachable { .. }) {
                "Cannot reach the cluster"
            } else {
                "The cluster cannot answer right now"
            };
            Text::from(vec![
                Line::raw(""),
                Line::styled(headline, Style::new().fg(Color::Red).bold()),
                Line::raw(""),
                Line::styled("Retrying every second; press r to retry now.", LABEL),
                Line::styled(
                    "Check the endpoints listed in your credential (--cred, $SKIFF_CRED).",
                    LABEL,
                ),
            ])
        }
    };
    frame.render_widget(
        Paragraph::new(text)
            .block(block)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn render_details(node: &NodeView, stale: bool, frame: &mut Frame, area: Rect) {
    let mut title = vec![
        Span::raw(" "),
        Span::styled(node.name.clone(), Style::new().bold()),
    ];
    if node.leader {
        title.push(Span::styled(" ★ leader", Style::new().fg(Color::Yellow)));
    }
    title.push(Span::raw(" "));
    let block = Block::default()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .title(Line::from(title));

    let mut line1 = Vec::new();
    line1.extend(field("id", node.id.to_string()));
    line1.push(sep());
    line1.extend(field("role", node.role.clone()));
    line1.push(sep());
    line1.extend(field("version", node.version.clone()));
    line1.push(sep());
    line1.extend(field("generation", node.generation.to_string()));

    let mut line2 = Vec::new();
    line2.extend(field("address", node.address.clone()));
    line2.push(sep());
    line2.extend(field("term", node.term.to_string()));
    line2.push(sep());
    line2.extend(field("cpu", format!("{} cores", node.cores)));
    line2.push(sep());
    line2.extend(field("servers", node.servers.to_string()));

    let mut line3 = Vec::new();
    line3.extend(field(
        "memory",
        format!(
            "{} ({}%)",
            memory_pair(node.memory_used, node.memory_total),
            percent(node.memory_used, node.memory_total)
        ),
    ));

    let mut line4 = vec![Span::styled("storage ", LABEL)];
    if node.storage.is_empty() {
        line4.push(Span::styled("none", VALUE));
    }
    for (i, pool) in node.storage.iter().enumerate() {
        if i > 0 {
            line4.push(sep());
        }
        line4.push(Span::styled(pool.name.clone(), VALUE));
        line4.push(Span::raw(format!(
            " {} free of {} ({}% used)",
            format_bytes(pool.total.saturating_sub(pool.used)),
            format_bytes(pool.total),
            percent(pool.used, pool.total)
        )));
    }

    let style = if stale {
        Style::new().add_modifier(Modifier::DIM)
    } else {
        Style::new()
    };
    let text = Text::from(vec![
        Line::from(line1),
        Line::from(line2),
        Line::from(line3),
        Line::from(line4),
    ])
    .style(style);
    frame.render_widget(Paragraph::new(text).block(block), area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect) {
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::Cyan).bold());
    let mut spans = vec![
        Span::raw(" "),
        key("q"),
        Span::raw(" quit  "),
        key("↑↓/jk"),
        Span::raw(" move  "),
        key("r"),
        Span::raw(" refresh  "),
        key("?"),
        Span::raw(if app.show_help {
            " close help"
        } else {
            " help"
        }),
    ];
    if app.refreshes > 0 {
        spans.push(Span::styled(
            format!("   refreshed {}×, every 1s", app.refreshes),
            LABEL,
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_help(frame: &mut Frame, area: Rect) {
    let rows: [(&str, &str); 8] = [
        ("↑ k / ↓ j", "select the previous / next node"),
        ("PgUp / PgDn", "move ten rows"),
        ("g Home / G End", "first / last node"),
        ("r", "refresh now (otherwise every second)"),
        ("?", "show or hide this help"),
        ("Esc", "close this help"),
        ("q  Ctrl-C", "quit"),
        ("", "★ leader · admin = admin-eligible"),
    ];
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<15}"), Style::new().fg(Color::Cyan).bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    let width = 56.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys ")
                .border_style(Style::new().fg(Color::Cyan)),
        ),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cockpit::app::{Key, Update};
    use crate::output::tests::sample_nodes;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use skiff_cluster::api::ClusterView;

    fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| render(app, f)).unwrap();
        terminal
    }

    fn live_app() -> App {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        app.apply(Update::Snapshot {
            endpoint: "10.0.0.1:7000".into(),
            cluster: ClusterView {
                cluster_id: "c-42".into(),
                leader: Some("node-1".into()),
                term: 7,
                voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
                learners: vec![],
            },
            nodes: sample_nodes(),
        });
        app
    }

    #[test]
    fn connecting() {
        let app = App::new("c-42", "admin", "10.0.0.9:7000");
        insta::assert_snapshot!(draw(&app, 80, 24).backend());
    }

    #[test]
    fn empty_cluster() {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        app.apply(Update::Snapshot {
            endpoint: "10.0.0.9:7000".into(),
            cluster: ClusterView {
                cluster_id: "c-42".into(),
                leader: None,
                term: 0,
                voters: vec![],
                learners: vec![],
            },
            nodes: vec![],
        });
        insta::assert_snapshot!(draw(&app, 80, 24).backend());
    }

    #[test]
    fn three_nodes_80x24() {
        let mut app = live_app();
        app.handle_key(Key::Down);
        let terminal = draw(&app, 80, 24);
        insta::assert_snapshot!(terminal.backend());
        // The dead node's ALIVE cell is red.
        let buffer = terminal.backend().buffer();
        let row = (0..24)
            .find(|&y| {
                (0..80)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .contains("node-3")
            })
            .unwrap();
        let cells: Vec<&str> = (0..80).map(|x| buffer[(x, row)].symbol()).collect();
        let col = (1..79)
            .find(|&x| cells[x - 1] == " " && cells[x] == "n" && cells[x + 1] == "o")
            .unwrap() as u16;
        assert_eq!(buffer[(col, row)].fg, Color::Red);
    }

    #[test]
    fn three_nodes_wide() {
        let app = live_app();
        insta::assert_snapshot!(draw(&app, 120, 30).backend());
    }

    #[test]
    fn unreachable_without_data() {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at 10.0.0.9:7000, 10.0.0.8:7000: Connection refused (os error 111)".into(),
        });
        let terminal = draw(&app, 80, 24);
        insta::assert_snapshot!(terminal.backend());
    }

    #[test]
    fn unreachable_with_last_known_nodes() {
        let mut app = live_app();
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at 10.0.0.1:7000: connection timed out".into(),
        });
        insta::assert_snapshot!(draw(&app, 80, 24).backend());
    }

    #[test]
    fn help_popup() {
        let mut app = live_app();
        app.handle_key(Key::Char('?'));
        insta::assert_snapshot!(draw(&app, 80, 24).backend());
    }

    #[test]
    fn tiny_terminal_does_not_panic() {
        let mut app = live_app();
        app.handle_key(Key::Char('?'));
        for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 10), (0, 0)] {
            draw(&app, w, h);
        }
    }

    #[test]
    fn gauge_widths() {
        let text = |l: Line| {
            l.spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<String>()
        };
        let gib = 1u64 << 30;
        assert_eq!(text(memory_gauge(gib, 4 * gib, 10)), "█░░░░  25%");
        assert_eq!(
            text(memory_gauge(2 * gib, 4 * gib, 22)),
            "████░░░░   2.0/4.0 GiB"
        );
        assert_eq!(
            text(memory_gauge(2 * gib, 4 * gib, 21)),
            "████████░░░░░░░░  50%"
        );
        assert_eq!(text(memory_gauge(0, 0, 10)), "-");
        let long = text(memory_gauge(gib, 4 * gib, 30));
        assert!(long.ends_with("░   1.0/4.0 GiB"), "{long}");
        assert_eq!(long.chars().count(), 30);
    }
}
