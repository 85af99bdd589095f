//! The backups view (`GET /api/v1/backups`): copies of images and stopped servers.

use ratatui::layout::Constraint;
use ratatui::text::{Line, Span};
use skiff_cluster::api::backups::BackupView;

use super::{Column, SortKey};
use crate::cockpit::theme::Theme;
use crate::output::format_unix_utc;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "ID",
        width: Constraint::Length(6),
    },
    Column {
        title: "OF",
        width: Constraint::Min(14),
    },
    Column {
        title: "OWNER",
        width: Constraint::Length(10),
    },
    Column {
        title: "CREATED",
        width: Constraint::Length(20),
    },
    Column {
        title: "KIND",
        width: Constraint::Length(7),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(12),
    },
];

/// One row's cells, one per column.
pub fn cells(b: &BackupView, theme: &Theme) -> Vec<Line<'static>> {
    let state = match (b.ready, b.busy_task) {
        (_, Some(t)) => Span::styled(format!("task {t}"), theme.warn),
        (true, None) => Span::styled("ready", theme.good),
        (false, None) => Span::styled("not made", theme.bad),
    };
    vec![
        Line::raw(b.id.to_string()),
        Line::raw(b.target.describe()),
        Line::raw(b.owner.clone()),
        Line::raw(format_unix_utc(b.created_at)),
        Line::raw(if b.scheduled { "daily" } else { "manual" }),
        Line::from(state),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(b: &BackupView, col: usize) -> SortKey {
    match col {
        1 => SortKey::Text(b.target.describe()),
        2 => SortKey::text(&b.owner),
        3 => SortKey::num(b.created_at),
        4 => SortKey::num(u64::from(b.scheduled)),
        5 => SortKey::num(u64::from(b.ready)),
        _ => SortKey::num(b.id),
    }
}
