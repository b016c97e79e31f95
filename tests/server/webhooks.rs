//! Incoming webhooks: a group's admins make one, anything that can send an
//! HTTP POST appends a message through it as its bot account, and the
//! secret URL is the only credential (refused alike when unknown, wrong or
//! revoked; rate-limited; bounded).

use crate::support::server::{HttpReply, http_exchange};
use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

/// alice (server admin, owner of a group with bob) and bob, with a webhook
/// `deploys` in the group: (alice, bob, conversation, webhook reply).
async fn setup(server: &Server) -> (Peer, Peer, String, Value) {
    let [mut alice, bob] = server.users(["alice", "bob"]).await;
    let conv = alice.create_group("ops", &["bob"]).await;
    let hook = alice
        .ok(json!({"type":"webhook_create","conversation_id":conv,"name":"deploys"}))
        .await;
    (alice, bob, conv, hook)
}

async fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    http_exchange(server.addr(), "POST", path, headers, body).await
}

fn path_of(hook: &Value) -> String {
    hook["path"].as_str().expect("a path").to_string()
}

fn json_of(r: &HttpReply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

#[tokio::test]
async fn a_post_arrives_as_a_bot_message() {
    let server = Server::start();
    let (_alice, mut bob, conv, hook) = setup(&server).await;
    let path = path_of(&hook);
    assert!(path.starts_with(&format!(
        "/hooks/{}/",
        hook["webhook"]["id"].as_str().unwrap()
    )));
    assert_eq!(hook["webhook"]["name"], "deploys");
    // curl -d sends a form content type with a JSON body.
    let r = post(
        &server,
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        br#"{"text":"deploy **done**"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ok = json_of(&r);
    assert_eq!(ok["ok"], true);
    let seq = ok["seq"].as_u64().unwrap();
    let ev = bob
        .expect_push(|v| v["type"] == "event" && v["kind"] == "message", WAIT)
        .await;
    assert_eq!(ev["conversation_id"], conv.as_str());
    assert_eq!(ev["seq"], seq);
    assert_eq!(ev["sender"], "deploys");
    assert_eq!(ev["bot"], true);
    assert_eq!(ev["body"], "deploy **done**");
    // Stored with the event: history says so too; people's events do not.
    bob.send_msg(&conv, "thanks").await;
    let history = bob.full_history(&conv).await;
    let by = |s: &str| {
        history
            .iter()
            .find(|e| e["sender"] == s && e["kind"] == "message")
            .unwrap()
            .clone()
    };
    assert_eq!(by("deploys")["bot"], true);
    assert!(by("bob").get("bot").is_none(), "{}", by("bob"));
    // The Slack way: a form field holding the JSON.
    let r = post(
        &server,
        &path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"payload=%7B%22text%22%3A%22from+a+form%22%7D",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = bob
        .expect_push(|v| v["type"] == "event" && v["body"] == "from a form", WAIT)
        .await;
    assert_eq!(ev["bot"], true);
}

#[tokio::test]
async fn the_webhooks_account_is_a_member_marked_as_a_bot() {
    let server = Server::start();
    let (mut alice, _bob, conv, _hook) = setup(&server).await;
    let members = alice
        .ok(json!({"type":"members","conversation_id":conv}))
        .await;
    let list = members["members"].as_array().unwrap();
    let hook = list
        .iter()
        .find(|m| m["user"] == "deploys")
        .expect("listed");
    assert_eq!(hook["bot"], true, "marked in the member list");
    let person = list.iter().find(|m| m["user"] == "alice").unwrap();
    assert!(person.get("bot").is_none());
    let users = alice.ok(json!({"type":"users","prefix":"de"})).await;
    assert_eq!(users["users"][0]["user"], "deploys");
    assert_eq!(users["users"][0]["bot"], true);
    let users = alice.ok(json!({"type":"users","prefix":"bo"})).await;
    assert!(users["users"][0].get("bot").is_none());
    // No password: logging in as it fails like an unknown user.
    let mut p = server.connect().await;
    let r = p.login("deploys", "!").await;
    assert_eq!(r["code"], "auth_failed");
}

#[tokio::test]
async fn a_wrong_secret_an_unknown_hook_and_a_revoked_one_are_the_same_404() {
    let server = Server::start();
    let (mut alice, mut bob, _conv, hook) = setup(&server).await;
    let path = path_of(&hook);
    let id = hook["webhook"]["id"].as_str().unwrap().to_string();
    let body = br#"{"text":"x"}"#;
    let wrong = format!("/hooks/{id}/{}", "0".repeat(64));
    let unknown = format!("/hooks/0000000000000000/{}", "0".repeat(64));
    let a = post(&server, &wrong, &[], body).await;
    let b = post(&server, &unknown, &[], body).await;
    let c = post(&server, &format!("/hooks/{id}"), &[], body).await;
    assert_eq!((a.status, b.status, c.status), (404, 404, 404));
    assert_eq!(a.body, b.body);
    // bob (a plain member, not the creator) may not revoke it.
    bob.err(
        json!({"type":"webhook_revoke","webhook_id":id}),
        "forbidden",
    )
    .await;
    alice
        .ok(json!({"type":"webhook_revoke","webhook_id":id}))
        .await;
    let r = post(&server, &path, &[], body).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.body, a.body);
    bob.expect_no_push_matching(|v| v["body"] == "x", Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn bad_secrets_are_throttled_by_address() {
    let server = Server::start();
    let (_alice, _bob, _conv, hook) = setup(&server).await;
    let id = hook["webhook"]["id"].as_str().unwrap();
    let wrong = format!("/hooks/{id}/{}", "f".repeat(64));
    let mut last = 0;
    for _ in 0..40 {
        last = post(&server, &wrong, &[], br#"{"text":"x"}"#).await.status;
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "guessing secrets is slowed down");
    // The right secret from that address waits too.
    let r = post(&server, &path_of(&hook), &[], br#"{"text":"x"}"#).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn only_an_admin_of_the_conversation_creates_one() {
    let server = Server::start();
    let [mut alice, mut bob, _carol] = server.users(["alice", "bob", "carol"]).await;
    let conv = alice.create_group("ops", &["bob"]).await;
    bob.err(
        json!({"type":"webhook_create","conversation_id":conv,"name":"sneaky"}),
        "forbidden",
    )
    .await;
    bob.err(
        json!({"type":"webhook_list","conversation_id":conv}),
        "forbidden",
    )
    .await;
    // Once an admin there, bob may.
    alice
        .ok(json!({"type":"set_member_role","conversation_id":conv,"user":"bob","role":"admin"}))
        .await;
    bob.ok(json!({"type":"webhook_create","conversation_id":conv,"name":"bobs-hook"}))
        .await;
    // The name must be a free username; DMs have no webhooks.
    alice
        .err(
            json!({"type":"webhook_create","conversation_id":conv,"name":"carol"}),
            "username_taken",
        )
        .await;
    let dm = alice.create_dm("carol").await;
    alice
        .err(
            json!({"type":"webhook_create","conversation_id":dm,"name":"dmhook"}),
            "invalid_argument",
        )
        .await;
    let list = alice
        .ok(json!({"type":"webhook_list","conversation_id":conv}))
        .await;
    let hooks = list["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["name"], "bobs-hook");
    assert_eq!(hooks[0]["created_by"], "bob");
    assert!(hooks[0]["last_used"].is_null());
    assert!(
        !list.to_string().contains("/hooks/"),
        "the secret is never listed"
    );
}

#[tokio::test]
async fn last_use_is_listed() {
    let server = Server::start();
    let (mut alice, _bob, conv, hook) = setup(&server).await;
    let r = post(&server, &path_of(&hook), &[], br#"{"text":"hi"}"#).await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let list = alice
            .ok(json!({"type":"webhook_list","conversation_id":conv}))
            .await;
        if list["webhooks"][0]["last_used"].is_i64() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn posts_over_the_rate_get_429() {
    let server = Server::start_with(|c| {
        c.limits.webhook_posts_per_sec = 1;
        c.limits.webhook_burst = 3;
    });
    let (_alice, _bob, _conv, hook) = setup(&server).await;
    let path = path_of(&hook);
    let mut statuses = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"text":"n{i}"}}"#);
        statuses.push(post(&server, &path, &[], body.as_bytes()).await);
    }
    assert_eq!(
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()[..3],
        [200, 200, 200]
    );
    let limited = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert!(limited.header("retry-after").is_some());
}

#[tokio::test]
async fn bad_bodies_are_refused() {
    let server = Server::start_with(|c| c.limits.max_body_bytes = 100);
    let (_alice, mut bob, conv, hook) = setup(&server).await;
    let path = path_of(&hook);
    let status = |r: HttpReply| r.status;
    assert_eq!(status(post(&server, &path, &[], b"not json").await), 400);
    assert_eq!(
        status(post(&server, &path, &[], br#"{"text":"  "}"#).await),
        400
    );
    assert_eq!(
        status(post(&server, &path, &[], br#"{"body":"x"}"#).await),
        400
    );
    let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(101));
    assert_eq!(
        status(post(&server, &path, &[], long.as_bytes()).await),
        413
    );
    let huge = vec![b' '; 1 << 20];
    assert_eq!(status(post(&server, &path, &[], &huge).await), 413);
    assert_eq!(
        status(post(&server, &path, &[("Content-Type", "image/png")], b"{}").await),
        415
    );
    assert_eq!(
        status(http_exchange(server.addr(), "GET", &path, &[], b"").await),
        405
    );
    // Nothing of that reached the conversation.
    bob.expect_no_push_matching(|v| v["kind"] == "message", Duration::from_millis(200))
        .await;
    assert_eq!(
        bob.last_seq(&conv).await,
        2,
        "create and the webhook's join"
    );
}

#[tokio::test]
async fn control_characters_are_stored_as_sent() {
    let server = Server::start();
    let (_alice, mut bob, conv, hook) = setup(&server).await;
    let r = post(
        &server,
        &path_of(&hook),
        &[("Content-Type", "application/json")],
        br#"{"text":"red \u001b[31m alert\u0007"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let history = bob.full_history(&conv).await;
    // As any message's text: stored as sent; clients strip at display.
    assert_eq!(history.last().unwrap()["body"], "red \u{1b}[31m alert\u{7}");
}

#[tokio::test]
async fn an_idempotency_key_posts_once() {
    let server = Server::start();
    let (_alice, mut bob, conv, hook) = setup(&server).await;
    let path = path_of(&hook);
    let key = [("Idempotency-Key", "build-41")];
    let a = json_of(&post(&server, &path, &key, br#"{"text":"build 41 ok"}"#).await);
    let b = json_of(&post(&server, &path, &key, br#"{"text":"build 41 ok"}"#).await);
    assert_eq!(a["seq"], b["seq"]);
    let n = bob
        .full_history(&conv)
        .await
        .iter()
        .filter(|e| e["body"] == "build 41 ok")
        .count();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_hook_taken_out_of_its_conversation_stops_posting() {
    let server = Server::start();
    let (mut alice, _bob, conv, hook) = setup(&server).await;
    alice
        .ok(json!({"type":"remove_members","conversation_id":conv,"members":["deploys"]}))
        .await;
    let r = post(&server, &path_of(&hook), &[], br#"{"text":"x"}"#).await;
    assert_eq!(r.status, 404, "{}", r.text());
}
