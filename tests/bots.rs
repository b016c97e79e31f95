//! Bots and webhooks from the command line, as scripts use them: an admin
//! makes a bot and a webhook with `chat`, the bot runs on `CHAT_TOKEN`
//! alone (`chat tail --follow --json` piped into `chat send`, the logic of
//! the ping bot in docs/BOTS.md), and a webhook's URL takes a plain POST.

mod support;

use chat::proto::{Event, EventBody};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::server::http_exchange;
use support::{Home, World};

/// The last `n` events of `target` as `home` sees them.
fn tail_json(home: &Home, target: &str) -> Vec<Event> {
    home.ok(&["tail", target, "--json", "-n", "50"], None)
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A home that acts as a bot: its token only in the environment.
fn as_bot(home: &Home, token: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = home.command(args);
    cmd.env("CHAT_TOKEN", token);
    cmd
}

fn run_bot(home: &Home, token: &str, args: &[&str]) -> std::process::Output {
    as_bot(home, token, args)
        .stdin(Stdio::null())
        .output()
        .expect("run chat")
}

#[test]
fn admin_bot_and_webhook_commands() {
    let w = World::new();
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    alice.ok(&["create", "channel", "ops"], None);
    bob.ok(&["join", "#ops"], None);

    // Bots: admins only; the token is alone on standard output.
    let r = bob.run(&["admin", "bot", "create", "sneaky"], None);
    assert_eq!(r.code, 6, "{r:?}");
    let r = alice.ok(&["admin", "bot", "create", "helper"], None);
    let token = r.stdout.trim().to_string();
    assert_eq!(token.len(), 64, "{r:?}");
    assert!(r.stderr.contains("CHAT_TOKEN"));
    let list = alice.ok(&["admin", "bot", "list"], None);
    assert!(list.stdout.starts_with("helper  active"), "{list:?}");
    // The bot works with the token alone: no login, nothing stored.
    let bot = w.home("helper");
    alice.ok(&["send", "@helper", "hello bot"], None);
    let out = run_bot(&bot, &token, &["send", "@alice", "hello human"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!bot.credentials_file().exists());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&token));
    let seen = alice.ok(&["tail", "@helper"], None);
    assert!(
        seen.stdout.contains("helper [bot]: hello human"),
        "{seen:?}"
    );
    assert!(seen.stdout.contains("alice: hello bot"), "{seen:?}");
    let json = tail_json(&alice, "@helper");
    assert!(json.iter().any(|e| e.sender == "helper" && e.bot));
    assert!(json.iter().all(|e| e.sender == "helper" || !e.bot));
    // A new token ends the old one.
    let r = alice.ok(&["admin", "bot", "token", "helper"], None);
    assert_ne!(r.stdout.trim(), token);
    let out = run_bot(&bot, &token, &["conversations"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Webhooks: the URL on standard output, on the server's scheme.
    let r = bob.run(&["webhook", "create", "#ops", "ci"], None);
    assert_eq!(r.code, 6, "{r:?}");
    let r = alice.ok(&["webhook", "create", "#ops", "ci"], None);
    let url = r.stdout.trim().to_string();
    let prefix = format!("http://{}/hooks/", w.server.addr());
    assert!(url.starts_with(&prefix), "{url}");
    let path = url
        .trim_start_matches(&format!("http://{}", w.server.addr()))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let post = |body: &str| {
        rt.block_on(http_exchange(
            w.server.addr(),
            "POST",
            &path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        ))
    };
    assert_eq!(post(r#"{"text":"deploy done"}"#).status, 200);
    let seen = bob.ok(&["tail", "#ops"], None);
    assert!(seen.stdout.contains("ci [bot]: deploy done"), "{seen:?}");
    let list = alice.ok(&["webhook", "list", "#ops"], None);
    let id = list.stdout.split_whitespace().next().unwrap().to_string();
    assert!(list.stdout.contains(" ci  by alice"), "{list:?}");
    assert!(!list.stdout.contains("/hooks/"));
    let json = alice.ok(&["webhook", "list", "#ops", "--json"], None);
    let hooks: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(hooks[0]["id"], id.as_str());
    let r = bob.run(&["webhook", "revoke", &id], None);
    assert_eq!(r.code, 6, "{r:?}");
    alice.ok(&["webhook", "revoke", &id], None);
    assert_eq!(post(r#"{"text":"after"}"#).status, 404);
    let list = alice.ok(&["webhook", "list", "#ops"], None);
    assert!(list.stdout.trim().is_empty(), "{list:?}");
}

/// The ping bot of docs/BOTS.md: follow each conversation with `chat tail
/// --follow --json -n 0`, and for a message `!ping` that no bot sent, `chat
/// send` `pong` there.
#[test]
fn a_ping_bot_on_chat_token() {
    let w = World::new();
    let alice = w.home("alice");
    alice.register("alice");
    let token = alice
        .ok(&["admin", "bot", "create", "pingbot"], None)
        .stdout;
    let token = token.trim().to_string();
    alice.ok(&["create", "group", "team", "pingbot"], None);
    // The bot runs in alice's home: on CHAT_TOKEN it must leave her
    // stored session and her last user alone.
    let bot = w.home("alice");
    let out = run_bot(&bot, &token, &["conversations", "--json"]);
    let convs: Vec<chat::proto::Conversation> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(convs.len(), 1, "{out:?}");
    let conv = convs[0].id.clone();

    let mut follower = as_bot(
        &bot,
        &token,
        &["tail", "--follow", "--json", "-n", "0", &conv],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn chat tail");
    let stdout = follower.stdout.take().unwrap();
    let (bot_home, bot_token, target) = (bot.root.clone(), token.clone(), conv.clone());
    let server = bot.server.clone();
    let answering = std::thread::spawn(move || {
        let bot = Home::new(bot_home, &server);
        let mut answered = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Ok(ev) = serde_json::from_str::<Event>(&line) else {
                continue;
            };
            let is_ping =
                matches!(&ev.body, EventBody::Message { body, .. } if body.trim() == "!ping");
            if is_ping && !ev.bot {
                let out = run_bot(&bot, &bot_token, &["send", &target, "pong"]);
                assert!(out.status.success(), "{out:?}");
                answered += 1;
            }
        }
        answered
    });
    // Give the follower time to subscribe, then ping twice; the bot's own
    // pongs (and a bot's !ping) get no answer.
    std::thread::sleep(Duration::from_millis(1500));
    alice.ok(&["send", "+team", "!ping"], None);
    alice.ok(&["send", "+team", "not for the bot"], None);
    let deadline = Instant::now() + Duration::from_secs(20);
    let pongs = |events: &[Event]| {
        events
            .iter()
            .filter(|e| {
                e.sender == "pingbot"
                    && matches!(&e.body, EventBody::Message { body, .. } if body == "pong")
            })
            .count()
    };
    while pongs(&tail_json(&alice, "+team")) < 1 {
        assert!(Instant::now() < deadline, "no pong");
        std::thread::sleep(Duration::from_millis(200));
    }
    run_bot(&bot, &token, &["send", &conv, "!ping"]);
    alice.ok(&["send", "+team", "!ping"], None);
    while pongs(&tail_json(&alice, "+team")) < 2 {
        assert!(Instant::now() < deadline, "no second pong");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(answering.join().unwrap(), 2, "one pong per person's !ping");
    assert_eq!(pongs(&tail_json(&alice, "+team")), 2);
}
