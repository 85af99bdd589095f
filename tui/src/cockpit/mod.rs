//! The cockpit: a live terminal view of the cluster.
//!
//! Three parts, kept apart so each can be tested alone and the SSH cockpit can reuse the first
//! two: [`app`] (state and key handling), [`view`] (drawing, a pure function of the state), and
//! [`refresh`] (network, on a tokio task, results over a channel). [`run`] wires them to the
//! local terminal with crossterm.

pub mod app;
pub mod input;
pub mod refresh;
pub mod view;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};
use skiff_cluster::api::client::ApiClient;
use tokio::sync::{mpsc, Notify};

use app::{App, Effect};

/// How long the loop waits for a key before looking at the channel again.
const INPUT_POLL: Duration = Duration::from_millis(50);

/// Restores the terminal when dropped, whether the loop ended normally or by an error.
/// (A panic is handled by the hook `ratatui::try_init` installs.)
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the cockpit on the local terminal until the operator quits.
/// `runtime` runs the refresher; this thread draws and reads keys.
pub fn run(runtime: &tokio::runtime::Runtime, client: Arc<ApiClient>, app: App) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel(8);
    let wake = Arc::new(Notify::new());
    let refresher = {
        let _entered = runtime.enter();
        refresh::spawn(client, refresh::REFRESH_INTERVAL, tx, wake.clone())
    };

    let mut terminal = ratatui::try_init()?;
    let guard = TerminalGuard;
    let result = event_loop(&mut terminal, app, &mut rx, &wake);
    drop(guard);
    refresher.abort();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut app: App,
    updates: &mut mpsc::Receiver<app::Update>,
    wake: &Notify,
) -> io::Result<()> {
    let mut dirty = true;
    loop {
        while let Ok(update) = updates.try_recv() {
            app.apply(update);
            dirty = true;
        }
        if dirty {
            terminal.draw(|frame| view::render(&app, frame))?;
            dirty = false;
        }
        if !event::poll(INPUT_POLL)? {
            continue;
        }
        match event::read()? {
            Event::Key(key) => {
                let Some(key) = input::key_of(key) else {
                    continue;
                };
                match app.handle_key(key) {
                    Effect::Quit => return Ok(()),
                    Effect::Refresh => wake.notify_one(),
                    Effect::Redraw => dirty = true,
                    Effect::None => {}
                }
            }
            Event::Resize(_, _) => dirty = true,
            _ => {}
        }
    }
}
