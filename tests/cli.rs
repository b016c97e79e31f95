//! The `chat` command line as a subprocess against an in-process chatd:
//! register, send (argument and stdin), tail --json, conversations --json,
//! create/join, exit codes, and the keyring-less token file.

mod support;

use chat::proto::{ConvKind, Conversation, Event, EventBody};
use support::{Home, PASSWORD, World};

fn tail_json(home: &Home, target: &str, n: u32) -> Vec<Event> {
    let r = home.ok(&["tail", target, "--json", "-n", &n.to_string()], None);
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Event>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn conversations_json(home: &Home) -> Vec<Conversation> {
    let r = home.ok(&["conversations", "--json"], None);
    serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

fn messages(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some((e.sender.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn cli_round_trip() {
    let mut w = World::new();
    let url = w.url();
    let alice = w.home("alice");
    let bob = w.home("bob");

    let r = alice.register("alice");
    assert!(r.stderr.contains("alice"), "{r:?}");
    bob.register("bob");

    // Without a keyring the token is in a 0600 file, never the password.
    let r = alice.run(
        &["register", "alice2", "--password-stdin"],
        Some("pw-alice2\n"),
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("no keyring"), "{r:?}");
    let file = alice.credentials_file();
    let text = std::fs::read_to_string(&file).expect("the credentials file");
    assert!(!text.contains(PASSWORD) && !text.contains("pw-alice2"));
    assert!(text.contains(&format!("alice@{url}")), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file:?} has mode {mode:o}");
    }
    // Acting as alice again (the last registration switched to alice2).
    let as_alice = |args: &[&str], stdin: Option<&str>| {
        let mut a = vec!["--user", "alice"];
        a.extend_from_slice(args);
        alice.run(&a, stdin)
    };

    let r = as_alice(&["send", "@bob", "hello bob"], None);
    assert_eq!(r.code, 0, "{r:?}");
    let r = as_alice(&["send", "@bob"], Some("from stdin\nsecond line\n"));
    assert_eq!(r.code, 0, "{r:?}");

    let events = tail_json(&bob, "@alice", 5);
    assert!(events.len() <= 5);
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(
        messages(&events),
        [
            ("alice".to_string(), "hello bob".to_string()),
            ("alice".to_string(), "from stdin\nsecond line".to_string())
        ]
    );
    let convs = conversations_json(&bob);
    assert_eq!(convs.len(), 1, "{convs:?}");
    assert_eq!(convs[0].kind, ConvKind::Dm);
    assert_eq!(convs[0].members, ["alice", "bob"]);
    assert_eq!(convs[0].last_seq, *seqs.last().unwrap());
    assert_eq!(events[0].conversation_id, convs[0].id);

    // -n bounds the output.
    assert_eq!(tail_json(&bob, "@alice", 1).len(), 1);

    // Not found: 4.
    let r = as_alice(&["send", "@nobody", "hi"], None);
    assert_eq!(r.code, 4, "{r:?}");
    let r = bob.run(&["tail", "#nowhere"], None);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.starts_with("chat: "), "{r:?}");
    // Not logged in: 3.
    let nobody = w.home("nobody");
    for args in [&["send", "@bob", "hi"][..], &["conversations"][..]] {
        let r = nobody.run(args, None);
        assert_eq!(r.code, 3, "{args:?}: {r:?}");
        assert!(r.stderr.contains("not logged in"), "{r:?}");
    }
    // A wrong password: 3 as well.
    let r = nobody.run(&["login", "bob", "--password-stdin"], Some("wrong\n"));
    assert_eq!(r.code, 3, "{r:?}");
    // An unreachable server: 5.
    let dead = Home::new(w.dir("dead"), "127.0.0.1:1");
    let r = dead.run(&["register", "carol", "--password-stdin"], Some("pw\n"));
    assert_eq!(r.code, 5, "{r:?}");

    // Channels: create, join, send, tail.
    let r = as_alice(&["create", "channel", "general"], None);
    assert_eq!(r.code, 0, "{r:?}");
    let chan_id = r.stdout.split_whitespace().next().unwrap().to_string();
    assert!(r.stdout.contains("#general"), "{r:?}");
    let r = bob.run(&["send", "#general", "too early"], None);
    assert_eq!(r.code, 4, "not a member yet: {r:?}");
    let r = bob.ok(&["join", "#general"], None);
    assert!(r.stdout.contains(&chan_id), "{r:?}");
    bob.ok(&["send", "#general", "hi all"], None);
    let r = as_alice(&["tail", "#general", "--json"], None);
    assert_eq!(r.code, 0, "{r:?}");
    let events: Vec<Event> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        messages(&events),
        [("bob".to_string(), "hi all".to_string())]
    );
    let convs = conversations_json(&bob);
    let chan = convs
        .iter()
        .find(|c| c.id == chan_id)
        .expect("the channel in bob's list");
    assert_eq!(chan.kind, ConvKind::Channel);
    assert_eq!(chan.name.as_deref(), Some("general"));
    assert_eq!(chan.members, ["alice", "bob"]);
    // Plain output names the channel and the DM.
    let r = bob.ok(&["conversations"], None);
    assert!(
        r.stdout.contains("#general") && r.stdout.contains("@alice"),
        "{r:?}"
    );
    // Joining by id works too (idempotent for a member).
    let r = bob.run(&["join", &chan_id], None);
    assert_eq!(r.code, 0, "{r:?}");
    w.stop_blocking();
}

/// `chat export`: one JSON document with the account and every
/// conversation's whole log, past the server's page size.
#[test]
fn export_writes_the_account_and_every_readable_event() {
    let w = World::new();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    alice.ok(&["send", "@bob", "first"], None);
    let many: String = (0..620).map(|i| format!("line {i}\n")).collect();
    // One message per line would take long; the body is one message.
    alice.ok(&["send", "@bob"], Some(&many));
    for i in 0..3 {
        bob.ok(&["send", "@alice", &format!("reply {i}")], None);
    }
    bob.ok(&["create", "channel", "general"], None);
    bob.ok(&["send", "#general", "bob only"], None);

    let r = alice.ok(&["export"], None);
    let doc: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(doc["format"], "chat-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["account"]["username"], "alice");
    assert!(!doc["account"]["sessions"].as_array().unwrap().is_empty());
    let convs = doc["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "only what alice belongs to");
    let events: Vec<Event> = serde_json::from_value(convs[0]["events"].clone()).expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "whole and dense"
    );
    let bodies: Vec<String> = messages(&events).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), 5);
    assert_eq!(bodies[0], "first");
    assert_eq!(bodies[4], "reply 2");
}

/// A history longer than one page comes out whole.
#[test]
fn export_pages_through_a_long_history() {
    let w = World::new();
    let alice = w.home("alice");
    alice.register("alice");
    // Two pages of the server's 500, within one connection's request burst.
    let sent = 900;
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut p = support::Peer::connect(&w.server.ws_url()).await;
            let r = p.login("alice", PASSWORD).await;
            assert_eq!(r["type"], "ok", "{r}");
            let conv = p.create_channel("long").await;
            for i in 0..sent {
                p.send_msg(&conv, &format!("m{i}")).await;
            }
        });
    }
    let r = alice.ok(&["export"], None);
    let doc: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let events = doc["conversations"][0]["events"].as_array().unwrap();
    assert_eq!(events.len(), sent + 1, "create and every message");
    assert_eq!(events.last().unwrap()["body"], format!("m{}", sent - 1));
}

/// Accounts from the command line on a server that registers by
/// invitation: the first account is admin and invites, a newcomer needs the
/// code, admins manage accounts, sessions end from another device, and a
/// password change keeps this device logged in.
#[test]
fn invitations_admin_sessions_and_password() {
    use chat::proto::{Account, Role, SessionInfo};
    let mut server = support::Server::start_with(|c| {
        c.auth.registration = chat::server::config::Registration::Invite;
    });
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let alice = Home::new(tmp.path().join("alice"), &url);
    let laptop = Home::new(tmp.path().join("laptop"), &url);
    let bob = Home::new(tmp.path().join("bob"), &url);
    let pw = format!("{PASSWORD}\n");

    // The first account needs no invitation and is the admin.
    alice.register("alice");
    let r = alice.ok(&["invite", "create"], None);
    let code = r.stdout.trim().to_string();
    assert_eq!(code.len(), 32, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "chat --server {url} register NAME --invite {code}"
        )),
        "{r:?}"
    );

    // Without the code, or with a wrong one: refused in one line, exit 3.
    let r = bob.run(&["register", "bob", "--password-stdin"], Some(&pw));
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(
        r.stderr.trim(),
        "chat: this server needs an invitation: ask an admin for a code and run `chat register NAME --invite CODE`"
    );
    let r = bob.run(
        &["register", "bob", "--password-stdin", "--invite", "0000"],
        Some(&pw),
    );
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("invitation code is unknown"), "{r:?}");
    bob.ok(
        &["register", "bob", "--password-stdin", "--invite", &code],
        Some(&pw),
    );

    // The invitation is used up; members may not invite here.
    let r = alice.ok(&["invite", "list", "--json"], None);
    let list: Vec<serde_json::Value> = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(list.len(), 1, "{r:?}");
    assert_eq!(list[0]["used_by"], serde_json::json!(["bob"]));
    assert_eq!(list[0]["state"], "used up");
    let r = alice.ok(&["invite", "list"], None);
    assert!(
        r.stdout.contains("used up") && r.stdout.contains("bob"),
        "{r:?}"
    );
    let r = bob.run(&["invite", "create"], None);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("only an admin may"), "{r:?}");

    // Accounts: both listed; only an admin may ask.
    let r = alice.ok(&["admin", "users", "--json"], None);
    let users: Vec<Account> = serde_json::from_str(r.stdout.trim()).unwrap();
    let roles: Vec<(&str, Role)> = users
        .iter()
        .map(|a| (a.username.as_str(), a.role))
        .collect();
    assert_eq!(roles, [("alice", Role::Admin), ("bob", Role::Member)]);
    let r = alice.ok(&["admin", "users"], None);
    assert!(
        r.stdout.contains("alice") && r.stdout.contains("offline"),
        "{r:?}"
    );
    let r = bob.run(&["admin", "users"], None);
    assert_eq!(r.code, 6, "{r:?}");
    assert_eq!(r.stderr.trim(), "chat: only an admin may list accounts");

    // Deactivated: bob's stored session ends, and he cannot log in.
    alice.ok(&["admin", "deactivate", "bob"], None);
    let r = bob.run(&["conversations"], None);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("run `chat login bob`"), "{r:?}");
    let r = bob.run(&["login", "bob", "--password-stdin"], Some(&pw));
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("deactivated"), "{r:?}");
    alice.ok(&["admin", "reactivate", "bob"], None);
    bob.ok(&["login", "bob", "--password-stdin"], Some(&pw));
    bob.ok(&["conversations"], None);
    // The last admin stays.
    let r = alice.run(&["admin", "demote", "alice"], None);
    assert_eq!(r.code, 6, "{r:?}");

    // Sessions: a second device, listed, then ended from the first.
    let sessions = |home: &Home| -> Vec<SessionInfo> {
        let r = home.ok(&["--user", "alice", "sessions", "--json"], None);
        serde_json::from_str(r.stdout.trim()).unwrap()
    };
    laptop.ok(&["login", "alice", "--password-stdin"], Some(&pw));
    let list = sessions(&alice);
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list.iter().filter(|s| s.current).count(), 1, "{list:?}");
    let r = alice.ok(&["sessions"], None);
    assert!(r.stdout.contains("(this device)"), "{r:?}");
    let r = alice.ok(&["sessions", "--others"], None);
    assert!(r.stderr.contains("Ended 1 other session"), "{r:?}");
    assert_eq!(laptop.run(&["conversations"], None).code, 3);
    laptop.ok(&["login", "alice", "--password-stdin"], Some(&pw));
    let other = sessions(&alice)
        .into_iter()
        .find(|s| !s.current)
        .expect("the laptop's session");
    alice.ok(&["sessions", "--revoke", &other.id], None);
    assert_eq!(laptop.run(&["conversations"], None).code, 3);
    let r = alice.run(&["sessions", "--revoke", "0123456789abcdef"], None);
    assert_eq!(r.code, 4, "{r:?}");

    // A new password: this device stays, the old password is gone.
    laptop.ok(&["login", "alice", "--password-stdin"], Some(&pw));
    let r = alice.run(
        &["passwd", "--password-stdin"],
        Some("not the password\nwhatever new one\n"),
    );
    assert_eq!(r.code, 3, "{r:?}");
    let r = alice.ok(
        &["passwd", "--password-stdin"],
        Some(&format!("{PASSWORD}\na brand new password\n")),
    );
    assert!(
        r.stderr.contains("Password changed; 1 other session ended"),
        "{r:?}"
    );
    alice.ok(&["conversations"], None);
    assert_eq!(laptop.run(&["conversations"], None).code, 3);
    let r = laptop.run(&["login", "alice", "--password-stdin"], Some(&pw));
    assert_eq!(r.code, 3, "{r:?}");
    laptop.ok(
        &["login", "alice", "--password-stdin"],
        Some("a brand new password\n"),
    );

    // Accounts an admin creates, promotes and resets.
    let carol = Home::new(tmp.path().join("carol"), &url);
    alice.ok(
        &["admin", "create", "carol", "--password-stdin"],
        Some("carol's first password\n"),
    );
    carol.ok(
        &["login", "carol", "--password-stdin"],
        Some("carol's first password\n"),
    );
    alice.ok(&["admin", "promote", "carol"], None);
    let r = alice.ok(&["admin", "users", "--json"], None);
    let users: Vec<Account> = serde_json::from_str(r.stdout.trim()).unwrap();
    assert!(
        users
            .iter()
            .any(|a| a.username == "carol" && a.role == Role::Admin)
    );
    alice.ok(
        &["admin", "reset-password", "carol", "--password-stdin"],
        Some("carol's second password\n"),
    );
    assert_eq!(carol.run(&["conversations"], None).code, 3);
    server.stop_blocking();
}

/// Blocking and erasing from the command line.
#[test]
fn block_and_erase_from_the_command_line() {
    let w = World::new();
    let root = w.home("root");
    let alice = w.home("alice");
    let mallory = w.home("mallory");
    root.register("root");
    alice.register("alice");
    mallory.register("mallory");
    alice.ok(&["block", "mallory"], None);
    let r = alice.ok(&["blocks", "--json"], None);
    assert_eq!(r.stdout.trim(), r#"["mallory"]"#);
    let r = mallory.run(&["send", "@alice", "hi"], None);
    assert_eq!(r.code, 6, "refused: {r:?}");
    alice.ok(&["unblock", "mallory"], None);
    mallory.ok(&["send", "@alice", "my secret"], None);

    let r = root.run(&["admin", "erase", "mallory"], None);
    assert_eq!(r.code, 1, "needs --yes: {r:?}");
    assert!(r.stderr.contains("--yes"), "{r:?}");
    root.ok(&["admin", "erase", "mallory", "--yes"], None);
    let events = tail_json(&alice, "@mallory", 10);
    assert!(
        !messages(&events).iter().any(|(_, b)| b.contains("secret")),
        "{events:?}"
    );
    assert_eq!(mallory.run(&["conversations"], None).code, 3);
}

/// What another user wrote reaches the terminal of `chat tail` without
/// control characters, escape sequences or bidi overrides (a clipboard
/// write, a screen clear, a reordered file name); `--json` keeps it exact.
#[test]
fn tail_prints_others_text_without_control_sequences() {
    let w = World::new();
    let alice = w.home("alice");
    let mallory = w.home("mallory");
    alice.register("alice");
    mallory.register("mallory");
    let hostile = "see \u{1b}]52;c;aGk=\u{7}\u{1b}[2Jreport\u{202e}fdp.exe\u{9b}31m";
    mallory.ok(&["send", "@alice", hostile], None);
    let r = alice.ok(&["tail", "@mallory", "-n", "5"], None);
    assert!(r.stdout.contains("see"), "{r:?}");
    assert!(
        !r.stdout
            .chars()
            .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{:?}",
        r.stdout
    );
    let events = tail_json(&alice, "@mallory", 5);
    assert!(
        messages(&events).iter().any(|(_, b)| b == hostile),
        "{events:?}"
    );
}

/// `chat members` lists everyone in a conversation with their role, from
/// the paged `members` request.
#[test]
fn members_lists_a_channels_members_with_roles() {
    let w = World::new();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    alice.ok(&["create", "channel", "ops"], None);
    bob.ok(&["join", "#ops"], None);
    let r = bob.ok(&["members", "#ops", "--json"], None);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    let roles: Vec<(&str, &str)> = list
        .iter()
        .map(|m| (m["user"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("alice", "owner"), ("bob", "member")]);
    let r = alice.ok(&["members", "#ops"], None);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("alice") && l.contains("owner")),
        "{r:?}"
    );
    assert_eq!(
        alice.run(&["members", "#nowhere"], None).code,
        4,
        "not found"
    );
}

fn search_json(home: &Home, args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    all.push("--json");
    let r = home.run(&all, None);
    let hits = r
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (r.code, hits, r.stderr)
}

fn sources(hits: &[serde_json::Value]) -> Vec<(String, String)> {
    hits.iter()
        .map(|h| {
            (
                h["source"].as_str().unwrap().to_string(),
                h["snippet"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `chat search`: the cache first (what the TUI stored), then what the
/// server adds, each hit once and marked; with chatd stopped, the cache's
/// hits and a word that the server was not reached.
#[tokio::test(flavor = "multi_thread")]
async fn cli_search_cache_then_server_and_offline() {
    let mut w = World::new();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    bob.ok(&["send", "@alice", "the deploy key is in the vault"], None);
    bob.ok(&["send", "@alice", "deploy\u{1b}[2J tomorrow"], None);

    // Alice's TUI cache, as a client running against the server leaves it.
    let data = alice.data_dir().join("chat");
    let client = support::Client::login(&w.url(), &data, "alice", support::Fault::None);
    let path = chat::client::paths::Paths::new(data.clone()).cache_path(&w.url(), "alice");
    let query = chat::proto::search::SearchQuery::parse("deploy").unwrap();
    let filled = support::wait_until(std::time::Duration::from_secs(40), || {
        // Opened only once the client has made it, so the two never race
        // to create it.
        path.exists()
            && chat::client::cache::Cache::open(&path)
                .and_then(|c| c.search(&query, None, 10))
                .is_ok_and(|h| h.len() == 2)
    })
    .await;
    if !filled {
        let c = chat::client::cache::Cache::open(&path).unwrap();
        let convs = c.conversations().unwrap();
        let ev = convs.first().map(|x| c.events(&x.id, 0, 100).unwrap());
        panic!(
            "the cache never held both messages: {:?} {convs:?} {ev:?}",
            c.search(&query, None, 10)
        );
    }
    client.stop().await;

    bob.ok(
        &["send", "@alice", "deploy notes, only on the server"],
        None,
    );
    let (code, hits, stderr) = search_json(&alice, &["deploy"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        sources(&hits),
        [
            ("cache".into(), "deploy [2J tomorrow".into()),
            ("cache".into(), "the deploy key is in the vault".into()),
            ("server".into(), "deploy notes, only on the server".into()),
        ]
    );
    assert_eq!(hits[0]["conversation"], "@bob");
    assert_eq!(hits[2]["conversation"], "@bob");
    assert_eq!(hits[0]["sender"], "bob");
    // Plain lines, control characters gone.
    let r = alice.ok(&["search", "deploy", "--in", "@bob"], None);
    assert_eq!(r.stdout.lines().count(), 3, "{r:?}");
    assert!(r.stdout.lines().all(|l| l.contains("@bob")), "{r:?}");
    assert!(!r.stdout.contains('\u{1b}'), "{r:?}");
    assert!(r.stdout.starts_with("cache "), "{r:?}");

    // Offline: the cache answers, and says the server was not reached.
    w.server.stop().await;
    let (code, hits, stderr) = search_json(&alice, &["deploy from:bob"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h["source"] == "cache"));
    assert!(stderr.contains("not reached"), "{stderr}");
    let (code, hits, _) = search_json(&alice, &["vault", "--in", "@bob"]);
    assert_eq!((code, hits.len()), (0, 1));
    // Nothing cached and no server: unreachable.
    let (code, hits, _) = search_json(&alice, &["nothing-like-this"]);
    assert_eq!((code, hits.len()), (5, 0));
    // A bad query is refused before anything is asked.
    let r = alice.run(&["search", "from:"], None);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(r.stderr.contains("needs a value"), "{r:?}");
}
