//! The `?` help, generated from the key map in force (the same table key handling reads).

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::cockpit::command::COMMANDS;
use crate::cockpit::keymap::{Group, KeyMap, ACTIONS};
use crate::cockpit::theme::Theme;

/// The help's lines.
pub fn lines(keymap: &KeyMap, theme: &Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for group in [
        Group::General,
        Group::Navigation,
        Group::Servers,
        Group::Console,
    ] {
        out.push(Line::styled(group.title(), theme.accent));
        for (action, _, g, what, _) in ACTIONS {
            if *g != group {
                continue;
            }
            out.push(Line::from(vec![
                Span::styled(
                    format!("  {:<14}", keymap.describe_keys(*action)),
                    theme.value,
                ),
                Span::raw(*what),
            ]));
        }
    }
    out.push(Line::styled(
        "Commands (:name, Tab completes)",
        theme.accent,
    ));
    let mut groups: Vec<String> = Vec::new();
    let mut last: Option<crate::cockpit::command::Command> = None;
    for (name, command) in COMMANDS {
        if last == Some(*command) {
            if let Some(g) = groups.last_mut() {
                g.push_str(&format!(" :{name}"));
            }
        } else {
            groups.push(format!(":{name}"));
        }
        last = Some(*command);
    }
    for g in groups {
        out.push(Line::raw(format!("  {g}")));
    }
    out.push(Line::styled("Filter", theme.accent));
    out.push(Line::raw(
        "  /text substring · /~txt fuzzy (in order) · /!text hide matches",
    ));
    out.push(Line::raw("  Enter keeps the filter, Esc clears it"));
    out
}

/// Draws the help as a pop-up over `area`, from line `scroll`.
pub fn render(keymap: &KeyMap, theme: &Theme, scroll: usize, frame: &mut Frame, area: Rect) {
    let lines = lines(keymap, theme);
    let width = 76.min(area.width);
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let inner = usize::from(height.saturating_sub(2));
    let top = scroll.min(lines.len().saturating_sub(inner));
    let shown: Vec<Line> = lines.into_iter().skip(top).collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(shown).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys · j/k scroll · any other key closes ")
                .border_style(theme.accent),
        ),
        popup,
    );
}
