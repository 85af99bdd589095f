//! Drawing of list views: only the rows that fit are formatted, whatever the list's length.

use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{cells, columns, marks_cuts};
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

/// `line` cut to `width` cells, ending in `…` when something was cut, so that a shortened name,
/// address or port list never passes for a whole one.
pub fn fit(line: Line<'static>, width: usize) -> Line<'static> {
    if line.width() <= width {
        return line;
    }
    let Line {
        spans,
        style,
        alignment,
    } = line;
    let mut room = width.saturating_sub(1);
    let mut cut = Vec::new();
    let mut last_style = Style::default();
    for span in spans {
        last_style = span.style;
        let mut text = String::new();
        for c in span.content.chars() {
            let w = Span::raw(c.to_string()).width();
            if w > room {
                room = 0;
                break;
            }
            room -= w;
            text.push(c);
        }
        cut.push(Span::styled(text, span.style));
        if room == 0 {
            break;
        }
    }
    if width > 0 {
        cut.push(Span::styled("…", last_style));
    }
    Line {
        spans: cut,
        style,
        alignment,
    }
}

/// The widths the table gives its columns inside `area` (the same layout ratatui's `Table`
/// computes: a selection column, then the columns spaced by one cell).
fn column_widths(widths: &[Constraint], area: Rect) -> Vec<usize> {
    let selection = Span::raw(HIGHLIGHT).width() as u16;
    let [_, columns] = Layout::horizontal([Constraint::Length(selection), Constraint::Fill(0)])
        .areas(Rect::new(0, 0, area.width, 1));
    Layout::horizontal(widths.iter().copied())
        .flex(Flex::Start)
        .spacing(1)
        .split(columns)
        .iter()
        .map(|r| usize::from(r.width))
        .collect()
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
    let widths: Vec<Constraint> = cols.iter().map(|c| c.width).collect();
    let fits = if marks_cuts(ls.view) {
        column_widths(&widths, block.inner(area))
    } else {
        Vec::new()
    };
    let rows = ls.rows[offset..end].iter().map(|&i| {
        let cells = cells(app, ls.view, i, theme);
        let row = Row::new(cells.into_iter().enumerate().map(|(c, line)| {
            Cell::from(match fits.get(c) {
                Some(&w) => fit(line, w),
                None => line,
            })
        }));
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
    fn cut_cells_end_in_an_ellipsis() {
        let theme = Theme::default();
        let line = Line::from(vec![
            Span::raw("203."),
            Span::styled("0.113.10", theme.good),
        ]);
        assert_eq!(text(fit(line.clone(), 12)), "203.0.113.10");
        assert_eq!(text(fit(line.clone(), 20)), "203.0.113.10");
        let cut = fit(line.clone(), 11);
        assert_eq!(text(cut.clone()), "203.0.113.…");
        assert_eq!(cut.spans.last().map(|s| s.style), Some(theme.good));
        assert_eq!(text(fit(line.clone(), 3)), "20…");
        assert_eq!(text(fit(line.clone(), 1)), "…");
        assert_eq!(text(fit(line, 0)), "");
    }

    #[test]
    fn column_widths_match_the_table() {
        let widths = [
            Constraint::Length(4),
            Constraint::Min(3),
            Constraint::Length(5),
        ];
        // 2 for the selection mark, 1 between columns.
        assert_eq!(column_widths(&widths, Rect::new(0, 0, 20, 1)), [4, 7, 5]);
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
