//! The events view (the live stream as it arrives: state changes, tasks, lags, link changes) and
//! the audit view (who changed what, from `GET /audit` and the stream's state records).

use ratatui::layout::Constraint;
use ratatui::text::Line;
use skiff_cluster::state::AuditRecord;

use super::{Column, SortKey};
use crate::cockpit::model::EventLine;
use crate::cockpit::theme::Theme;
use crate::output::format_unix_utc;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "#",
        width: Constraint::Length(5),
    },
    Column {
        title: "KIND",
        width: Constraint::Length(6),
    },
    Column {
        title: "AT",
        width: Constraint::Length(20),
    },
    Column {
        title: "WHAT",
        width: Constraint::Min(20),
    },
];

/// The audit view's columns, in order.
pub const AUDIT_COLUMNS: &[Column] = &[
    Column {
        title: "SEQ",
        width: Constraint::Length(6),
    },
    Column {
        title: "AT",
        width: Constraint::Length(20),
    },
    Column {
        title: "ACTOR",
        width: Constraint::Length(14),
    },
    Column {
        title: "OP",
        width: Constraint::Length(16),
    },
    Column {
        title: "TARGET",
        width: Constraint::Min(8),
    },
    Column {
        title: "RESULT",
        width: Constraint::Min(6),
    },
];

/// One row's cells, one per column.
pub fn cells(e: &EventLine, theme: &Theme) -> Vec<Line<'static>> {
    let kind_style = match e.kind {
        "lagged" | "link" => theme.warn,
        _ => theme.label,
    };
    vec![
        Line::raw(e.seq.to_string()),
        Line::styled(e.kind, kind_style),
        Line::raw(e.at.map_or_else(|| "-".to_owned(), format_unix_utc)),
        Line::raw(e.text.clone()),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(e: &EventLine, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(e.kind),
        2 => SortKey::opt(e.at),
        3 => SortKey::text(&e.text),
        _ => SortKey::num(e.seq),
    }
}

/// One audit row's cells, one per column.
pub fn audit_cells(a: &AuditRecord, theme: &Theme) -> Vec<Line<'static>> {
    vec![
        Line::raw(a.seq.to_string()),
        Line::raw(format_unix_utc(a.at)),
        Line::raw(a.actor.clone()),
        Line::raw(a.op.clone()),
        Line::raw(a.target.clone()),
        if a.result == "ok" {
            Line::styled("ok", theme.good)
        } else {
            Line::styled(a.result.clone(), theme.bad)
        },
    ]
}

/// What audit column `col` sorts by.
pub fn audit_sort_key(a: &AuditRecord, col: usize) -> SortKey {
    match col {
        1 => SortKey::num(a.at),
        2 => SortKey::text(&a.actor),
        3 => SortKey::text(&a.op),
        4 => SortKey::text(&a.target),
        5 => SortKey::text(&a.result),
        _ => SortKey::num(a.seq),
    }
}
