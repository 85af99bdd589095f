//! The servers view: desired against actual state and live load of every server the user may see.

use ratatui::layout::Constraint;
use ratatui::text::Line;
use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::api::tasks::Convergence;
use skiff_cluster::state::servers::PowerState;

use super::{Column, SortKey};
use crate::cockpit::model::ServerRow;
use crate::cockpit::theme::Theme;

/// The columns, in order.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Min(10),
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
        title: "DESIRED",
        width: Constraint::Length(9),
    },
    Column {
        title: "POWER",
        width: Constraint::Length(8),
    },
    Column {
        title: "STATE",
        width: Constraint::Length(11),
    },
    Column {
        title: "CPU",
        width: Constraint::Length(5),
    },
    Column {
        title: "MEMORY",
        width: Constraint::Length(9),
    },
];

/// `running`, `stopped`, `suspended`.
pub fn desired_name(p: PowerState) -> &'static str {
    match p {
        PowerState::Running => "running",
        PowerState::Stopped => "stopped",
        PowerState::Suspended => "suspended",
    }
}

/// What the node reported, in a word.
pub fn power_name(p: Option<DomainPower>) -> &'static str {
    match p {
        Some(DomainPower::Running) => "running",
        Some(DomainPower::Shutoff) => "shutoff",
        Some(DomainPower::Paused) => "paused",
        Some(DomainPower::Crashed) => "crashed",
        None => "-",
    }
}

/// How the server compares with its desired state, in a word.
pub fn convergence_name(c: Option<Convergence>) -> &'static str {
    match c {
        Some(Convergence::InSync) => "in-sync",
        Some(Convergence::Converging) => "converging",
        Some(Convergence::TaskOpen) => "task-open",
        Some(Convergence::Paused) => "paused",
        Some(Convergence::NodeDead) => "node-dead",
        Some(Convergence::NodeUnreachable) => "unreachable",
        Some(Convergence::Unplaced) => "unplaced",
        None => "unknown",
    }
}

/// Memory in MiB as `512M` or `4.0G`.
pub fn mib(m: u64) -> String {
    if m >= 1024 {
        format!("{:.1}G", m as f64 / 1024.0)
    } else {
        format!("{m}M")
    }
}

/// One row's cells, one per column.
pub fn cells(s: &ServerRow, theme: &Theme) -> Vec<Line<'static>> {
    let power = s.actual.as_ref().and_then(|a| a.power);
    let convergence = s.actual.as_ref().map(|a| a.convergence);
    let power_style = match power {
        Some(DomainPower::Running) => theme.good,
        Some(DomainPower::Crashed) => theme.bad,
        _ => theme.label,
    };
    let state_style = match convergence {
        Some(Convergence::InSync) => theme.good,
        Some(Convergence::Converging | Convergence::TaskOpen | Convergence::Unplaced) => theme.warn,
        Some(_) => theme.bad,
        None => theme.label,
    };
    vec![
        Line::raw(s.view.name.clone()),
        Line::raw(s.view.owner.clone()),
        Line::raw(s.view.node.clone().unwrap_or_else(|| "-".into())),
        Line::raw(desired_name(s.view.desired)),
        Line::styled(power_name(power), power_style),
        Line::styled(convergence_name(convergence), state_style),
        Line::raw(
            s.cpu_percent()
                .map_or_else(|| "-".to_owned(), |p| format!("{p}%")),
        ),
        Line::raw(mib(s.memory_mib())),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(s: &ServerRow, col: usize) -> SortKey {
    let power = s.actual.as_ref().and_then(|a| a.power);
    let convergence = s.actual.as_ref().map(|a| a.convergence);
    match col {
        1 => SortKey::text(&s.view.owner),
        2 => SortKey::text(s.view.node.as_deref().unwrap_or("")),
        3 => SortKey::text(desired_name(s.view.desired)),
        4 => SortKey::text(power_name(power)),
        5 => SortKey::text(convergence_name(convergence)),
        6 => SortKey::opt(s.cpu_percent()),
        7 => SortKey::num(s.memory_mib()),
        _ => SortKey::text(&s.view.name),
    }
}
