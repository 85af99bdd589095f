//! Colour themes. Both use at most the 16 ANSI colours, so the cockpit reads the same on any
//! terminal, the Linux console and an SSH session included.

use ratatui::style::{Color, Modifier, Style};

/// The styles the views draw with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: &'static str,
    /// Titles, key names, the selected view.
    pub accent: Style,
    /// Field names and other quiet text.
    pub label: Style,
    /// Field values.
    pub value: Style,
    /// Healthy: alive, running, in sync, succeeded.
    pub good: Style,
    /// Worth a look: converging, queued, reconnecting.
    pub warn: Style,
    /// Wrong: dead, failed, unreachable.
    pub bad: Style,
    /// The selected row.
    pub selected: Style,
    /// Column headers.
    pub header: Style,
    /// The empty part of gauges.
    pub track: Style,
}

impl Default for Theme {
    fn default() -> Self {
        Theme {
            name: "default",
            accent: Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            label: Style::new().fg(Color::DarkGray),
            value: Style::new().add_modifier(Modifier::BOLD),
            good: Style::new().fg(Color::Green),
            warn: Style::new().fg(Color::Yellow),
            bad: Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            selected: Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
            header: Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::BOLD),
            track: Style::new().fg(Color::DarkGray),
        }
    }
}

impl Theme {
    /// No colour at all: bold, underline and reverse video only.
    pub fn mono() -> Self {
        Theme {
            name: "mono",
            accent: Style::new().add_modifier(Modifier::BOLD),
            label: Style::new(),
            value: Style::new().add_modifier(Modifier::BOLD),
            good: Style::new(),
            warn: Style::new().add_modifier(Modifier::UNDERLINED),
            bad: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            header: Style::new().add_modifier(Modifier::BOLD),
            track: Style::new(),
        }
    }

    /// The theme of this name (`default` or `mono`).
    pub fn by_name(name: &str) -> Option<Theme> {
        match name {
            "default" => Some(Theme::default()),
            "mono" => Some(Theme::mono()),
            _ => None,
        }
    }

    /// Names [`Theme::by_name`] knows.
    pub const NAMES: &'static [&'static str] = &["default", "mono"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for name in Theme::NAMES {
            assert_eq!(Theme::by_name(name).map(|t| t.name), Some(*name));
        }
        assert_eq!(Theme::by_name("neon"), None);
        let mono = Theme::mono();
        for style in [mono.accent, mono.bad, mono.selected, mono.good] {
            assert_eq!(style.fg, None);
            assert_eq!(style.bg, None);
        }
    }
}
