//! The `:` command line: view names and their aliases, completion, and what a command means.

use super::views::ViewKind;

/// What a `:` command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Show this view (at the root of the breadcrumbs).
    View(ViewKind),
    /// Show the key map.
    Help,
    Quit,
}

/// Every command word and what it means; the first word of each group is the canonical name.
pub const COMMANDS: &[(&str, Command)] = &[
    ("overview", Command::View(ViewKind::Overview)),
    ("ov", Command::View(ViewKind::Overview)),
    ("nodes", Command::View(ViewKind::Nodes)),
    ("node", Command::View(ViewKind::Nodes)),
    ("no", Command::View(ViewKind::Nodes)),
    ("servers", Command::View(ViewKind::Servers)),
    ("server", Command::View(ViewKind::Servers)),
    ("srv", Command::View(ViewKind::Servers)),
    ("vm", Command::View(ViewKind::Servers)),
    ("tasks", Command::View(ViewKind::Tasks)),
    ("task", Command::View(ViewKind::Tasks)),
    ("users", Command::View(ViewKind::Users)),
    ("user", Command::View(ViewKind::Users)),
    ("events", Command::View(ViewKind::Events)),
    ("ev", Command::View(ViewKind::Events)),
    ("audit", Command::View(ViewKind::Audit)),
    ("pools", Command::View(ViewKind::Pools)),
    ("pool", Command::View(ViewKind::Pools)),
    ("images", Command::View(ViewKind::Images)),
    ("img", Command::View(ViewKind::Images)),
    ("backups", Command::View(ViewKind::Backups)),
    ("bk", Command::View(ViewKind::Backups)),
    ("connections", Command::View(ViewKind::Connections)),
    ("conn", Command::View(ViewKind::Connections)),
    ("cn", Command::View(ViewKind::Connections)),
    ("stacks", Command::View(ViewKind::Stacks)),
    ("stack", Command::View(ViewKind::Stacks)),
    ("st", Command::View(ViewKind::Stacks)),
    ("help", Command::Help),
    ("quit", Command::Quit),
    ("q", Command::Quit),
];

/// The command a typed line names (surrounding spaces ignored), or an error line to show.
pub fn parse(line: &str) -> Result<Command, String> {
    let word = line.trim();
    if word.is_empty() {
        return Err("type a command, e.g. :servers (Tab completes)".into());
    }
    COMMANDS
        .iter()
        .find(|(name, _)| *name == word)
        .map(|(_, c)| *c)
        .ok_or_else(|| format!("unknown command :{word} (try :help)"))
}

/// Words that start with what was typed, canonical names first, without repeats.
pub fn candidates(typed: &str) -> Vec<&'static str> {
    let typed = typed.trim_start();
    COMMANDS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| name.starts_with(typed))
        .collect()
}

/// What Tab turns `typed` into: the one candidate, else the longest prefix all candidates share.
pub fn complete(typed: &str) -> String {
    let all = candidates(typed);
    let Some(first) = all.first() else {
        return typed.to_owned();
    };
    if all.len() == 1 {
        return (*first).to_owned();
    }
    let mut common = first.len();
    for c in &all[1..] {
        common = common.min(
            first
                .bytes()
                .zip(c.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let prefix = &first[..common];
    if prefix.len() > typed.trim_start().len() {
        prefix.to_owned()
    } else {
        typed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for (word, view) in [
            ("ov", ViewKind::Overview),
            ("no", ViewKind::Nodes),
            ("vm", ViewKind::Servers),
            ("srv", ViewKind::Servers),
            ("task", ViewKind::Tasks),
            ("ev", ViewKind::Events),
            ("img", ViewKind::Images),
            ("pool", ViewKind::Pools),
            ("bk", ViewKind::Backups),
            ("connections", ViewKind::Connections),
            ("conn", ViewKind::Connections),
            ("cn", ViewKind::Connections),
            ("stacks", ViewKind::Stacks),
            ("stack", ViewKind::Stacks),
            ("st", ViewKind::Stacks),
            ("user", ViewKind::Users),
        ] {
            assert_eq!(parse(word), Ok(Command::View(view)), "{word}");
        }
        assert_eq!(parse(" q "), Ok(Command::Quit));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(
            parse("frobnicate"),
            Err("unknown command :frobnicate (try :help)".into())
        );
        assert!(parse("").is_err());
    }

    #[test]
    fn completion() {
        assert_eq!(complete("ser"), "server");
        assert_eq!(complete("servers"), "servers");
        assert_eq!(complete("ove"), "overview");
        assert_eq!(complete("ov"), "ov");
        // `st` is a word of its own (stacks' alias): Tab keeps it.
        assert_eq!(complete("st"), "st");
        assert_eq!(complete("sta"), "stack");
        assert_eq!(candidates("st"), ["stacks", "stack", "st"]);
        assert_eq!(complete("zz"), "zz");
        assert_eq!(complete("n"), "no");
        assert_eq!(complete("con"), "conn");
        assert_eq!(complete("conne"), "connections");
        assert_eq!(complete("c"), "c");
        assert_eq!(candidates("c"), ["connections", "conn", "cn"]);
        assert_eq!(
            candidates("s"),
            ["servers", "server", "srv", "stacks", "stack", "st"]
        );
    }
}
