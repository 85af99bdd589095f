//! The terminal of one SSH session: a ratatui [`Backend`] that turns frames into escape sequences
//! (crossterm's encoder, never crossterm's terminal queries) and puts them in a bounded
//! [`Outbox`]; sizes come from the client's PTY request and window changes.
//!
//! Bounded output: the outbox holds whole frames. When the client reads too slowly and a new
//! frame would take the outbox past [`OUTPUT_LIMIT`], every frame not yet handed to SSH is
//! dropped (and so are the next ones) until the client has taken everything it was sent; then the
//! session asks for a full repaint (the cockpit redraws every cell on a `Resize` to the current
//! size). A slow client sees fewer frames, never a garbled screen, and never makes the server
//! hold more than about twice the limit.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use ratatui::backend::{Backend, ClearType, CrosstermBackend, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};
use tokio::sync::Notify;

/// Most bytes of frames waiting for a slow client before they are dropped.
pub const OUTPUT_LIMIT: usize = 256 * 1024;
/// Largest terminal served; a bigger window gets this much of it (bounds one frame's size).
pub const MAX_COLS: u16 = 500;
pub const MAX_ROWS: u16 = 200;
/// The size used when the client's PTY request says 0 (unknown).
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);
/// Frame sizes kept for statistics (the first ones and the latest ones).
const FRAME_HISTORY: usize = 64;

/// Enter the alternate screen, hide the cursor, reset attributes, clear, home: written before the
/// first frame.
pub const SETUP: &[u8] = b"\x1b[?1049h\x1b[?25l\x1b[0m\x1b[2J\x1b[H";
/// Undo [`SETUP`]: written when the session ends.
pub const TEARDOWN: &[u8] = b"\x1b[0m\x1b[?25h\x1b[?1049l";

/// A terminal size as the client reports it, clamped to what the cockpit serves.
pub fn clamp_size(cols: u32, rows: u32) -> (u16, u16) {
    if cols == 0 || rows == 0 {
        return DEFAULT_SIZE;
    }
    let c = u16::try_from(cols).unwrap_or(u16::MAX).min(MAX_COLS);
    let r = u16::try_from(rows).unwrap_or(u16::MAX).min(MAX_ROWS);
    (c, r)
}

/// What a session wrote, for tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputStats {
    /// Bytes handed to SSH so far.
    pub bytes_sent: u64,
    /// Bytes of each frame accepted, in order: the first [`FRAME_HISTORY`] ones...
    pub first_frames: Vec<usize>,
    /// ...and the latest ones.
    pub last_frames: Vec<usize>,
    pub frames_accepted: u64,
    pub frames_dropped: u64,
    /// The most bytes ever waiting in the outbox at once.
    pub peak_queued: usize,
    /// Full repaints asked for after dropping frames.
    pub repaints: u64,
}

#[derive(Debug, Default)]
struct OutboxState {
    frames: VecDeque<Vec<u8>>,
    queued: usize,
    /// Frames were dropped: drop the next ones too until the client caught up and a repaint
    /// was asked for.
    dropping: bool,
    /// The writer handed a batch to SSH that is not yet written.
    in_flight: bool,
    closed: bool,
    stats: OutputStats,
    last_frames: VecDeque<usize>,
}

/// The bounded queue of frames between the cockpit and the SSH channel.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    wake: Notify,
    limit: usize,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Frames were dropped and the client has caught up: ask the cockpit for a full repaint.
    Repaint,
    /// The outbox is closed and empty.
    Closed,
}

impl Outbox {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Outbox {
            limit,
            ..Default::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one whole frame; `false` when it was dropped (the client is too slow).
    pub fn push(&self, frame: Vec<u8>) -> bool {
        if frame.is_empty() {
            return true;
        }
        let mut s = self.lock();
        if s.closed {
            return false;
        }
        // A frame into an empty outbox is always taken, so that a repaint can always get through.
        let over = s.queued > 0 && s.queued + frame.len() > self.limit;
        if s.dropping || over {
            if !s.dropping {
                s.dropping = true;
                let dropped = s.frames.len() as u64;
                s.stats.frames_dropped += dropped;
                s.frames.clear();
                s.queued = 0;
            }
            s.stats.frames_dropped += 1;
            return false;
        }
        s.queued += frame.len();
        s.stats.peak_queued = s.stats.peak_queued.max(s.queued);
        s.stats.frames_accepted += 1;
        if s.stats.first_frames.len() < FRAME_HISTORY {
            s.stats.first_frames.push(frame.len());
        }
        if s.last_frames.len() == FRAME_HISTORY {
            s.last_frames.pop_front();
        }
        s.last_frames.push_back(frame.len());
        s.frames.push_back(frame);
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Waits for what to send next. Call [`Outbox::sent`] once the bytes are written.
    pub async fn next(&self) -> Next {
        loop {
            let notified = self.wake.notified();
            {
                let mut s = self.lock();
                if !s.frames.is_empty() {
                    let mut batch = Vec::with_capacity(s.queued);
                    for f in s.frames.drain(..) {
                        batch.extend_from_slice(&f);
                    }
                    s.queued = 0;
                    s.in_flight = true;
                    return Next::Send(batch);
                }
                if s.dropping && !s.in_flight {
                    s.dropping = false;
                    s.stats.repaints += 1;
                    return Next::Repaint;
                }
                if s.closed {
                    return Next::Closed;
                }
            }
            notified.await;
        }
    }

    /// The batch [`Outbox::next`] gave was written (`n` bytes).
    pub fn sent(&self, n: usize) {
        let mut s = self.lock();
        s.in_flight = false;
        s.stats.bytes_sent += n as u64;
        drop(s);
        self.wake.notify_one();
    }

    /// No more frames: drops what waits, and wakes the writer.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.frames.clear();
        s.queued = 0;
        drop(s);
        self.wake.notify_one();
    }

    /// Bytes waiting now.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }

    pub fn stats(&self) -> OutputStats {
        let s = self.lock();
        let mut stats = s.stats.clone();
        stats.last_frames = s.last_frames.iter().copied().collect();
        stats
    }
}

/// The session's terminal size, shared by the input reader (which learns of changes) and the
/// backend (which ratatui asks).
#[derive(Debug)]
pub struct SharedSize(Mutex<(u16, u16)>);

impl SharedSize {
    pub fn new(cols: u16, rows: u16) -> Arc<Self> {
        Arc::new(SharedSize(Mutex::new((cols, rows))))
    }
    pub fn get(&self) -> (u16, u16) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub fn set(&self, cols: u16, rows: u16) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (cols, rows);
    }
}

/// Collects the bytes of the frame being drawn (crossterm's encoder writes here; the backend
/// takes them at the end of each frame).
#[derive(Clone, Debug, Default)]
pub struct FrameBuffer(Arc<Mutex<Vec<u8>>>);

impl FrameBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for FrameBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    /// crossterm flushes after single commands: not a frame boundary, so nothing to do.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// ratatui's backend for an SSH channel. Draw calls go to crossterm's encoder; [`Backend::flush`]
/// (once per frame, at the end of `Terminal::draw`) moves the frame into the [`Outbox`]. Size and
/// cursor queries are answered here, from the PTY size and the last cursor move: nothing ever
/// asks the server's own terminal.
pub struct SshBackend {
    encoder: CrosstermBackend<FrameBuffer>,
    frame: FrameBuffer,
    outbox: Arc<Outbox>,
    size: Arc<SharedSize>,
    cursor: Position,
    /// Whether the client's cursor is hidden ([`SETUP`] hides it); `None` after a dropped frame
    /// (which may have changed it).
    cursor_hidden: Option<bool>,
}

impl SshBackend {
    pub fn new(outbox: Arc<Outbox>, size: Arc<SharedSize>) -> Self {
        let frame = FrameBuffer::default();
        SshBackend {
            encoder: CrosstermBackend::new(frame.clone()),
            frame,
            outbox,
            size,
            cursor: Position::ORIGIN,
            cursor_hidden: Some(true),
        }
    }
}

impl Backend for SshBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut content = content.peekable();
        if content.peek().is_none() {
            // Nothing changed: not even the attribute resets crossterm would write.
            return Ok(());
        }
        let mut last = None;
        let content = content.inspect(|(x, y, _)| last = Some((*x, *y)));
        self.encoder.draw(content)?;
        if let Some((x, y)) = last {
            self.cursor = Position::new(x.saturating_add(1), y);
        }
        Ok(())
    }

    /// ratatui hides the cursor at every frame: only a change is written.
    fn hide_cursor(&mut self) -> io::Result<()> {
        if self.cursor_hidden == Some(true) {
            return Ok(());
        }
        self.cursor_hidden = Some(true);
        self.encoder.hide_cursor()
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        if self.cursor_hidden == Some(false) {
            return Ok(());
        }
        self.cursor_hidden = Some(false);
        self.encoder.show_cursor()
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let p = position.into();
        self.cursor = p;
        self.encoder.set_cursor_position(p)
    }

    fn clear(&mut self) -> io::Result<()> {
        self.encoder.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        self.encoder.clear_region(clear_type)
    }

    fn size(&self) -> io::Result<Size> {
        let (width, height) = self.size.get();
        Ok(Size { width, height })
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size()?,
            pixels: Size::default(),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.outbox.push(self.frame.take()) {
            self.cursor_hidden = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::widgets::Paragraph;
    use ratatui::{Terminal, TerminalOptions, Viewport};

    fn frame(n: usize) -> Vec<u8> {
        vec![b'x'; n]
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), DEFAULT_SIZE);
        assert_eq!(clamp_size(120, 0), DEFAULT_SIZE);
        assert_eq!(clamp_size(120, 40), (120, 40));
        assert_eq!(clamp_size(u32::MAX, u32::MAX), (MAX_COLS, MAX_ROWS));
    }

    #[tokio::test]
    async fn a_client_that_never_reads_cannot_grow_the_outbox() {
        let outbox = Outbox::new(OUTPUT_LIMIT);
        // The writer took the first frame and is stuck handing it to SSH (the client's window
        // is full): it never calls `sent`.
        assert!(outbox.push(frame(10_000)));
        let Next::Send(first) = outbox.next().await else {
            panic!("expected bytes")
        };
        assert_eq!(first.len(), 10_000);
        let mut accepted = 0;
        for _ in 0..10_000 {
            if outbox.push(frame(3_000)) {
                accepted += 1;
            }
            assert!(outbox.queued() <= OUTPUT_LIMIT);
        }
        let stats = outbox.stats();
        assert_eq!(accepted, OUTPUT_LIMIT / 3_000);
        assert!(stats.peak_queued <= OUTPUT_LIMIT, "{stats:?}");
        assert_eq!(stats.frames_accepted, 1 + accepted as u64);
        assert_eq!(stats.frames_dropped, 10_000);
        // Dropped frames were diffs against frames the client never saw: all are gone.
        assert_eq!(outbox.queued(), 0);
        // Once the stuck batch is written, the writer asks for a full repaint, then sends it.
        outbox.sent(first.len());
        assert_eq!(outbox.next().await, Next::Repaint);
        assert!(outbox.push(frame(50_000)));
        assert_eq!(outbox.next().await, Next::Send(frame(50_000)));
        outbox.sent(50_000);
        assert_eq!(outbox.stats().repaints, 1);
        assert_eq!(outbox.stats().bytes_sent, 60_000);
    }

    #[tokio::test]
    async fn frames_queued_while_writing_go_out_together() {
        let outbox = Outbox::new(1_000);
        assert!(outbox.push(frame(10)));
        let Next::Send(a) = outbox.next().await else {
            panic!()
        };
        assert!(outbox.push(frame(20)));
        assert!(outbox.push(frame(30)));
        outbox.sent(a.len());
        assert_eq!(outbox.next().await, Next::Send(frame(50)));
        outbox.sent(50);
        // A frame bigger than the limit still goes out when nothing else waits.
        assert!(outbox.push(frame(5_000)));
        assert_eq!(outbox.next().await, Next::Send(frame(5_000)));
        outbox.close();
        outbox.sent(5_000);
        assert_eq!(outbox.next().await, Next::Closed);
        assert!(!outbox.push(frame(1)));
    }

    #[test]
    fn the_backend_answers_size_from_the_pty_and_sends_whole_frames() {
        let outbox = Outbox::new(OUTPUT_LIMIT);
        let size = SharedSize::new(40, 10);
        let backend = SshBackend::new(outbox.clone(), size.clone());
        let mut terminal = Terminal::with_options(
            backend,
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, 40, 10)),
            },
        )
        .unwrap();
        terminal
            .draw(|f| f.render_widget(Paragraph::new("hello skiff"), f.area()))
            .unwrap();
        let first = outbox.stats();
        assert_eq!(first.frames_accepted, 1);
        // A resize (as a window change makes) clears and repaints everything at the new size.
        size.set(60, 20);
        terminal.resize(Rect::new(0, 0, 60, 20)).unwrap();
        terminal
            .draw(|f| f.render_widget(Paragraph::new("hello skiff"), f.area()))
            .unwrap();
        assert_eq!(terminal.size().unwrap(), Size::new(60, 20));
        let stats = outbox.stats();
        assert_eq!(stats.frames_accepted, 2);
        let frames: Vec<u8> = {
            let mut s = outbox.lock();
            s.queued = 0;
            s.frames.drain(..).flatten().collect()
        };
        let text = String::from_utf8_lossy(&frames);
        assert_eq!(text.matches("hello").count(), 2, "{text:?}");
        assert!(
            text.contains("\x1b[J"),
            "the resize clears the screen: {text:?}"
        );
        // An unchanged frame sends nothing at all.
        terminal
            .draw(|f| f.render_widget(Paragraph::new("hello skiff"), f.area()))
            .unwrap();
        assert_eq!(outbox.stats().frames_accepted, 2);
        assert_eq!(outbox.queued(), 0);
    }
}
