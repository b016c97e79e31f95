//! Secret conversations end to end: chatd in process on loopback, the real
//! engines of several clients (each with its own cache, keys and token
//! file, no keyring), and the `chat` command line.

mod support;

use chat::client::Update;
use chat::client::view::MessageRow;
use chat::ui::Action;
use std::time::Duration;
use support::secret::{bodies, cli_secret_dm, secret_with, send, wait_body};
use support::*;

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
    let query = chat::proto::search::SearchQuery::parse("eagle noon").unwrap();
    let hits = cache.search(&query, None, 10).unwrap();
    assert!(
        hits.len() == 1 && hits[0].conversation_id == dm && hits[0].snippet.contains("eagle"),
        "the decrypted text is found offline: {hits:?}"
    );
    // The server's search has nothing to find there.
    bob.act(Action::Search {
        id: 7,
        query: "eagle".into(),
        conv: None,
    });
    let ended = wait_until(CLIENT_WAIT, || {
        bob.logged(|u| matches!(u, Update::SearchEnded { id: 7, .. }))
    })
    .await;
    assert!(ended, "the search ended");
    assert!(!bob.logged(|u| matches!(u,
        Update::SearchHits { id: 7, source: chat::client::HitSource::Server, hits } if !hits.is_empty())));
    assert!(bob.logged(|u| matches!(u,
        Update::SearchHits { id: 7, source: chat::client::HitSource::Cache, hits } if hits.iter().any(|h| h.conversation_id == dm))));
    alice.stop().await;
    bob.stop().await;
}

/// The session id of the `encrypted` object of event `seq` of `conv`, as
/// `user`'s cache holds it.
fn session_of(w: &World, c: &Client, user: &str, conv: &str, seq: u64) -> String {
    let cache = chat::client::cache::Cache::open(
        chat::client::paths::Paths::new(w.dir(user)).cache_path(&c.server, user),
    )
    .unwrap();
    let ev = cache.event(conv, seq).unwrap().expect("the event");
    ev.body.encrypted().expect("encrypted").session_id.clone()
}

/// The seq of the message `body` as `c` shows it.
fn seq_of_body(c: &Client, conv: &str, body: &str) -> u64 {
    c.with(|m| {
        m.rows(conv).iter().find_map(|r| match r {
            MessageRow::Message(v) if v.body == body => v.seq,
            _ => None,
        })
    })
    .expect("the message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_a_secret_group_cannot_read_what_follows() {
    let w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let carol = w.client("carol").await;
    let g = secret_with(&alice, Some("ops"), &["bob", "carol"]).await;
    send(&alice, &g, "all three of us");
    for c in [&bob, &carol] {
        wait_body(c, &g, "both read the first", |b| {
            b.iter().any(|t| t == "all three of us")
        })
        .await;
    }
    send(&carol, &g, "carol was here");
    wait_body(&bob, &g, "bob reads carol", |b| {
        b.iter().any(|t| t == "carol was here")
    })
    .await;
    carol.act(Action::Leave { conv: g.clone() });
    carol
        .wait("carol is out", |m| m.conversation(&g).is_none())
        .await;
    alice
        .wait("alice sees carol leave", |m| {
            m.conversation(&g)
                .is_some_and(|s| !s.members.iter().any(|u| u == "carol"))
        })
        .await;
    send(&alice, &g, "only the two of us now");
    wait_body(&bob, &g, "bob reads after carol left", |b| {
        b.iter().any(|t| t == "only the two of us now")
    })
    .await;
    // A new session was started: the one carol holds does not open it.
    let first = seq_of_body(&bob, &g, "all three of us");
    let later = seq_of_body(&bob, &g, "only the two of us now");
    assert_ne!(
        session_of(&w, &bob, "bob", &g, first),
        session_of(&w, &bob, "bob", &g, later)
    );
    assert!(!server_files_hold(&w, "only the two of us now"));
    carol.stop().await;
    let carol_cache = chat::client::cache::Cache::open(
        chat::client::paths::Paths::new(w.dir("carol")).cache_path(&alice.server, "carol"),
    )
    .unwrap();
    assert!(
        carol_cache.event(&g, later).unwrap().is_none(),
        "carol holds nothing of it"
    );
    alice.stop().await;
    bob.stop().await;
}

/// The devices of `user` as `c` last heard them.
async fn devices_of(c: &Client, user: &str) -> chat::client::update::DevicesView {
    let answers = |c: &Client| {
        c.with_log(|log| {
            log.iter()
                .filter_map(|u| match u {
                    Update::Devices(v) if v.user == user => Some(v.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
    };
    let before = answers(c).len();
    c.act(Action::Devices { user: user.into() });
    let mut view = None;
    let ok = wait_until(CLIENT_WAIT, || {
        // Only an answer to this question (an earlier one may be stale).
        view = answers(c).get(before).cloned();
        view.is_some()
    })
    .await;
    assert!(ok, "no device list of {user}");
    view.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_later_reads_new_messages_but_not_earlier_ones() {
    let w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let dm = secret_with(&alice, None, &["bob"]).await;
    send(&alice, &dm, "before the laptop");
    wait_body(&bob, &dm, "bob's first device reads it", |b| {
        b.iter().any(|t| t == "before the laptop")
    })
    .await;
    // Bob logs in on a second device.
    let laptop = w.client_login_in("bob-laptop", "bob", Fault::None).await;
    wait_body(&laptop, &dm, "a placeholder with the reason", |b| {
        b.iter()
            .any(|t| t.contains("not decrypted") && t.contains("before this device joined"))
    })
    .await;
    // Bob's first device verifies the new one and certifies it.
    let mine = devices_of(&laptop, "bob").await;
    let new_id = mine
        .devices
        .iter()
        .find(|d| d.this_device)
        .expect("this device")
        .device_id
        .clone();
    // An Olm session with the new device is made first, then the
    // verification starts by itself.
    bob.act(Action::Verify {
        user: "bob".into(),
        device_id: Some(new_id.clone()),
    });
    let started = wait_until(CLIENT_WAIT, || {
        bob.with_log(|l| l.iter().any(|u| matches!(u, Update::Verification(_))))
    })
    .await;
    assert!(started, "a verification started");
    let txn = bob.with_log(|l| {
        l.iter().find_map(|u| match u {
            Update::Verification(v) => Some(v.transaction_id.clone()),
            _ => None,
        })
    });
    let txn = txn.expect("a verification started");
    for c in [&bob, &laptop] {
        let ok = wait_until(CLIENT_WAIT, || {
            c.with_log(|l| {
                l.iter().any(|u| {
                    matches!(u, Update::Verification(v) if v.transaction_id == txn && v.emoji.len() == 7)
                })
            })
        })
        .await;
        assert!(ok, "emoji to compare");
    }
    bob.act(Action::ConfirmVerification {
        transaction_id: txn.clone(),
        ok: true,
    });
    laptop.act(Action::ConfirmVerification {
        transaction_id: txn.clone(),
        ok: true,
    });
    // Alice sees the laptop certified, then sends.
    let mut certified = false;
    for _ in 0..40 {
        let v = devices_of(&alice, "bob").await;
        if v.devices
            .iter()
            .any(|d| d.device_id == new_id && d.certified)
        {
            certified = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(certified, "the laptop is certified by bob's identity key");
    // The laptop is linked: it holds bob's identity key and could now
    // verify and certify in turn.
    let linked = wait_until(CLIENT_WAIT, || {
        laptop.logged(|u| {
            matches!(u, Update::Identity { user, note: chat::client::update::IdentityNote::Verified } if user == "bob")
        })
    })
    .await;
    assert!(linked, "the identity key reached the verified laptop");
    let own = devices_of(&laptop, "bob").await;
    assert_eq!(own.trust, "verified", "{own:?}");
    send(&alice, &dm, "after the laptop");
    wait_body(&laptop, &dm, "the laptop reads the new message", |b| {
        b.iter().any(|t| t == "after the laptop")
    })
    .await;
    wait_body(&bob, &dm, "the first device too", |b| {
        b.iter().any(|t| t == "after the laptop")
    })
    .await;
    // The earlier one stays unreadable there, saying why.
    assert!(
        bodies(&laptop, &dm)
            .iter()
            .any(|t| t.contains("before this device joined"))
    );
    alice.stop().await;
    bob.stop().await;
    laptop.stop().await;
}

#[test]
fn the_command_line_creates_sends_and_tails_a_secret_dm() {
    let w = World::new();
    let (alice, bob, id) = cli_secret_dm(&w);
    alice.ok(&["send", &id, "meet by the old oak"], None);
    let r = bob.ok(&["tail", &id], None);
    assert!(r.stdout.contains("meet by the old oak"), "{r:?}");
    bob.ok(&["send", &id, "see you there"], None);
    let r = alice.ok(&["tail", &id, "-n", "5"], None);
    assert!(
        r.stdout.contains("meet by the old oak") && r.stdout.contains("see you there"),
        "{r:?}"
    );
    assert!(!server_files_hold(&w, "old oak"));
    // Both ends compute the same safety number.
    let a = alice.ok(&["safety", "bob"], None).stdout;
    let b = bob.ok(&["safety", "alice"], None).stdout;
    assert!(!a.trim().is_empty());
    assert_eq!(a, b);
    let r = alice.ok(&["devices", "bob", "--json"], None);
    assert!(r.stdout.contains("\"certified\":true"), "{r:?}");
}

/// Whether any file under `dir` (recursively) holds `needle`.
fn tree_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            tree_holds(&p, needle)
        } else {
            let bytes = std::fs::read(&p).unwrap_or_default();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

fn shared_files(c: &Client, conv: &str) -> Vec<(Option<u64>, chat::proto::FileInfo)> {
    c.with(|m| {
        m.rows(conv)
            .iter()
            .filter_map(|r| match r {
                MessageRow::Message(v) => Some((v.seq, *v.file.clone()?)),
                _ => None,
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_a_secret_dm_is_encrypted_before_upload_and_opens_for_the_other_side() {
    use chat::client::update::Fetch;
    let w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let dm = secret_with(&alice, None, &["bob"]).await;
    // Keys first, as a person would: a message both ways.
    send(&alice, &dm, "a file follows");
    wait_body(&bob, &dm, "bob reads alice", |b| {
        b.iter().any(|t| t == "a file follows")
    })
    .await;
    let secret = b"the vault code is 7-4-1-9, burn after reading\n".repeat(40);
    let src = w.dir("alice").join("plan-b.txt");
    std::fs::write(&src, &secret).unwrap();
    alice.act(Action::Upload {
        conv: dm.clone(),
        path: src.clone(),
        caption: Some("for your eyes only".into()),
    });
    bob.act(Action::OpenConversation { conv: dm.clone() });
    let ok = wait_until(CLIENT_WAIT, || {
        shared_files(&bob, &dm)
            .iter()
            .any(|(seq, f)| seq.is_some() && f.name == "plan-b.txt")
    })
    .await;
    assert!(
        ok,
        "bob sees the file by its real name: {:?}; notice {:?}",
        shared_files(&bob, &dm),
        bob.with(|m| m.notice.clone())
    );
    let (_, info) = shared_files(&bob, &dm)
        .into_iter()
        .find(|(_, f)| f.name == "plan-b.txt")
        .unwrap();
    assert_eq!(info.media_type, "text/plain");
    assert!(info.key.is_some(), "the key came inside the message");
    assert_ne!(
        info.size,
        secret.len() as u64,
        "the server holds ciphertext"
    );
    // Neither the bytes, the name nor the caption reached the server.
    let data = w.data_dir();
    assert!(!tree_holds(data, b"vault code is 7-4-1-9"));
    assert!(!tree_holds(data, b"plan-b.txt"));
    assert!(!tree_holds(data, b"for your eyes only"));
    bob.act(Action::Download {
        file: info.clone(),
        purpose: Fetch::Save,
    });
    let mut saved = None;
    let ok = wait_until(CLIENT_WAIT, || {
        saved = bob.with_log(|log| {
            log.iter().find_map(|u| match u {
                Update::FileReady { path, .. } => Some(path.clone()),
                _ => None,
            })
        });
        saved.is_some()
    })
    .await;
    assert!(
        ok,
        "the file is saved; notice {:?}",
        bob.with(|m| m.notice.clone())
    );
    let saved = saved.unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), secret, "the same bytes");
    assert!(saved.ends_with("plan-b.txt"));
    // No ciphertext is left beside it.
    let left: Vec<_> = std::fs::read_dir(saved.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    // A key altered on the way fails to open, and says so.
    let mut wrong = info.clone();
    wrong.key.as_mut().unwrap().key = vodozemac::base64_encode([7u8; 32]);
    bob.act(Action::Download {
        file: wrong,
        purpose: Fetch::Save,
    });
    let refused = wait_until(CLIENT_WAIT, || {
        bob.logged(|u| {
            matches!(u, Update::Transfer(t)
                if matches!(&t.state, chat::client::update::TransferState::Failed(why) if why.contains("decrypt")))
        })
    })
    .await;
    assert!(refused, "a wrong key is refused");
    alice.stop().await;
    bob.stop().await;
}

#[test]
fn the_command_line_shares_and_fetches_a_file_in_a_secret_dm() {
    let w = World::new();
    let (alice, bob, id) = cli_secret_dm(&w);
    let src = alice.root.join("minutes.txt");
    let bytes = b"the board meets at dawn; bring nothing\n".repeat(10);
    std::fs::write(&src, &bytes).unwrap();
    let r = alice.ok(
        &[
            "upload",
            &id,
            src.to_str().unwrap(),
            "--caption",
            "read and burn",
        ],
        None,
    );
    assert!(r.stderr.contains("(encrypted)"), "{r:?}");
    assert!(!tree_holds(w.data_dir(), b"board meets at dawn"));
    assert!(!tree_holds(w.data_dir(), b"minutes.txt"));
    let r = bob.ok(&["tail", &id], None);
    assert!(r.stdout.contains("minutes.txt"), "{r:?}");
    let seq = r
        .stdout
        .lines()
        .find(|l| l.contains("minutes.txt"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix('#')))
        .and_then(|n| n.trim_end_matches(':').parse::<u64>().ok())
        .expect("the file's line names its seq");
    let out = bob.root.join("got.txt");
    let r = bob.ok(
        &[
            "download",
            &id,
            &seq.to_string(),
            "-o",
            out.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(std::fs::read(&out).unwrap(), bytes, "{r:?}");
}

#[test]
fn a_reset_identity_key_holds_back_who_had_verified_it_until_accepted() {
    let w = World::new();
    let (alice, bob, id) = cli_secret_dm(&w);
    alice.ok(&["send", &id, "first"], None);
    // Bob compared the safety number with alice and marked it verified.
    bob.ok(&["safety", "alice", "--verified"], None);
    let before = bob.ok(&["devices", "alice", "--json"], None).stdout;
    assert!(before.contains("\"trust\":\"verified\""), "{before}");
    // Alice lost her devices (or says so): a new identity key.
    let r = alice.run(&["reset-identity"], None);
    assert_ne!(r.code, 0, "not without --yes: {r:?}");
    let r = alice.ok(&["reset-identity", "--yes"], None);
    assert!(r.stdout.contains("new identity key"), "{r:?}");
    // Bob's side holds messages to her back and says why.
    let r = bob.run(&["send", &id, "held back"], None);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("identity key changed"), "{r:?}");
    let after = bob.ok(&["devices", "alice", "--json"], None).stdout;
    assert!(after.contains("CHANGED"), "{after}");
    // Accepted (after comparing again), sending resumes, unverified.
    bob.ok(&["accept", "alice"], None);
    bob.ok(&["send", &id, "after accepting"], None);
    let r = alice.ok(&["tail", &id, "-n", "5"], None);
    assert!(r.stdout.contains("after accepting"), "{r:?}");
    let accepted = bob.ok(&["devices", "alice", "--json"], None).stdout;
    assert!(accepted.contains("\"trust\":\"unverified\""), "{accepted}");
    // An unverified contact's change is taken at once, and said.
    alice.ok(&["reset-identity", "--yes"], None);
    let r = bob.ok(&["send", &id, "no verification, no hold"], None);
    assert!(r.stderr.contains("identity key changed"), "{r:?}");
}
