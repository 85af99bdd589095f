//! The storage pools view, derived from each node's reported pools (`NodeView::storage`).

use ratatui::layout::Constraint;
use ratatui::text::Line;

use super::table::gauge;
use super::{Column, SortKey};
use crate::cockpit::model::PoolRow;
use crate::cockpit::theme::Theme;
use crate::output::{format_bytes, percent};

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NODE",
        width: Constraint::Min(8),
    },
    Column {
        title: "POOL",
        width: Constraint::Min(8),
    },
    Column {
        title: "SIZE",
        width: Constraint::Length(10),
    },
    Column {
        title: "FREE",
        width: Constraint::Length(10),
    },
    Column {
        title: "USED",
        width: Constraint::Length(16),
    },
];

/// One row's cells, one per column.
pub fn cells(p: &PoolRow, theme: &Theme) -> Vec<Line<'static>> {
    vec![
        Line::raw(p.node.clone()),
        Line::raw(p.name.clone()),
        Line::raw(format_bytes(p.total)),
        Line::raw(format_bytes(p.total.saturating_sub(p.used))),
        gauge(percent(p.used, p.total), 16, theme),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(p: &PoolRow, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(&p.name),
        2 => SortKey::num(p.total),
        3 => SortKey::num(p.total.saturating_sub(p.used)),
        4 => SortKey::num(percent(p.used, p.total)),
        _ => SortKey::Text(p.key()),
    }
}
