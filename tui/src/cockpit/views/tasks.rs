//! The tasks view (every long operation, newest first) and a task's live log.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use skiff_cluster::state::{TaskRecord, TaskState};

use super::{Column, SortKey};
use crate::cockpit::app::App;
use crate::cockpit::theme::Theme;
use crate::output::format_unix_utc;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "ID",
        width: Constraint::Length(6),
    },
    Column {
        title: "KIND",
        width: Constraint::Length(16),
    },
    Column {
        title: "TARGET",
        width: Constraint::Min(8),
    },
    Column {
        title: "OWNER",
        width: Constraint::Length(8),
    },
    Column {
        title: "NODE",
        width: Constraint::Length(8),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(9),
    },
    Column {
        title: "DONE",
        width: Constraint::Length(4),
    },
];

/// The state in a word.
pub fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
    }
}

/// The style of a task state.
pub fn state_style(s: TaskState, theme: &Theme) -> ratatui::style::Style {
    match s {
        TaskState::Succeeded => theme.good,
        TaskState::Failed => theme.bad,
        TaskState::Queued | TaskState::Running => theme.warn,
        TaskState::Cancelled => theme.label,
    }
}

/// One row's cells, one per column.
pub fn cells(t: &TaskRecord, theme: &Theme) -> Vec<Line<'static>> {
    vec![
        Line::raw(t.id.to_string()),
        Line::raw(t.kind.clone()),
        Line::raw(t.target.clone()),
        Line::raw(t.owner.clone()),
        Line::raw(t.node.clone().unwrap_or_else(|| "-".into())),
        Line::styled(state_name(t.state), state_style(t.state, theme)),
        Line::raw(format!("{}%", t.progress)),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(t: &TaskRecord, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(&t.kind),
        2 => SortKey::text(&t.target),
        3 => SortKey::text(&t.owner),
        4 => SortKey::text(t.node.as_deref().unwrap_or("")),
        5 => SortKey::text(state_name(t.state)),
        6 => SortKey::num(u64::from(t.progress)),
        _ => SortKey::num(t.id),
    }
}

/// Draws task `id`'s log, following the newest lines unless scrolled.
pub fn render_log(
    app: &App,
    id: u64,
    scroll: Option<usize>,
    block: Block<'_>,
    frame: &mut Frame,
    area: Rect,
) {
    let theme = &app.theme;
    let Some(task) = app.tasks.iter().find(|t| t.id == id) else {
        frame.render_widget(
            Paragraph::new(format!(
                "Task {id} is not in the cluster's task list (any more)."
            ))
            .block(block),
            area,
        );
        return;
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{} {} ", task.kind, task.target), theme.value),
            Span::styled(state_name(task.state), state_style(task.state, theme)),
            Span::raw(format!(" {}%", task.progress)),
        ]),
        Line::styled(
            format!(
                "owner {} · node {}",
                task.owner,
                task.node.as_deref().unwrap_or("-")
            ),
            theme.label,
        ),
        Line::styled(
            format!(
                "started {} · updated {}",
                format_unix_utc(task.created_at),
                format_unix_utc(task.updated_at)
            ),
            theme.label,
        ),
    ];
    if let Some(result) = &task.result {
        let style = if task.state == TaskState::Failed {
            theme.bad
        } else {
            theme.good
        };
        lines.push(Line::styled(format!("result: {result}"), style));
    }
    lines.push(Line::raw(""));
    if task.log.is_empty() {
        lines.push(Line::styled("(no log lines yet)", theme.label));
    }
    lines.extend(task.log.iter().map(|l| Line::raw(l.clone())));
    let height = usize::from(area.height.saturating_sub(2));
    let max = lines.len().saturating_sub(height);
    let top = scroll.map_or(max, |s| s.min(max));
    let shown: Vec<Line> = lines.into_iter().skip(top).take(height).collect();
    frame.render_widget(Paragraph::new(shown).block(block), area);
}
