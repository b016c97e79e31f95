//! Secret conversations end to end: chatd in process on loopback, the real
//! engines of several clients (each with its own cache, keys and token
//! file, no keyring), and the `chat` command line.

mod support;

use chat::client::Update;
use chat::client::view::MessageRow;
use chat::ui::Action;
use support::*;

/// The bodies of the message rows of `conv` as `c` shows them.
fn bodies(c: &Client, conv: &str) -> Vec<String> {
    c.with(|m| {
        m.rows(conv)
            .iter()
            .filter_map(|r| match r {
                MessageRow::Message(v) => Some(v.body.clone()),
                _ => None,
            })
            .collect()
    })
}

async fn wait_body(c: &Client, conv: &str, what: &str, cond: impl Fn(&[String]) -> bool) {
    c.act(Action::OpenConversation { conv: conv.into() });
    let ok = wait_until(CLIENT_WAIT, || cond(&bodies(c, conv))).await;
    assert!(
        ok,
        "{what}: rows of {conv} are {:?}; notice {:?}",
        bodies(c, conv),
        c.with(|m| m.notice.clone())
    );
}

/// The conversation `c` was focused on last (a create answers so).
async fn focused(c: &Client) -> String {
    let mut conv = None;
    let ok = wait_until(CLIENT_WAIT, || {
        conv = c.with_log(|log| {
            log.iter().rev().find_map(|u| match u {
                Update::Focus(id) => Some(id.clone()),
                _ => None,
            })
        });
        conv.is_some()
    })
    .await;
    assert!(ok, "no conversation was created");
    conv.unwrap()
}

async fn secret_with(c: &Client, name: Option<&str>, users: &[&str]) -> String {
    c.act(Action::CreateSecret {
        name: name.map(str::to_string),
        users: users.iter().map(|u| u.to_string()).collect(),
    });
    let conv = focused(c).await;
    c.wait("the secret conversation in the list", |m| {
        m.conversation(&conv).is_some_and(|s| s.encrypted)
    })
    .await;
    conv
}

fn send(c: &Client, conv: &str, body: &str) {
    c.act(Action::Send {
        conv: conv.into(),
        body: body.into(),
        reply_to: None,
    });
}

/// Whether the server's database files (and its write-ahead log) hold
/// `text` anywhere, in any table.
fn server_files_hold(w: &World, text: &str) -> bool {
    let dir = w.data_dir();
    let mut found = false;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        if bytes.windows(text.len()).any(|win| win == text.as_bytes()) {
            found = true;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_dm_carries_messages_both_ways_and_the_server_never_sees_the_text() {
    if skip_on_postgres("secret conversations live on the embedded store") {
        return;
    }
    let w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let dm = secret_with(&alice, None, &["bob"]).await;
    send(&alice, &dm, "the eagle lands at noon");
    wait_body(&bob, &dm, "bob reads alice", |b| {
        b.iter().any(|t| t == "the eagle lands at noon")
    })
    .await;
    send(&bob, &dm, "copy that, bring the blue folder");
    wait_body(&alice, &dm, "alice reads bob", |b| {
        b.iter().any(|t| t == "copy that, bring the blue folder")
    })
    .await;
    // Each side's own message shows as written.
    wait_body(&alice, &dm, "alice's own", |b| {
        b.iter().any(|t| t == "the eagle lands at noon")
    })
    .await;
    assert_eq!(w.events_containing("eagle lands"), 0);
    assert!(!server_files_hold(&w, "eagle lands at noon"));
    assert!(!server_files_hold(&w, "blue folder"));
    // The cache keeps the text for offline search.
    let cache = chat::client::cache::Cache::open(
        chat::client::paths::Paths::new(w.dir("bob")).cache_path(&bob.server, "bob"),
    )
    .unwrap();
    let held = cache.event(&dm, 2).unwrap().expect("the first message");
    assert!(held.body.encrypted().is_some(), "the ciphertext is kept");
    alice.stop().await;
    bob.stop().await;
}
