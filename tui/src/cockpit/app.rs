//! Cockpit state: what the cluster said, where the operator is (breadcrumbs, filters, sorts,
//! selections, dialogs), and how keys change it. Nothing here touches the terminal or the
//! network, so every transition is unit-testable; what must reach the network leaves as an
//! [`Effect`].

use std::collections::{BTreeMap, VecDeque};

use skiff_cluster::api::backups::BackupView;
use skiff_cluster::api::connections::{ConnectionView, NetworkView};
use skiff_cluster::api::events::ApiEvent;
use skiff_cluster::api::images::ImageView;
use skiff_cluster::api::servers::ServerView;
use skiff_cluster::api::stacks::StackView;
use skiff_cluster::api::tasks::{ActualView, NodeActual};
use skiff_cluster::api::users::UserView;
use skiff_cluster::api::{ClusterView, NodeView};
use skiff_cluster::state::{AuditRecord, TaskRecord, UserRole};

use super::command::{self, Command};
use super::console::{self, ConsoleBuffer};
use super::filter::Filter;
use super::keymap::{Action, KeyMap};
use super::model::{node_cpu_percent, EventLine, NodeHistory, PoolRow, ServerRow, MAX_EVENTS};
use super::theme::Theme;
use super::views::{self, ViewKind};

/// Everything one full round of `GET`s returned. A list the API refused (e.g. users for a
/// non-admin) is `None` and the previous copy is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The node that answered.
    pub endpoint: String,
    pub cluster: ClusterView,
    pub nodes: Vec<NodeView>,
    pub servers: Option<Vec<ServerView>>,
    pub actual: Option<ActualView>,
    pub tasks: Option<Vec<TaskRecord>>,
    /// The caller (`whoami`): its role decides what the cockpit offers.
    pub me: Option<UserView>,
    /// Every user (admins only).
    pub users: Option<Vec<UserView>>,
    /// The newest audit records (admins only).
    pub audit: Option<Vec<AuditRecord>>,
    pub images: Option<Vec<ImageView>>,
    pub backups: Option<Vec<BackupView>>,
    pub connections: Option<Vec<ConnectionView>>,
    /// The address plan (describe shows it with each connection).
    pub network: Option<NetworkView>,
    pub stacks: Option<Vec<StackView>>,
}

impl Snapshot {
    /// A round that only knows the cluster and its nodes.
    pub fn new(endpoint: impl Into<String>, cluster: ClusterView, nodes: Vec<NodeView>) -> Self {
        Snapshot {
            endpoint: endpoint.into(),
            cluster,
            nodes,
            servers: None,
            actual: None,
            tasks: None,
            me: None,
            users: None,
            audit: None,
            images: None,
            backups: None,
            connections: None,
            network: None,
            stacks: None,
        }
    }
}

/// What the background tasks report.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// A full round of `GET`s succeeded.
    Snapshot(Box<Snapshot>),
    /// One event of the live stream.
    Event(ApiEvent),
    /// The event stream is open on this node.
    Streaming { endpoint: String },
    /// The event stream ended or failed; the refresher is opening it again.
    Reconnecting { error: String },
    /// No node could be reached.
    Unreachable { error: String },
    /// A node answered but refused or could not serve (e.g. no leader during an election).
    Refused { endpoint: String, error: String },
    /// The API accepted an operation and started this task.
    OperationStarted { operation: Operation, task_id: u64 },
    /// The API accepted an operation on a stack and started these tasks, one per server of the
    /// stack, in the stack's order.
    TasksStarted {
        operation: Operation,
        task_ids: Vec<u64>,
    },
    /// The API carried out an immediate operation (no task) on a connection; what it answered
    /// (for a delete: what was removed).
    OperationDone {
        operation: Operation,
        connection: ConnectionView,
    },
    /// The API refused an operation (its message).
    OperationFailed { operation: Operation, error: String },
    /// New bytes of the open console.
    ConsoleOutput(Vec<u8>),
    /// The console stream ended, for this reason.
    ConsoleClosed(String),
    /// A one-line notice for the status line.
    Notice(String),
}

/// How the cockpit is connected to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The data is current and the event stream is open (or being opened).
    Live,
    /// The event stream ended (e.g. the leader changed): reopening it, maybe on another node.
    Reconnecting { error: String },
    /// The last attempt could not reach any endpoint.
    Unreachable { error: String },
    /// The last attempt reached a node that could not answer.
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
    /// Control plus a letter, always lower case (`Ctrl('c')`), or plus one of `\ ] ^ _`;
    /// `Ctrl(']')` leaves the console pane.
    Ctrl(char),
}

/// An operation from the keyboard: on a server (servers view), an image (images view), a backup
/// (backups view), a connection (connections view) or a stack (stacks view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerOp {
    Start,
    Shutdown,
    ForceOff,
    Reboot,
    Suspend,
    Resume,
    Move,
    Delete,
    /// Back up a (stopped) server now.
    BackupServer,
    /// Clone the master into the image named by the argument.
    CloneImage,
    /// Take the snapshot named by the argument.
    SnapshotImage,
    /// Revert to the snapshot named by the argument.
    RevertImage,
    BackupImage,
    DeleteImage,
    RestoreBackup,
    DeleteBackup,
    ActivateConnection,
    DeactivateConnection,
    DeleteConnection,
    /// Start every server of the stack.
    StartStack,
    /// Shut every server of the stack down (forced off after the API's default delay).
    StopStack,
    /// Remove the stack and every one of its servers with their disks.
    DeleteStack,
}

impl ServerOp {
    /// The action of `POST /servers/{name}/{action}`; `None` for delete (`DELETE /servers/{name}`).
    pub fn api_action(self) -> Option<&'static str> {
        Some(match self {
            ServerOp::Start => "start",
            ServerOp::Shutdown => "shutdown",
            ServerOp::ForceOff => "destroy",
            ServerOp::Reboot => "reboot",
            ServerOp::Suspend => "suspend",
            ServerOp::Resume => "resume",
            ServerOp::Move => "move",
            _ => return None,
        })
    }

    /// What it acts on, for dialogs.
    pub fn noun(self) -> &'static str {
        match self {
            ServerOp::CloneImage
            | ServerOp::SnapshotImage
            | ServerOp::RevertImage
            | ServerOp::BackupImage
            | ServerOp::DeleteImage => "image",
            ServerOp::RestoreBackup | ServerOp::DeleteBackup => "backup",
            ServerOp::ActivateConnection
            | ServerOp::DeactivateConnection
            | ServerOp::DeleteConnection => "connection",
            ServerOp::StartStack | ServerOp::StopStack | ServerOp::DeleteStack => "stack",
            _ => "server",
        }
    }

    /// The view whose selected row it acts on.
    pub fn view(self) -> ViewKind {
        match self.noun() {
            "image" => ViewKind::Images,
            "backup" => ViewKind::Backups,
            "connection" => ViewKind::Connections,
            "stack" => ViewKind::Stacks,
            _ => ViewKind::Servers,
        }
    }

    /// What the argument prompt asks for (operations that need one).
    pub fn argument(self) -> Option<&'static str> {
        match self {
            ServerOp::CloneImage => Some("the new image's name"),
            ServerOp::SnapshotImage => Some("the snapshot's name"),
            ServerOp::RevertImage => Some("the snapshot to revert to"),
            _ => None,
        }
    }

    /// A verb for dialogs and the status line.
    pub fn verb(self) -> &'static str {
        match self {
            ServerOp::Start | ServerOp::StartStack => "start",
            ServerOp::Shutdown => "shut down",
            ServerOp::StopStack => "stop",
            ServerOp::ForceOff => "force off",
            ServerOp::Reboot => "reboot",
            ServerOp::Suspend => "suspend",
            ServerOp::Resume => "resume",
            ServerOp::Move => "move",
            ServerOp::Delete
            | ServerOp::DeleteImage
            | ServerOp::DeleteBackup
            | ServerOp::DeleteConnection
            | ServerOp::DeleteStack => "delete",
            ServerOp::BackupServer | ServerOp::BackupImage => "back up",
            ServerOp::CloneImage => "clone",
            ServerOp::SnapshotImage => "snapshot",
            ServerOp::RevertImage => "revert",
            ServerOp::RestoreBackup => "restore",
            ServerOp::ActivateConnection => "activate",
            ServerOp::DeactivateConnection => "deactivate",
        }
    }

    /// Whether it loses data or a running guest: the operator must type the object's name (or a
    /// backup's id).
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            ServerOp::ForceOff
                | ServerOp::Delete
                | ServerOp::RevertImage
                | ServerOp::DeleteImage
                | ServerOp::RestoreBackup
                | ServerOp::DeleteBackup
                | ServerOp::DeleteConnection
                | ServerOp::DeleteStack
        )
    }

    /// Whether the API carries it out at once and answers the result ([`Update::OperationDone`])
    /// instead of starting a task: connection writes.
    pub fn is_immediate(self) -> bool {
        self.noun() == "connection"
    }

    /// The operation `action` asks for on `view`'s selected row.
    fn of(view: ViewKind, action: Action) -> Option<ServerOp> {
        match (view, action) {
            (ViewKind::Servers, Action::Backup) => return Some(ServerOp::BackupServer),
            (ViewKind::Images, Action::Clone) => return Some(ServerOp::CloneImage),
            (ViewKind::Images, Action::Snapshot) => return Some(ServerOp::SnapshotImage),
            (ViewKind::Images, Action::Revert) => return Some(ServerOp::RevertImage),
            (ViewKind::Images, Action::Backup) => return Some(ServerOp::BackupImage),
            (ViewKind::Images, Action::Delete) => return Some(ServerOp::DeleteImage),
            (ViewKind::Backups, Action::Restore) => return Some(ServerOp::RestoreBackup),
            (ViewKind::Backups, Action::Delete) => return Some(ServerOp::DeleteBackup),
            (ViewKind::Connections, Action::Start) => return Some(ServerOp::ActivateConnection),
            (ViewKind::Connections, Action::Shutdown) => {
                return Some(ServerOp::DeactivateConnection)
            }
            (ViewKind::Connections, Action::Delete) => return Some(ServerOp::DeleteConnection),
            (ViewKind::Stacks, Action::Start) => return Some(ServerOp::StartStack),
            (ViewKind::Stacks, Action::Shutdown) => return Some(ServerOp::StopStack),
            (ViewKind::Stacks, Action::Delete) => return Some(ServerOp::DeleteStack),
            (ViewKind::Servers, _) => {}
            _ => return None,
        }
        Some(match action {
            Action::Start => ServerOp::Start,
            Action::Shutdown => ServerOp::Shutdown,
            Action::ForceOff => ServerOp::ForceOff,
            Action::Reboot => ServerOp::Reboot,
            Action::Suspend => ServerOp::Suspend,
            Action::Resume => ServerOp::Resume,
            Action::Move => ServerOp::Move,
            Action::Delete => ServerOp::Delete,
            _ => return None,
        })
    }
}

/// One confirmed operation for the session to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub op: ServerOp,
    /// What it acts on: the server's, image's, connection's or stack's name, or the backup's id.
    pub server: String,
    /// `move`: the destination node (`None` lets the scheduler choose); clone: the new image;
    /// snapshot, revert: the snapshot.
    pub to: Option<String>,
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Redraw,
    /// Ask the refresher for a full round now.
    Refresh,
    Quit,
    /// Send this operation to the API.
    Operate(Operation),
    /// Start streaming this server's console ([`Update::ConsoleOutput`]).
    OpenConsole(String),
    /// Bytes the operator typed into the console.
    ConsoleInput(Vec<u8>),
    /// Stop the console stream.
    CloseConsole,
}

/// What narrows a list beyond its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Servers placed on this node.
    Node(String),
    /// Servers of this stack.
    Stack(String),
}

/// One list view as the operator left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListState {
    pub view: ViewKind,
    pub scope: Option<Scope>,
    pub filter: Filter,
    pub sort_col: usize,
    pub sort_desc: bool,
    /// Indices into the view's data, filtered and sorted; rebuilt when data, filter or sort
    /// change, never while drawing.
    pub rows: Vec<usize>,
    /// Position of the selection in `rows`.
    pub cursor: usize,
    /// Key (name or id) of the selected object: the selection follows it.
    pub selected: Option<String>,
    /// First row shown.
    pub offset: usize,
}

impl ListState {
    /// A fresh list in its default order.
    pub fn new(view: ViewKind, scope: Option<Scope>) -> Self {
        let (sort_col, sort_desc) = views::default_sort(view);
        ListState {
            view,
            scope,
            filter: Filter::default(),
            sort_col,
            sort_desc,
            rows: Vec::new(),
            cursor: 0,
            selected: None,
            offset: 0,
        }
    }

    /// Index into the view's data of the selected row.
    pub fn selected_index(&self) -> Option<usize> {
        self.rows.get(self.cursor).copied()
    }
}

/// The console pane of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolePane {
    pub server: String,
    pub output: ConsoleBuffer,
    /// A one-line notice (e.g. that typing is not possible yet).
    pub notice: Option<String>,
    /// Why the stream ended, once it did.
    pub closed: Option<String>,
}

/// One breadcrumb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Overview,
    List(ListState),
    /// Every field of one object; `key` as the view's list names it.
    Describe {
        view: ViewKind,
        key: String,
        scroll: usize,
    },
    /// One task's log, following new lines while `scroll` is `None`.
    TaskLog {
        id: u64,
        scroll: Option<usize>,
    },
    Console(ConsolePane),
}

/// A dialog or text input over the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help {
        scroll: usize,
    },
    Command {
        input: String,
    },
    Filter,
    /// Where to move a server (empty: the scheduler chooses).
    MoveTo {
        server: String,
        input: String,
    },
    /// The argument of an operation that needs one (a new image's or a snapshot's name).
    Argument {
        op: ServerOp,
        target: String,
        input: String,
    },
    Confirm(Confirm),
}

/// A pending confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    pub operation: Operation,
    /// What the operator typed (destructive operations need the server's name).
    pub typed: String,
    /// Shown after a wrong name.
    pub error: Option<String>,
}

/// How loud a status line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// The status line's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub level: Level,
    pub text: String,
}

/// Rows the layout around a list takes (header, borders, column titles, status, key hints).
const CHROME_ROWS: u16 = 7;

/// The whole cockpit state.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// From the credential: known before any answer.
    pub cluster_id: String,
    pub user: String,
    /// The endpoint that answered last (or the one being tried).
    pub endpoint: String,
    pub link: Link,
    pub cluster: Option<ClusterView>,
    /// The caller's role, once `whoami` answered.
    pub role: Option<UserRole>,
    /// Operations refused whatever the role (`App::read_only(true)`).
    pub read_only: bool,
    /// Sorted by name; kept from the last good round while the cluster is unreachable.
    pub nodes: Vec<NodeView>,
    pub servers: Vec<ServerRow>,
    pub tasks: Vec<TaskRecord>,
    pub users: Vec<UserView>,
    pub audit: Vec<AuditRecord>,
    pub events: VecDeque<EventLine>,
    pub pools: Vec<PoolRow>,
    /// Sorted by name.
    pub images: Vec<ImageView>,
    /// Sorted by id (oldest first).
    pub backups: Vec<BackupView>,
    /// Sorted by name.
    pub connections: Vec<ConnectionView>,
    /// Sorted by name.
    pub stacks: Vec<StackView>,
    /// The address plan, once the API answered it.
    pub network: Option<NetworkView>,
    /// What the reconciler last heard from each compute node.
    pub node_reports: Vec<NodeActual>,
    pub history: BTreeMap<String, NodeHistory>,
    /// Breadcrumbs, root first; never empty.
    pub stack: Vec<Screen>,
    pub mode: Mode,
    pub status: Option<Status>,
    /// Tasks started from this cockpit, newest last: the status line follows the newest (an
    /// operation on a stack has one task per server).
    pub tracked: Vec<(Operation, Vec<u64>)>,
    pub keymap: KeyMap,
    pub theme: Theme,
    /// Terminal size (columns, rows), from the session.
    pub size: (u16, u16),
    /// Full rounds so far.
    pub refreshes: u64,
    event_seq: u64,
}

impl App {
    /// A cockpit for `user` of `cluster_id`, about to ask `endpoint`; it opens on the overview
    /// with the default keys and theme.
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
            role: None,
            read_only: false,
            nodes: Vec::new(),
            servers: Vec::new(),
            tasks: Vec::new(),
            users: Vec::new(),
            audit: Vec::new(),
            events: VecDeque::new(),
            pools: Vec::new(),
            images: Vec::new(),
            backups: Vec::new(),
            connections: Vec::new(),
            stacks: Vec::new(),
            network: None,
            node_reports: Vec::new(),
            history: BTreeMap::new(),
            stack: vec![Screen::Overview],
            mode: Mode::Normal,
            status: None,
            tracked: Vec::new(),
            keymap: KeyMap::default(),
            theme: Theme::default(),
            size: (80, 24),
            refreshes: 0,
            event_seq: 0,
        }
    }

    /// Refuses every operation, whatever the user's role.
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// Uses these key bindings (see [`KeyMap::from_toml`]).
    pub fn with_keymap(mut self, keymap: KeyMap) -> Self {
        self.keymap = keymap;
        self
    }

    /// Draws with this theme.
    pub fn with_theme(mut self, theme: Theme) -> Self {
        self.theme = theme;
        self
    }

    /// Opens on this view instead of the overview.
    pub fn with_view(mut self, view: ViewKind) -> Self {
        self.stack = vec![screen_of(view)];
        self.rebuild();
        self
    }

    /// The terminal is now this size.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.size = (cols, rows);
        self.scroll_into_view();
    }

    /// The screen on top of the breadcrumbs.
    pub fn screen(&self) -> &Screen {
        // `stack` is never empty; the overview stands in if it ever were.
        self.stack.last().unwrap_or(&Screen::Overview)
    }

    fn screen_mut(&mut self) -> &mut Screen {
        if self.stack.is_empty() {
            self.stack.push(Screen::Overview);
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    /// The list on top, if the top screen is a list.
    pub fn list(&self) -> Option<&ListState> {
        match self.screen() {
            Screen::List(ls) => Some(ls),
            _ => None,
        }
    }

    fn list_mut(&mut self) -> Option<&mut ListState> {
        match self.screen_mut() {
            Screen::List(ls) => Some(ls),
            _ => None,
        }
    }

    /// The selected node of the nodes view.
    pub fn selected_node(&self) -> Option<&NodeView> {
        let ls = self.list().filter(|ls| ls.view == ViewKind::Nodes)?;
        self.nodes.get(ls.selected_index()?)
    }

    /// The selected server of the servers view.
    pub fn selected_server(&self) -> Option<&ServerRow> {
        let ls = self.list().filter(|ls| ls.view == ViewKind::Servers)?;
        self.servers.get(ls.selected_index()?)
    }

    /// The selected connection of the connections view.
    pub fn selected_connection(&self) -> Option<&ConnectionView> {
        let ls = self.list().filter(|ls| ls.view == ViewKind::Connections)?;
        self.connections.get(ls.selected_index()?)
    }

    /// The selected stack of the stacks view.
    pub fn selected_stack(&self) -> Option<&StackView> {
        let ls = self.list().filter(|ls| ls.view == ViewKind::Stacks)?;
        self.stacks.get(ls.selected_index()?)
    }

    /// Whether the data shown comes from an earlier answer than the last attempt.
    pub fn is_stale(&self) -> bool {
        matches!(self.link, Link::Unreachable { .. } | Link::Refused { .. })
    }

    /// Whether the user may not change anything: the read-only flag, or the read-only role.
    pub fn operations_refused(&self) -> Option<String> {
        if self.read_only {
            Some("read-only cockpit: operations are turned off".into())
        } else if self.role == Some(UserRole::ReadOnly) {
            Some(format!(
                "{} has the read-only role: operations are refused",
                self.user
            ))
        } else {
            None
        }
    }

    /// Rows of a list that fit on the screen.
    pub fn page_rows(&self) -> usize {
        usize::from(self.size.1.saturating_sub(CHROME_ROWS).max(1))
    }

    fn notice(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some(Status {
            level,
            text: text.into(),
        });
    }

    fn push_event(&mut self, kind: &'static str, at: Option<u64>, text: String) {
        self.event_seq += 1;
        self.events.push_back(EventLine {
            seq: self.event_seq,
            at,
            kind,
            text,
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    // ----- data ---------------------------------------------------------------------------

    /// Applies what a background task reported.
    pub fn apply(&mut self, update: Update) {
        let touched = touches(&update, self.list().map(|ls| ls.view));
        match update {
            Update::Snapshot(snapshot) => self.apply_snapshot(*snapshot),
            Update::Event(event) => self.apply_event(event),
            Update::Streaming { endpoint } => {
                if self.endpoint != endpoint && !matches!(self.link, Link::Connecting) {
                    self.push_event("link", None, format!("event stream now on {endpoint}"));
                }
                self.endpoint = endpoint;
                self.link = Link::Live;
            }
            Update::Reconnecting { error } => {
                self.push_event("link", None, format!("event stream lost: {error}"));
                self.link = Link::Reconnecting { error };
            }
            Update::Unreachable { error } => self.link = Link::Unreachable { error },
            Update::Refused { endpoint, error } => {
                self.endpoint = endpoint;
                self.link = Link::Refused { error };
            }
            Update::OperationStarted { operation, task_id } => self.track(operation, vec![task_id]),
            Update::TasksStarted {
                operation,
                task_ids,
            } => self.track(operation, task_ids),
            Update::OperationDone {
                operation,
                connection,
            } => self.connection_changed(&operation, connection),
            Update::OperationFailed { operation, error } => self.notice(
                Level::Error,
                format!(
                    "{} {} failed: {error}",
                    operation.op.verb(),
                    operation.server
                ),
            ),
            Update::ConsoleOutput(bytes) => {
                if let Screen::Console(pane) = self.screen_mut() {
                    pane.output.push(&bytes);
                }
            }
            Update::ConsoleClosed(reason) => {
                if let Screen::Console(pane) = self.screen_mut() {
                    pane.closed = Some(reason);
                }
            }
            Update::Notice(text) => match self.screen_mut() {
                Screen::Console(pane) => pane.notice = Some(text),
                _ => self.notice(Level::Warn, text),
            },
        }
        // Re-filtering and re-sorting 10,000 rows for a task event that changes nothing shown
        // would cost more than drawing.
        if touched {
            self.rebuild();
        }
    }

    /// The status line now follows these tasks.
    fn track(&mut self, operation: Operation, task_ids: Vec<u64>) {
        self.tracked.push((operation, task_ids));
        if self.tracked.len() > 16 {
            self.tracked.remove(0);
        }
        self.status = None;
    }

    fn apply_snapshot(&mut self, s: Snapshot) {
        self.endpoint = s.endpoint;
        if matches!(
            self.link,
            Link::Connecting | Link::Unreachable { .. } | Link::Refused { .. }
        ) {
            self.link = Link::Live;
        }
        if !s.cluster.cluster_id.is_empty() {
            self.cluster_id = s.cluster.cluster_id.clone();
        }
        self.cluster = Some(s.cluster);
        self.set_nodes(s.nodes);
        if let Some(me) = s.me {
            self.role = Some(me.role);
            if s.users.is_none() {
                self.users = vec![me];
            }
        }
        if let Some(mut users) = s.users {
            users.sort_by(|a, b| a.name.cmp(&b.name));
            self.users = users;
        }
        if let Some(tasks) = s.tasks {
            self.tasks = tasks;
        }
        if let Some(audit) = s.audit {
            self.audit = audit;
        }
        if let Some(mut images) = s.images {
            images.sort_by(|a, b| a.name.cmp(&b.name));
            self.images = images;
        }
        if let Some(mut backups) = s.backups {
            backups.sort_by_key(|b| b.id);
            self.backups = backups;
        }
        if let Some(mut connections) = s.connections {
            connections.sort_by(|a, b| a.name.cmp(&b.name));
            self.connections = connections;
        }
        if let Some(mut stacks) = s.stacks {
            stacks.sort_by(|a, b| a.name.cmp(&b.name));
            self.stacks = stacks;
        }
        if s.network.is_some() {
            self.network = s.network;
        }
        if let Some(actual) = &s.actual {
            self.node_reports = actual.nodes.clone();
        }
        if let Some(servers) = s.servers {
            self.set_servers(servers, s.actual);
        } else if let Some(actual) = s.actual {
            // Refresh what the reconciler says of the servers already known.
            let views: Vec<ServerView> = self.servers.iter().map(|r| r.view.clone()).collect();
            self.set_servers(views, Some(actual));
        }
        self.refreshes += 1;
    }

    /// An immediate operation's answer: the status line says it is done and the list shows the
    /// connection as the API answered it (the next full round confirms it).
    fn connection_changed(&mut self, operation: &Operation, connection: ConnectionView) {
        let now = if operation.op == ServerOp::DeleteConnection {
            "removed"
        } else if connection.active {
            "now active"
        } else {
            "now inactive"
        };
        self.notice(
            Level::Info,
            format!("{} {}: done, {now}", operation.op.verb(), operation.server),
        );
        let at = self
            .connections
            .binary_search_by(|c| c.name.as_str().cmp(&connection.name));
        match (at, operation.op) {
            (Ok(i), ServerOp::DeleteConnection) => {
                self.connections.remove(i);
            }
            (Err(_), ServerOp::DeleteConnection) => {}
            (Ok(i), _) => self.connections[i] = connection,
            (Err(i), _) => self.connections.insert(i, connection),
        }
    }

    fn set_nodes(&mut self, mut nodes: Vec<NodeView>) {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        for n in &nodes {
            let memory = crate::output::percent(n.memory_used, n.memory_total);
            self.history
                .entry(n.name.clone())
                .or_default()
                .push(node_cpu_percent(n), memory);
        }
        self.history
            .retain(|name, _| nodes.iter().any(|n| &n.name == name));
        self.pools = PoolRow::from_nodes(&nodes);
        self.nodes = nodes;
    }

    fn set_servers(&mut self, views: Vec<ServerView>, actual: Option<ActualView>) {
        let mut actual: BTreeMap<String, _> = actual
            .map(|a| a.servers)
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut old: BTreeMap<String, ServerRow> = std::mem::take(&mut self.servers)
            .into_iter()
            .map(|r| (r.view.name.clone(), r))
            .collect();
        let mut rows: Vec<ServerRow> = views
            .into_iter()
            .map(|view| {
                let previous = old.remove(&view.name);
                let actual = actual
                    .remove(&view.name)
                    .or_else(|| previous.as_ref().and_then(|p| p.actual.clone()));
                let figures = actual
                    .as_ref()
                    .and_then(|a| a.figures.clone())
                    .or_else(|| previous.and_then(|p| p.figures));
                ServerRow {
                    view,
                    actual,
                    figures,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.view.name.cmp(&b.view.name));
        self.servers = rows;
    }

    fn apply_event(&mut self, event: ApiEvent) {
        match event {
            ApiEvent::State { records } => {
                for r in &records {
                    let text = format!("{} {} {} → {}", r.actor, r.op, r.target, r.result);
                    self.push_event("state", Some(r.at), text);
                }
                // The next full round re-reads the audit log (admins): keep what is new only.
                let newest = self.audit.iter().map(|a| a.seq).max().unwrap_or(0);
                self.audit
                    .extend(records.into_iter().filter(|r| r.seq > newest));
                let extra = self.audit.len().saturating_sub(MAX_EVENTS);
                self.audit.drain(..extra);
            }
            ApiEvent::Task { task } => {
                let text = format!(
                    "task {} {} {} {:?} {}%",
                    task.id, task.kind, task.target, task.state, task.progress
                )
                .to_lowercase();
                self.push_event("task", Some(task.updated_at), text);
                match self.tasks.iter_mut().find(|t| t.id == task.id) {
                    Some(t) => *t = task,
                    None => self.tasks.insert(0, task),
                }
            }
            ApiEvent::Nodes { nodes } => self.set_nodes(nodes),
            ApiEvent::Servers { servers } => {
                let mut figures: BTreeMap<String, _> =
                    servers.into_iter().map(|f| (f.name.clone(), f)).collect();
                for row in &mut self.servers {
                    row.figures = figures.remove(&row.view.name);
                }
            }
            ApiEvent::Lagged => self.push_event(
                "lagged",
                None,
                "the leader dropped events for this cockpit: re-reading everything".into(),
            ),
            ApiEvent::Unknown => {}
        }
    }

    /// Recomputes the top list's rows (filter, sort) and keeps the selection on its object; if
    /// the object left, on the row where it was.
    pub fn rebuild(&mut self) {
        let Some(ls) = self.list() else {
            return;
        };
        let rows = views::rows(self, ls);
        let found = ls.selected.as_deref().and_then(|key| {
            rows.iter()
                .position(|&i| views::has_key(self, ls.view, i, key))
        });
        let view = ls.view;
        let cursor = match found {
            Some(at) => at,
            None => ls.cursor.min(rows.len().saturating_sub(1)),
        };
        let selected = rows.get(cursor).and_then(|&i| views::key(self, view, i));
        if let Some(ls) = self.list_mut() {
            ls.rows = rows;
            ls.cursor = cursor;
            ls.selected = selected;
        }
        self.scroll_into_view();
    }

    fn scroll_into_view(&mut self) {
        let page = self.page_rows();
        if let Some(ls) = self.list_mut() {
            if ls.cursor < ls.offset {
                ls.offset = ls.cursor;
            } else if ls.cursor >= ls.offset + page {
                ls.offset = ls.cursor + 1 - page;
            }
            let max_offset = ls.rows.len().saturating_sub(page);
            ls.offset = ls.offset.min(max_offset);
        }
    }

    // ----- keys ---------------------------------------------------------------------------

    /// Applies one key.
    pub fn handle_key(&mut self, key: Key) -> Effect {
        match &self.mode {
            Mode::Normal => {}
            Mode::Help { .. } => return self.help_key(key),
            Mode::Command { .. } => return self.command_key(key),
            Mode::Filter => return self.filter_key(key),
            Mode::MoveTo { .. } => return self.move_key(key),
            Mode::Argument { .. } => return self.argument_key(key),
            Mode::Confirm(_) => return self.confirm_key(key),
        }
        if let Screen::Console(_) = self.screen() {
            return self.console_key(key);
        }
        let Some(action) = self.keymap.action(key) else {
            return Effect::None;
        };
        self.act(action)
    }

    fn act(&mut self, action: Action) -> Effect {
        if action != Action::Refresh {
            self.status = None;
        }
        match action {
            Action::Quit => return Effect::Quit,
            Action::Help => self.mode = Mode::Help { scroll: 0 },
            Action::Command => {
                self.mode = Mode::Command {
                    input: String::new(),
                }
            }
            Action::Filter => {
                if self.list().is_some() {
                    self.mode = Mode::Filter;
                } else {
                    self.notice(Level::Warn, "this view has no rows to filter");
                }
            }
            Action::Refresh => return Effect::Refresh,
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.half_page() as isize)),
            Action::PageDown => self.move_by(self.half_page() as isize),
            Action::Top => self.move_to(0),
            Action::Bottom => self.move_to(usize::MAX),
            Action::Drill => return self.drill(),
            Action::Describe => self.describe(),
            Action::Back => return self.back(),
            Action::SortNext => {
                if let Some(ls) = self.list_mut() {
                    let n = views::columns(ls.view).len().max(1);
                    ls.sort_col = (ls.sort_col + 1) % n;
                    ls.sort_desc = false;
                }
                self.rebuild();
            }
            Action::SortReverse => {
                if let Some(ls) = self.list_mut() {
                    ls.sort_desc = !ls.sort_desc;
                }
                self.rebuild();
            }
            Action::Console => return self.open_console(),
            Action::LeaveConsole => {}
            op => {
                let view = self.list().map(|ls| ls.view);
                match view.and_then(|v| ServerOp::of(v, op)) {
                    Some(op) => self.start_operation(op),
                    None => {
                        let noun = match op {
                            Action::Clone | Action::Snapshot | Action::Revert => "an image",
                            Action::Restore => "a backup",
                            Action::Start | Action::Shutdown => "a server, connection or stack",
                            Action::Delete => "a server, image, backup, connection or stack",
                            Action::Backup => "a server or an image",
                            _ => "a server",
                        };
                        self.notice(Level::Warn, format!("select {noun} first for that"));
                    }
                }
            }
        }
        Effect::Redraw
    }

    fn half_page(&self) -> usize {
        (self.page_rows() / 2).max(1)
    }

    fn move_by(&mut self, delta: isize) {
        match self.screen_mut() {
            Screen::List(ls) => {
                if ls.rows.is_empty() {
                    return;
                }
                let next = ls
                    .cursor
                    .saturating_add_signed(delta)
                    .min(ls.rows.len() - 1);
                ls.cursor = next;
            }
            Screen::Describe { scroll, .. } => *scroll = scroll.saturating_add_signed(delta),
            Screen::TaskLog { scroll, .. } => {
                let at = scroll.unwrap_or(usize::MAX / 2);
                *scroll = Some(at.saturating_add_signed(delta));
            }
            _ => return,
        }
        self.after_move();
    }

    fn move_to(&mut self, index: usize) {
        match self.screen_mut() {
            Screen::List(ls) => ls.cursor = index.min(ls.rows.len().saturating_sub(1)),
            Screen::Describe { scroll, .. } => *scroll = index.min(usize::MAX / 2),
            Screen::TaskLog { scroll, .. } => {
                *scroll = if index == usize::MAX { None } else { Some(0) }
            }
            _ => return,
        }
        self.after_move();
    }

    fn after_move(&mut self) {
        let Some(ls) = self.list() else {
            return;
        };
        let key = ls
            .selected_index()
            .and_then(|i| views::key(self, ls.view, i));
        if let Some(ls) = self.list_mut() {
            ls.selected = key;
        }
        self.scroll_into_view();
    }

    fn push(&mut self, screen: Screen) {
        self.stack.push(screen);
        self.rebuild();
    }

    fn drill(&mut self) -> Effect {
        match self.screen() {
            Screen::Overview => self.push(Screen::List(ListState::new(ViewKind::Nodes, None))),
            Screen::List(ls) => match ls.view {
                ViewKind::Nodes => {
                    if let Some(node) = self.selected_node() {
                        let scope = Scope::Node(node.name.clone());
                        self.push(Screen::List(ListState::new(ViewKind::Servers, Some(scope))));
                    }
                }
                ViewKind::Stacks => {
                    if let Some(stack) = self.selected_stack() {
                        let scope = Scope::Stack(stack.name.clone());
                        self.push(Screen::List(ListState::new(ViewKind::Servers, Some(scope))));
                    }
                }
                ViewKind::Tasks => {
                    let id = ls
                        .selected_index()
                        .and_then(|i| self.tasks.get(i))
                        .map(|t| t.id);
                    if let Some(id) = id {
                        self.push(Screen::TaskLog { id, scroll: None });
                    }
                }
                _ => self.describe(),
            },
            _ => return Effect::None,
        }
        Effect::Redraw
    }

    fn describe(&mut self) {
        let Some(ls) = self.list() else {
            return;
        };
        let view = ls.view;
        if let Some(key) = ls.selected_index().and_then(|i| views::key(self, view, i)) {
            self.push(Screen::Describe {
                view,
                key,
                scroll: 0,
            });
        }
    }

    fn back(&mut self) -> Effect {
        if let Some(ls) = self.list_mut() {
            if !ls.filter.text.is_empty() {
                ls.filter = Filter::default();
                self.rebuild();
                return Effect::Redraw;
            }
        }
        if self.stack.len() > 1 {
            self.stack.pop();
            self.rebuild();
            return Effect::Redraw;
        }
        Effect::None
    }

    fn go_to(&mut self, view: ViewKind) {
        self.stack = vec![screen_of(view)];
        self.rebuild();
    }

    // ----- modes --------------------------------------------------------------------------

    fn help_key(&mut self, key: Key) -> Effect {
        let Mode::Help { scroll } = &mut self.mode else {
            return Effect::None;
        };
        match self.keymap.action(key) {
            Some(Action::Down) => *scroll += 1,
            Some(Action::Up) => *scroll = scroll.saturating_sub(1),
            Some(Action::PageDown) => *scroll += 10,
            Some(Action::PageUp) => *scroll = scroll.saturating_sub(10),
            Some(Action::Top) => *scroll = 0,
            Some(Action::Quit) if key == Key::Ctrl('c') => return Effect::Quit,
            _ => self.mode = Mode::Normal,
        }
        Effect::Redraw
    }

    fn command_key(&mut self, key: Key) -> Effect {
        let Mode::Command { input } = &mut self.mode else {
            return Effect::None;
        };
        match key {
            Key::Esc => self.mode = Mode::Normal,
            Key::Ctrl('c') => return Effect::Quit,
            Key::Tab => *input = command::complete(input),
            Key::Backspace => {
                if input.pop().is_none() {
                    self.mode = Mode::Normal;
                }
            }
            Key::Char(c) => input.push(c),
            Key::Enter => {
                let line = std::mem::take(input);
                self.mode = Mode::Normal;
                match command::parse(&line) {
                    Ok(Command::Quit) => return Effect::Quit,
                    Ok(Command::Help) => self.mode = Mode::Help { scroll: 0 },
                    Ok(Command::View(view)) => {
                        self.status = None;
                        self.go_to(view);
                    }
                    Err(e) => self.notice(Level::Error, e),
                }
            }
            _ => return Effect::None,
        }
        Effect::Redraw
    }

    fn filter_key(&mut self, key: Key) -> Effect {
        let Some(ls) = self.list_mut() else {
            self.mode = Mode::Normal;
            return Effect::Redraw;
        };
        let mut text = ls.filter.text.clone();
        match key {
            Key::Esc => {
                text.clear();
                self.mode = Mode::Normal;
            }
            Key::Enter => self.mode = Mode::Normal,
            Key::Ctrl('c') => return Effect::Quit,
            Key::Backspace => {
                text.pop();
            }
            Key::Char(c) => text.push(c),
            Key::Up | Key::Down => {
                self.mode = Mode::Normal;
                return self.handle_key(key);
            }
            _ => return Effect::None,
        }
        if let Some(ls) = self.list_mut() {
            if ls.filter.text != text {
                ls.filter = Filter::new(text);
                // The selection stays on its object if the filter keeps it, else the first row.
                ls.cursor = 0;
            }
        }
        self.rebuild();
        Effect::Redraw
    }

    /// The key (name, id) of the selected row of `view`, when that view is on screen.
    fn selected_key(&self, view: ViewKind) -> Option<String> {
        let ls = self.list().filter(|ls| ls.view == view)?;
        views::key(self, view, ls.selected_index()?)
    }

    fn start_operation(&mut self, op: ServerOp) {
        if let Some(reason) = self.operations_refused() {
            self.notice(Level::Error, reason);
            return;
        }
        let Some(server) = self.selected_key(op.view()) else {
            self.notice(
                Level::Warn,
                format!("select a {} first to {}", op.noun(), op.verb()),
            );
            return;
        };
        if let Some(c) = self.selected_connection() {
            let already = match op {
                ServerOp::ActivateConnection if c.active => Some("active"),
                ServerOp::DeactivateConnection if !c.active => Some("inactive"),
                _ => None,
            };
            if let Some(state) = already {
                self.notice(Level::Info, format!("{server} is already {state}"));
                return;
            }
        }
        if op.argument().is_some() {
            self.mode = Mode::Argument {
                op,
                target: server,
                input: String::new(),
            };
            return;
        }
        if op == ServerOp::Move {
            self.mode = Mode::MoveTo {
                server,
                input: String::new(),
            };
            return;
        }
        self.mode = Mode::Confirm(Confirm {
            operation: Operation {
                op,
                server,
                to: None,
            },
            typed: String::new(),
            error: None,
        });
    }

    fn move_key(&mut self, key: Key) -> Effect {
        let Mode::MoveTo { server, input } = &mut self.mode else {
            return Effect::None;
        };
        match key {
            Key::Esc => self.mode = Mode::Normal,
            Key::Backspace => {
                input.pop();
            }
            Key::Tab => {
                let typed = input.clone();
                let names: Vec<&str> = self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .filter(|n| n.starts_with(&typed))
                    .collect();
                if let [one] = names.as_slice() {
                    *input = (*one).to_owned();
                }
            }
            Key::Char(c) => input.push(c),
            Key::Enter => {
                let to = input.trim().to_owned();
                let server = server.clone();
                if !to.is_empty() && !self.nodes.iter().any(|n| n.name == to) {
                    self.notice(Level::Error, format!("no node named {to}"));
                    return Effect::Redraw;
                }
                self.status = None;
                self.mode = Mode::Confirm(Confirm {
                    operation: Operation {
                        op: ServerOp::Move,
                        server,
                        to: (!to.is_empty()).then_some(to),
                    },
                    typed: String::new(),
                    error: None,
                });
            }
            _ => return Effect::None,
        }
        Effect::Redraw
    }

    fn argument_key(&mut self, key: Key) -> Effect {
        let Mode::Argument { op, target, input } = &mut self.mode else {
            return Effect::None;
        };
        match key {
            Key::Esc => self.mode = Mode::Normal,
            Key::Backspace => {
                input.pop();
            }
            Key::Tab if *op == ServerOp::RevertImage => {
                let typed = input.clone();
                let snapshots: Vec<&String> = self
                    .images
                    .iter()
                    .filter(|i| i.name == *target)
                    .flat_map(|i| i.snapshots.iter())
                    .filter(|s| s.starts_with(&typed))
                    .collect();
                if let [one] = snapshots.as_slice() {
                    *input = (*one).clone();
                }
            }
            Key::Char(c) => input.push(c),
            Key::Enter => {
                let arg = input.trim().to_owned();
                if arg.is_empty() {
                    return Effect::None;
                }
                let (op, target) = (*op, target.clone());
                self.status = None;
                self.mode = Mode::Confirm(Confirm {
                    operation: Operation {
                        op,
                        server: target,
                        to: Some(arg),
                    },
                    typed: String::new(),
                    error: None,
                });
            }
            _ => return Effect::None,
        }
        Effect::Redraw
    }

    fn confirm_key(&mut self, key: Key) -> Effect {
        let Mode::Confirm(confirm) = &mut self.mode else {
            return Effect::None;
        };
        if key == Key::Esc {
            self.mode = Mode::Normal;
            self.notice(Level::Info, "cancelled");
            return Effect::Redraw;
        }
        if !confirm.operation.op.is_destructive() {
            return match key {
                Key::Char('y') | Key::Char('Y') => self.confirmed(),
                _ => {
                    self.mode = Mode::Normal;
                    self.notice(Level::Info, "cancelled");
                    Effect::Redraw
                }
            };
        }
        match key {
            Key::Char(c) => {
                confirm.typed.push(c);
                confirm.error = None;
            }
            Key::Backspace => {
                confirm.typed.pop();
            }
            Key::Enter if confirm.typed == confirm.operation.server => return self.confirmed(),
            Key::Enter => {
                confirm.error = Some(format!(
                    "that is not the name: type {} to confirm, Esc to cancel",
                    confirm.operation.server
                ));
                confirm.typed.clear();
            }
            _ => return Effect::None,
        }
        Effect::Redraw
    }

    fn confirmed(&mut self) -> Effect {
        let Mode::Confirm(confirm) = std::mem::replace(&mut self.mode, Mode::Normal) else {
            return Effect::None;
        };
        // The role may have changed while the dialog was open.
        if let Some(reason) = self.operations_refused() {
            self.notice(Level::Error, reason);
            return Effect::Redraw;
        }
        let operation = confirm.operation;
        self.notice(
            Level::Info,
            format!("{} {}: sending…", operation.op.verb(), operation.server),
        );
        Effect::Operate(operation)
    }

    fn open_console(&mut self) -> Effect {
        let Some(server) = self.selected_server().map(|s| s.view.name.clone()) else {
            self.notice(
                Level::Warn,
                "select a server first (:servers) to open its console",
            );
            return Effect::Redraw;
        };
        self.push(Screen::Console(ConsolePane {
            server: server.clone(),
            output: ConsoleBuffer::default(),
            notice: None,
            closed: None,
        }));
        Effect::OpenConsole(server)
    }

    fn console_key(&mut self, key: Key) -> Effect {
        if self.keymap.action(key) == Some(Action::LeaveConsole) {
            self.stack.pop();
            self.rebuild();
            return Effect::CloseConsole;
        }
        let bytes = console::key_bytes(key);
        if bytes.is_empty() {
            return Effect::None;
        }
        Effect::ConsoleInput(bytes)
    }
}

/// Whether `update` may change the rows of the list `view` (none: no list on top).
fn touches(update: &Update, view: Option<ViewKind>) -> bool {
    let Some(view) = view else {
        return false;
    };
    match update {
        Update::Snapshot(_) => true,
        Update::Event(ApiEvent::Task { .. }) => matches!(view, ViewKind::Tasks | ViewKind::Events),
        Update::Event(ApiEvent::Nodes { .. }) => matches!(view, ViewKind::Nodes | ViewKind::Pools),
        Update::Event(ApiEvent::Servers { .. }) => view == ViewKind::Servers,
        Update::OperationDone { .. } => view == ViewKind::Connections,
        Update::Event(ApiEvent::State { .. }) => matches!(view, ViewKind::Events | ViewKind::Audit),
        Update::Event(ApiEvent::Lagged)
        | Update::Streaming { .. }
        | Update::Reconnecting { .. } => view == ViewKind::Events,
        _ => false,
    }
}

/// The root screen of a view.
fn screen_of(view: ViewKind) -> Screen {
    match view {
        ViewKind::Overview => Screen::Overview,
        v => Screen::List(ListState::new(v, None)),
    }
}

#[cfg(test)]
mod tests;
