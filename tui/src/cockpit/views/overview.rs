//! The overview: cluster health, each node's load with recent history, and alerts.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Padding, Paragraph};
use ratatui::Frame;
use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::api::tasks::Convergence;
use skiff_cluster::state::TaskState;

use super::table::{gauge, level_style};
use crate::cockpit::app::{App, Link};
use crate::cockpit::model::{node_cpu_percent, node_storage_percent};
use crate::cockpit::theme::Theme;
use crate::output::percent;

const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` samples as bar characters (the lowest bar for 0 %, so an idle line still
/// shows), oldest first, padded to `width`.
pub fn sparkline<'a>(
    samples: impl DoubleEndedIterator<Item = &'a u64> + ExactSizeIterator,
    width: usize,
) -> String {
    let len = samples.len();
    let shown: Vec<char> = samples
        .skip(len.saturating_sub(width))
        .map(|&pct| BARS[1 + (pct.min(100) * 7 + 50) as usize / 100])
        .collect();
    let mut s: String = shown.into_iter().collect();
    s.push_str(&" ".repeat(width.saturating_sub(len.min(width))));
    s
}

/// What needs the operator's attention, worst first.
pub fn alerts(app: &App) -> Vec<String> {
    let mut out = Vec::new();
    match &app.link {
        Link::Unreachable { error } => out.push(format!("cluster unreachable: {error}")),
        Link::Refused { error } => out.push(format!("cluster refused: {error}")),
        Link::Reconnecting { error } => {
            out.push(format!("event stream lost, reconnecting: {error}"))
        }
        _ => {}
    }
    if let Some(c) = &app.cluster {
        if c.leader.is_none() {
            out.push(format!(
                "no leader in term {}: changes wait for an election",
                c.term
            ));
        }
    }
    for n in app.nodes.iter().filter(|n| !n.alive) {
        out.push(format!("node {} is down (gossip)", n.name));
    }
    for r in &app.node_reports {
        if let Some(e) = &r.error {
            out.push(format!("node {} did not report: {e}", r.name));
        }
    }
    let count = |f: &dyn Fn(&crate::cockpit::model::ServerRow) -> bool| {
        app.servers.iter().filter(|s| f(s)).count()
    };
    let crashed = count(&|s| s.actual.as_ref().and_then(|a| a.power) == Some(DomainPower::Crashed));
    if crashed > 0 {
        out.push(format!("{crashed} server(s) crashed"));
    }
    let lost = count(&|s| {
        matches!(
            s.actual.as_ref().map(|a| a.convergence),
            Some(Convergence::NodeDead | Convergence::NodeUnreachable)
        )
    });
    if lost > 0 {
        out.push(format!("{lost} server(s) on dead or unreachable nodes"));
    }
    let mut failed: Vec<_> = app
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    failed.sort_by_key(|t| std::cmp::Reverse(t.id));
    for t in failed.iter().take(5) {
        out.push(format!(
            "task {} {} {} failed: {}",
            t.id,
            t.kind,
            t.target,
            t.result.as_deref().unwrap_or("no message")
        ));
    }
    if failed.len() > 5 {
        out.push(format!(
            "… and {} more failed tasks (:tasks)",
            failed.len() - 5
        ));
    }
    out
}

/// Draws the overview.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let node_rows = (app.nodes.len().max(1) as u16).saturating_add(2);
    let [health, nodes, alert_area] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(node_rows),
        Constraint::Min(3),
    ])
    .areas(area);
    render_health(app, frame, health);
    render_nodes(app, frame, nodes);
    let alerts = alerts(app);
    let title = format!(" Alerts ({}) ", alerts.len());
    let lines: Vec<Line> = if alerts.is_empty() {
        vec![Line::styled(
            "No alerts: every node is alive and no task failed.",
            theme.good,
        )]
    } else {
        alerts
            .into_iter()
            .map(|a| Line::styled(format!("! {a}"), theme.bad))
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block(title, theme)), alert_area);
}

fn block(title: String, theme: &Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .padding(Padding::horizontal(1))
        .title(Span::styled(title, theme.accent))
}

fn render_health(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let sep = || Span::styled(" · ", theme.label);
    let field = |label: &str, value: String, style| {
        [
            Span::styled(format!("{label} "), theme.label),
            Span::styled(value, style),
        ]
    };
    let alive = app.nodes.iter().filter(|n| n.alive).count();
    let mut first = Vec::new();
    first.extend(field(
        "nodes",
        format!("{alive}/{} alive", app.nodes.len()),
        if alive == app.nodes.len() {
            theme.good
        } else {
            theme.bad
        },
    ));
    if let Some(c) = &app.cluster {
        first.push(sep());
        first.extend(field("voters", c.voters.len().to_string(), theme.value));
        first.push(sep());
        first.extend(field("learners", c.learners.len().to_string(), theme.value));
    }
    let running = app
        .servers
        .iter()
        .filter(|s| s.actual.as_ref().and_then(|a| a.power) == Some(DomainPower::Running))
        .count();
    let in_sync = app
        .servers
        .iter()
        .filter(|s| s.actual.as_ref().map(|a| a.convergence) == Some(Convergence::InSync))
        .count();
    let mut second = Vec::new();
    second.extend(field(
        "servers",
        format!(
            "{} ({running} running, {in_sync} in sync)",
            app.servers.len()
        ),
        theme.value,
    ));
    let open = app.tasks.iter().filter(|t| !t.state.is_final()).count();
    let failed = app
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .count();
    second.push(sep());
    second.extend(field("tasks", format!("{open} open"), theme.value));
    if failed > 0 {
        second.push(Span::styled(format!(", {failed} failed"), theme.bad));
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(first), Line::from(second)])
            .block(block(" Cluster ".into(), theme)),
        area,
    );
}

fn render_nodes(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let inner = usize::from(area.width.saturating_sub(4));
    let name_w = app
        .nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 16);
    // "NAME ★ " + ("cpu " gauge " " spark) + (" mem " gauge " " spark) + " disk 100%" + " down"
    let fixed = name_w + 3 + 4 + 5 + 10 + 5;
    let per_metric = inner.saturating_sub(fixed) / 2;
    let gauge_w = (per_metric / 2).clamp(9, 20);
    let spark_w = per_metric.saturating_sub(gauge_w + 1).min(30);
    let lines: Vec<Line> = if app.nodes.is_empty() {
        vec![Line::styled("no nodes known yet", theme.label)]
    } else {
        app.nodes
            .iter()
            .map(|n| {
                let history = app.history.get(&n.name).filter(|_| spark_w > 0);
                let cpu = node_cpu_percent(n);
                let mem = percent(n.memory_used, n.memory_total);
                let mut spans = vec![
                    Span::styled(
                        format!("{:<name_w$} ", n.name),
                        if n.alive { theme.value } else { theme.bad },
                    ),
                    Span::styled(if n.leader { "★ " } else { "  " }, theme.warn),
                    Span::styled("cpu ", theme.label),
                ];
                spans.extend(gauge(cpu, gauge_w, theme).spans);
                if let Some(h) = history {
                    spans.push(Span::styled(
                        format!(" {}", sparkline(h.cpu.iter(), spark_w)),
                        level_style(cpu, theme),
                    ));
                }
                spans.push(Span::styled(" mem ", theme.label));
                spans.extend(gauge(mem, gauge_w, theme).spans);
                if let Some(h) = history {
                    spans.push(Span::styled(
                        format!(" {}", sparkline(h.memory.iter(), spark_w)),
                        level_style(mem, theme),
                    ));
                }
                spans.push(Span::styled(" disk ", theme.label));
                spans.push(match node_storage_percent(n) {
                    Some(p) => Span::styled(format!("{p:>3}%"), level_style(p, theme)),
                    None => Span::styled("  -", theme.label),
                });
                if !n.alive {
                    spans.push(Span::styled(" down", theme.bad));
                }
                Line::from(spans)
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(block(" Nodes ".into(), theme)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines() {
        let v = [0u64, 50, 100];
        assert_eq!(sparkline(v.iter(), 5), "▁▅█  ");
        assert_eq!(sparkline(v.iter(), 2), "▅█");
    }
}
