//! Drawing of list views: only the rows that fit are formatted, whatever the list's length.

use ratatui::layout::{Alignment, Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{cells, columns};
use crate::cockpit::app::{App, Link, ListState};
use crate::cockpit::theme::Theme;

/// Marks the selected row.
pub const HIGHLIGHT: &str = "▶ ";

/// A text bar filling `width` cells: `███░░░ 45%`, coloured by how full it is.
pub fn gauge(pct: u64, width: usize, theme: &Theme) -> Line<'static> {
    let label = format!(" {pct:>3}%");
    let bar_w = width.saturating_sub(label.chars().count());
    let filled = ((bar_w as u64 * pct.min(100) + 50) / 100) as usize;
    let filled = if pct > 0 { filled.max(1) } else { 0 }.min(bar_w);
    Line::from(vec![
        Span::styled("█".repeat(filled), level_style(pct, theme)),
        Span::styled("░".repeat(bar_w - filled), theme.track),
        Span::raw(label),
    ])
}

/// Green under 70 %, yellow under 90 %, red above.
pub fn level_style(pct: u64, theme: &Theme) -> Style {
    match pct {
        0..=69 => theme.good,
        70..=89 => theme.warn,
        _ => theme.bad,
    }
}

/// The first row to show so that `cursor` is visible in `height` rows, starting from the
/// offset the app kept.
pub fn visible_offset(offset: usize, cursor: usize, height: usize, len: usize) -> usize {
    let height = height.max(1);
    let mut offset = offset.min(len.saturating_sub(height));
    if cursor < offset {
        offset = cursor;
    } else if cursor >= offset + height {
        offset = cursor + 1 - height;
    }
    offset
}

/// Draws a list inside `block`.
pub fn render(app: &App, ls: &ListState, block: Block<'_>, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    if ls.rows.is_empty() {
        render_empty(app, ls, block, frame, area);
        return;
    }
    let cols = columns(ls.view);
    let height = usize::from(area.height.saturating_sub(3));
    let len = ls.rows.len();
    let cursor = ls.cursor.min(len - 1);
    let offset = visible_offset(ls.offset, cursor, height, len).min(len);
    let end = (offset + height).min(len);
    let stale = app.is_stale();
    let rows = ls.rows[offset..end].iter().map(|&i| {
        let row = Row::new(cells(app, ls.view, i, theme).into_iter().map(Cell::from));
        if stale {
            row.style(theme.label)
        } else {
            row
        }
    });
    let header = Row::new(cols.iter().enumerate().map(|(c, col)| {
        let mark = match (c == ls.sort_col, ls.sort_desc) {
            (true, false) => "▲",
            (true, true) => "▼",
            _ => "",
        };
        Cell::from(format!("{}{mark}", col.title))
    }))
    .style(theme.header);
    let widths: Vec<Constraint> = cols.iter().map(|c| c.width).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .highlight_symbol(HIGHLIGHT)
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected);
    let mut state = TableState::default().with_selected(Some(cursor.saturating_sub(offset)));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_empty(app: &App, ls: &ListState, block: Block<'_>, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let mut lines = vec![Line::raw("")];
    match &app.link {
        Link::Connecting => lines.push(Line::from(format!("Connecting to {}…", app.endpoint))),
        Link::Unreachable { .. } | Link::Refused { .. } if app.refreshes == 0 => {
            let headline = if matches!(app.link, Link::Unreachable { .. }) {
                "Cannot reach the cluster"
            } else {
                "The cluster cannot answer right now"
            };
            lines.push(Line::styled(headline, theme.bad));
            lines.push(Line::raw(""));
            lines.push(Line::styled(
                "Retrying with backoff; press r to retry now.",
                theme.label,
            ));
            lines.push(Line::styled(
                "Check the endpoints listed in your credential (--cred, $SKIFF_CRED).",
                theme.label,
            ));
        }
        _ if !ls.filter.is_empty() => lines.push(Line::from(format!(
            "No {} match the filter /{} (Esc clears it).",
            ls.view.name(),
            ls.filter.text
        ))),
        _ if ls.scope.is_some() => lines.push(Line::from(format!("No {} here.", ls.view.name()))),
        _ => lines.push(Line::from(format!(
            "The cluster reports no {}.",
            ls.view.name()
        ))),
    }
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(l: Line) -> String {
        l.spans.iter().map(|s| s.content.to_string()).collect()
    }

    #[test]
    fn gauges() {
        let theme = Theme::default();
        assert_eq!(text(gauge(25, 10, &theme)), "█░░░░  25%");
        assert_eq!(text(gauge(0, 10, &theme)), "░░░░░   0%");
        assert_eq!(text(gauge(100, 9, &theme)), "████ 100%");
        assert_eq!(text(gauge(50, 3, &theme)), "  50%");
    }

    #[test]
    fn offsets_keep_the_cursor_visible() {
        assert_eq!(visible_offset(0, 0, 10, 100), 0);
        assert_eq!(visible_offset(0, 15, 10, 100), 6);
        assert_eq!(visible_offset(50, 40, 10, 100), 40);
        assert_eq!(visible_offset(95, 99, 10, 100), 90);
        assert_eq!(visible_offset(5, 0, 10, 3), 0);
    }
}
