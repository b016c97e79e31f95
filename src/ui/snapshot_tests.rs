//! Screen snapshots on ratatui's `TestBackend` (committed under
//! `src/ui/snapshots/`). Times are formatted in UTC so they are stable.

use super::app::Mode;
use super::fixtures::*;
use crate::client::view::{ConnState, MessageRow, SendState};
use crate::proto::{ConvKind, ReceiptPair};
use crossterm::event::KeyCode;
use insta::assert_snapshot;
use std::time::{Duration, Instant};

#[test]
fn main_screen_list_and_conversation() {
    let now = Instant::now();
    let a = app(base_model(), 100, 24, now);
    assert_snapshot!("main_screen", draw(&a));
}

#[test]
fn typing_line_one_and_two() {
    let now = Instant::now();
    let mut m = base_model();
    m.set_typing("c-general", "alice", true, now);
    let a = app(m.clone(), 72, 14, now);
    assert_snapshot!("typing_one", draw(&a));
    m.set_typing("c-general", "bob", true, now);
    let a = app(m.clone(), 72, 14, now);
    assert_snapshot!("typing_two", draw(&a));
    for u in ["carol", "erin"] {
        m.set_typing("c-general", u, true, now);
    }
    let a = app(m, 72, 14, now);
    assert!(draw(&a).contains("alice, bob and 2 others are typing…"));
    let later = app(base_model(), 72, 14, now + Duration::from_secs(6));
    assert!(!draw(&later).contains("typing"));
}

#[test]
fn group_receipts() {
    let now = Instant::now();
    let mut m = base_model();
    let r = |read| ReceiptPair {
        delivered: read,
        read,
    };
    let pointers = [
        ("alice", r(7)),
        ("bob", r(5)),
        ("carol", r(5)),
        ("dana", r(7)),
    ];
    m.receipts.insert(
        "c-general".into(),
        pointers.iter().map(|(u, p)| (u.to_string(), *p)).collect(),
    );
    let a = app(m, 80, 22, now);
    assert_snapshot!("group_receipts", draw(&a));
}

#[test]
fn dm_marks() {
    let now = Instant::now();
    let mut m = base_model();
    let mut pending = msg(0, ME, T0 + 4 * MIN, "and one more thing");
    pending.seq = None;
    pending.send_state = Some(SendState::Pending);
    let mut failed = msg(0, ME, T0 + 5 * MIN, "this one is too big");
    failed.seq = None;
    failed.send_state = Some(SendState::Failed("message too large".into()));
    m.messages.insert(
        "d-alice".into(),
        vec![
            row(msg(2, "alice", T0, "hey, got a minute?")),
            row(msg(3, ME, T0 + MIN, "sure")),
            row(msg(4, ME, T0 + 2 * MIN, "what's up?")),
            row(msg(5, ME, T0 + 3 * MIN, "ping")),
            row(pending),
            row(failed),
        ],
    );
    let receipts = [
        (
            "alice",
            ReceiptPair {
                delivered: 4,
                read: 3,
            },
        ),
        (
            ME,
            ReceiptPair {
                delivered: 5,
                read: 5,
            },
        ),
    ];
    m.receipts.insert(
        "d-alice".into(),
        receipts.iter().map(|(u, p)| (u.to_string(), *p)).collect(),
    );
    let mut a = app(m, 72, 16, now);
    a.handle_event(ctrl('n'), now);
    assert_snapshot!("dm_marks", draw(&a));
}

#[test]
fn missing_messages_row() {
    let now = Instant::now();
    let mut m = base_model();
    let mut rows = general_rows();
    rows.truncate(3);
    rows.push(MessageRow::Missing { from: 4, to: 6 });
    rows.push(row(msg(7, "bob", T0 + 2 * MIN, "anyone there?")));
    m.messages.insert("c-general".into(), rows);
    let a = app(m, 64, 14, now);
    assert_snapshot!("missing_row", draw(&a));
}

#[test]
fn reconnecting_header_over_cached_content() {
    let now = Instant::now();
    let mut m = base_model();
    m.conn = ConnState::Reconnecting {
        in_secs: 4,
        reason: "connection refused".into(),
    };
    let a = app(m.clone(), 100, 16, now);
    assert_snapshot!("reconnecting", draw(&a));
    m.conn = ConnState::Offline {
        reason: String::new(),
    };
    assert!(draw(&app(m, 100, 16, now)).contains("offline · showing cached messages"));
}

/// A sync of many pages shows its progress in the header, and a failed
/// one says so instead of going quiet; both go once it is done.
#[test]
fn sync_progress_and_failure_in_the_header() {
    use crate::client::Update;
    let now = Instant::now();
    let mut m = base_model();
    m.conn = ConnState::Connected;
    m.apply(
        Update::Syncing {
            conversations: 1500,
        },
        now,
    );
    assert_snapshot!("syncing", draw(&app(m.clone(), 100, 16, now)));
    m.apply(Update::SyncFailed { retry_in_secs: 8 }, now);
    assert!(
        draw(&app(m.clone(), 100, 16, now)).contains("connected · sync failed, retrying in 8 s")
    );
    m.apply(Update::Synced, now);
    let done = draw(&app(m, 100, 16, now));
    assert!(!done.contains("sync"), "{done}");
}

/// On the HTTP fallback the header says so; back on the WebSocket it does
/// not.
#[test]
fn the_http_fallback_shows_in_the_header() {
    use crate::client::Update;
    let now = Instant::now();
    let mut m = base_model();
    m.conn = ConnState::Connected;
    m.apply(Update::Transport { http: true }, now);
    assert_snapshot!("connected_over_http", draw(&app(m.clone(), 100, 16, now)));
    m.apply(Update::Transport { http: false }, now);
    let ws = draw(&app(m, 100, 16, now));
    assert!(ws.contains("● connected ") && !ws.contains("HTTP"), "{ws}");
}

#[test]
fn help_overlay() {
    let now = Instant::now();
    let mut a = app(base_model(), 100, 24, now);
    a.handle_event(ch('?'), now);
    assert_eq!(a.mode, Mode::Help);
    assert_snapshot!("help_wide", draw(&a));
    a.handle_event(key(KeyCode::End), now);
    let scrolled = draw(&a);
    assert!(scrolled.contains("/accept USER"), "{scrolled}");
    assert!(scrolled.contains("/quit  /help"), "{scrolled}");
    a.handle_event(key(KeyCode::Home), now);
    a.size = (70, 40);
    assert_snapshot!("help_narrow", draw(&a));
    for _ in 0..60 {
        a.handle_event(ch('j'), now);
    }
    let bottom = draw(&a);
    assert!(bottom.contains("/unread"), "{bottom}");
    assert!(!bottom.contains("Keys"), "{bottom}");
    a.handle_event(ch('k'), now);
    assert_ne!(draw(&a), bottom, "scrolling stops at the end, not past it");
}

#[test]
fn quick_switcher() {
    let now = Instant::now();
    let mut a = app(base_model(), 80, 20, now);
    a.handle_event(ctrl('k'), now);
    type_str(&mut a, "r", now);
    assert_snapshot!("quick_switcher", draw(&a));
}

#[test]
fn login_screen() {
    let now = Instant::now();
    let mut m = base_model();
    m.needs_login = true;
    m.login_error = Some("wrong username or password".into());
    let mut a = app(m, 64, 16, now);
    type_str(&mut a, "dana", now);
    a.handle_event(key(crossterm::event::KeyCode::Tab), now);
    type_str(&mut a, "hunter2", now);
    assert_snapshot!("login", draw(&a));
}

#[test]
fn register_screen_with_invitation() {
    let now = Instant::now();
    let mut m = base_model();
    m.needs_login = true;
    m.login_error = Some("this server needs an invitation: ask an admin for a code".into());
    let mut a = app(m, 64, 18, now);
    a.handle_event(ctrl('r'), now);
    type_str(&mut a, "erin", now);
    a.handle_event(key(crossterm::event::KeyCode::Tab), now);
    type_str(&mut a, "hunter22", now);
    assert!(draw(&a).contains("optional"));
    a.handle_event(key(crossterm::event::KeyCode::Tab), now);
    type_str(&mut a, "3f6c0d1e2a4b5c6d7e8f9a0b1c2d3e4f", now);
    assert_snapshot!("register_invitation", draw(&a));
}

#[test]
fn sessions_overlay() {
    use super::app::tests_accounts::session;
    use crate::client::Update;
    let now = Instant::now();
    let mut a = app(base_model(), 90, 14, now);
    a.handle_event(ch('i'), now);
    type_str(&mut a, "/sessions", now);
    a.handle_event(key(crossterm::event::KeyCode::Enter), now);
    assert!(draw(&a).contains("Loading…"));
    let list = vec![
        session("8c1f0e2d3a4b5c6d", "laptop", T0, Some("203.0.113.7"), true),
        session(
            "1a2b3c4d5e6f7a8b",
            "phone\u{1b}[31m",
            T0 - 3 * DAY,
            None,
            false,
        ),
        session(
            "9f8e7d6c5b4a3f2e",
            "work desktop",
            T0 - 5 * MIN,
            Some("2001:db8::1"),
            false,
        ),
    ];
    a.handle_event(
        super::event::UiEvent::Engine(vec![Update::Sessions(list)]),
        now,
    );
    a.handle_event(key(crossterm::event::KeyCode::Down), now);
    a.wall = T0;
    let screen = draw(&a);
    assert!(!screen.contains('\u{1b}'));
    assert_snapshot!("sessions", screen);
}

#[test]
fn narrow_terminal() {
    let now = Instant::now();
    let a = app(base_model(), 40, 10, now);
    assert_snapshot!("narrow_40x10", draw(&a));
}

#[test]
fn wide_cjk_and_emoji() {
    let now = Instant::now();
    let mut m = base_model();
    m.conversations[0].kind = ConvKind::Group;
    m.messages.insert(
        "c-general".into(),
        vec![
            row(msg(
                2,
                "李雷",
                T0,
                "你好！这是一个很长的中文句子，用来测试换行是否正确处理宽字符。",
            )),
            row(msg(
                3,
                "alice",
                T0 + MIN,
                "emoji 🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉 done ✅ and ｆｕｌｌｗｉｄｔｈ",
            )),
            row(msg(
                4,
                "bob",
                T0 + 2 * MIN,
                "a_very_long_identifier_without_any_spaces_that_must_break_somewhere_sensible",
            )),
        ],
    );
    let a = app(m, 50, 16, now);
    let screen = draw(&a);
    assert_snapshot!("cjk_emoji", screen);
}

#[test]
fn any_size_renders_without_panic() {
    let now = Instant::now();
    let mut m = base_model();
    m.set_typing("c-general", "alice", true, now);
    for (w, h) in [
        (1, 1),
        (2, 40),
        (5, 3),
        (20, 5),
        (39, 9),
        (40, 10),
        (59, 20),
        (60, 20),
        (200, 60),
    ] {
        let mut a = app(m.clone(), w, h, now);
        draw(&a);
        for mode in [Mode::Help, Mode::QuickSwitcher, Mode::Insert, Mode::Login] {
            a.mode = mode;
            draw(&a);
        }
    }
}

#[test]
fn selection_and_reply_composer() {
    let now = Instant::now();
    let mut a = app(base_model(), 80, 16, now);
    a.handle_event(ch('k'), now);
    a.handle_event(ch('k'), now);
    a.handle_event(ch('r'), now);
    type_str(&mut a, "sure, 今晚 👍", now);
    assert_eq!(a.reply_to, Some(6));
    assert_snapshot!("reply_composer", draw(&a));
}

fn markdown_model() -> crate::ui::Model {
    let mut m = base_model();
    m.messages.insert(
        "c-general".into(),
        vec![
            row(msg(
                2,
                "alice",
                T0,
                "## Release checklist\n**Heads up**: the *deploy* needs `cargo build --release` and ~~no~~ one review.\n\n\
                 1. run the tests\n2. tag it\n   - push the tag\n\n> don't ship on Fridays\n\nGuide: [the runbook](https://example.org/runbook) or https://example.org/faq",
            )),
            row(msg(
                3,
                "bob",
                T0 + MIN,
                "like this:\n```rust\nfn main() {\n    let greeting = \"hello\"; // a comment that is long enough to be cut\n    println!(\"{greeting}\");\n}\n```",
            )),
        ],
    );
    m
}

#[test]
fn markdown_and_highlighted_code() {
    let now = Instant::now();
    let a = app(markdown_model(), 80, 30, now);
    assert_snapshot!("markdown_code", draw(&a));
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 30)).expect("terminal");
    terminal.draw(|f| super::render(&a, f)).expect("draw");
    let buf = terminal.backend().buffer();
    let row = (0..30)
        .find(|y| {
            (0..80)
                .map(|x| buf[(x, *y)].symbol())
                .collect::<String>()
                .contains("fn main()")
        })
        .expect("code row");
    let colours: std::collections::HashSet<_> = (0..80).map(|x| buf[(x, row)].fg).collect();
    assert!(colours.len() > 2, "highlighted: {colours:?}");
    let bgs: std::collections::HashSet<_> = (30..80).map(|x| buf[(x, row)].bg).collect();
    assert_eq!(bgs.len(), 1, "one background for the block");
    let links = super::render::links(&a, ratatui::layout::Rect::new(0, 0, 80, 30));
    let urls: Vec<&str> = links.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(
        urls,
        vec!["https://example.org/runbook", "https://example.org/faq"]
    );
    for (rect, url) in &links {
        let shown: String = (rect.x..rect.right())
            .map(|x| buf[(x, rect.y)].symbol())
            .collect();
        assert_eq!(&shown, url);
    }
}

#[test]
fn raw_toggle() {
    let now = Instant::now();
    let mut a = app(markdown_model(), 80, 30, now);
    a.handle_event(ch('k'), now);
    a.handle_event(ch('R'), now);
    assert_snapshot!("raw_selected", draw(&a));
    a.handle_event(key(crossterm::event::KeyCode::Esc), now);
    a.handle_event(ch('R'), now);
    assert!(draw(&a).contains("## Release checklist"));
    assert!(draw(&a).contains("```rust"));
}

#[test]
fn new_messages_line() {
    let now = Instant::now();
    let mut m = base_model();
    m.conversations[0].read_seq = 4;
    let a = app(m, 80, 22, now);
    let screen = draw(&a);
    assert!(screen.contains(crate::ui::strings::NEW_MESSAGES));
    assert_snapshot!("new_messages_line", screen);
}

#[test]
fn unread_only_list() {
    let now = Instant::now();
    let mut a = app(base_model(), 80, 16, now);
    a.handle_event(ch('U'), now);
    assert_eq!(a.listed_conversations().len(), 4);
    assert_snapshot!("unread_only_list", draw(&a));
}

/// What other users wrote reaches the screen without terminal controls or
/// bidi reordering: escapes, C1 controls and bidi overrides in a body, a
/// sender's name and a conversation's name are dropped or replaced.
#[test]
fn hostile_text_is_neutralized() {
    let now = Instant::now();
    let mut m = base_model();
    m.conversations[0].title = "gen\u{202e}lareral\u{1b}[2J".into();
    m.messages.insert(
        "c-general".into(),
        vec![
            row(msg(
                2,
                "mal\u{2067}lory",
                T0,
                "look \u{1b}]52;c;aGk=\u{7}here \u{202e}txt.exe\u{202c} and \u{9b}31m red",
            )),
            row(msg(
                3,
                "bob",
                T0 + MIN,
                "`code \u{2066}with\u{2069} isolate`",
            )),
        ],
    );
    let a = app(m, 80, 12, now);
    let screen = draw(&a);
    for bad in [
        '\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\u{202c}', '\u{2066}', '\u{2067}', '\u{2069}',
    ] {
        assert!(
            !screen.contains(bad),
            "{bad:?} reached the screen:\n{screen}"
        );
    }
    assert_snapshot!("hostile_text", screen);
}

/// A file of `name` with a preview: the left half red, the right half blue,
/// both darker towards the bottom.
fn shared_file(name: &str, media_type: &str, preview: bool) -> crate::proto::FileInfo {
    use base64::Engine as _;
    let preview = preview.then(|| {
        let img = image::RgbImage::from_fn(16, 8, |x, y| {
            let v = 255 - (y * 24) as u8;
            if x < 8 {
                image::Rgb([v, 0, 0])
            } else {
                image::Rgb([0, 0, v])
            }
        });
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(png)
    });
    crate::proto::FileInfo {
        digest: format!("{:0>64}", name.len()),
        name: name.into(),
        size: 48213,
        media_type: media_type.into(),
        width: preview.as_ref().map(|_| 16),
        height: preview.as_ref().map(|_| 8),
        preview,
        key: None,
    }
}

#[test]
fn file_rows_with_caption_without_and_with_an_image() {
    use crate::client::Update;
    use crate::ui::UiEvent;
    let now = Instant::now();
    let mut captioned = msg(8, "alice", T0 + 10 * MIN, "the **failing** run");
    captioned.file = Some(Box::new(shared_file("deploy.log", "text/plain", false)));
    let mut bare = msg(9, "bob", T0 + 11 * MIN, "");
    bare.file = Some(Box::new(shared_file("notes.pdf", "application/pdf", false)));
    let mut picture = msg(10, ME, T0 + 12 * MIN, "");
    picture.file = Some(Box::new(shared_file("flag.png", "image/png", true)));
    let rows = vec![row(captioned), row(bare), row(picture)];
    let mut a = app(base_model(), 72, 20, now);
    a.images = super::images::Images::with_picker(ratatui_image::picker::Picker::halfblocks());
    a.handle_event(
        UiEvent::Engine(vec![Update::Messages {
            conv: "c-general".into(),
            rows,
        }]),
        now,
    );
    let jobs: Vec<_> = a.images.jobs.drain(..).collect();
    assert_eq!(jobs.len(), 1, "one preview to decode");
    for job in jobs {
        a.handle_event(UiEvent::Image(super::images::decode(job)), now);
    }
    let screen = draw(&a);
    assert_snapshot!("file_rows", screen);
    // The preview is drawn as half-blocks in its colours.
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(72, 20)).unwrap();
    terminal.draw(|f| super::render(&a, f)).unwrap();
    let buf = terminal.backend().buffer().clone();
    use ratatui::style::Color;
    let colours: Vec<(u8, u8, u8)> = buf
        .content
        .iter()
        .filter(|c| c.symbol() == "▀")
        .filter_map(|c| match c.fg {
            Color::Rgb(r, g, b) => Some((r, g, b)),
            _ => None,
        })
        .collect();
    assert!(
        colours.iter().any(|&(r, _, b)| r > 128 && b == 0),
        "red half-blocks"
    );
    assert!(
        colours.iter().any(|&(r, _, b)| b > 128 && r == 0),
        "blue half-blocks"
    );
}

#[test]
fn search_overlay() {
    use super::app::{SearchPanel, ServerState};
    use crate::client::HitSource;
    use crate::proto::SearchHit;
    let now = Instant::now();
    let mut a = app(base_model(), 90, 20, now);
    let hit =
        |conv: &str, seq, sender: &str, ts, snippet: &str, highlights: Vec<[usize; 2]>| SearchHit {
            conversation_id: conv.into(),
            seq,
            ts,
            sender: sender.into(),
            snippet: snippet.into(),
            highlights,
        };
    a.mode = Mode::Search;
    a.search = SearchPanel {
        query: "deploy key".into(),
        ran: Some("deploy key".into()),
        id: 1,
        hits: vec![
            (
                hit(
                    "c-general",
                    7,
                    "alice",
                    T0 + 5 * MIN,
                    "the deploy key is in the vault",
                    vec![[4, 10], [11, 14]],
                ),
                HitSource::Cache,
            ),
            (
                hit(
                    "d-alice",
                    3,
                    "alice",
                    T0 - 3 * DAY,
                    "…old deploy key, rotated since",
                    vec![[7, 13], [14, 17]],
                ),
                HitSource::Server,
            ),
        ],
        selected: 1,
        server: ServerState::Answered,
    };
    let screen = draw(&a);
    assert_snapshot!("search_overlay", screen);
    a.search.server = ServerState::Failed("the server was not reached".into());
    assert!(draw(&a).contains("server: the server was not reached"));
}

#[test]
fn a_bots_messages_carry_a_badge() {
    let now = Instant::now();
    let mut m = base_model();
    let mut rows = general_rows();
    rows.truncate(2);
    let mut hook = msg(3, "deploys", T0 + 2 * MIN, "deploy **done**");
    hook.bot = true;
    rows.push(row(hook));
    rows.push(row(msg(4, "bob", T0 + 3 * MIN, "nice")));
    m.messages.insert("c-general".into(), rows);
    let a = app(m, 64, 12, now);
    let screen = draw(&a);
    assert!(screen.contains("deploys bot deploy"), "{screen}");
    assert!(!screen.contains("bob bot"), "{screen}");
    assert_snapshot!("bot_badge", screen);
}

#[test]
fn secret_conversation_lock_and_placeholder() {
    let now = Instant::now();
    let mut m = base_model();
    for c in m.conversations.iter_mut().filter(|c| c.id == "d-alice") {
        c.encrypted = true;
    }
    m.messages.insert(
        "d-alice".into(),
        vec![
            row(msg(
                2,
                "alice",
                T0,
                &crate::client::engine::secret::placeholder("sent before this device joined"),
            )),
            row(msg(3, "alice", T0 + MIN, "this one came with its key")),
        ],
    );
    let mut a = app(m, 80, 12, now);
    a.handle_event(ctrl('n'), now);
    assert_snapshot!("secret_conversation", draw(&a));
}
