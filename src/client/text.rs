//! The client's words, in one place for the TUI, the command line and
//! notifications: system lines, conversation titles, a plain-text line per
//! event, mention detection, reply excerpts, and the stripping of control
//! characters from what other users wrote.

use crate::client::clock::TimeZone;
use crate::client::view::SystemChange;
use crate::proto::{ConvKind, Event, EventBody, MemberRole};

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

/// The sentence of a system row: "alice joined", "bob added carol".
pub fn system_line(sender: &str, change: &SystemChange) -> String {
    match change {
        SystemChange::Created { name } => match name {
            Some(n) if !n.is_empty() => format!("{sender} created {n}"),
            _ => format!("{sender} started the conversation"),
        },
        SystemChange::Joined { members } => {
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
        SystemChange::Left { members } => {
            if members.is_empty() || (members.len() == 1 && members[0] == sender) {
                format!("{sender} left")
            } else if members.iter().any(|m| m == sender) {
                format!("{} left", members.join(", "))
            } else {
                format!("{sender} removed {}", members.join(", "))
            }
        }
        SystemChange::Removed { members } => {
            format!("{sender} removed {}", members.join(", "))
        }
        SystemChange::RoleSet { user, role } => match role {
            MemberRole::Owner => format!("{sender} handed this over to {user}"),
            MemberRole::Admin => format!("{sender} made {user} an admin"),
            MemberRole::Member => format!("{sender} made {user} a member"),
        },
        SystemChange::Renamed { name } => format!("{sender} renamed this to {name}"),
    }
}

/// A conversation's title as `me` sees it: a DM is named after the other
/// member, a named group or channel by its name, an unnamed one by its
/// other members, and anything else by its id.
pub fn conv_title(
    id: &str,
    kind: ConvKind,
    name: Option<&str>,
    members: &[String],
    me: &str,
) -> String {
    let others: Vec<&str> = members
        .iter()
        .map(String::as_str)
        .filter(|m| *m != me)
        .collect();
    let named = name.filter(|n| !n.is_empty());
    match (kind, named) {
        (ConvKind::Dm, _) if !others.is_empty() => others[0].to_string(),
        (_, Some(n)) => n.to_string(),
        _ if !others.is_empty() => others.join(", "),
        _ => id.to_string(),
    }
}

/// The title with the sigil people type to name it: `@bob`, `#general`,
/// `+launch`.
pub fn conv_label(kind: ConvKind, title: &str) -> String {
    let sigil = match kind {
        ConvKind::Dm => '@',
        ConvKind::Channel => '#',
        ConvKind::Group => '+',
    };
    format!("{sigil}{title}")
}

/// One event as a line of plain text (`chat tail`): `#seq [HH:MM] who: …`.
/// The text comes from other users, so control characters are replaced.
pub fn event_line(ev: &Event, tz: TimeZone) -> String {
    let time = tz.hhmm(ev.ts);
    let mut who = clean(&ev.sender);
    if ev.bot {
        who.push_str(" [bot]");
    }
    let head = format!("#{} [{time}] {who}", ev.seq);
    match &ev.body {
        EventBody::Message { body, reply_to, .. } => {
            let reply = reply_to
                .map(|r| format!(" (reply to #{r})"))
                .unwrap_or_default();
            let mut lines = body.lines();
            let first = lines.next().unwrap_or("");
            let mut out = format!("{head}{reply}: {}", clean(first));
            for l in lines {
                out.push_str("\n    ");
                out.push_str(&clean(l));
            }
            out
        }
        EventBody::File {
            file,
            caption,
            reply_to,
            ..
        } => {
            let reply = reply_to
                .map(|r| format!(" (reply to #{r})"))
                .unwrap_or_default();
            let mut out = format!("{head}{reply}: {}", file_line(file, caption.as_deref()));
            for l in caption.as_deref().unwrap_or("").lines().skip(1) {
                out.push_str("\n    ");
                out.push_str(&clean(l));
            }
            out
        }
        EventBody::Edit {
            target_seq, body, ..
        } => {
            format!("{head} edited #{target_seq}: {}", clean(body))
        }
        EventBody::Delete { target_seq } => format!("{head} deleted #{target_seq}"),
        EventBody::Reaction {
            target_seq,
            emoji,
            remove,
            ..
        } => format!(
            "{head} {} {} on #{target_seq}",
            if *remove { "took back" } else { "reacted" },
            clean(emoji)
        ),
        body => match SystemChange::of(body) {
            Some(change) => format!("{head} {}", clean(&system_tail(&ev.sender, &change))),
            None => head,
        },
    }
}

/// A shared file in one line: `📎 deploy.log (47 KiB) — the failing run`
/// (the caption's first line).
pub fn file_line(file: &crate::proto::FileInfo, caption: Option<&str>) -> String {
    let mut out = format!(
        "📎 {} ({})",
        clean(&file.name),
        crate::client::attach::human_size(file.size)
    );
    if let Some(first) = caption
        .and_then(|c| c.lines().next())
        .filter(|l| !l.is_empty())
    {
        out.push_str(" — ");
        out.push_str(&clean(first));
    }
    out
}

/// A request the network's queue had no room for (the link has stalled).
pub const SEND_QUEUE_FULL: &str = "too many requests are waiting to be sent; try again shortly";

/// Why a search has only the cache's hits.
pub const SEARCH_OFFLINE: &str =
    "the server was not reached; these are results from the local cache";

/// One search hit as a line of plain text (`chat search`):
/// `cache  #ops #42 [2026-12-04 10:05] alice: …snippet…`. Everything but
/// the fixed words came from other users and is cleaned.
pub fn search_line(
    source: &str,
    label: &str,
    hit: &crate::proto::SearchHit,
    tz: TimeZone,
) -> String {
    let w = tz.wall(hit.ts);
    format!(
        "{source:<6} {} #{} [{:04}-{:02}-{:02} {:02}:{:02}] {}: {}",
        clean(label),
        hit.seq,
        w.year,
        w.month,
        w.day,
        w.hour,
        w.minute,
        clean(&hit.sender),
        clean(&hit.snippet)
    )
}

/// `system_line` without its leading sender (the line already names them).
fn system_tail(sender: &str, change: &SystemChange) -> String {
    let line = system_line(sender, change);
    match line.strip_prefix(sender) {
        Some(rest) => rest.trim_start().to_string(),
        None => line,
    }
}

/// The notice for a damaged cache file moved to `moved`.
pub fn cache_set_aside(moved: &std::path::Path) -> String {
    format!(
        "the local cache was damaged; moved it to {} and started afresh",
        moved.display()
    )
}

/// The notice for a cache file at `path` that cannot be opened.
pub fn cache_unopenable(path: &std::path::Path, err: &dyn std::fmt::Display) -> String {
    format!("cannot open the local cache {}: {err}", path.display())
}

/// The notice when catching up with the server failed.
pub fn sync_failed_notice(why: &str, retry_secs: u64) -> String {
    format!(
        "could not catch up with the server ({}); the list may be out of date; trying again in {retry_secs} s",
        clean(why)
    )
}

/// The one notice when the server's history differs from the cache's.
pub fn diverged_notice(conversations: usize, resent: usize) -> String {
    let what = if conversations == 1 {
        "a conversation".to_string()
    } else {
        format!("{conversations} conversations")
    };
    let again = match resent {
        0 => String::new(),
        1 => "; one of your messages was sent again".to_string(),
        n => format!("; {n} of your messages were sent again"),
    };
    format!(
        "the server's history of {what} differs from this copy (restored from a backup, \
         or lost in a power failure): reloaded it{again}"
    )
}

/// `text` with every control character (C0, DEL, C1) and bidi override or
/// isolate replaced by U+FFFD, so what another user wrote cannot move the
/// cursor, change colours, talk to the terminal or make text read in an
/// order other than it is stored.
pub fn clean(text: &str) -> String {
    if !text.chars().any(unsafe_char) {
        return text.to_string();
    }
    text.chars()
        .map(|c| if unsafe_char(c) { '\u{fffd}' } else { c })
        .collect()
}

/// A character another user's text must not bring to a terminal: a control
/// character (C0 — newline and tab included, callers that keep them treat
/// them first — DEL, C1), or a bidi embedding, override or isolate
/// (U+202A–U+202E, U+2066–U+2069), which reorder what follows on screen.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_overrides_are_replaced_like_controls() {
        let line = clean("invoice \u{202e}fdp.exe\u{202c} \u{2066}x\u{2069} \u{1b}[2J ok");
        assert!(!line.chars().any(unsafe_char), "{line:?}");
        assert_eq!(
            line,
            "invoice \u{fffd}fdp.exe\u{fffd} \u{fffd}x\u{fffd} \u{fffd}[2J ok"
        );
        // Ordinary right-to-left text is not touched.
        assert_eq!(clean("שלום עולם"), "שלום עולם");
    }

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
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let s = |c: SystemChange| system_line("alice", &c);
        assert_eq!(
            s(SystemChange::Joined {
                members: v(&["alice"])
            }),
            "alice joined"
        );
        assert_eq!(
            s(SystemChange::Joined {
                members: v(&["bob", "carol"])
            }),
            "alice added bob, carol"
        );
        assert_eq!(
            s(SystemChange::Left {
                members: v(&["alice"])
            }),
            "alice left"
        );
        assert_eq!(
            s(SystemChange::Left {
                members: v(&["bob"])
            }),
            "alice removed bob"
        );
        assert_eq!(
            s(SystemChange::Removed {
                members: v(&["mallory"])
            }),
            "alice removed mallory"
        );
        assert_eq!(
            s(SystemChange::RoleSet {
                user: "bob".into(),
                role: MemberRole::Admin
            }),
            "alice made bob an admin"
        );
        assert_eq!(
            s(SystemChange::RoleSet {
                user: "bob".into(),
                role: MemberRole::Owner
            }),
            "alice handed this over to bob"
        );
        assert_eq!(
            s(SystemChange::Renamed {
                name: "launch".into()
            }),
            "alice renamed this to launch"
        );
        assert_eq!(
            s(SystemChange::Created {
                name: Some("launch".into()),
            }),
            "alice created launch"
        );
        assert_eq!(SystemChange::of(&EventBody::Delete { target_seq: 1 }), None);
    }

    #[test]
    fn titles() {
        let m = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            conv_title("c1", ConvKind::Dm, None, &m(&["alice", "bob"]), "alice"),
            "bob"
        );
        assert_eq!(
            conv_title(
                "c2",
                ConvKind::Group,
                Some("launch"),
                &m(&["alice"]),
                "alice"
            ),
            "launch"
        );
        assert_eq!(
            conv_title(
                "c3",
                ConvKind::Group,
                None,
                &m(&["alice", "bob", "carol"]),
                "alice"
            ),
            "bob, carol"
        );
        assert_eq!(
            conv_title("c4", ConvKind::Group, Some(""), &[], "alice"),
            "c4"
        );
        assert_eq!(conv_label(ConvKind::Channel, "general"), "#general");
        assert_eq!(conv_label(ConvKind::Dm, "bob"), "@bob");
        assert_eq!(conv_label(ConvKind::Group, "launch"), "+launch");
    }

    #[test]
    fn a_file_event_reads_as_one_line() {
        let ev = Event {
            conversation_id: "c".into(),
            seq: 52,
            ts: 0,
            sender: "alice".into(),
            client_msg_id: None,
            eid: None,
            bot: false,
            body: EventBody::File {
                file: Box::new(crate::proto::FileInfo {
                    digest: "ab".repeat(32),
                    name: "deploy\u{1b}.log".into(),
                    size: 48213,
                    media_type: "text/plain".into(),
                    width: None,
                    height: None,
                    preview: None,
                    key: None,
                }),
                caption: Some("the failing run\nsee line 3".into()),
                reply_to: None,
                encrypted: None,
            },
        };
        assert_eq!(
            event_line(&ev, TimeZone::Utc),
            "#52 [00:00] alice: 📎 deploy\u{fffd}.log (47 KiB) — the failing run\n    see line 3"
        );
    }

    #[test]
    fn a_bots_event_says_so() {
        let ev = Event {
            conversation_id: "c".into(),
            seq: 9,
            ts: 0,
            sender: "deploys".into(),
            client_msg_id: None,
            eid: None,
            bot: true,
            body: EventBody::Message {
                body: "done".into(),
                reply_to: None,
                encrypted: None,
            },
        };
        assert_eq!(
            event_line(&ev, TimeZone::Utc),
            "#9 [00:00] deploys [bot]: done"
        );
        assert!(
            serde_json::to_string(&ev)
                .unwrap()
                .contains(r#""bot":true"#)
        );
    }

    #[test]
    fn event_lines_strip_control_characters() {
        let ev = |body: EventBody| Event {
            conversation_id: "c".into(),
            seq: 7,
            ts: 0,
            sender: "bo\u{1b}b".into(),
            client_msg_id: None,
            eid: None,
            bot: false,
            body,
        };
        let line = event_line(
            &ev(EventBody::Message {
                body: "hi \u{1b}]52;c;aGk=\u{7}\u{1b}[2J\nnext\u{9b}".into(),
                reply_to: None,
                encrypted: None,
            }),
            TimeZone::Utc,
        );
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\n'),
            "{line:?}"
        );
        assert!(line.starts_with("#7 [00:00] bo\u{fffd}b: hi "), "{line:?}");
        assert!(line.contains("\n    next"));
        let joined = event_line(
            &ev(EventBody::Join {
                members: vec!["carol".into()],
            }),
            TimeZone::Utc,
        );
        assert_eq!(joined, "#7 [00:00] bo\u{fffd}b added carol");
    }
}
