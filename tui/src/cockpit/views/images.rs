//! The images view (`GET /api/v1/images`): the caller's images and the admins' masters.

use ratatui::layout::Constraint;
use ratatui::text::{Line, Span};
use skiff_cluster::api::images::ImageView;

use super::{Column, SortKey};
use crate::cockpit::theme::Theme;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Min(10),
    },
    Column {
        title: "OWNER",
        width: Constraint::Length(10),
    },
    Column {
        title: "NODE",
        width: Constraint::Length(10),
    },
    Column {
        title: "SIZE",
        width: Constraint::Length(8),
    },
    Column {
        title: "KIND",
        width: Constraint::Length(14),
    },
    Column {
        title: "SNAPS",
        width: Constraint::Length(5),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(14),
    },
];

/// `master`, `clone of X`, or `image`.
fn kind(i: &ImageView) -> String {
    match (&i.parent, i.master) {
        (_, true) => "master".into(),
        (Some(p), false) => format!("clone of {p}"),
        (None, false) => "image".into(),
    }
}

/// One row's cells, one per column.
pub fn cells(i: &ImageView, theme: &Theme) -> Vec<Line<'static>> {
    let state = match (i.ready, i.busy_task) {
        (_, Some(t)) => Span::styled(format!("task {t}"), theme.warn),
        (true, None) => Span::styled("ready", theme.good),
        (false, None) => Span::styled("not made", theme.bad),
    };
    vec![
        Line::raw(i.name.clone()),
        Line::raw(i.owner.clone()),
        Line::raw(i.node.clone()),
        Line::raw(format!("{} GiB", i.size_gib)),
        Line::raw(kind(i)),
        Line::raw(i.snapshots.len().to_string()),
        Line::from(state),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(i: &ImageView, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(&i.owner),
        2 => SortKey::text(&i.node),
        3 => SortKey::num(i.size_gib),
        4 => SortKey::Text(kind(i)),
        5 => SortKey::num(i.snapshots.len() as u64),
        6 => SortKey::num(u64::from(i.ready)),
        _ => SortKey::text(&i.name),
    }
}
