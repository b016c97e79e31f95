//! Text helpers for the folded view: mention detection, system lines and
//! reply excerpts.

use crate::proto::EventBody;

/// Longest reply excerpt, in characters (an ellipsis marks a cut).
pub(crate) const EXCERPT_CHARS: usize = 80;

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}

/// Whether `body` mentions `@me` as a word: case-insensitive, and not the
/// beginning of a longer name (`@alice` does not match `@alicia` or
/// `@alice.b`, but does match `@alice.` at the end of a sentence).
pub fn mentions(body: &str, me: &str) -> bool {
    if me.is_empty() {
        return false;
    }
    let hay = body.to_lowercase();
    let needle = format!("@{}", me.to_lowercase());
    let mut from = 0;
    while let Some(pos) = hay[from..].find(&needle) {
        let start = from + pos;
        let end = start + needle.len();
        let before_ok = hay[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !name_char(c) && c != '.');
        let mut rest = hay[end..].chars();
        let after_ok = match rest.next() {
            None => true,
            Some('.') => !rest.next().is_some_and(name_char),
            Some(c) => !name_char(c),
        };
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
        while !hay.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// The first line of `body`, cut to [`EXCERPT_CHARS`].
pub(crate) fn excerpt(body: &str) -> String {
    let line = body.lines().next().unwrap_or("");
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// The readable line of a membership or naming event; `None` for events
/// that are not system rows.
pub(crate) fn system_text(sender: &str, body: &EventBody) -> Option<String> {
    Some(match body {
        EventBody::Create { name, .. } => match name {
            Some(n) if !n.is_empty() => format!("{sender} created {n}"),
            _ => format!("{sender} started the conversation"),
        },
        EventBody::Join { members } => {
            if members.is_empty() || (members.len() == 1 && members[0] == sender) {
                format!("{sender} joined")
            } else {
                let added: Vec<&str> = members
                    .iter()
                    .map(String::as_str)
                    .filter(|m| *m != sender)
                    .collect();
                format!("{sender} added {}", added.join(", "))
            }
        }
        EventBody::Leave { members } => {
            if members.is_empty() || (members.len() == 1 && members[0] == sender) {
                format!("{sender} left")
            } else if members.iter().any(|m| m == sender) {
                format!("{} left", members.join(", "))
            } else {
                format!("{sender} removed {}", members.join(", "))
            }
        }
        EventBody::Rename { name } => format!("{sender} renamed this to {name}"),
        EventBody::Message { .. }
        | EventBody::Edit { .. }
        | EventBody::Delete { .. }
        | EventBody::Reaction { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mention_words() {
        assert!(mentions("hi @alice", "alice"));
        assert!(mentions("@Alice, look", "alice"));
        assert!(mentions("ping @alice.", "alice"));
        assert!(mentions("(@alice)", "alice"));
        assert!(!mentions("hi @alicia", "alice"));
        assert!(!mentions("hi @alice_b", "alice"));
        assert!(!mentions("hi @alice.b", "alice"));
        assert!(!mentions("mail bob@alice", "alice"));
        assert!(!mentions("hi alice", "alice"));
        assert!(mentions("@alicia and @alice", "alice"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn excerpts() {
        assert_eq!(excerpt("first\nsecond"), "first");
        assert_eq!(excerpt(""), "");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn system_lines() {
        let s = |b: EventBody| system_text("alice", &b).unwrap_or_default();
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s(EventBody::Join {
                members: v(&["alice"])
            }),
            "alice joined"
        );
        assert_eq!(
            s(EventBody::Join {
                members: v(&["bob", "carol"])
            }),
            "alice added bob, carol"
        );
        assert_eq!(
            s(EventBody::Leave {
                members: v(&["alice"])
            }),
            "alice left"
        );
        assert_eq!(
            s(EventBody::Rename {
                name: "launch".into()
            }),
            "alice renamed this to launch"
        );
        assert_eq!(
            s(EventBody::Create {
                name: Some("launch".into()),
                members: v(&["alice"])
            }),
            "alice created launch"
        );
        assert_eq!(
            system_text("alice", &EventBody::Delete { target_seq: 1 }),
            None
        );
    }
}
