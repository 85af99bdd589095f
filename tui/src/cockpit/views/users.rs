//! The users view: every user for admins; others see themselves (`whoami`).

use ratatui::layout::Constraint;
use ratatui::text::Line;
use skiff_cluster::api::users::UserView;

use super::{Column, SortKey};
use crate::cockpit::theme::Theme;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Min(10),
    },
    Column {
        title: "ROLE",
        width: Constraint::Length(9),
    },
    Column {
        title: "STATUS",
        width: Constraint::Length(8),
    },
    Column {
        title: "KEYS",
        width: Constraint::Length(4),
    },
    Column {
        title: "CERTS",
        width: Constraint::Length(5),
    },
    Column {
        title: "TOKENS",
        width: Constraint::Length(6),
    },
    Column {
        title: "QUOTA MEM",
        width: Constraint::Length(9),
    },
    Column {
        title: "QUOTA CPU",
        width: Constraint::Length(9),
    },
];

/// One row's cells, one per column.
pub fn cells(u: &UserView, theme: &Theme) -> Vec<Line<'static>> {
    let quota = |q: Option<u64>| q.map_or_else(|| "-".to_owned(), |v| v.to_string());
    vec![
        Line::raw(u.name.clone()),
        Line::raw(u.role.as_str()),
        if u.disabled {
            Line::styled("disabled", theme.bad)
        } else {
            Line::styled("active", theme.good)
        },
        Line::raw(u.ssh_keys.len().to_string()),
        Line::raw(u.credentials.len().to_string()),
        Line::raw(u.tokens.len().to_string()),
        Line::raw(
            u.quotas
                .memory_mib
                .map_or_else(|| "-".to_owned(), super::servers::mib),
        ),
        Line::raw(quota(u.quotas.vcpus.map(u64::from))),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(u: &UserView, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(u.role.as_str()),
        2 => SortKey::num(u64::from(u.disabled)),
        3 => SortKey::num(u.ssh_keys.len() as u64),
        4 => SortKey::num(u.credentials.len() as u64),
        5 => SortKey::num(u.tokens.len() as u64),
        6 => SortKey::opt(u.quotas.memory_mib),
        7 => SortKey::opt(u.quotas.vcpus.map(u64::from)),
        _ => SortKey::text(&u.name),
    }
}
