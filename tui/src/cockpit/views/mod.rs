//! The cockpit's views: what each one lists (columns, keys, sort keys) and how it draws.
//!
//! A list view is described by its columns and three functions of one item (`key`, `cells`,
//! `sort_key`); [`rows`] filters and sorts indices once when something changes, and
//! [`table::render`] formats only the rows that fit on the screen.

pub mod backups;
pub mod connections;
pub mod console;
pub mod describe;
pub mod events;
pub mod help;
pub mod images;
pub mod nodes;
pub mod overview;
pub mod pools;
pub mod servers;
pub mod stacks;
pub mod table;
pub mod tasks;
pub mod users;

use ratatui::layout::Constraint;
use ratatui::text::Line;

use super::app::{App, ListState, Scope};
use super::theme::Theme;

/// Every view the `:` command line can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViewKind {
    Overview,
    Nodes,
    Servers,
    Tasks,
    Users,
    Events,
    Audit,
    Pools,
    Images,
    Backups,
    Connections,
    Stacks,
}

impl ViewKind {
    /// The canonical command name, also the breadcrumb.
    pub fn name(self) -> &'static str {
        match self {
            ViewKind::Overview => "overview",
            ViewKind::Nodes => "nodes",
            ViewKind::Servers => "servers",
            ViewKind::Tasks => "tasks",
            ViewKind::Users => "users",
            ViewKind::Events => "events",
            ViewKind::Audit => "audit",
            ViewKind::Pools => "pools",
            ViewKind::Images => "images",
            ViewKind::Backups => "backups",
            ViewKind::Connections => "connections",
            ViewKind::Stacks => "stacks",
        }
    }
}

/// Whether cells cut short on a narrow terminal end in `…`: views whose cells would read as
/// something else when cut (a cut address is another address, a cut port list other ports, a
/// cut description a whole one).
pub fn marks_cuts(view: ViewKind) -> bool {
    matches!(view, ViewKind::Connections | ViewKind::Stacks)
}

/// One column of a list.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub width: Constraint,
}

/// What a column sorts by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    /// Numbers sort before text, and missing values first.
    Num(i128),
    Text(String),
}

impl SortKey {
    /// A number that may be missing (missing sorts first).
    pub fn opt(n: Option<u64>) -> SortKey {
        SortKey::Num(n.map_or(-1, i128::from))
    }

    /// A count or amount.
    pub fn num(n: u64) -> SortKey {
        SortKey::Num(i128::from(n))
    }

    /// Text, compared as written.
    pub fn text(s: &str) -> SortKey {
        SortKey::Text(s.to_owned())
    }
}

/// The column and order a fresh list sorts by: newest first for logs, by name otherwise.
pub fn default_sort(view: ViewKind) -> (usize, bool) {
    match view {
        ViewKind::Tasks | ViewKind::Events | ViewKind::Audit => (0, true),
        _ => (0, false),
    }
}

/// The columns of a list view (none for views that are not lists).
pub fn columns(view: ViewKind) -> &'static [Column] {
    match view {
        ViewKind::Nodes => nodes::COLUMNS,
        ViewKind::Servers => servers::COLUMNS,
        ViewKind::Tasks => tasks::COLUMNS,
        ViewKind::Users => users::COLUMNS,
        ViewKind::Events => events::COLUMNS,
        ViewKind::Audit => events::AUDIT_COLUMNS,
        ViewKind::Pools => pools::COLUMNS,
        ViewKind::Images => images::COLUMNS,
        ViewKind::Backups => backups::COLUMNS,
        ViewKind::Connections => connections::COLUMNS,
        ViewKind::Stacks => stacks::COLUMNS,
        _ => &[],
    }
}

/// How many items the view's data holds.
pub fn len(app: &App, view: ViewKind) -> usize {
    match view {
        ViewKind::Nodes => app.nodes.len(),
        ViewKind::Servers => app.servers.len(),
        ViewKind::Tasks => app.tasks.len(),
        ViewKind::Users => app.users.len(),
        ViewKind::Events => app.events.len(),
        ViewKind::Audit => app.audit.len(),
        ViewKind::Pools => app.pools.len(),
        ViewKind::Images => app.images.len(),
        ViewKind::Backups => app.backups.len(),
        ViewKind::Connections => app.connections.len(),
        ViewKind::Stacks => app.stacks.len(),
        _ => 0,
    }
}

/// The unique key (name, id) of item `i`, which selections follow.
pub fn key(app: &App, view: ViewKind, i: usize) -> Option<String> {
    Some(match view {
        ViewKind::Nodes => app.nodes.get(i)?.name.clone(),
        ViewKind::Servers => app.servers.get(i)?.view.name.clone(),
        ViewKind::Tasks => app.tasks.get(i)?.id.to_string(),
        ViewKind::Users => app.users.get(i)?.name.clone(),
        ViewKind::Events => app.events.get(i)?.seq.to_string(),
        ViewKind::Audit => app.audit.get(i)?.seq.to_string(),
        ViewKind::Pools => app.pools.get(i)?.key(),
        ViewKind::Images => app.images.get(i)?.name.clone(),
        ViewKind::Backups => app.backups.get(i)?.id.to_string(),
        ViewKind::Connections => app.connections.get(i)?.name.clone(),
        ViewKind::Stacks => app.stacks.get(i)?.name.clone(),
        _ => return None,
    })
}

/// Whether item `i` has this key (without allocating for named items).
pub fn has_key(app: &App, view: ViewKind, i: usize, wanted: &str) -> bool {
    match view {
        ViewKind::Nodes => app.nodes.get(i).is_some_and(|n| n.name == wanted),
        ViewKind::Servers => app.servers.get(i).is_some_and(|s| s.view.name == wanted),
        ViewKind::Users => app.users.get(i).is_some_and(|u| u.name == wanted),
        ViewKind::Connections => app.connections.get(i).is_some_and(|c| c.name == wanted),
        ViewKind::Stacks => app.stacks.get(i).is_some_and(|s| s.name == wanted),
        _ => key(app, view, i).as_deref() == Some(wanted),
    }
}

/// The index of the item with this key.
pub fn find(app: &App, view: ViewKind, wanted: &str) -> Option<usize> {
    (0..len(app, view)).find(|&i| has_key(app, view, i, wanted))
}

/// The cells of item `i`, one per column.
pub fn cells(app: &App, view: ViewKind, i: usize, theme: &Theme) -> Vec<Line<'static>> {
    let cells = match view {
        ViewKind::Nodes => app.nodes.get(i).map(|n| nodes::cells(n, theme)),
        ViewKind::Servers => app.servers.get(i).map(|s| servers::cells(s, theme)),
        ViewKind::Tasks => app.tasks.get(i).map(|t| tasks::cells(t, theme)),
        ViewKind::Users => app.users.get(i).map(|u| users::cells(u, theme)),
        ViewKind::Events => app.events.get(i).map(|e| events::cells(e, theme)),
        ViewKind::Audit => app.audit.get(i).map(|a| events::audit_cells(a, theme)),
        ViewKind::Pools => app.pools.get(i).map(|p| pools::cells(p, theme)),
        ViewKind::Images => app.images.get(i).map(|im| images::cells(im, theme)),
        ViewKind::Backups => app.backups.get(i).map(|b| backups::cells(b, theme)),
        ViewKind::Connections => app.connections.get(i).map(|c| connections::cells(c, theme)),
        ViewKind::Stacks => app.stacks.get(i).map(|st| stacks::cells(app, st, theme)),
        _ => None,
    };
    cells.unwrap_or_default()
}

fn sort_key(app: &App, view: ViewKind, i: usize, col: usize) -> SortKey {
    let key = match view {
        ViewKind::Nodes => app.nodes.get(i).map(|n| nodes::sort_key(n, col)),
        ViewKind::Servers => app.servers.get(i).map(|s| servers::sort_key(s, col)),
        ViewKind::Tasks => app.tasks.get(i).map(|t| tasks::sort_key(t, col)),
        ViewKind::Users => app.users.get(i).map(|u| users::sort_key(u, col)),
        ViewKind::Events => app.events.get(i).map(|e| events::sort_key(e, col)),
        ViewKind::Audit => app.audit.get(i).map(|a| events::audit_sort_key(a, col)),
        ViewKind::Pools => app.pools.get(i).map(|p| pools::sort_key(p, col)),
        ViewKind::Images => app.images.get(i).map(|im| images::sort_key(im, col)),
        ViewKind::Backups => app.backups.get(i).map(|b| backups::sort_key(b, col)),
        ViewKind::Connections => app
            .connections
            .get(i)
            .map(|c| connections::sort_key(c, col)),
        ViewKind::Stacks => app.stacks.get(i).map(|st| stacks::sort_key(app, st, col)),
        _ => None,
    };
    key.unwrap_or(SortKey::Num(-1))
}

fn in_scope(app: &App, view: ViewKind, scope: &Scope, i: usize) -> bool {
    match (view, scope) {
        (ViewKind::Servers, Scope::Node(node)) => app
            .servers
            .get(i)
            .is_some_and(|s| s.view.node.as_deref() == Some(node.as_str())),
        (ViewKind::Pools, Scope::Node(node)) => app.pools.get(i).is_some_and(|p| &p.node == node),
        (ViewKind::Images, Scope::Node(node)) => {
            app.images.get(i).is_some_and(|im| &im.node == node)
        }
        (ViewKind::Servers, Scope::Stack(stack)) => app.servers.get(i).is_some_and(|s| {
            app.stacks
                .binary_search_by(|st| st.name.as_str().cmp(stack))
                .ok()
                .and_then(|at| app.stacks.get(at))
                .is_some_and(|st| st.servers.iter().any(|m| m.name == s.view.name))
        }),
        _ => true,
    }
}

/// The row text the filter searches: every cell, separated by spaces.
fn haystack(app: &App, view: ViewKind, i: usize) -> String {
    let theme = Theme::mono();
    let mut text = String::new();
    for cell in cells(app, view, i, &theme) {
        for span in &cell.spans {
            text.push_str(&span.content);
        }
        text.push(' ');
    }
    text
}

/// The list's items after its scope and filter, in its sort order (ties by key order of the
/// data, which is by name).
pub fn rows(app: &App, ls: &ListState) -> Vec<usize> {
    let view = ls.view;
    let mut rows: Vec<usize> = (0..len(app, view))
        .filter(|&i| ls.scope.as_ref().is_none_or(|s| in_scope(app, view, s, i)))
        .filter(|&i| ls.filter.is_empty() || ls.filter.matches(&haystack(app, view, i)))
        .collect();
    let col = ls.sort_col;
    let mut keyed: Vec<(SortKey, usize)> = rows
        .iter()
        .map(|&i| (sort_key(app, view, i, col), i))
        .collect();
    keyed.sort_by(|a, b| {
        let order = a.0.cmp(&b.0).then(a.1.cmp(&b.1));
        if ls.sort_desc {
            order.reverse()
        } else {
            order
        }
    });
    rows.clear();
    rows.extend(keyed.into_iter().map(|(_, i)| i));
    rows
}
