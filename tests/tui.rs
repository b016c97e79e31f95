//! The real `chat` TUI in tmux against an in-process chatd: compose and
//! send, see a reply, see "bob is typing…", and an unread count that
//! appears in the list and clears when the conversation is opened; a
//! search that jumps to a message far out of view; and a file shared with
//! `/upload` (its path completed with Tab) and by pasting its path.
//! Skipped (with a notice) when tmux is not installed.

mod support;

use chat::proto::{Conversation, Event, EventBody};
use serde_json::json;
use std::time::{Duration, Instant};
use support::tmux::{TmuxServer, home_env, tmux_available};
use support::{Home, Peer, World};

/// A tmux server of the test's own with one session.
struct Tmux {
    server: TmuxServer,
    session: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        self.server.cmd(args)
    }

    fn keys(&self, keys: &[&str]) {
        self.server.keys(&self.session, keys);
        // Give the UI a moment per batch of keys.
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self) -> String {
        self.server.screen(&self.session, false)
    }

    /// Poll the screen until `cond` holds (bounded); the last screen.
    fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        self.server.wait(&self.session, false, what, timeout, cond)
    }
}

/// The list-pane line of the DM with `user` (the part left of the first
/// vertical border, e.g. ` @bob ○      2 `).
fn list_line<'a>(screen: &'a str, user: &str) -> Option<&'a str> {
    let name = format!("@{user}");
    screen.lines().find_map(|l| {
        let left = l.split('│').next().unwrap_or(l);
        left.split_whitespace()
            .any(|w| w.trim_start_matches('▌') == name)
            .then_some(left)
    })
}

/// The unread count shown on the list line of `title`, if any.
fn unread_of(screen: &str, title: &str) -> Option<u64> {
    let line = list_line(screen, title)?;
    line.split_whitespace().last()?.parse().ok()
}

fn tail_bodies(home: &Home, target: &str) -> Vec<(String, String)> {
    let r = home.ok(&["tail", target, "--json", "-n", "20"], None);
    r.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter_map(|e| match e.body {
            EventBody::Message { body, .. } => Some((e.sender, body)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_tui_sends_receives_shows_typing_and_unread() {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the TUI end-to-end test");
        return;
    }
    let mut w = World::new();
    let url = w.url();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    bob.ok(&["send", "@alice", "first from bob"], None);
    alice.ok(&["create", "channel", "lobby"], None);

    let tmux = start_tui(&alice, &url, "alice");
    let long = Duration::from_secs(20);
    tmux.wait("the conversation list", long, |s| {
        s.contains("bob") && s.contains("lobby")
    });

    // Open the DM with bob (wherever it is in the list) and send.
    let focus_dm = |tmux: &Tmux| {
        for _ in 0..4 {
            let s = tmux.screen();
            if s.contains("first from bob") {
                return;
            }
            tmux.keys(&["Tab"]);
            std::thread::sleep(Duration::from_millis(300));
        }
        tmux.wait("the DM with bob", long, |s| s.contains("first from bob"));
    };
    focus_dm(&tmux);
    tmux.keys(&["i"]);
    tmux.keys(&["-l", "hello from the tui"]);
    tmux.keys(&["Enter"]);
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + long;
    loop {
        let got = tail_bodies(&bob, "@alice");
        if got.contains(&("alice".to_string(), "hello from the tui".to_string())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the TUI's message never reached bob: {got:?}\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A reply from bob appears on alice's screen.
    bob.ok(&["send", "@alice", "reply from bob"], None);
    tmux.wait("bob's reply", long, |s| s.contains("reply from bob"));

    // bob types (a raw connection): alice sees it.
    let convs: Vec<Conversation> =
        serde_json::from_str(bob.ok(&["conversations", "--json"], None).stdout.trim()).unwrap();
    let dm = convs
        .iter()
        .find(|c| c.name.is_none() && c.members.contains(&"alice".to_string()))
        .expect("the DM")
        .id
        .clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut typist = rt.block_on(w.login("bob"));
    let typing = |p: &mut Peer, active: bool| {
        rt.block_on(p.send_req(json!({"type":"typing","conversation_id":dm,"active":active})));
    };
    typing(&mut typist, true);
    tmux.wait("bob is typing", long, |s| s.contains("bob is typing"));
    typing(&mut typist, false);
    tmux.wait("the typing line gone", long, |s| {
        !s.contains("bob is typing")
    });
    rt.block_on(typist.close());

    // Focus the channel, then a message to the DM shows as unread there.
    let screen = tmux.screen();
    assert!(list_line(&screen, "bob").is_some(), "{screen}");
    assert_eq!(unread_of(&screen, "bob"), None, "{screen}");
    for _ in 0..4 {
        tmux.keys(&["Tab"]);
        std::thread::sleep(Duration::from_millis(300));
        if !tmux.screen().contains("reply from bob") {
            break;
        }
    }
    let s = tmux.screen();
    assert!(
        !s.contains("reply from bob"),
        "the channel is not focused:\n{s}"
    );
    bob.ok(&["send", "@alice", "unread one"], None);
    bob.ok(&["send", "@alice", "unread two"], None);
    tmux.wait("an unread count of 2 on the DM", long, |s| {
        unread_of(s, "bob") == Some(2)
    });
    focus_dm(&tmux);
    tmux.wait("the unread count cleared", long, |s| {
        s.contains("unread two") && unread_of(s, "bob").is_none()
    });
    // The read pointer reached the server.
    let deadline = Instant::now() + long;
    loop {
        let convs: Vec<Conversation> =
            serde_json::from_str(alice.ok(&["conversations", "--json"], None).stdout.trim())
                .unwrap();
        let c = convs.iter().find(|c| c.id == dm).unwrap();
        if c.receipts.get("alice").map(|r| r.read) == Some(c.last_seq) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice's read pointer never reached the server: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.keys(&["q"]);
    drop(tmux);
    w.stop_blocking();
}

/// Search in the TUI: `s`, a query, Enter shows the hits; Enter on the
/// hit closes the overlay and shows the message, which had scrolled far
/// out of view.
#[test]
fn the_tui_searches_and_jumps_to_the_message() {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the TUI search test");
        return;
    }
    let mut w = World::new();
    let url = w.url();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    bob.ok(&["send", "@alice", "the needle is in the haystack"], None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sender = rt.block_on(w.login("bob"));
    let dm = rt.block_on(sender.create_dm("alice"));
    for i in 0..60 {
        rt.block_on(sender.send_msg(&dm, &format!("hay number {i}")));
    }
    rt.block_on(sender.close());

    let tmux = start_tui(&alice, &url, "alice");
    let long = Duration::from_secs(20);
    tmux.wait("the newest messages", long, |s| s.contains("hay number 59"));
    let s = tmux.screen();
    assert!(
        !s.contains("the needle is in"),
        "the needle is not on screen yet:\n{s}"
    );

    tmux.keys(&["s"]);
    tmux.wait("the search prompt", long, |s| s.contains("Search ·"));
    tmux.keys(&["-l", "needle"]);
    tmux.keys(&["Enter"]);
    tmux.wait("the hit", long, |s| {
        s.contains("the needle is in the haystack") && s.contains("[cache]")
    });
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the message, the overlay closed", long, |s| {
        !s.contains("Search ·") && s.contains("the needle is in the haystack")
    });
    assert!(
        !s.contains("hay number 59"),
        "the view did not move to the message:\n{s}"
    );
    tmux.keys(&["q"]);
    drop(tmux);
    w.stop_blocking();
}

/// `chat` for `home` in a new tmux session of 120×30.
fn start_tui(home: &Home, url: &str, session: &str) -> Tmux {
    let tmux = Tmux {
        server: TmuxServer::new("chat-test"),
        session: session.into(),
    };
    let command = format!(
        "{}TERM=xterm-256color '{}' --server {url}; sleep 30",
        home_env(home),
        env!("CARGO_BIN_EXE_chat")
    );
    tmux.server.launch(session, 120, 30, &command);
    tmux
}

/// The names of the files shared in `target`, as `home` sees them.
fn shared_files(home: &Home, target: &str) -> Vec<String> {
    let r = home.ok(&["tail", target, "--json", "-n", "20"], None);
    r.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Event>(l).ok())
        .filter_map(|e| match e.body {
            EventBody::File { file, .. } => Some(file.name),
            _ => None,
        })
        .collect()
}

#[test]
fn the_tui_uploads_with_a_command_and_a_pasted_path() {
    if !tmux_available() {
        eprintln!("NOTICE: tmux is not installed; skipping the TUI upload test");
        return;
    }
    let mut w = World::new();
    let url = w.url();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    bob.ok(&["send", "@alice", "send me the report"], None);
    let dir = w.dir("alice").join("outbox");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report-2026.txt"), "all green\n").unwrap();
    std::fs::write(dir.join("photo.png"), "not really a png").unwrap();

    let tmux = start_tui(&alice, &url, "alice");
    let long = Duration::from_secs(20);
    tmux.wait("the DM", long, |s| s.contains("send me the report"));

    // `/upload DIR/rep` and Tab completes the file name.
    tmux.keys(&["i"]);
    tmux.keys(&["-l", &format!("/upload {}/rep", dir.display())]);
    tmux.keys(&["Tab"]);
    tmux.wait("the completed path", long, |s| {
        s.contains("report-2026.txt")
    });
    tmux.keys(&["Enter"]);
    tmux.wait("the file row", long, |s| s.contains("📎 report-2026.txt"));
    let deadline = Instant::now() + long;
    while !shared_files(&bob, "@alice").contains(&"report-2026.txt".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the upload never reached bob\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A pasted path (as a terminal pastes a dropped file) is offered.
    tmux.keys(&["Escape"]);
    let path = format!("'{}'", dir.join("photo.png").display());
    assert!(tmux.cmd(&["set-buffer", &path]).status.success());
    assert!(
        tmux.cmd(&["paste-buffer", "-p", "-t", &tmux.session])
            .status
            .success()
    );
    tmux.wait("the offer", long, |s| {
        s.contains("Upload photo.png here? (y/n)")
    });
    tmux.keys(&["y"]);
    tmux.wait("the second file row", long, |s| s.contains("📎 photo.png"));
    let deadline = Instant::now() + long;
    while !shared_files(&bob, "@alice").contains(&"photo.png".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the pasted file never reached bob"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.keys(&["q"]);
    drop(tmux);
    w.stop_blocking();
}
