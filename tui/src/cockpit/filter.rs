//! The `/` filter of list views: substring by default, `~` for fuzzy (subsequence), `!` to invert.
//!
//! Matching ignores case. The prefixes combine: `!~wb` hides every row where `w`, then `b`
//! appear in that order.

/// A parsed filter. The empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// What the operator typed, prefixes included (shown back as is).
    pub text: String,
    needle: String,
    fuzzy: bool,
    invert: bool,
}

impl Filter {
    /// Parses what the operator typed.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let mut rest = text.as_str();
        let mut invert = false;
        let mut fuzzy = false;
        loop {
            if let Some(r) = rest.strip_prefix('!') {
                invert = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix('~') {
                fuzzy = true;
                rest = r;
            } else {
                break;
            }
        }
        Filter {
            needle: rest.to_lowercase(),
            text,
            fuzzy,
            invert,
        }
    }

    /// Whether the filter lets every row through.
    pub fn is_empty(&self) -> bool {
        self.needle.is_empty()
    }

    /// Whether matching is by subsequence.
    pub fn is_fuzzy(&self) -> bool {
        self.fuzzy
    }

    /// Whether matching rows are hidden instead of kept.
    pub fn is_inverted(&self) -> bool {
        self.invert
    }

    /// Whether a row whose text is `haystack` is shown.
    pub fn matches(&self, haystack: &str) -> bool {
        if self.needle.is_empty() {
            return true;
        }
        let haystack = haystack.to_lowercase();
        let found = if self.fuzzy {
            is_subsequence(&self.needle, &haystack)
        } else {
            haystack.contains(&self.needle)
        };
        found != self.invert
    }
}

/// Whether the characters of `needle` appear in `haystack` in order.
fn is_subsequence(needle: &str, haystack: &str) -> bool {
    let mut wanted = needle.chars().peekable();
    for c in haystack.chars() {
        if wanted.peek() == Some(&c) {
            wanted.next();
        }
    }
    wanted.peek().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_ignores_case() {
        let f = Filter::new("Web");
        assert!(f.matches("my-web-1"));
        assert!(!f.matches("db-1"));
        assert!(!f.is_fuzzy() && !f.is_inverted());
    }

    #[test]
    fn fuzzy_is_a_subsequence() {
        let f = Filter::new("~wb1");
        assert!(f.is_fuzzy());
        assert!(f.matches("web-1"));
        assert!(!f.matches("bw1"));
        assert!(!Filter::new("wb1").matches("web-1"));
    }

    #[test]
    fn invert_hides_matches() {
        let f = Filter::new("!web");
        assert!(f.is_inverted());
        assert!(!f.matches("web-1"));
        assert!(f.matches("db-1"));
        let f = Filter::new("!~wb");
        assert!(f.is_inverted() && f.is_fuzzy());
        assert!(!f.matches("web"));
        assert!(f.matches("db"));
    }

    #[test]
    fn empty_matches_everything() {
        assert!(Filter::new("").matches("x"));
        assert!(Filter::new("!").matches("x"));
        assert!(Filter::new("!").is_empty());
    }
}
