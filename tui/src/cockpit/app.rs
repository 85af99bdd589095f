//! Cockpit state: what the last refresh said, what the operator selected, and how keys change it.
//! Nothing here touches the terminal or the network, so every transition is unit-testable.

use skiff_cluster::api::{ClusterView, NodeView};

/// What the background refresher reports after each round.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The leader answered both the cluster and the node list.
    Snapshot {
        endpoint: String,
        cluster: ClusterView,
        nodes: Vec<NodeView>,
    },
    /// No node could be reached.
    Unreachable { error: String },
    /// A node answered but refused or could not serve (e.g. no leader during an election).
    Refused { endpoint: String, error: String },
}

/// How the cockpit is connected to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The last refresh succeeded.
    Live,
    /// The last refresh could not reach any endpoint.
    Unreachable { error: String },
    /// The last refresh reached a node that could not answer.
    Refused { error: String },
}

/// A key press, already decoded from whatever terminal it came from (local or SSH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
    Enter,
    Tab,
    BackTab,
    Backspace,
    Delete,
    Esc,
    /// A printable character (shifted letters arrive as upper case).
    Char(char),
    /// Control plus a letter, always lower case: `Ctrl('c')`.
    Ctrl(char),
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    Redraw,
    /// Ask the refresher for a round now.
    Refresh,
    Quit,
}

/// Rows a page-up/page-down moves.
const PAGE: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// From the credential: known before any answer.
    pub cluster_id: String,
    pub user: String,
    /// The endpoint that answered last (or the one being tried).
    pub endpoint: String,
    pub link: Link,
    pub cluster: Option<ClusterView>,
    /// Sorted by name; kept from the last good refresh while the cluster is unreachable.
    pub nodes: Vec<NodeView>,
    /// Name of the selected node, kept across refreshes.
    pub selected: Option<String>,
    pub show_help: bool,
    /// Successful refreshes so far.
    pub refreshes: u64,
}

impl App {
    pub fn new(
        cluster_id: impl Into<String>,
        user: impl Into<String>,
        endpoint: impl Into<String>,
    ) -> Self {
        App {
            cluster_id: cluster_id.into(),
            user: user.into(),
            endpoint: endpoint.into(),
            link: Link::Connecting,
            cluster: None,
            nodes: Vec::new(),
            selected: None,
            show_help: false,
            refreshes: 0,
        }
    }

    /// Index of the selected node in `nodes`.
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_ref()?;
        self.nodes.iter().position(|n| &n.name == name)
    }

    pub fn selected_node(&self) -> Option<&NodeView> {
        self.selected_index().map(|i| &self.nodes[i])
    }

    /// Whether the nodes shown come from an earlier refresh than the last attempt.
    pub fn is_stale(&self) -> bool {
        !matches!(self.link, Link::Live | Link::Connecting)
    }

    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Snapshot {
                endpoint,
                cluster,
                mut nodes,
            } => {
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                let old_index = self.selected_index();
                self.endpoint = endpoint;
                self.link = Link::Live;
                if !cluster.cluster_id.is_empty() {
                    self.cluster_id = cluster.cluster_id.clone();
                }
                self.cluster = Some(cluster);
                self.nodes = nodes;
                self.refreshes += 1;
                self.reselect(old_index);
            }
            Update::Unreachable { error } => {
                self.link = Link::Unreachable { error };
            }
            Update::Refused { endpoint, error } => {
                self.endpoint = endpoint;
                self.link = Link::Refused { error };
            }
        }
    }

    /// Keeps the selection on the same node; if it left, on the row where it was.
    fn reselect(&mut self, old_index: Option<usize>) {
        if self.nodes.is_empty() {
            self.selected = None;
            return;
        }
        if self.selected_index().is_some() {
            return;
        }
        let index = old_index.unwrap_or(0).min(self.nodes.len() - 1);
        self.selected = Some(self.nodes[index].name.clone());
    }

    fn select_index(&mut self, index: usize) {
        if let Some(node) = self.nodes.get(index) {
            self.selected = Some(node.name.clone());
        }
    }

    fn move_by(&mut self, delta: isize) {
        if self.nodes.is_empty() {
            return;
        }
        let last = self.nodes.len() - 1;
        let current = self.selected_index().unwrap_or(0);
        let next = current.saturating_add_signed(delta).min(last);
        self.select_index(next);
    }

    pub fn handle_key(&mut self, key: Key) -> Effect {
        match key {
            Key::Char('q') | Key::Ctrl('c') => return Effect::Quit,
            Key::Esc if self.show_help => self.show_help = false,
            Key::Esc => return Effect::None,
            Key::Up | Key::Char('k') => self.move_by(-1),
            Key::Down | Key::Char('j') => self.move_by(1),
            Key::PageUp => self.move_by(-(PAGE as isize)),
            Key::PageDown => self.move_by(PAGE as isize),
            Key::Home | Key::Char('g') => self.select_index(0),
            Key::End | Key::Char('G') => self.select_index(self.nodes.len().saturating_sub(1)),
            Key::Char('?') => self.show_help = !self.show_help,
            Key::Char('r') => return Effect::Refresh,
            _ => return Effect::None,
        }
        Effect::Redraw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tests::{sample_node, sample_nodes};

    fn cluster() -> ClusterView {
        ClusterView {
            cluster_id: "c-42".into(),
            leader: Some("node-1".into()),
            term: 7,
            voters: vec!["node-1".into(), "node-2".into(), "node-3".into()],
            learners: vec![],
        }
    }

    fn snapshot(nodes: Vec<NodeView>) -> Update {
        Update::Snapshot {
            endpoint: "10.0.0.1:7000".into(),
            cluster: cluster(),
            nodes,
        }
    }

    #[test]
    fn first_snapshot_selects_the_first_node_by_name() {
        let mut app = App::new("c-42", "admin", "10.0.0.9:7000");
        assert_eq!(app.link, Link::Connecting);
        app.apply(snapshot(sample_nodes()));
        assert_eq!(app.link, Link::Live);
        assert_eq!(app.endpoint, "10.0.0.1:7000");
        let names: Vec<_> = app.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["node-1", "node-2", "node-3"]);
        assert_eq!(app.selected.as_deref(), Some("node-1"));
    }

    #[test]
    fn selection_follows_the_node_across_refreshes() {
        let mut app = App::new("c", "u", "e");
        app.apply(snapshot(sample_nodes()));
        app.handle_key(Key::Char('j'));
        assert_eq!(app.selected.as_deref(), Some("node-2"));
        // A new node sorts before the selected one: the selection stays on node-2.
        let mut nodes = sample_nodes();
        nodes.push(sample_node("node-0", 4));
        app.apply(snapshot(nodes));
        assert_eq!(app.selected.as_deref(), Some("node-2"));
        assert_eq!(app.selected_index(), Some(2));
        // node-2 leaves: the selection stays on its row.
        let nodes: Vec<_> = app
            .nodes
            .iter()
            .filter(|n| n.name != "node-2")
            .cloned()
            .collect();
        app.apply(snapshot(nodes));
        assert_eq!(app.selected.as_deref(), Some("node-3"));
        app.apply(snapshot(vec![]));
        assert_eq!(app.selected, None);
    }

    #[test]
    fn movement_is_clamped() {
        let mut app = App::new("c", "u", "e");
        assert_eq!(app.handle_key(Key::Down), Effect::Redraw);
        assert_eq!(app.selected, None);
        app.apply(snapshot(sample_nodes()));
        app.handle_key(Key::Up);
        assert_eq!(app.selected.as_deref(), Some("node-1"));
        app.handle_key(Key::PageDown);
        assert_eq!(app.selected.as_deref(), Some("node-3"));
        app.handle_key(Key::Char('g'));
        assert_eq!(app.selected.as_deref(), Some("node-1"));
        app.handle_key(Key::End);
        assert_eq!(app.selected.as_deref(), Some("node-3"));
        app.handle_key(Key::Char('k'));
        assert_eq!(app.selected.as_deref(), Some("node-2"));
    }

    #[test]
    fn keys_for_quit_help_and_refresh() {
        let mut app = App::new("c", "u", "e");
        assert_eq!(app.handle_key(Key::Char('q')), Effect::Quit);
        assert_eq!(app.handle_key(Key::Ctrl('c')), Effect::Quit);
        assert_eq!(app.handle_key(Key::Char('r')), Effect::Refresh);
        app.handle_key(Key::Char('?'));
        assert!(app.show_help);
        app.handle_key(Key::Esc);
        assert!(!app.show_help);
        assert_eq!(app.handle_key(Key::Char('x')), Effect::None);
    }

    #[test]
    fn unreachable_keeps_the_last_known_nodes() {
        let mut app = App::new("c", "u", "e");
        app.apply(snapshot(sample_nodes()));
        app.apply(Update::Unreachable {
            error: "cannot reach the cluster at a:1: refused".into(),
        });
        assert!(app.is_stale());
        assert_eq!(app.nodes.len(), 3);
        assert_eq!(app.selected.as_deref(), Some("node-1"));
        app.apply(snapshot(sample_nodes()));
        assert!(!app.is_stale());
        assert_eq!(app.refreshes, 2);
    }
}
