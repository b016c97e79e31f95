//! Bot accounts: made by a server admin with a token and no password; they
//! take part like anyone (joined, DMed, sending), and everything they send
//! is marked as a bot's.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_admin_creates_a_bot_whose_token_works_for_auth() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    bob.err(
        json!({"type":"admin_create_bot","username":"sneaky"}),
        "forbidden",
    )
    .await;
    let r = alice
        .ok(json!({"type":"admin_create_bot","username":"pingbot"}))
        .await;
    assert_eq!(r["user"]["username"], "pingbot");
    assert_eq!(r["user"]["bot"], true);
    let token = r["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 64);
    alice
        .err(
            json!({"type":"admin_create_bot","username":"bob"}),
            "username_taken",
        )
        .await;

    let mut bot = server.device(&token).await;
    // It is DMed and added like a person, and its events carry `bot`.
    let dm = bob.create_dm("pingbot").await;
    let group = alice.create_group("ops", &["bob", "pingbot"]).await;
    bot.send_msg(&dm, "hello from a bot").await;
    let ev = bob
        .expect_push(
            |v| v["type"] == "event" && v["body"] == "hello from a bot",
            WAIT,
        )
        .await;
    assert_eq!(ev["sender"], "pingbot");
    assert_eq!(ev["bot"], true);
    bot.send_msg(&group, "in the group").await;
    let history = alice.full_history(&group).await;
    assert_eq!(history.last().unwrap()["bot"], true);
    // People's messages are not marked.
    bob.send_msg(&dm, "hi bot").await;
    let ev = bot
        .expect_push(|v| v["type"] == "event" && v["body"] == "hi bot", WAIT)
        .await;
    assert!(ev.get("bot").is_none(), "{ev}");

    let users = bob.ok(json!({"type":"users","prefix":"p"})).await;
    assert_eq!(users["users"][0]["user"], "pingbot");
    assert_eq!(users["users"][0]["bot"], true);
    let bots = alice.ok(json!({"type":"admin_bots"})).await;
    let names: Vec<_> = bots["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, [json!("pingbot")]);
    bob.err(json!({"type":"admin_bots"}), "forbidden").await;
}

#[tokio::test]
async fn a_bot_cannot_log_in_with_a_password_nor_get_one() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    alice
        .ok(json!({"type":"admin_create_bot","username":"pingbot"}))
        .await;
    for pw in ["!", "", PASSWORD] {
        let mut p = server.connect().await;
        let r = p.login("pingbot", pw).await;
        assert_eq!(r["code"], "auth_failed", "{r}");
        assert_eq!(r["message"], "wrong username or password");
    }
    alice
        .err(
            json!({"type":"admin_reset_password","username":"pingbot","password":"a fine password"}),
            "invalid_argument",
        )
        .await;
    let mut p = server.connect().await;
    assert_eq!(
        p.login("pingbot", "a fine password").await["code"],
        "auth_failed"
    );
}

#[tokio::test]
async fn a_new_token_ends_the_old_one_and_deactivation_cuts_it_off() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let first = alice
        .ok(json!({"type":"admin_create_bot","username":"pingbot"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut old = server.device(&first).await;
    let second = alice
        .ok(json!({"type":"admin_bot_token","username":"pingbot"}))
        .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(first, second);
    assert!(matches!(
        old.expect_closed(Duration::from_secs(2)).await,
        Closed::Code(1008, _)
    ));
    let mut p = server.connect().await;
    assert_eq!(p.auth(&first).await["code"], "auth_failed");
    server.device(&second).await;
    alice
        .err(
            json!({"type":"admin_bot_token","username":"alice"}),
            "not_found",
        )
        .await;
    alice
        .ok(json!({"type":"admin_set_active","username":"pingbot","active":false}))
        .await;
    let mut p = server.connect().await;
    assert_eq!(p.auth(&second).await["code"], "auth_failed");
}
