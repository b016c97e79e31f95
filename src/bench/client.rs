//! The client figures: a generator that fills a cache (100,000 messages over
//! 50 conversations by default), the `chat` start-up path measured on a
//! `TestBackend` (cache open → conversation list → first frame → the focused
//! conversation's window), and the UI loop's latency while the engine side
//! applies a stream of incoming events to the cache.

use crate::client::Update;
use crate::client::cache::Cache;
use crate::client::view::MessageRow;
use crate::proto::{ConvKind, Conversation, Event, EventBody};
use crate::ui::{Action, App, Model, UiEvent, render};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::collections::BTreeMap;
use std::time::Instant;

/// The user the generated cache belongs to.
pub const ME: &str = "me";
const OTHERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
/// Rows of the focused conversation the engine keeps in the model.
pub const WINDOW: usize = 200;
const WORDS: [&str; 16] = [
    "deploy", "the", "build", "is", "green", "again", "after", "we", "fixed", "flaky", "test",
    "on", "main", "ship", "it", "today",
];

/// A deterministic message body of 1–40 words.
pub fn body(i: u64) -> String {
    let n = 1 + (i.wrapping_mul(7919) % 40) as usize;
    let mut s = String::new();
    for w in 0..n {
        if w > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[(i as usize + w * 5) % WORDS.len()]);
    }
    s
}

/// The id of generated conversation `c`.
pub fn conv_id(c: usize) -> String {
    format!("conv{c:03}")
}

/// A message event as the server would send it.
pub fn message(conv: &str, seq: u64, i: u64) -> Event {
    Event {
        conversation_id: conv.to_string(),
        seq,
        ts: 1_764_000_000_000 + (i as i64) * 1000,
        sender: if i.is_multiple_of(3) {
            ME.to_string()
        } else {
            OTHERS[(i % 4) as usize].to_string()
        },
        client_msg_id: None,
        eid: None,
        bot: false,
        body: EventBody::Message {
            body: body(i),
            reply_to: None,
            encrypted: None,
        },
    }
}

/// Fill `cache` with `total` messages spread over `convs` group
/// conversations (interleaved in time, as real traffic is). My read pointer
/// is set `unread` messages below the end of each conversation (`None`:
/// nothing read, the worst case for the list's unread-mention count).
pub fn fill_cache(
    cache: &mut Cache,
    convs: usize,
    total: usize,
    unread: Option<u64>,
) -> anyhow::Result<()> {
    let convs = convs.max(1);
    cache.set_me(ME)?;
    let mut members: Vec<String> = OTHERS.iter().map(|s| s.to_string()).collect();
    members.push(ME.to_string());
    members.sort();
    for c in 0..convs {
        cache.upsert_conversation(&Conversation {
            id: conv_id(c),
            kind: ConvKind::Group,
            name: Some(format!("team-{c}")),
            member_count: members.len() as u64,
            members: members.clone(),
            last_seq: 0,
            receipts: BTreeMap::new(),
            roles: BTreeMap::new(),
            encrypted: false,
        })?;
    }
    let mut seqs = vec![0u64; convs];
    let mut batch = Vec::with_capacity(2000);
    for i in 0..total as u64 {
        let c = (i.wrapping_mul(2_654_435_761) % convs as u64) as usize;
        seqs[c] += 1;
        batch.push(message(&conv_id(c), seqs[c], i));
        if batch.len() == 2000 {
            cache.apply_events(&batch)?;
            batch.clear();
        }
    }
    cache.apply_events(&batch)?;
    if let Some(unread) = unread {
        for (c, &last) in seqs.iter().enumerate() {
            let read = last.saturating_sub(unread);
            cache.apply_receipt(&conv_id(c), ME, last, read)?;
        }
    }
    Ok(())
}

/// The App as `chat` builds it before the network connects: the model holds
/// the cached conversation list and nothing is focused yet.
pub fn app_from_cache(cache: &Cache, size: (u16, u16)) -> anyhow::Result<App> {
    let model = Model {
        me: cache.me()?.unwrap_or_default(),
        server: "127.0.0.1:7878".into(),
        conversations: cache.conversations()?,
        ..Model::default()
    };
    let mut app = App::new(model, Instant::now());
    app.size = size;
    Ok(app)
}

/// What the engine does next: the first model update focuses the first
/// conversation, which asks for its window; the window is loaded from the
/// cache and applied. Returns the focused conversation.
pub fn open_first(app: &mut App, cache: &Cache) -> anyhow::Result<Option<String>> {
    let actions = app.handle_event(UiEvent::Engine(Vec::new()), Instant::now());
    let conv = actions.into_iter().find_map(|a| match a {
        Action::OpenConversation { conv } => Some(conv),
        _ => None,
    });
    if let Some(conv) = &conv {
        let rows = cache.messages(conv, None, WINDOW)?;
        set_rows(app, conv, rows);
    }
    Ok(conv)
}

/// Put `rows` in the model as the engine's publish does.
pub fn set_rows(app: &mut App, conv: &str, rows: Vec<MessageRow>) {
    let update = Update::Messages {
        conv: conv.to_string(),
        rows,
    };
    let _ = app.handle_event(UiEvent::Engine(vec![update]), Instant::now());
}

/// A terminal of `w`×`h` cells in memory.
pub fn terminal(w: u16, h: u16) -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(w, h)).expect("a TestBackend terminal never fails")
}

/// Draw one frame.
pub fn draw(term: &mut Terminal<TestBackend>, app: &App) {
    let _ = term.draw(|f| render(app, f));
}

/// An App focused on one conversation of `rows` messages, for render
/// benchmarks (an in-memory cache, folded rows as the engine loads them).
pub fn long_conversation_app(rows: usize, size: (u16, u16)) -> anyhow::Result<App> {
    let mut cache = Cache::open_in_memory()?;
    fill_cache(&mut cache, 1, rows, Some(0))?;
    let mut app = app_from_cache(&cache, size)?;
    let conv = open_first(&mut app, &cache)?.unwrap_or_default();
    let rows = cache.messages(&conv, None, rows)?;
    set_rows(&mut app, &conv, rows);
    Ok(app)
}
