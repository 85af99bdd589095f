//! The console pane: the last screenful of a server's serial output.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use crate::cockpit::app::ConsolePane;
use crate::cockpit::theme::Theme;

/// Draws the console pane.
pub fn render(pane: &ConsolePane, theme: &Theme, block: Block<'_>, frame: &mut Frame, area: Rect) {
    let mut footer: Vec<Line> = Vec::new();
    if let Some(notice) = &pane.notice {
        footer.push(Line::styled(notice.clone(), theme.warn));
    }
    if let Some(reason) = &pane.closed {
        footer.push(Line::styled(format!("console closed: {reason}"), theme.bad));
    }
    let height = usize::from(area.height.saturating_sub(2)).saturating_sub(footer.len());
    let mut lines: Vec<Line> = if pane.output.is_empty() && pane.closed.is_none() {
        vec![Line::styled(
            format!("waiting for {}'s console output…", pane.server),
            theme.label,
        )]
    } else {
        pane.output
            .tail(height)
            .into_iter()
            .map(Line::raw)
            .collect()
    };
    lines.extend(footer);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
