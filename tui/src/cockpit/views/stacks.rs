//! The stacks view (`GET /api/v1/stacks`): named groups of servers installed together from a
//! recipe, with how many of their servers run.

use ratatui::layout::Constraint;
use ratatui::text::Line;
use skiff_cluster::agentproto::DomainPower;
use skiff_cluster::api::stacks::StackView;
use skiff_cluster::state::servers::PowerState;

use super::{Column, SortKey};
use crate::cockpit::app::App;
use crate::cockpit::theme::Theme;
use crate::output::format_unix_utc;

/// The columns, in order: the name and the description share what the others leave, the
/// description twice as much.
pub const COLUMNS: &[Column] = &[
    Column {
        title: "NAME",
        width: Constraint::Fill(1),
    },
    Column {
        title: "SERVERS",
        width: Constraint::Length(7),
    },
    Column {
        title: "RUNNING",
        width: Constraint::Length(7),
    },
    Column {
        title: "OWNER",
        width: Constraint::Length(8),
    },
    Column {
        title: "CREATED",
        width: Constraint::Length(10),
    },
    Column {
        title: "DESCRIPTION",
        width: Constraint::Fill(2),
    },
];

/// Whether member `name` of a stack runs: what the reconciler last saw of it when the cockpit
/// knows the server (`GET /actual`), else what the stack's own copy says is desired.
pub fn member_running(app: &App, name: &str, desired: PowerState) -> bool {
    let row = app
        .servers
        .binary_search_by(|s| s.view.name.as_str().cmp(name))
        .ok()
        .and_then(|i| app.servers.get(i));
    match row.and_then(|r| r.actual.as_ref()) {
        Some(actual) => actual.power == Some(DomainPower::Running),
        None => desired == PowerState::Running,
    }
}

/// How many of the stack's servers run (see [`member_running`]).
pub fn running(app: &App, st: &StackView) -> usize {
    st.servers
        .iter()
        .filter(|s| member_running(app, &s.name, s.desired))
        .count()
}

/// The day (UTC) a stack was made, `2023-11-15`; describe gives the time too.
pub fn created_day(secs: u64) -> String {
    let mut at = format_unix_utc(secs);
    at.truncate(10);
    at
}

/// One row's cells, one per column. RUNNING is green when every server runs, yellow when some
/// do.
pub fn cells(app: &App, st: &StackView, theme: &Theme) -> Vec<Line<'static>> {
    let total = st.servers.len();
    let up = running(app, st);
    let style = match up {
        0 => theme.label,
        n if n == total => theme.good,
        _ => theme.warn,
    };
    vec![
        Line::raw(st.name.clone()),
        Line::raw(total.to_string()),
        Line::styled(up.to_string(), style),
        Line::raw(st.owner.clone()),
        Line::raw(created_day(st.created_at)),
        Line::raw(if st.description.is_empty() {
            "-".to_owned()
        } else {
            st.description.clone()
        }),
    ]
}

/// What column `col` sorts by.
pub fn sort_key(app: &App, st: &StackView, col: usize) -> SortKey {
    match col {
        1 => SortKey::num(st.servers.len() as u64),
        2 => SortKey::num(running(app, st) as u64),
        3 => SortKey::text(&st.owner),
        4 => SortKey::num(st.created_at),
        5 => SortKey::text(&st.description),
        _ => SortKey::text(&st.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cockpit::fixtures;

    fn stack(app: &App, name: &str) -> StackView {
        app.stacks
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .expect("in the fixtures")
    }

    #[test]
    fn running_counts_what_the_reconciler_saw_else_the_desired_power() {
        let app = fixtures::live_app();
        // web-1 and web-2 run.
        assert_eq!(running(&app, &stack(&app, "web")), 2);
        // db-1 should run, but the reconciler saw it shut off.
        assert_eq!(running(&app, &stack(&app, "db")), 0);
        // lab's servers are not in the servers list: the stack's own copy says one should run.
        assert_eq!(running(&app, &stack(&app, "lab")), 1);
    }

    #[test]
    fn the_list_shows_the_day_of_creation() {
        assert_eq!(created_day(1_700_000_000), "2023-11-14");
    }

    #[test]
    fn empty_descriptions_show_a_dash() {
        let app = fixtures::live_app();
        let cells = cells(&app, &stack(&app, "lab"), &Theme::mono());
        assert_eq!(cells[5].spans[0].content, "-");
    }
}
