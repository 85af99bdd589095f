//! The console pane's text: a small terminal-ish buffer that keeps printable text and line
//! breaks of a server's serial output (escape sequences dropped, `\r` and backspace handled), and
//! the bytes a key sends to the server.

use super::app::Key;

/// Lines the pane keeps; older output is dropped.
pub const MAX_LINES: usize = 2000;

/// The console output seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleBuffer {
    /// Finished lines, oldest first.
    lines: Vec<String>,
    /// The line being written, and where the next character goes.
    current: Vec<char>,
    col: usize,
    /// Bytes of a character or escape sequence cut by the end of the last chunk.
    pending: Vec<u8>,
    escape: Escape,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ ...` until a final byte.
    Csi,
    /// Inside `ESC ] ...` until BEL or `ESC \`.
    Osc,
    OscEsc,
}

impl ConsoleBuffer {
    /// Adds output bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let mut rest = &data[..];
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.push_str(text);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // Safe to decode: `valid_up_to` says so.
                    self.push_str(&String::from_utf8_lossy(good));
                    match e.error_len() {
                        Some(n) => {
                            self.push_char('\u{fffd}');
                            rest = &bad[n..];
                        }
                        None => {
                            // Cut in the middle of a character: wait for the rest.
                            self.pending = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
    }

    fn push_str(&mut self, text: &str) {
        for c in text.chars() {
            self.push_char(c);
        }
    }

    fn push_char(&mut self, c: char) {
        match self.escape {
            Escape::Start => {
                self.escape = match c {
                    '[' => Escape::Csi,
                    ']' => Escape::Osc,
                    _ => Escape::None,
                };
                return;
            }
            Escape::Csi => {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    self.escape = Escape::None;
                }
                return;
            }
            Escape::Osc => {
                match c {
                    '\u{7}' => self.escape = Escape::None,
                    '\u{1b}' => self.escape = Escape::OscEsc,
                    _ => {}
                }
                return;
            }
            Escape::OscEsc => {
                self.escape = if c == '\\' { Escape::None } else { Escape::Osc };
                return;
            }
            Escape::None => {}
        }
        match c {
            '\u{1b}' => self.escape = Escape::Start,
            '\n' => self.newline(),
            '\r' => self.col = 0,
            '\u{8}' => self.col = self.col.saturating_sub(1),
            '\t' => {
                let next = (self.col / 8 + 1) * 8;
                while self.col < next {
                    self.put(' ');
                }
            }
            c if c.is_control() => {}
            c => self.put(c),
        }
    }

    fn put(&mut self, c: char) {
        if self.col < self.current.len() {
            self.current[self.col] = c;
        } else {
            self.current.resize(self.col, ' ');
            self.current.push(c);
        }
        self.col += 1;
    }

    fn newline(&mut self) {
        let line: String = self.current.drain(..).collect();
        self.lines.push(line.trim_end().to_owned());
        self.col = 0;
        if self.lines.len() > MAX_LINES {
            let extra = self.lines.len() - MAX_LINES;
            self.lines.drain(..extra);
        }
    }

    /// The last `n` lines, the unfinished one included when it has text.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let mut all: Vec<String> = Vec::with_capacity(n);
        let current: String = self.current.iter().collect();
        let extra = usize::from(!current.is_empty());
        let from = (self.lines.len() + extra).saturating_sub(n);
        all.extend(self.lines.iter().skip(from).cloned());
        if extra == 1 && n > 0 {
            all.push(current);
        }
        all
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.current.is_empty()
    }
}

/// The bytes a terminal would send the server for `key`.
pub fn key_bytes(key: Key) -> Vec<u8> {
    match key {
        Key::Char(c) => c.to_string().into_bytes(),
        Key::Enter => b"\r".to_vec(),
        Key::Backspace => vec![0x7f],
        Key::Tab => b"\t".to_vec(),
        Key::BackTab => b"\x1b[Z".to_vec(),
        Key::Esc => vec![0x1b],
        Key::Up => b"\x1b[A".to_vec(),
        Key::Down => b"\x1b[B".to_vec(),
        Key::Right => b"\x1b[C".to_vec(),
        Key::Left => b"\x1b[D".to_vec(),
        Key::Home => b"\x1b[H".to_vec(),
        Key::End => b"\x1b[F".to_vec(),
        Key::PageUp => b"\x1b[5~".to_vec(),
        Key::PageDown => b"\x1b[6~".to_vec(),
        Key::Delete => b"\x1b[3~".to_vec(),
        Key::Ctrl(c) if c.is_ascii_alphabetic() => vec![(c.to_ascii_lowercase() as u8) & 0x1f],
        Key::Ctrl(c) if ('@'..='_').contains(&c) => vec![(c as u8) & 0x1f],
        Key::Ctrl(_) => Vec::new(),
    }
}

/// What is new in `text` after `previous`, two tails of the same growing console output (the
/// window slides, so `text` may have lost its start): the part after the end of `previous`, or
/// all of `text` when they share nothing.
pub fn new_suffix<'a>(previous: &str, text: &'a str) -> &'a str {
    if previous.is_empty() {
        return text;
    }
    // The window slid by some bytes: find where the rest of `previous` starts `text`.
    for (k, _) in previous.char_indices() {
        let seen = &previous[k..];
        if let Some(rest) = text.strip_prefix(seen) {
            return rest;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &ConsoleBuffer) -> Vec<String> {
        b.tail(100)
    }

    #[test]
    fn lines_carriage_returns_and_backspace() {
        let mut b = ConsoleBuffer::default();
        assert!(b.is_empty());
        b.push(b"hello\r\nworld\rW\n12345\x08\x08ab\n");
        assert_eq!(text(&b), ["hello", "World", "123ab"]);
        b.push(b"login: ");
        assert_eq!(b.tail(2), ["123ab", "login: "]);
    }

    #[test]
    fn escape_sequences_are_dropped() {
        let mut b = ConsoleBuffer::default();
        b.push(b"\x1b[1;32mgreen\x1b[0m \x1b]0;title\x07ok\x1b]2;t\x1b\\!\n");
        assert_eq!(text(&b), ["green ok!"]);
        // A sequence cut between two chunks.
        b.push(b"a\x1b[3");
        b.push(b"1mb\n");
        assert_eq!(b.tail(1), ["ab"]);
    }

    #[test]
    fn utf8_cut_between_chunks() {
        let mut b = ConsoleBuffer::default();
        let bytes = "é€\n".as_bytes();
        b.push(&bytes[..1]);
        b.push(&bytes[1..3]);
        b.push(&bytes[3..]);
        b.push(b"\xff\n");
        assert_eq!(text(&b), ["é€", "\u{fffd}"]);
    }

    #[test]
    fn keeps_a_bounded_history() {
        let mut b = ConsoleBuffer::default();
        for i in 0..MAX_LINES + 10 {
            b.push(format!("{i}\n").as_bytes());
        }
        assert_eq!(b.lines.len(), MAX_LINES);
        assert_eq!(b.tail(1), [(MAX_LINES + 9).to_string()]);
    }

    #[test]
    fn keys_to_bytes() {
        assert_eq!(key_bytes(Key::Enter), b"\r");
        assert_eq!(key_bytes(Key::Backspace), [0x7f]);
        assert_eq!(key_bytes(Key::Ctrl('c')), [3]);
        assert_eq!(key_bytes(Key::Ctrl('D')), [4]);
        assert_eq!(key_bytes(Key::Up), b"\x1b[A");
        assert_eq!(key_bytes(Key::Left), b"\x1b[D");
        assert_eq!(key_bytes(Key::Char('é')), "é".as_bytes());
        assert_eq!(key_bytes(Key::Ctrl('1')), b"");
    }

    #[test]
    fn suffixes() {
        assert_eq!(new_suffix("", "abc"), "abc");
        assert_eq!(new_suffix("abc", "abcdef"), "def");
        // The window slid: the start is gone.
        assert_eq!(new_suffix("abcdef", "cdefgh"), "gh");
        assert_eq!(new_suffix("abc", "xyz"), "xyz");
        assert_eq!(new_suffix("abc", "abc"), "");
    }
}
