//! Decoding of crossterm key events into the cockpit's own [`Key`]s.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::app::Key;

/// The cockpit key for a terminal key event, if it is one the cockpit uses.
pub fn key_of(event: KeyEvent) -> Option<Key> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    if event.modifiers.contains(KeyModifiers::CONTROL) {
        return match event.code {
            KeyCode::Char(c) if c.is_ascii_alphabetic() => Some(Key::Ctrl(c.to_ascii_lowercase())),
            // Terminals send 0x1d for ctrl-]; crossterm reads that byte as ctrl-5.
            KeyCode::Char(']' | '5') => Some(Key::Ctrl(']')),
            _ => None,
        };
    }
    Some(match event.code {
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Enter => Key::Enter,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::BackTab,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Delete => Key::Delete,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Esc => Key::Esc,
        KeyCode::Char(c) => Key::Char(c),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = |code, mods| key_of(KeyEvent::new(code, mods));
        assert_eq!(
            k(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Key::Ctrl('c'))
        );
        assert_eq!(
            k(KeyCode::Char('q'), KeyModifiers::NONE),
            Some(Key::Char('q'))
        );
        assert_eq!(
            k(KeyCode::Char('G'), KeyModifiers::SHIFT),
            Some(Key::Char('G'))
        );
        assert_eq!(k(KeyCode::Down, KeyModifiers::NONE), Some(Key::Down));
        assert_eq!(k(KeyCode::F(1), KeyModifiers::NONE), None);
        assert_eq!(
            k(KeyCode::Char('X'), KeyModifiers::CONTROL),
            Some(Key::Ctrl('x'))
        );
        assert_eq!(k(KeyCode::Char('1'), KeyModifiers::CONTROL), None);
        assert_eq!(
            k(KeyCode::Char('5'), KeyModifiers::CONTROL),
            Some(Key::Ctrl(']'))
        );
        assert_eq!(
            k(KeyCode::Char(']'), KeyModifiers::CONTROL),
            Some(Key::Ctrl(']'))
        );
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key_of(release), None);
    }
}
