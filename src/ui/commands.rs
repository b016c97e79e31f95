//! Slash commands: parsing a composer line into a [`Command`], and the
//! candidate lists Tab completion cycles through.

use super::strings;

/// A parsed slash command. Conversation-relative commands act on the focused
/// conversation; message-relative ones on the selection or my last message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join(String),
    Leave,
    Dm(String),
    Group {
        name: String,
        users: Vec<String>,
    },
    /// A secret (end-to-end encrypted) DM (no name, one user) or group:
    /// `/dm` or `/group` with `--secret`.
    Secret {
        name: Option<String>,
        users: Vec<String>,
    },
    /// A user's devices and the trust in their identity key (`None`: mine).
    Devices(Option<String>),
    /// The safety number to compare with a user.
    Safety(String),
    /// Verify a user's device (`None`: their only other one); no user at
    /// all brings back the verification under way.
    Verify(Option<(String, Option<String>)>),
    /// Accept a user's changed identity key.
    Accept(String),
    Channel(String),
    Invite(Vec<String>),
    /// Remove members from the focused group or channel.
    Kick(Vec<String>),
    /// Make a member an admin (`true`) or an admin a member.
    Op(String, bool),
    Block(String, bool),
    Edit(Option<String>),
    Delete,
    React(String),
    Reply(Option<String>),
    Away,
    Back,
    Mute,
    Unmute,
    Quit,
    Help,
    /// Toggle the unread-only filter of the conversation list.
    Unread,
    /// My device sessions: list them, end one, or end all others.
    Sessions(SessionsCmd),
    /// Share a file (the path as typed).
    Upload(String),
    /// Search messages (an empty query opens the search prompt).
    Search(String),
    /// The focused conversation's incoming webhooks.
    Webhook(crate::client::action::WebhookOp),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionsCmd {
    List,
    Revoke(String),
    Others,
}

/// Command names, in the order completion offers them.
pub const NAMES: &[&str] = &[
    "join", "leave", "dm", "group", "channel", "invite", "kick", "op", "deop", "block", "unblock",
    "edit", "delete", "react", "reply", "away", "back", "mute", "unmute", "quit", "help", "unread",
    "sessions", "search", "upload", "webhook", "devices", "safety", "verify", "accept",
];

/// What the argument at a position completes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    User,
    Channel,
    /// A path on this machine.
    Path,
    None,
}

/// The kind of argument number `index` (0-based) of command `name`.
pub fn arg_kind(name: &str, index: usize) -> ArgKind {
    match (name, index) {
        ("dm", _) | ("invite", _) | ("kick", _) => ArgKind::User,
        ("op", 0) | ("deop", 0) | ("block", 0) | ("unblock", 0) => ArgKind::User,
        ("devices", 0) | ("safety", 0) | ("verify", 0) | ("accept", 0) => ArgKind::User,
        ("group", i) if i >= 1 => ArgKind::User,
        ("join", 0) => ArgKind::Channel,
        ("upload", _) => ArgKind::Path,
        _ => ArgKind::None,
    }
}

fn strip_user(u: &str) -> String {
    u.trim_start_matches('@').to_string()
}

/// Parses `line` (which starts with `/`). `Err` is a status-line message.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let rest = line.strip_prefix('/').unwrap_or(line);
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (rest, ""),
    };
    let mut words: Vec<&str> = args.split_whitespace().collect();
    // `--secret` may come anywhere after `/dm` or `/group`.
    let secret = matches!(name, "dm" | "msg" | "group") && words.contains(&"--secret");
    if secret {
        words.retain(|w| *w != "--secret");
    }
    if matches!(name, "dm" | "msg" | "group") && words.iter().any(|w| w.starts_with("--")) {
        return Err(strings::usage(if name == "group" {
            "/group NAME USER… [--secret]"
        } else {
            "/dm USER [--secret]"
        }));
    }
    let text = (!args.is_empty()).then(|| args.to_string());
    let usage = |u: &str| Err(strings::usage(u));
    match name {
        "join" => match words.as_slice() {
            [ch] => Ok(Command::Join(ch.trim_start_matches('#').to_string())),
            _ => usage("/join #name"),
        },
        "leave" => Ok(Command::Leave),
        "dm" | "msg" => match words.as_slice() {
            [u] if secret => Ok(Command::Secret {
                name: None,
                users: vec![strip_user(u)],
            }),
            [u] => Ok(Command::Dm(strip_user(u))),
            _ => usage("/dm USER [--secret]"),
        },
        "group" => match words.as_slice() {
            [name, users @ ..] if !users.is_empty() => {
                let users = users.iter().map(|u| strip_user(u)).collect();
                Ok(if secret {
                    Command::Secret {
                        name: Some(name.to_string()),
                        users,
                    }
                } else {
                    Command::Group {
                        name: name.to_string(),
                        users,
                    }
                })
            }
            _ => usage("/group NAME USER… [--secret]"),
        },
        "devices" => match words.as_slice() {
            [] => Ok(Command::Devices(None)),
            [u] => Ok(Command::Devices(Some(strip_user(u)))),
            _ => usage("/devices [USER]"),
        },
        "safety" => match words.as_slice() {
            [u] => Ok(Command::Safety(strip_user(u))),
            _ => usage("/safety USER"),
        },
        "verify" => match words.as_slice() {
            [] => Ok(Command::Verify(None)),
            [u] => Ok(Command::Verify(Some((strip_user(u), None)))),
            [u, device] => Ok(Command::Verify(Some((
                strip_user(u),
                Some(device.to_string()),
            )))),
            _ => usage(strings::VERIFY_USAGE),
        },
        "accept" => match words.as_slice() {
            [u] => Ok(Command::Accept(strip_user(u))),
            _ => usage("/accept USER"),
        },
        "channel" => match words.as_slice() {
            [ch] => Ok(Command::Channel(ch.trim_start_matches('#').to_string())),
            _ => usage("/channel NAME"),
        },
        "invite" => match words.as_slice() {
            [] => usage("/invite USER…"),
            users => Ok(Command::Invite(
                users.iter().map(|u| strip_user(u)).collect(),
            )),
        },
        "kick" | "remove" => match words.as_slice() {
            [] => usage("/kick USER…"),
            users => Ok(Command::Kick(users.iter().map(|u| strip_user(u)).collect())),
        },
        "op" | "deop" => match words.as_slice() {
            [u] => Ok(Command::Op(strip_user(u), name == "op")),
            _ => usage(if name == "op" {
                "/op USER"
            } else {
                "/deop USER"
            }),
        },
        "block" | "unblock" => match words.as_slice() {
            [u] => Ok(Command::Block(strip_user(u), name == "block")),
            _ => usage(if name == "block" {
                "/block USER"
            } else {
                "/unblock USER"
            }),
        },
        "edit" => Ok(Command::Edit(text)),
        "delete" => Ok(Command::Delete),
        "react" => match words.as_slice() {
            [emoji] => Ok(Command::React(emoji.to_string())),
            _ => usage("/react EMOJI"),
        },
        "reply" => Ok(Command::Reply(text)),
        "away" => Ok(Command::Away),
        "back" => Ok(Command::Back),
        "mute" => Ok(Command::Mute),
        "unmute" => Ok(Command::Unmute),
        "quit" | "q" => Ok(Command::Quit),
        "help" | "?" => Ok(Command::Help),
        "unread" => Ok(Command::Unread),
        "search" | "find" => Ok(Command::Search(args.to_string())),
        "sessions" => match words.as_slice() {
            [] => Ok(Command::Sessions(SessionsCmd::List)),
            ["revoke", id] => Ok(Command::Sessions(SessionsCmd::Revoke(id.to_string()))),
            ["others"] => Ok(Command::Sessions(SessionsCmd::Others)),
            _ => usage(strings::SESSIONS_USAGE),
        },
        "webhook" => {
            use crate::client::action::WebhookOp;
            match words.as_slice() {
                ["create", name] => Ok(Command::Webhook(WebhookOp::Create(strip_user(name)))),
                ["list"] | [] => Ok(Command::Webhook(WebhookOp::List)),
                ["revoke", id] => Ok(Command::Webhook(WebhookOp::Revoke(id.to_string()))),
                _ => usage("/webhook create NAME | list | revoke ID"),
            }
        }
        "upload" => match text {
            Some(path) => Ok(Command::Upload(path)),
            None => usage("/upload PATH"),
        },
        other => Err(strings::unknown_command(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("/join #rust"), Ok(Command::Join("rust".into())));
        assert_eq!(parse("/leave"), Ok(Command::Leave));
        {
            use crate::client::action::WebhookOp;
            assert_eq!(
                parse("/webhook create deploys"),
                Ok(Command::Webhook(WebhookOp::Create("deploys".into())))
            );
            assert_eq!(
                parse("/webhook list"),
                Ok(Command::Webhook(WebhookOp::List))
            );
            assert_eq!(
                parse("/webhook revoke 4f3a"),
                Ok(Command::Webhook(WebhookOp::Revoke("4f3a".into())))
            );
            assert!(parse("/webhook make x").is_err());
        }
        assert_eq!(parse("/dm @bob"), Ok(Command::Dm("bob".into())));
        assert_eq!(
            parse("/group ops alice bob"),
            Ok(Command::Group {
                name: "ops".into(),
                users: vec!["alice".into(), "bob".into()]
            })
        );
        assert_eq!(parse("/channel news"), Ok(Command::Channel("news".into())));
        assert_eq!(
            parse("/invite a b"),
            Ok(Command::Invite(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse("/edit"), Ok(Command::Edit(None)));
        assert_eq!(
            parse("/edit fixed  typo"),
            Ok(Command::Edit(Some("fixed  typo".into())))
        );
        assert_eq!(parse("/delete"), Ok(Command::Delete));
        assert_eq!(parse("/react 👍"), Ok(Command::React("👍".into())));
        assert_eq!(
            parse("/reply sure"),
            Ok(Command::Reply(Some("sure".into())))
        );
        assert_eq!(parse("/away"), Ok(Command::Away));
        assert_eq!(parse("/back"), Ok(Command::Back));
        assert_eq!(parse("/mute"), Ok(Command::Mute));
        assert_eq!(parse("/unmute"), Ok(Command::Unmute));
        assert_eq!(parse("/quit"), Ok(Command::Quit));
        assert_eq!(parse("/help"), Ok(Command::Help));
        assert_eq!(parse("/unread"), Ok(Command::Unread));
        assert_eq!(
            parse("/search deploy from:alice"),
            Ok(Command::Search("deploy from:alice".into()))
        );
        assert_eq!(parse("/search"), Ok(Command::Search(String::new())));
        assert_eq!(
            parse("/kick @mallory eve"),
            Ok(Command::Kick(vec!["mallory".into(), "eve".into()]))
        );
        assert_eq!(parse("/op bob"), Ok(Command::Op("bob".into(), true)));
        assert_eq!(parse("/deop @bob"), Ok(Command::Op("bob".into(), false)));
        assert_eq!(
            parse("/block mallory"),
            Ok(Command::Block("mallory".into(), true))
        );
        assert_eq!(
            parse("/unblock mallory"),
            Ok(Command::Block("mallory".into(), false))
        );
        assert!(parse("/kick").is_err());
        assert!(parse("/block a b").is_err());
        assert_eq!(parse("/sessions"), Ok(Command::Sessions(SessionsCmd::List)));
        assert_eq!(
            parse("/sessions revoke 1a2b"),
            Ok(Command::Sessions(SessionsCmd::Revoke("1a2b".into())))
        );
        assert_eq!(
            parse("/sessions others"),
            Ok(Command::Sessions(SessionsCmd::Others))
        );
        assert!(parse("/sessions revoke").is_err());
        assert_eq!(
            parse("/upload ~/a b.png"),
            Ok(Command::Upload("~/a b.png".into()))
        );
        assert!(parse("/upload").is_err());
    }

    #[test]
    fn errors_are_messages() {
        assert!(parse("/frobnicate").unwrap_err().contains("/frobnicate"));
        assert!(parse("/join").unwrap_err().starts_with("Usage"));
        assert!(parse("/group onlyname").is_err());
        assert!(parse("/").is_err());
    }

    #[test]
    fn secret_conversations_and_verification() {
        let secret = |name: Option<&str>, users: &[&str]| {
            Ok(Command::Secret {
                name: name.map(str::to_string),
                users: users.iter().map(|u| u.to_string()).collect(),
            })
        };
        assert_eq!(parse("/dm bob --secret"), secret(None, &["bob"]));
        assert_eq!(parse("/dm --secret @bob"), secret(None, &["bob"]));
        assert_eq!(parse("/msg bob --secret"), secret(None, &["bob"]));
        assert_eq!(
            parse("/group ops alice --secret bob"),
            secret(Some("ops"), &["alice", "bob"])
        );
        assert_eq!(
            parse("/group --secret ops alice"),
            secret(Some("ops"), &["alice"])
        );
        assert_eq!(parse("/dm bob"), Ok(Command::Dm("bob".into())));
        assert_eq!(parse("/devices"), Ok(Command::Devices(None)));
        assert_eq!(
            parse("/devices @alice"),
            Ok(Command::Devices(Some("alice".into())))
        );
        assert_eq!(parse("/safety alice"), Ok(Command::Safety("alice".into())));
        assert_eq!(parse("/verify"), Ok(Command::Verify(None)));
        assert_eq!(
            parse("/verify alice"),
            Ok(Command::Verify(Some(("alice".into(), None))))
        );
        assert_eq!(
            parse("/verify @alice PHONE1"),
            Ok(Command::Verify(Some((
                "alice".into(),
                Some("PHONE1".into())
            ))))
        );
        assert_eq!(parse("/accept @bob"), Ok(Command::Accept("bob".into())));
    }

    #[test]
    fn secret_usage_errors() {
        let err = |line: &str| parse(line).unwrap_err();
        assert_eq!(err("/dm --secret"), "Usage: /dm USER [--secret]");
        assert_eq!(err("/dm bob carol --secret"), "Usage: /dm USER [--secret]");
        assert_eq!(err("/dm bob --secrett"), "Usage: /dm USER [--secret]");
        assert_eq!(
            err("/group ops --secret"),
            "Usage: /group NAME USER… [--secret]"
        );
        assert_eq!(err("/devices a b"), "Usage: /devices [USER]");
        assert_eq!(err("/safety"), "Usage: /safety USER");
        assert_eq!(err("/safety a b"), "Usage: /safety USER");
        assert_eq!(err("/verify a b c"), "Usage: /verify USER [DEVICE]");
        assert_eq!(err("/accept"), "Usage: /accept USER");
    }

    #[test]
    fn argument_kinds() {
        for name in ["devices", "safety", "verify", "accept"] {
            assert!(NAMES.contains(&name), "{name}");
            assert_eq!(arg_kind(name, 0), ArgKind::User, "{name}");
            assert_eq!(arg_kind(name, 1), ArgKind::None, "{name}");
        }
        assert_eq!(arg_kind("dm", 0), ArgKind::User);
        assert_eq!(arg_kind("group", 0), ArgKind::None);
        assert_eq!(arg_kind("group", 2), ArgKind::User);
        assert_eq!(arg_kind("join", 0), ArgKind::Channel);
    }
}
