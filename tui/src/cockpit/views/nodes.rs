//! The nodes view: every member with its role, health and load.

use ratatui::layout::Constraint;
use ratatui::text::{Line, Span};
use skiff_cluster::api::NodeView;

use super::table::gauge;
use super::{Column, SortKey};
use crate::cockpit::model::node_cpu_percent;
use crate::cockpit::theme::Theme;
use crate::output::{percent, short_role};

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Min(8),
    },
    Column {
        title: "ADDRESS",
        width: Constraint::Length(15),
    },
    Column {
        title: "ROLE",
        width: Constraint::Length(7),
    },
    Column {
        title: "ALIVE",
        width: Constraint::Length(5),
    },
    Column {
        title: "TERM",
        width: Constraint::Length(5),
    },
    Column {
        title: "CPU",
        width: Constraint::Length(10),
    },
    Column {
        title: "MEMORY",
        width: Constraint::Length(10),
    },
    Column {
        title: "SRV",
        width: Constraint::Length(4),
    },
];

/// One row's cells, one per column.
pub fn cells(n: &NodeView, theme: &Theme) -> Vec<Line<'static>> {
    let name = if n.leader {
        Line::from(vec![
            Span::styled(
                n.name.clone(),
                if n.alive { theme.value } else { theme.bad },
            ),
            Span::styled(" ★", theme.warn),
        ])
    } else if n.alive {
        Line::raw(n.name.clone())
    } else {
        Line::styled(n.name.clone(), theme.bad)
    };
    let alive = if n.alive {
        Line::styled("yes", theme.good)
    } else {
        Line::styled("no", theme.bad)
    };
    let role = match (short_role(&n.role), n.voter) {
        ("admin", true) => "voter".to_owned(),
        (role, _) => role.to_owned(),
    };
    vec![
        name,
        Line::raw(n.address.clone()),
        Line::raw(role),
        alive,
        Line::raw(n.term.to_string()),
        gauge(node_cpu_percent(n), 10, theme),
        if n.memory_total == 0 {
            Line::styled("-", theme.label)
        } else {
            gauge(percent(n.memory_used, n.memory_total), 10, theme)
        },
        Line::raw(n.servers.to_string()),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(n: &NodeView, col: usize) -> SortKey {
    match col {
        1 => SortKey::text(&n.address),
        2 => SortKey::text(&n.role),
        3 => SortKey::num(u64::from(n.alive)),
        4 => SortKey::num(n.term),
        5 => SortKey::num(node_cpu_percent(n)),
        6 => SortKey::num(percent(n.memory_used, n.memory_total)),
        7 => SortKey::num(u64::from(n.servers)),
        _ => SortKey::text(&n.name),
    }
}
