//! Decodes the bytes an SSH client's terminal sends into cockpit [`Key`]s.
//!
//! Everything here comes from the client: any byte sequence is accepted without panicking, and
//! the decoder never holds more than [`MAX_SEQUENCE`] bytes of an unfinished sequence. Sequences
//! may arrive split across packets; a lone ESC is told apart from the start of a sequence by
//! time: if nothing follows within [`ESC_TIMEOUT`], the caller calls [`KeyDecoder::timeout`] and
//! it becomes [`Key::Esc`].

use std::time::Duration;

use skiff_tui::cockpit::app::Key;

/// Longest escape sequence kept while waiting for its end; a longer one is skipped as garbage.
pub const MAX_SEQUENCE: usize = 16;
/// A lone ESC becomes [`Key::Esc`] when no byte follows within this time.
pub const ESC_TIMEOUT: Duration = Duration::from_millis(30);

const ESC: u8 = 0x1b;

/// Where the decoder is between two bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ground,
    /// Saw ESC.
    Esc,
    /// Saw `ESC [`, then these parameter and intermediate bytes.
    Csi(Vec<u8>),
    /// A control sequence longer than [`MAX_SEQUENCE`]: skipped until its final byte.
    CsiSkip,
    /// Saw `ESC O` (application cursor keys).
    Ss3,
    /// Inside a UTF-8 character: the bytes so far and how many it has in all.
    Utf8 {
        bytes: Vec<u8>,
        len: usize,
    },
}

/// The byte decoder of one SSH session.
#[derive(Debug)]
pub struct KeyDecoder {
    state: State,
    /// The last byte was a carriage return (so that a following line feed is not a second Enter).
    after_cr: bool,
}

impl Default for KeyDecoder {
    fn default() -> Self {
        KeyDecoder {
            state: State::Ground,
            after_cr: false,
        }
    }
}

impl KeyDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `bytes`, appending the keys they complete to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Key>) {
        for &b in bytes {
            self.byte(b, out);
        }
    }

    /// Whether an unfinished sequence waits for more bytes (then the caller should call
    /// [`KeyDecoder::timeout`] after [`ESC_TIMEOUT`] of silence).
    pub fn is_pending(&self) -> bool {
        self.state != State::Ground
    }

    /// No byte came for [`ESC_TIMEOUT`]: a lone ESC is the Esc key; any other unfinished
    /// sequence is dropped.
    pub fn timeout(&mut self, out: &mut Vec<Key>) {
        if self.state == State::Esc {
            out.push(Key::Esc);
        }
        self.state = State::Ground;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Key>) {
        let state = std::mem::replace(&mut self.state, State::Ground);
        match state {
            State::Ground => self.ground(b, out),
            State::Esc => match b {
                b'[' => self.state = State::Csi(Vec::new()),
                b'O' => self.state = State::Ss3,
                ESC => {
                    out.push(Key::Esc);
                    self.state = State::Esc;
                }
                // ESC followed by anything else (Alt+key): the Esc key, then the key.
                _ => {
                    out.push(Key::Esc);
                    self.ground(b, out);
                }
            },
            State::Csi(mut params) => match b {
                0x20..=0x3f => {
                    if params.len() >= MAX_SEQUENCE {
                        self.state = State::CsiSkip;
                    } else {
                        params.push(b);
                        self.state = State::Csi(params);
                    }
                }
                0x40..=0x7e => {
                    if let Some(key) = csi_key(&params, b) {
                        out.push(key);
                    }
                }
                // Not part of a control sequence: drop what we had and read the byte afresh.
                _ => self.ground(b, out),
            },
            State::CsiSkip => match b {
                0x20..=0x3f => self.state = State::CsiSkip,
                0x40..=0x7e => {}
                _ => self.ground(b, out),
            },
            State::Ss3 => match b {
                b'A' => out.push(Key::Up),
                b'B' => out.push(Key::Down),
                b'C' => out.push(Key::Right),
                b'D' => out.push(Key::Left),
                b'H' => out.push(Key::Home),
                b'F' => out.push(Key::End),
                b'M' => out.push(Key::Enter),
                // F1-F4 and keypad keys the cockpit does not use.
                0x40..=0x7e => {}
                _ => self.ground(b, out),
            },
            State::Utf8 { mut bytes, len } => {
                if b & 0xc0 != 0x80 {
                    // Not a continuation byte: the character was cut short; read the byte afresh.
                    self.ground(b, out);
                    return;
                }
                bytes.push(b);
                if bytes.len() < len {
                    self.state = State::Utf8 { bytes, len };
                    return;
                }
                if let Some(c) = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.chars().next())
                {
                    out.push(Key::Char(c));
                }
            }
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<Key>) {
        let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
        match b {
            ESC => self.state = State::Esc,
            b'\r' => out.push(Key::Enter),
            b'\n' if !after_cr => out.push(Key::Enter),
            b'\n' => {}
            b'\t' => out.push(Key::Tab),
            0x7f | 0x08 => out.push(Key::Backspace),
            0x01..=0x1a => out.push(Key::Ctrl(char::from(b'a' + b - 1))),
            // Ctrl-\ ] ^ _ (Ctrl-] leaves a server console).
            0x1c => out.push(Key::Ctrl('\\')),
            0x1d => out.push(Key::Ctrl(']')),
            0x1e => out.push(Key::Ctrl('^')),
            0x1f => out.push(Key::Ctrl('_')),
            // NUL (Ctrl-Space): nothing the cockpit uses.
            0x00 => {}
            0x20..=0x7e => out.push(Key::Char(char::from(b))),
            0xc2..=0xdf => self.utf8(b, 2),
            0xe0..=0xef => self.utf8(b, 3),
            0xf0..=0xf4 => self.utf8(b, 4),
            // Stray continuation bytes and bytes that never start UTF-8.
            _ => {}
        }
    }

    fn utf8(&mut self, first: u8, len: usize) {
        self.state = State::Utf8 {
            bytes: vec![first],
            len,
        };
    }
}

/// The key of a complete control sequence `ESC [ params final`, if the cockpit has one.
fn csi_key(params: &[u8], last: u8) -> Option<Key> {
    match last {
        // Modifiers (`1;5A` for Ctrl+Up) are ignored: the arrow is the arrow.
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        b'H' => Some(Key::Home),
        b'F' => Some(Key::End),
        b'Z' => Some(Key::BackTab),
        b'~' => {
            let first = params.split(|&c| c == b';').next().unwrap_or_default();
            match first {
                b"1" | b"7" => Some(Key::Home),
                b"4" | b"8" => Some(Key::End),
                b"3" => Some(Key::Delete),
                b"5" => Some(Key::PageUp),
                b"6" => Some(Key::PageDown),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Key> {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(bytes, &mut out);
        out
    }

    /// Feeds `bytes` one packet per byte, then lets the ESC timeout pass.
    fn decode_split(bytes: &[u8]) -> Vec<Key> {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        for b in bytes {
            d.feed(std::slice::from_ref(b), &mut out);
        }
        d.timeout(&mut out);
        out
    }

    #[test]
    fn printable_ascii_and_utf8() {
        assert_eq!(
            decode(b"q A~"),
            vec![
                Key::Char('q'),
                Key::Char(' '),
                Key::Char('A'),
                Key::Char('~')
            ]
        );
        assert_eq!(
            decode("é€😀".as_bytes()),
            vec![Key::Char('é'), Key::Char('€'), Key::Char('😀')]
        );
        // Split across packets.
        assert_eq!(decode_split("é€😀".as_bytes()), decode("é€😀".as_bytes()));
    }

    #[test]
    fn control_bytes() {
        assert_eq!(decode(b"\x03"), vec![Key::Ctrl('c')]);
        assert_eq!(decode(b"\x01\x1a"), vec![Key::Ctrl('a'), Key::Ctrl('z')]);
        assert_eq!(
            decode(b"\x7f\x08\t\r"),
            vec![Key::Backspace, Key::Backspace, Key::Tab, Key::Enter]
        );
        // CR LF is one Enter; a lone LF is one too.
        assert_eq!(decode(b"\r\n\n"), vec![Key::Enter, Key::Enter]);
        assert_eq!(decode(b"\x1d\x1c"), vec![Key::Ctrl(']'), Key::Ctrl('\\')]);
        assert_eq!(decode(b"\x00"), vec![]);
    }

    #[test]
    fn csi_keys() {
        for (bytes, key) in [
            (&b"\x1b[A"[..], Key::Up),
            (b"\x1b[B", Key::Down),
            (b"\x1b[C", Key::Right),
            (b"\x1b[D", Key::Left),
            (b"\x1b[H", Key::Home),
            (b"\x1b[F", Key::End),
            (b"\x1b[1~", Key::Home),
            (b"\x1b[7~", Key::Home),
            (b"\x1b[4~", Key::End),
            (b"\x1b[8~", Key::End),
            (b"\x1b[5~", Key::PageUp),
            (b"\x1b[6~", Key::PageDown),
            (b"\x1b[3~", Key::Delete),
            (b"\x1b[Z", Key::BackTab),
            (b"\x1b[1;5A", Key::Up),
            (b"\x1b[3;2~", Key::Delete),
            (b"\x1bOA", Key::Up),
            (b"\x1bOB", Key::Down),
            (b"\x1bOC", Key::Right),
            (b"\x1bOD", Key::Left),
            (b"\x1bOH", Key::Home),
            (b"\x1bOF", Key::End),
        ] {
            assert_eq!(decode(bytes), vec![key], "{bytes:?}");
            assert_eq!(decode_split(bytes), vec![key], "split {bytes:?}");
        }
        // Keys the cockpit has no use for vanish without a trace.
        assert_eq!(decode(b"\x1b[2~\x1b[15~\x1bOP\x1b[M"), vec![]);
        // Several in one packet.
        assert_eq!(
            decode(b"\x1b[A\x1b[Bx\x1b[6~"),
            vec![Key::Up, Key::Down, Key::Char('x'), Key::PageDown]
        );
    }

    #[test]
    fn lone_escape_needs_the_timeout() {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(b"\x1b", &mut out);
        assert!(out.is_empty());
        assert!(d.is_pending());
        d.timeout(&mut out);
        assert_eq!(out, vec![Key::Esc]);
        assert!(!d.is_pending());
        // ESC ESC: the first is a key, the second waits.
        let mut out = Vec::new();
        d.feed(b"\x1b\x1b", &mut out);
        assert_eq!(out, vec![Key::Esc]);
        d.timeout(&mut out);
        assert_eq!(out, vec![Key::Esc, Key::Esc]);
        // ESC then a letter (Alt+q): Esc, then q.
        assert_eq!(decode(b"\x1bq"), vec![Key::Esc, Key::Char('q')]);
    }

    #[test]
    fn a_sequence_split_across_packets_is_one_key() {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(b"\x1b", &mut out);
        d.feed(b"[", &mut out);
        d.feed(b"5", &mut out);
        assert!(out.is_empty());
        d.feed(b"~x", &mut out);
        assert_eq!(out, vec![Key::PageUp, Key::Char('x')]);
    }

    #[test]
    fn an_unfinished_sequence_is_dropped_at_the_timeout() {
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        d.feed(b"\x1b[12", &mut out);
        d.timeout(&mut out);
        assert!(out.is_empty());
        d.feed(b"a", &mut out);
        assert_eq!(out, vec![Key::Char('a')]);
    }

    #[test]
    fn garbage_never_panics_and_memory_stays_bounded() {
        // An endless control sequence is skipped up to its final byte.
        let mut long = b"\x1b[".to_vec();
        long.extend(std::iter::repeat_n(b'9', 10_000));
        long.extend(b"~z");
        assert_eq!(decode(&long), vec![Key::Char('z')]);
        // Broken UTF-8: a cut character, stray continuation bytes, bytes that start nothing.
        assert_eq!(decode(b"\xc3x"), vec![Key::Char('x')]);
        assert_eq!(decode(b"\x80\xbf\xc0\xc1\xf5\xffy"), vec![Key::Char('y')]);
        // Overlong and surrogate encodings are not characters.
        assert_eq!(decode(b"\xe0\x80\x80\xed\xa0\x80k"), vec![Key::Char('k')]);
        // A control byte inside a sequence ends it and counts.
        assert_eq!(decode(b"\x1b[1\x03"), vec![Key::Ctrl('c')]);
        // Every byte value, in every state, by a simple pseudo-random walk.
        let mut d = KeyDecoder::new();
        let mut out = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..200_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (x >> 16) as u8;
            // Favour the bytes that start sequences.
            let b = match b % 7 {
                0 => ESC,
                1 => b'[',
                _ => b,
            };
            d.feed(&[b], &mut out);
            match &d.state {
                State::Csi(p) => assert!(p.len() <= MAX_SEQUENCE),
                State::Utf8 { bytes, len } => assert!(bytes.len() < *len && *len <= 4),
                _ => {}
            }
            if x % 97 == 0 {
                d.timeout(&mut out);
            }
            out.clear();
        }
    }
}
