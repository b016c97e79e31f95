//! Verifying a device from the command line, end to end: two users of an
//! in-process chatd share a secret DM, then run `chat verify` in tmux (bob
//! waits with `--incoming`, alice starts), read the seven emoji off both
//! screens and answer. Matching emoji verify the devices on both sides; a
//! "no" on one side cancels on both. Skipped (with a notice) when tmux is
//! not installed.

mod support;

use chat::client::e2e::emoji::EMOJI;
use std::time::Duration;
use support::tmux::{TmuxServer, home_env, tmux_available};
use support::{Home, World};

/// How long a `chat verify` may take to reach a screen (a debug build on
/// a busy machine connects, syncs and exchanges keys first).
const SCREEN_WAIT: Duration = Duration::from_secs(60);

/// A tmux server of the test's own, one session per user.
struct Tmux {
    server: TmuxServer,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            server: TmuxServer::new("chat-verify"),
        }
    }

    /// Run `chat ARGS` of `home` in a new session `name`; its exit code is
    /// printed after it ends, and the pane stays.
    fn chat(&self, name: &str, home: &Home, args: &[&str]) {
        let command = format!(
            "{}'{}' --server {} {}; echo \"exit $?\"; sleep 300",
            home_env(home),
            env!("CARGO_BIN_EXE_chat"),
            home.server,
            args.join(" ")
        );
        self.server.launch(name, 220, 30, &command);
    }

    fn keys(&self, name: &str, keys: &[&str]) {
        self.server.keys(name, keys);
    }

    /// The full-screen client of `home` in a new session `name` (120×30).
    fn tui(&self, name: &str, home: &Home) {
        let command = format!(
            "{}TERM=xterm-256color '{}' --server {}; sleep 300",
            home_env(home),
            env!("CARGO_BIN_EXE_chat"),
            home.server,
        );
        self.server.launch(name, 120, 30, &command);
    }

    /// Poll `name`'s screen until `cond` holds (bounded); the last screen.
    fn wait(&self, name: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        self.server.wait(name, true, what, SCREEN_WAIT, cond)
    }
}

/// The names of the emoji on the screen's `Compare:` line, in order
/// (their pictures are left aside: a terminal may draw them differently).
fn emoji_names(screen: &str) -> Option<Vec<String>> {
    let line = screen.lines().find(|l| l.contains("Compare:"))?;
    let words: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
        .collect();
    let known = |n: &str| EMOJI.iter().any(|(_, name)| *name == n);
    let mut names = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let two = words.get(i + 1).map(|next| format!("{} {next}", words[i]));
        match two {
            Some(two) if known(&two) => {
                names.push(two);
                i += 2;
            }
            _ if known(words[i]) => {
                names.push(words[i].to_string());
                i += 1;
            }
            _ => i += 1,
        }
    }
    Some(names)
}

/// Whether the pane says the command ended with `code`.
fn exited(screen: &str, code: i32) -> bool {
    screen.lines().any(|l| l.trim() == format!("exit {code}"))
}

/// alice and bob with a secret DM in which each has sent a message, so
/// that each device holds the other's keys.
fn secret_dm(w: &World) -> (Home, Home) {
    let (alice, bob, id) = support::secret::cli_secret_dm(w);
    alice.ok(&["send", &id, "shall we compare emoji"], None);
    let r = bob.ok(&["tail", &id], None);
    assert!(r.stdout.contains("shall we compare emoji"), "{r:?}");
    bob.ok(&["send", &id, "yes, now"], None);
    let r = alice.ok(&["tail", &id], None);
    assert!(r.stdout.contains("yes, now"), "{r:?}");
    (alice, bob)
}

/// A secret DM of alice and bob (see [`secret_dm`]) and a tmux server
/// for them; `None` (with a notice) when tmux is not installed.
fn in_tmux() -> Option<(World, Home, Home, Tmux)> {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the verification end-to-end test");
        return None;
    }
    let w = World::new();
    let (alice, bob) = secret_dm(&w);
    Some((w, alice, bob, Tmux::new()))
}

/// `user`'s devices as `home` sees them: (device id, verified).
fn devices(home: &Home, user: &str) -> Vec<(String, bool)> {
    let r = home.ok(&["devices", user, "--json"], None);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("devices JSON");
    v["devices"]
        .as_array()
        .expect("a device list")
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap_or_default().to_string(),
                d["verified"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Both sides run `chat verify` and show the emoji; the names each shows.
/// Bob's `chat verify --incoming`, waiting in session "bob".
fn bob_waits(tmux: &Tmux, bob: &Home) {
    tmux.chat("bob", bob, &["verify", "--incoming", "--timeout", "90"]);
    tmux.wait("bob", "the wait for a verification", |s| {
        s.contains("Waiting for another device")
    });
}

fn both_comparing(tmux: &Tmux, alice: &Home, bob: &Home) -> (Vec<String>, Vec<String>) {
    bob_waits(tmux, bob);
    tmux.chat("alice", alice, &["verify", "bob", "--timeout", "90"]);
    let ready = |s: &str| s.contains("[y/N]") && emoji_names(s).is_some();
    let a = tmux.wait("alice", "the emoji", ready);
    let b = tmux.wait("bob", "the emoji", ready);
    assert!(a.contains("sees on their device?"), "{a}");
    assert!(b.contains("alice's device"), "{b}");
    assert!(b.contains("wants to verify this device"), "{b}");
    (emoji_names(&a).unwrap(), emoji_names(&b).unwrap())
}

#[test]
fn matching_emoji_verify_both_devices() {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the verification end-to-end test");
        return;
    }
    let w = World::new();
    let (alice, bob) = secret_dm(&w);
    assert!(devices(&alice, "bob").iter().all(|(_, v)| !v));
    let tmux = Tmux::new();
    let (a, b) = both_comparing(&tmux, &alice, &bob);
    assert_eq!(a.len(), 7, "{a:?}");
    assert_eq!(a, b, "both screens show the same emoji");
    tmux.keys("alice", &["y", "Enter"]);
    tmux.keys("bob", &["y", "Enter"]);
    let a = tmux.wait("alice", "the end", |s| exited(s, 0) || exited(s, 1));
    let b = tmux.wait("bob", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(
        exited(&a, 0) && a.contains("bob's device") && a.contains("is verified"),
        "{a}"
    );
    assert!(
        exited(&b, 0) && b.contains("alice's device") && b.contains("is verified"),
        "{b}"
    );
    let theirs = devices(&alice, "bob");
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert!(theirs[0].1, "alice sees bob's device verified: {theirs:?}");
    assert!(
        a.contains(&format!("bob's device {} is verified", theirs[0].0)),
        "{a}"
    );
    let ours = devices(&bob, "alice");
    assert!(
        ours.len() == 1 && ours[0].1,
        "bob sees alice's device verified: {ours:?}"
    );
}

#[test]
fn a_no_on_one_side_cancels_on_both() {
    let Some((_w, alice, bob, tmux)) = in_tmux() else {
        return;
    };
    let (a, b) = both_comparing(&tmux, &alice, &bob);
    assert_eq!(a, b);
    // Bob says no; alice, still asked, hears of it without answering.
    tmux.keys("bob", &["n", "Enter"]);
    let b = tmux.wait("bob", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(exited(&b, 1) && b.contains("do not match"), "{b}");
    let a = tmux.wait("alice", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(exited(&a, 1) && a.contains("cancelled"), "{a}");
    assert!(!a.contains("is verified") && !b.contains("is verified"));
    assert!(devices(&alice, "bob").iter().all(|(_, v)| !v));
    assert!(devices(&bob, "alice").iter().all(|(_, v)| !v));
}

#[test]
fn a_matching_safety_number_marks_the_key_verified_and_accept_needs_a_change() {
    let w = World::new();
    let (alice, bob) = secret_dm(&w);
    let trust = |home: &Home, user: &str| {
        let r = home.ok(&["devices", user, "--json"], None);
        let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        v["trust"].as_str().unwrap_or_default().to_string()
    };
    assert_ne!(trust(&alice, "bob"), "verified");
    // No change to accept: said so, and a failure.
    let r = alice.run(&["accept", "bob"], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no change to accept"), "{r:?}");
    let number = alice.ok(&["safety", "bob"], None).stdout;
    let r = alice.ok(&["safety", "@bob", "--verified"], None);
    let mut lines = r.stdout.lines();
    assert_eq!(
        lines.next(),
        number.lines().next(),
        "the number first: {r:?}"
    );
    assert!(r.stdout.contains("bob's identity key is verified"), "{r:?}");
    assert_eq!(trust(&alice, "bob"), "verified");
    // Bob's side is untouched.
    assert_ne!(trust(&bob, "alice"), "verified");
    // Someone without keys has no number to mark.
    let carol = w.home("carol");
    carol.register("carol");
    let r = alice.run(&["safety", "carol", "--verified"], None);
    assert_eq!(r.code, 4, "{r:?}");
}

#[test]
fn verify_says_why_it_cannot_start() {
    let w = World::new();
    let (alice, _bob) = secret_dm(&w);
    let r = alice.run(&["verify", "bob", "NOSUCHDEVICE", "--timeout", "30"], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("bob has no device NOSUCHDEVICE"), "{r:?}");
    // Alice's only device is this one.
    let r = alice.run(&["verify", "alice", "--timeout", "30"], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("no other device"), "{r:?}");
    // Nobody starts one: a bounded wait.
    let r = alice.run(&["verify", "--incoming", "--timeout", "2"], None);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(
        r.stderr.contains("no device started a verification"),
        "{r:?}"
    );
    // Neither USER nor --incoming: a usage error.
    let r = alice.run(&["verify"], None);
    assert_eq!(r.code, 2, "USER or --incoming is needed: {r:?}");
}

#[test]
fn the_answer_may_come_from_a_pipe() {
    let Some((_w, alice, bob, tmux)) = in_tmux() else {
        return;
    };
    bob_waits(&tmux, &bob);
    // Alice's answer waits in the pipe until the question is asked.
    let started = std::thread::spawn(move || alice.run(&["verify", "bob"], Some("y\n")));
    let b = tmux.wait("bob", "the emoji", |s| {
        s.contains("[y/N]") && emoji_names(s).is_some()
    });
    tmux.keys("bob", &["y", "Enter"]);
    let r = started.join().expect("alice's command");
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("is verified"), "{r:?}");
    assert_eq!(emoji_names(&r.stdout), emoji_names(&b));
    let b = tmux.wait("bob", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(exited(&b, 0) && b.contains("is verified"), "{b}");
}

#[test]
fn a_new_device_of_ones_own_is_linked_by_verifying_it() {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the verification end-to-end test");
        return;
    }
    let w = World::new();
    let old = w.home("alice");
    old.register("alice");
    old.ok(&["devices"], None);
    let new = Home::new(w.dir("alice-laptop"), &w.url());
    new.ok(
        &["login", "alice", "--password-stdin"],
        Some(&format!("{}\n", support::PASSWORD)),
    );
    let mine = devices(&new, "alice");
    let r = new.ok(&["devices", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let laptop = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["this_device"] == true)
        .and_then(|d| d["device_id"].as_str())
        .expect("the new device in the list")
        .to_string();
    assert_eq!(mine.len(), 2, "{mine:?}");
    let tmux = Tmux::new();
    tmux.chat("new", &new, &["verify", "--incoming", "--timeout", "90"]);
    tmux.wait("new", "the wait for a verification", |s| {
        s.contains("Waiting for another device")
    });
    tmux.chat(
        "old",
        &old,
        &["verify", "alice", &laptop, "--timeout", "90"],
    );
    let ready = |s: &str| s.contains("[y/N]") && emoji_names(s).is_some();
    let o = tmux.wait("old", "the emoji", ready);
    let n = tmux.wait("new", "the emoji", ready);
    assert!(
        n.contains("your device") && n.contains("wants to verify this device"),
        "{n}"
    );
    assert!(o.contains("your other device"), "{o}");
    assert_eq!(emoji_names(&o), emoji_names(&n));
    tmux.keys("new", &["y", "Enter"]);
    tmux.keys("old", &["y", "Enter"]);
    let o = tmux.wait("old", "the end", |s| exited(s, 0) || exited(s, 1));
    let n = tmux.wait("new", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(exited(&o, 0), "{o}");
    assert!(exited(&n, 0), "{n}");
    assert!(
        o.contains(&format!("Your device {laptop} is verified")),
        "{o}"
    );
    // The old device certified the new one with the identity key.
    let r = old.ok(&["devices", "--json"], None);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let d = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == laptop.as_str())
        .cloned()
        .expect("the new device");
    assert_eq!(d["verified"], true, "{r:?}");
    assert_eq!(d["certified"], true, "{r:?}");
}

#[test]
fn the_full_screen_client_verifies_with_the_command_line() {
    let Some((_w, alice, bob, tmux)) = in_tmux() else {
        return;
    };
    bob_waits(&tmux, &bob);
    // Alice, in the full-screen client, asks for it by command.
    tmux.tui("alice", &alice);
    tmux.wait("alice", "the conversation list", |s| s.contains("bob"));
    tmux.keys("alice", &["i"]);
    tmux.keys("alice", &["-l", "/verify bob"]);
    tmux.keys("alice", &["Enter"]);
    let b = tmux.wait("bob", "the emoji", |s| {
        s.contains("[y/N]") && emoji_names(s).is_some()
    });
    let names = emoji_names(&b).unwrap();
    assert_eq!(names.len(), 7, "{b}");
    // The same seven, by name, on alice's verification screen.
    let a = tmux.wait("alice", "the emoji on the verification screen", |s| {
        names.iter().all(|n| s.contains(n.as_str()))
    });
    assert!(a.contains("Do they match"), "{a}");
    // The screen takes an answer once the emoji have been up a moment.
    std::thread::sleep(Duration::from_millis(1200));
    tmux.keys("alice", &["y"]);
    tmux.keys("bob", &["y", "Enter"]);
    let b = tmux.wait("bob", "the end", |s| exited(s, 0) || exited(s, 1));
    assert!(exited(&b, 0) && b.contains("is verified"), "{b}");
    tmux.wait("alice", "verified on the full screen", |s| {
        s.contains("verified ✓")
    });
    // (Alice's keys are the running client's: another process is refused
    // them until it ends, so bob's side is asked.)
    let ours = devices(&bob, "alice");
    assert!(!ours.is_empty() && ours.iter().all(|(_, v)| *v), "{ours:?}");
}
