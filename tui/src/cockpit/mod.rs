//! The cockpit: a live, k9s-style terminal view of the cluster (overview, nodes, servers,
//! tasks, users, events, audit, pools, images, backups, connections, stacks), with operations on
//! servers, images, backups, connections and stacks, and a console pane.
//!
//! Three parts, kept apart so each can be tested alone and the SSH cockpit can reuse the first
//! two: [`app`] (state and key handling), [`view`] and [`views`] (drawing, a pure function of
//! the state), and [`refresh`] (network, on tokio tasks, results over a channel). [`run`] wires
//! them to the local terminal with crossterm; [`run_session`] runs them on any terminal.
//! See `docs/design/cockpit.md`.

pub mod app;
pub mod command;
pub mod console;
pub mod filter;
#[cfg(test)]
mod fixtures;
pub mod input;
pub mod keymap;
pub mod model;
pub mod refresh;
#[cfg(test)]
mod session_tests;
pub mod theme;
pub mod view;
pub mod views;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self, Event};
use ratatui::layout::Rect;
use ratatui::Terminal;
use skiff_cluster::api::client::ApiClient;
use tokio::sync::{mpsc, Notify};

use app::{App, Effect, Key, Update};

/// The least time between two frames: at most about 30 frames a second, however fast news comes.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// What a terminal sends the cockpit, already decoded: the local terminal (crossterm) and an SSH
/// channel (its own byte parser) both feed a session through a channel of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    /// The terminal is now this many columns and rows.
    Resize {
        cols: u16,
        rows: u16,
    },
}

/// Restores the terminal when dropped, whether the loop ended normally or by an error.
/// (A panic is handled by the hook `ratatui::try_init` installs.)
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the cockpit on the local terminal until the operator quits.
pub fn run(runtime: &tokio::runtime::Runtime, client: Arc<ApiClient>, app: App) -> io::Result<()> {
    let (tx, rx) = mpsc::channel(64);
    // crossterm's reads block: they get a thread of their own, which ends with the process.
    std::thread::spawn(move || read_terminal(tx));
    let mut terminal = ratatui::try_init()?;
    let guard = TerminalGuard;
    let result = runtime.block_on(run_session(&mut terminal, client, app, rx));
    drop(guard);
    result
}

/// Forwards the local terminal's keys and size changes until the session stops listening.
fn read_terminal(inputs: mpsc::Sender<Input>) {
    loop {
        let input = match event::read() {
            Ok(Event::Key(key)) => match input::key_of(key) {
                Some(key) => Input::Key(key),
                None => continue,
            },
            Ok(Event::Resize(cols, rows)) => Input::Resize { cols, rows },
            Ok(_) => continue,
            Err(_) => return,
        };
        if inputs.blocking_send(input).is_err() {
            return;
        }
    }
}

/// Runs one cockpit session on any terminal until the operator quits or `inputs` closes: the
/// local terminal and each SSH session are both one of these. Draws only when something changed,
/// at most once per [`FRAME_INTERVAL`]. The terminal's size comes from the terminal itself and
/// from [`Input::Resize`], never from a terminal query.
pub async fn run_session<B: Backend>(
    terminal: &mut Terminal<B>,
    client: Arc<ApiClient>,
    mut app: App,
    mut inputs: mpsc::Receiver<Input>,
) -> io::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let (tx, mut updates) = mpsc::channel(256);
    let wake = Arc::new(Notify::new());
    let refresher = refresh::spawn(client.clone(), tx.clone(), wake.clone());
    let _stop = AbortOnDrop(refresher);
    if let Ok(size) = terminal.size() {
        app.resize(size.width, size.height);
    }
    let mut session = Session {
        client,
        updates: tx,
        wake,
        console: None,
    };

    let mut dirty = true;
    let mut last_frame: Option<Instant> = None;
    loop {
        if dirty {
            let wait = last_frame
                .map(|at| FRAME_INTERVAL.saturating_sub(at.elapsed()))
                .unwrap_or_default();
            if wait.is_zero() {
                terminal
                    .draw(|frame| view::render(&app, frame))
                    .map_err(io::Error::other)?;
                last_frame = Some(Instant::now());
                dirty = false;
                continue;
            }
            // Too soon for another frame: gather what else arrives until it is time.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(update) = updates.recv() => app.apply(update),
                input = inputs.recv() => match input {
                    None => return Ok(()),
                    Some(input) => if session.input(terminal, &mut app, input)? { return Ok(()) },
                },
            }
            continue;
        }
        tokio::select! {
            Some(update) = updates.recv() => {
                app.apply(update);
                dirty = true;
            }
            input = inputs.recv() => match input {
                None => return Ok(()),
                Some(input) => {
                    if session.input(terminal, &mut app, input)? {
                        return Ok(());
                    }
                    dirty = true;
                }
            },
        }
    }
}

/// What a session owns besides the app: the client, the way back for results, and the open
/// console.
struct Session {
    client: Arc<ApiClient>,
    updates: mpsc::Sender<Update>,
    wake: Arc<Notify>,
    console: Option<ConsoleSession>,
}

/// The open console: its task and the way to send it keystrokes.
struct ConsoleSession {
    _task: AbortOnDrop,
    input: mpsc::Sender<Vec<u8>>,
}

impl Session {
    /// Applies one input; `true` when the operator quit.
    fn input<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        app: &mut App,
        input: Input,
    ) -> io::Result<bool>
    where
        B::Error: Send + Sync + 'static,
    {
        match input {
            Input::Key(key) => return Ok(self.effect(app.handle_key(key))),
            Input::Resize { cols, rows } => {
                terminal
                    .resize(Rect::new(0, 0, cols, rows))
                    .map_err(io::Error::other)?;
                app.resize(cols, rows);
            }
        }
        Ok(false)
    }

    /// Carries out what a key asked for, on tokio tasks; `true` when the operator quit.
    fn effect(&mut self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return true,
            Effect::Refresh => self.wake.notify_one(),
            Effect::Redraw | Effect::None => {}
            Effect::Operate(operation) => {
                let client = self.client.clone();
                let updates = self.updates.clone();
                tokio::spawn(async move {
                    let result = refresh::operate(&client, operation).await;
                    let _ = updates.send(result).await;
                });
            }
            Effect::OpenConsole(server) => {
                let (input, keys) = mpsc::channel(64);
                let task = tokio::spawn(refresh::console_task(
                    self.client.clone(),
                    server,
                    keys,
                    self.updates.clone(),
                ));
                self.console = Some(ConsoleSession {
                    _task: AbortOnDrop(task),
                    input,
                });
            }
            Effect::ConsoleInput(bytes) => {
                if let Some(console) = &self.console {
                    // A full queue drops keys rather than stall the screen.
                    let _ = console.input.try_send(bytes);
                }
            }
            Effect::CloseConsole => self.console = None,
        }
        false
    }
}

/// Stops a background task when the session that started it ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
