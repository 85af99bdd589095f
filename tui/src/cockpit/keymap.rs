//! The key map: one table of bindings that both key handling and the `?` help read, with
//! defaults and overrides from a TOML file.
//!
//! File format (every entry optional; listed actions replace their default keys):
//!
//! ```toml
//! [keys]
//! start = "s"
//! force_off = ["K", "ctrl-k"]
//! page_down = ["ctrl-d", "pgdn", "space"]
//! ```
//!
//! Key names: one character (`s`, `S`, `?`, `:`), `ctrl-LETTER`, `ctrl-]`, `up`, `down`, `left`,
//! `right`, `home`, `end`, `pgup`, `pgdn`, `enter`, `tab`, `backtab`, `backspace`, `delete`,
//! `esc`, `space`.

use super::app::Key;

/// Which part of the help an action belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    General,
    Navigation,
    /// Operations on the selected server, image, backup, connection or stack (refused when
    /// read-only).
    Servers,
    /// Only while the console pane is open.
    Console,
}

impl Group {
    /// Heading in the help.
    pub fn title(self) -> &'static str {
        match self {
            Group::General => "General",
            Group::Navigation => "Navigation",
            Group::Servers => {
                "Operations (servers, images, backups, connections, stacks; not read-only)"
            }
            Group::Console => "Console pane",
        }
    }
}

/// Everything a key can do outside text input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    Help,
    Command,
    Filter,
    Refresh,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Drill,
    Describe,
    Back,
    SortNext,
    SortReverse,
    Start,
    Shutdown,
    ForceOff,
    Reboot,
    Suspend,
    Resume,
    Move,
    Delete,
    Clone,
    Snapshot,
    Revert,
    Backup,
    Restore,
    Console,
    LeaveConsole,
}

/// Every action with its file name, group, help text and default keys, in help order.
pub const ACTIONS: &[(Action, &str, Group, &str, &[&str])] = &[
    (
        Action::Help,
        "help",
        Group::General,
        "show or hide this help",
        &["?"],
    ),
    (
        Action::Command,
        "command",
        Group::General,
        "command line (:servers, :q; Tab completes)",
        &[":"],
    ),
    (
        Action::Filter,
        "filter",
        Group::General,
        "filter rows (~fuzzy, !invert; Esc clears)",
        &["/"],
    ),
    (
        Action::Refresh,
        "refresh",
        Group::General,
        "re-read everything now",
        &["r"],
    ),
    (
        Action::Quit,
        "quit",
        Group::General,
        "quit",
        &["q", "ctrl-c"],
    ),
    (
        Action::Up,
        "up",
        Group::Navigation,
        "previous row / scroll up",
        &["k", "up"],
    ),
    (
        Action::Down,
        "down",
        Group::Navigation,
        "next row / scroll down",
        &["j", "down"],
    ),
    (
        Action::PageUp,
        "page_up",
        Group::Navigation,
        "half a page up",
        &["ctrl-u", "pgup"],
    ),
    (
        Action::PageDown,
        "page_down",
        Group::Navigation,
        "half a page down",
        &["ctrl-d", "pgdn"],
    ),
    (
        Action::Top,
        "top",
        Group::Navigation,
        "first row",
        &["g", "home"],
    ),
    (
        Action::Bottom,
        "bottom",
        Group::Navigation,
        "last row",
        &["G", "end"],
    ),
    (
        Action::Drill,
        "drill",
        Group::Navigation,
        "open: node → servers, server → describe, task → log",
        &["enter"],
    ),
    (
        Action::Describe,
        "describe",
        Group::Navigation,
        "describe the selected object in full",
        &["d"],
    ),
    (
        Action::Back,
        "back",
        Group::Navigation,
        "clear the filter, else go back one breadcrumb",
        &["esc"],
    ),
    (
        Action::SortNext,
        "sort_next",
        Group::Navigation,
        "sort by the next column",
        &["o"],
    ),
    (
        Action::SortReverse,
        "sort_reverse",
        Group::Navigation,
        "reverse the sort order",
        &["O"],
    ),
    (
        Action::Start,
        "start",
        Group::Servers,
        "start a server or stack, activate a connection (asks y/n)",
        &["s"],
    ),
    (
        Action::Shutdown,
        "shutdown",
        Group::Servers,
        "shut down a server or stack, deactivate a connection (y/n)",
        &["h"],
    ),
    (
        Action::Reboot,
        "reboot",
        Group::Servers,
        "reboot (asks y/n)",
        &["R"],
    ),
    (
        Action::Suspend,
        "suspend",
        Group::Servers,
        "suspend (asks y/n)",
        &["p"],
    ),
    (
        Action::Resume,
        "resume",
        Group::Servers,
        "resume (asks y/n)",
        &["u"],
    ),
    (
        Action::Move,
        "move",
        Group::Servers,
        "move to a node, or the scheduler's choice",
        &["m"],
    ),
    (
        Action::ForceOff,
        "force_off",
        Group::Servers,
        "force off (type the name)",
        &["K"],
    ),
    (
        Action::Delete,
        "delete",
        Group::Servers,
        "delete (type the name; a backup: its id)",
        &["X"],
    ),
    (
        Action::Clone,
        "clone",
        Group::Servers,
        "images: clone a master into a new image (asks its name)",
        &["C"],
    ),
    (
        Action::Snapshot,
        "snapshot",
        Group::Servers,
        "images: take a snapshot (asks its name)",
        &["S"],
    ),
    (
        Action::Revert,
        "revert",
        Group::Servers,
        "images: revert to a snapshot (asks which; type the name)",
        &["V"],
    ),
    (
        Action::Backup,
        "backup",
        Group::Servers,
        "servers, images: back up now (asks y/n)",
        &["b"],
    ),
    (
        Action::Restore,
        "restore",
        Group::Servers,
        "backups: restore in place (type the id)",
        &["T"],
    ),
    (
        Action::Console,
        "console",
        Group::Servers,
        "open the serial console",
        &["c"],
    ),
    (
        Action::LeaveConsole,
        "leave_console",
        Group::Console,
        "leave the console (other keys go to the server)",
        &["ctrl-]"],
    ),
];

/// The bindings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    bindings: Vec<(Key, Action)>,
}

impl Default for KeyMap {
    fn default() -> Self {
        let mut bindings = Vec::new();
        for (action, _, _, _, keys) in ACTIONS {
            for k in *keys {
                if let Ok(key) = parse_key(k) {
                    bindings.push((key, *action));
                }
            }
        }
        KeyMap { bindings }
    }
}

impl KeyMap {
    /// The action bound to `key`.
    pub fn action(&self, key: Key) -> Option<Action> {
        self.bindings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| *a)
    }

    /// The keys bound to `action`, in the order they were given.
    pub fn keys(&self, action: Action) -> Vec<Key> {
        self.bindings
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The keys of `action` as the help shows them (`j/down`).
    pub fn describe_keys(&self, action: Action) -> String {
        let keys: Vec<String> = self.keys(action).into_iter().map(key_name).collect();
        if keys.is_empty() {
            "(unbound)".into()
        } else {
            keys.join("/")
        }
    }

    /// Binds `keys` to `action` instead of its current keys; a key taken from another action
    /// leaves that action.
    pub fn bind(&mut self, action: Action, keys: &[Key]) {
        self.bindings
            .retain(|(k, a)| *a != action && !keys.contains(k));
        self.bindings.extend(keys.iter().map(|k| (*k, action)));
    }

    /// The default map with the overrides of a TOML key file (see the module docs).
    pub fn from_toml(text: &str) -> Result<KeyMap, String> {
        let mut map = KeyMap::default();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(section) = line.strip_prefix('[') {
                let name = section.trim_end_matches(']').trim();
                if name != "keys" {
                    return Err(format!(
                        "line {line_no}: unknown section [{name}] (only [keys])"
                    ));
                }
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(format!("line {line_no}: expected `action = \"key\"`"));
            };
            let name = name.trim().trim_matches('"');
            let Some((action, ..)) = ACTIONS.iter().find(|(_, n, ..)| *n == name) else {
                return Err(format!("line {line_no}: unknown action `{name}`"));
            };
            let names =
                parse_value(value.trim()).map_err(|e| format!("line {line_no}: {name}: {e}"))?;
            let keys = names
                .iter()
                .map(|k| parse_key(k).map_err(|e| format!("line {line_no}: {name}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            map.bind(*action, &keys);
        }
        Ok(map)
    }
}

/// A line without its `#` comment (a `#` inside quotes is kept).
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// `"k"` or `["k", "up"]`.
fn parse_value(value: &str) -> Result<Vec<String>, String> {
    let inner = match value.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or("the list has no closing `]`")?,
        None => value,
    };
    let mut keys = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let s = item
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or_else(|| format!("expected a quoted key name, found {item}"))?;
        keys.push(s.to_owned());
    }
    if keys.is_empty() {
        return Err("no key given".into());
    }
    Ok(keys)
}

/// Parses a key name of the file format.
pub fn parse_key(name: &str) -> Result<Key, String> {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        return Ok(Key::Char(c));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("ctrl-") {
        let mut chars = rest.chars();
        return match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() || c == ']' => Ok(Key::Ctrl(c)),
            _ => Err(format!("bad key `{name}` (ctrl- takes one letter or ])")),
        };
    }
    Ok(match lower.as_str() {
        "up" => Key::Up,
        "down" => Key::Down,
        "left" => Key::Left,
        "right" => Key::Right,
        "home" => Key::Home,
        "end" => Key::End,
        "pgup" | "pageup" => Key::PageUp,
        "pgdn" | "pagedown" => Key::PageDown,
        "enter" => Key::Enter,
        "tab" => Key::Tab,
        "backtab" => Key::BackTab,
        "backspace" => Key::Backspace,
        "delete" => Key::Delete,
        "esc" => Key::Esc,
        "space" => Key::Char(' '),
        _ => return Err(format!("bad key `{name}`")),
    })
}

/// The name of a key as the file format and the help write it.
pub fn key_name(key: Key) -> String {
    match key {
        Key::Up => "up".into(),
        Key::Down => "down".into(),
        Key::Left => "left".into(),
        Key::Right => "right".into(),
        Key::Home => "home".into(),
        Key::End => "end".into(),
        Key::PageUp => "pgup".into(),
        Key::PageDown => "pgdn".into(),
        Key::Enter => "enter".into(),
        Key::Tab => "tab".into(),
        Key::BackTab => "backtab".into(),
        Key::Backspace => "backspace".into(),
        Key::Delete => "delete".into(),
        Key::Esc => "esc".into(),
        Key::Char(' ') => "space".into(),
        Key::Char(c) => c.to_string(),
        Key::Ctrl(c) => format!("ctrl-{c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_every_action_once_per_key() {
        let map = KeyMap::default();
        for (action, name, ..) in ACTIONS {
            assert!(!map.keys(*action).is_empty(), "{name} unbound");
        }
        for (i, (k, _)) in map.bindings.iter().enumerate() {
            assert!(
                map.bindings[i + 1..].iter().all(|(other, _)| other != k),
                "{k:?} bound twice"
            );
        }
        assert_eq!(map.action(Key::Char('j')), Some(Action::Down));
        assert_eq!(map.action(Key::Ctrl('d')), Some(Action::PageDown));
        assert_eq!(map.action(Key::Ctrl(']')), Some(Action::LeaveConsole));
        assert_eq!(map.describe_keys(Action::Down), "j/down");
    }

    #[test]
    fn toml_overrides() {
        let map = KeyMap::from_toml(
            "# my keys\n[keys]\nstart = \"S\"  # shift\nforce_off = [\"ctrl-k\", \"F\"]\ndown = \"n\"\n",
        )
        .unwrap();
        assert_eq!(map.action(Key::Char('S')), Some(Action::Start));
        assert_eq!(map.action(Key::Char('s')), None);
        assert_eq!(map.action(Key::Ctrl('k')), Some(Action::ForceOff));
        assert_eq!(map.action(Key::Char('F')), Some(Action::ForceOff));
        assert_eq!(map.action(Key::Char('K')), None);
        assert_eq!(map.action(Key::Char('n')), Some(Action::Down));
        // Taking a key from another action unbinds it there.
        let map = KeyMap::from_toml("describe = \"j\"").unwrap();
        assert_eq!(map.action(Key::Char('j')), Some(Action::Describe));
        assert_eq!(map.keys(Action::Down), [Key::Down]);
        assert_eq!(KeyMap::from_toml("").unwrap(), KeyMap::default());
    }

    #[test]
    fn toml_errors_name_the_problem() {
        assert_eq!(
            KeyMap::from_toml("[keys]\nexplode = \"x\"").unwrap_err(),
            "line 2: unknown action `explode`"
        );
        assert_eq!(
            KeyMap::from_toml("start = \"hyper-s\"").unwrap_err(),
            "line 1: start: bad key `hyper-s`"
        );
        assert_eq!(
            KeyMap::from_toml("start = \"ctrl-1\"").unwrap_err(),
            "line 1: start: bad key `ctrl-1` (ctrl- takes one letter or ])"
        );
        assert_eq!(
            KeyMap::from_toml("[colours]").unwrap_err(),
            "line 1: unknown section [colours] (only [keys])"
        );
        assert!(KeyMap::from_toml("start").unwrap_err().contains("line 1"));
        assert!(KeyMap::from_toml("start = s")
            .unwrap_err()
            .contains("quoted"));
        assert!(KeyMap::from_toml("start = [\"s\"")
            .unwrap_err()
            .contains("]"));
        assert!(KeyMap::from_toml("start = []")
            .unwrap_err()
            .contains("no key"));
    }

    #[test]
    fn key_names_round_trip() {
        for name in [
            "a", "G", "ctrl-d", "ctrl-]", "up", "pgdn", "enter", "esc", "space", "?",
        ] {
            assert_eq!(key_name(parse_key(name).unwrap()), name);
        }
    }
}
