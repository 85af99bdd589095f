//! Views of resources the API does not serve yet: they say so instead of showing made-up rows.

use ratatui::layout::{Alignment, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::{unavailable_reason, ViewKind};
use crate::cockpit::theme::Theme;

/// Draws the notice that the view has no API yet.
pub fn render(view: ViewKind, theme: &Theme, block: Block<'_>, frame: &mut Frame, area: Rect) {
    let reason = unavailable_reason(view).unwrap_or("not available");
    let lines = vec![
        Line::raw(""),
        Line::styled(
            format!("{}: {reason}.", capitalised(view.name())),
            theme.warn,
        ),
        Line::raw(""),
        Line::styled(
            "Nothing is shown rather than made-up rows. :servers, :nodes and :pools are live.",
            theme.label,
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
