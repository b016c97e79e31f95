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
