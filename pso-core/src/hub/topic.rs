//! Topic and pattern syntax.
//!
//! A *topic* is one or more non-empty tokens separated by `.`
//! (`engine.build.done`). A token may hold any character except `.`,
//! whitespace, control characters, `*` and `>`.
//!
//! A *pattern* (what a subscription listens to) is a topic whose tokens may
//! also be the wildcards `*` (exactly one token) or `>` (one or more tokens;
//! only as the last token). A wildcard is always a whole token: `a*` or `>b`
//! are rejected.
//!
//! Validation of published topics is on the hot path, so [`check_topic`] is
//! one byte scan; only a failure builds the detailed error naming the bad
//! token.

#![forbid(unsafe_code)]

use super::HubError;

/// Which of the two syntaxes is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// A published topic: no wildcards.
    Topic,
    /// A subscription pattern: `*` tokens, and `>` as the last token.
    Pattern,
}

#[inline]
fn forbidden(b: u8) -> bool {
    b <= b' ' || b == 0x7f
}

/// Checks a published topic. One pass, no allocation when valid.
///
/// # Errors
/// [`HubError::InvalidTopic`] naming the first bad token.
#[inline]
pub(crate) fn check_topic(topic: &str) -> Result<(), HubError> {
    let bytes = topic.as_bytes();
    let mut token_len = 0usize;
    let mut high = 0u8;
    for &b in bytes {
        high |= b;
        if b == b'.' {
            if token_len == 0 {
                return Err(explain(topic, Syntax::Topic));
            }
            token_len = 0;
        } else if forbidden(b) || b == b'*' || b == b'>' {
            return Err(explain(topic, Syntax::Topic));
        } else {
            token_len += 1;
        }
    }
    if token_len == 0 {
        return Err(explain(topic, Syntax::Topic));
    }
    // Non-ASCII text: Unicode whitespace and controls (U+0085, U+2003, ...)
    // are forbidden too.
    if high >= 0x80 && topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(explain(topic, Syntax::Topic));
    }
    Ok(())
}

/// Checks a subscription pattern.
///
/// # Errors
/// [`HubError::InvalidTopic`] naming the first bad token.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), HubError> {
    match first_error(pattern, Syntax::Pattern) {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// The detailed error for an input already known to be invalid.
#[cold]
fn explain(input: &str, syntax: Syntax) -> HubError {
    first_error(input, syntax).unwrap_or_else(|| HubError::InvalidTopic {
        syntax: syntax_name(syntax),
        input: input.to_owned(),
        token: String::new(),
        index: 0,
        reason: "invalid",
    })
}

fn syntax_name(syntax: Syntax) -> &'static str {
    match syntax {
        Syntax::Topic => "topic",
        Syntax::Pattern => "pattern",
    }
}

fn first_error(input: &str, syntax: Syntax) -> Option<HubError> {
    let err = |index: usize, token: &str, reason: &'static str| {
        Some(HubError::InvalidTopic {
            syntax: syntax_name(syntax),
            input: input.to_owned(),
            token: token.to_owned(),
            index,
            reason,
        })
    };
    if input.is_empty() {
        return err(0, "", "it is empty");
    }
    let count = input.split('.').count();
    for (i, token) in input.split('.').enumerate() {
        if token.is_empty() {
            return err(i, token, "empty token");
        }
        if token.bytes().any(forbidden)
            || (!token.is_ascii() && token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return err(i, token, "whitespace or control character in token");
        }
        let wild = token.contains(['*', '>']);
        match syntax {
            Syntax::Topic if wild => {
                return err(i, token, "wildcards are not allowed in a published topic");
            }
            Syntax::Pattern if wild => {
                if token == "*" {
                    continue;
                }
                if token == ">" {
                    if i + 1 != count {
                        return err(i, token, "'>' must be the last token");
                    }
                    continue;
                }
                return err(i, token, "a wildcard must be a whole token ('*' or '>')");
            }
            _ => {}
        }
    }
    None
}

/// Whether `pattern` matches `topic`, by direct comparison of tokens: the
/// reference the subscription tree is tested against. Both inputs are
/// assumed valid.
#[cfg(test)]
pub(crate) fn pattern_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Makes `name` usable as one topic token (for `pso.alert.<system>.dropped`):
/// every forbidden character, `.`, `*` and `>` becomes `_`; an empty name
/// becomes `_`.
pub(crate) fn token_safe(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_token(r: Result<(), HubError>) -> (String, usize) {
        match r {
            Err(HubError::InvalidTopic { token, index, .. }) => (token, index),
            other => panic!("expected InvalidTopic, got {other:?}"),
        }
    }

    #[test]
    fn topics() {
        for ok in ["a", "engine.build.done", "a-b_c.D9", "ünï.códe"] {
            check_topic(ok).unwrap();
        }
        assert_eq!(bad_token(check_topic("")), ("".into(), 0));
        assert_eq!(bad_token(check_topic("a..b")), ("".into(), 1));
        assert_eq!(bad_token(check_topic("a.b.")), ("".into(), 2));
        assert_eq!(bad_token(check_topic(".a")), ("".into(), 0));
        assert_eq!(bad_token(check_topic("a.*")), ("*".into(), 1));
        assert_eq!(bad_token(check_topic("a.>")), (">".into(), 1));
        assert_eq!(bad_token(check_topic("a.b c")), ("b c".into(), 1));
        assert_eq!(bad_token(check_topic("a.x\ty")), ("x\ty".into(), 1));
        // Unicode whitespace and controls too (em space, next line).
        assert_eq!(
            bad_token(check_topic("a.x\u{2003}y")),
            ("x\u{2003}y".into(), 1)
        );
        assert_eq!(bad_token(check_topic("\u{85}.b")), ("\u{85}".into(), 0));
        assert_eq!(
            bad_token(check_pattern("a.*.\u{2003}")),
            ("\u{2003}".into(), 2)
        );
        let msg = check_topic("engine..done").unwrap_err().to_string();
        assert!(
            msg.contains("engine..done") && msg.contains("empty token"),
            "{msg}"
        );
    }

    #[test]
    fn patterns() {
        for ok in ["a", "a.*", "*.b", "a.>", ">", "*.*.>", "a.*.c"] {
            check_pattern(ok).unwrap();
        }
        assert_eq!(bad_token(check_pattern("a.>.b")), (">".into(), 1));
        assert_eq!(bad_token(check_pattern("a.b*")), ("b*".into(), 1));
        assert_eq!(bad_token(check_pattern("a.>>")), (">>".into(), 1));
        assert_eq!(bad_token(check_pattern("a..*")), ("".into(), 1));
        let msg = check_pattern("x.b*").unwrap_err().to_string();
        assert!(msg.contains("'b*'") && msg.contains("pattern"), "{msg}");
    }

    #[test]
    fn matching() {
        assert!(pattern_matches("a.b", "a.b"));
        assert!(!pattern_matches("a.b", "a.b.c"));
        assert!(!pattern_matches("a.b.c", "a.b"));
        assert!(pattern_matches("a.*", "a.b"));
        assert!(!pattern_matches("a.*", "a.b.c"));
        assert!(!pattern_matches("a.*", "a"));
        assert!(pattern_matches("a.>", "a.b"));
        assert!(pattern_matches("a.>", "a.b.c"));
        assert!(!pattern_matches("a.>", "a"));
        assert!(pattern_matches(">", "x"));
        assert!(pattern_matches("*.b.>", "a.b.c.d"));
        assert!(!pattern_matches("*.b.>", "a.c.c.d"));
    }

    #[test]
    fn safe_tokens() {
        assert_eq!(token_safe("PAES"), "PAES");
        assert_eq!(token_safe("a.b c*>"), "a_b_c__");
        assert_eq!(token_safe(""), "_");
    }
}
