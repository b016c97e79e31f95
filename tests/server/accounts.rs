//! Accounts on a team server: the registration policy and the first admin,
//! invitations, administration, sessions (list, revoke, expiry) and
//! password changes, over real sockets. Ending a session closes its live
//! connections at once.

use crate::support::*;
use chat::server::config::Registration;
use serde_json::{Value, json};
use std::time::Duration;

/// A revoked, deactivated or reset session's connections close this fast.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

fn policy(r: Registration) -> impl FnOnce(&mut chat::server::Config) {
    move |c| c.auth.registration = r
}

async fn register_with(p: &mut Peer, name: &str, invite: Option<&str>) -> Value {
    let mut req = json!({"type":"register","username":name,"password":PASSWORD,"device":"test"});
    if let Some(code) = invite {
        req["invite"] = json!(code);
    }
    let r = p.request(req).await;
    if r["type"] == "ok" {
        p.user = name.to_string();
        p.token = r["token"].as_str().unwrap_or_default().into();
    }
    r
}

async fn invite(admin: &mut Peer, uses: u32, expires: Option<u64>) -> String {
    let mut req = json!({"type":"invite_create","uses":uses});
    if let Some(s) = expires {
        req["expires_in_secs"] = json!(s);
    }
    let r = admin.ok(req).await;
    r["invite"]["code"].as_str().unwrap().to_string()
}

fn assert_closed_with(closed: &Closed, reason: &str) {
    match closed {
        Closed::Code(1008, r) => assert_eq!(r, reason),
        other => panic!("expected 1008 {reason:?}, got {other:?}"),
    }
}

#[test]
fn the_default_policy_is_invitation() {
    assert_eq!(
        chat::server::Config::default().auth.registration,
        Registration::Invite
    );
}

#[tokio::test]
async fn the_first_account_is_admin_and_needs_no_invitation() {
    for r in [Registration::Invite, Registration::Closed] {
        let server = Server::start_with(policy(r));
        let mut first = server.connect().await;
        let ok = register_with(&mut first, "root", None).await;
        assert_eq!(ok["type"], "ok", "{r:?}: {ok}");
        assert_eq!(ok["role"], "admin", "{ok}");
        let mut second = server.connect().await;
        let refused = register_with(&mut second, "bob", None).await;
        let code = match r {
            Registration::Closed => "registration_closed",
            _ => "invite_required",
        };
        assert_eq!(refused["code"], code, "{refused}");
        // The second account is a member once admitted.
        let made = first
            .ok(json!({"type":"admin_create_user","username":"bob","password":PASSWORD}))
            .await;
        assert_eq!(made["user"]["role"], "member");
        let r = second.login("bob", PASSWORD).await;
        assert_eq!(r["role"], "member", "{r}");
    }
}

#[tokio::test]
async fn open_registration_admits_anyone_as_member() {
    let server = Server::start_with(policy(Registration::Open));
    let mut a = server.connect().await;
    assert_eq!(register_with(&mut a, "alice", None).await["role"], "admin");
    let mut b = server.connect().await;
    assert_eq!(register_with(&mut b, "bob", None).await["role"], "member");
}

#[tokio::test]
async fn invitations_count_their_uses_and_expire() {
    let server = Server::start_with(policy(Registration::Invite));
    let mut admin = server.connect().await;
    register_with(&mut admin, "root", None).await;

    let two = invite(&mut admin, 2, None).await;
    for name in ["bob", "carol"] {
        let mut p = server.connect().await;
        let r = register_with(&mut p, name, Some(&two)).await;
        assert_eq!(r["type"], "ok", "{r}");
    }
    let mut p = server.connect().await;
    let r = register_with(&mut p, "dave", Some(&two)).await;
    assert_eq!(r["code"], "invite_invalid", "used up: {r}");
    assert!(r["message"].as_str().unwrap().contains("used up"), "{r}");

    let r = register_with(&mut p, "dave", Some("not-a-code")).await;
    assert_eq!(r["code"], "invite_invalid", "{r}");

    // Listed with who used it.
    let list = admin.ok(json!({"type":"invite_list"})).await;
    let listed = &list["invites"][0];
    assert_eq!(listed["code"], two.as_str());
    assert_eq!(listed["used_by"], json!(["bob", "carol"]));

    // Revoked: refused, and the refusal says so.
    let revoked = invite(&mut admin, 5, None).await;
    admin
        .ok(json!({"type":"invite_revoke","code":revoked}))
        .await;
    let r = register_with(&mut p, "dave", Some(&revoked)).await;
    assert_eq!(r["code"], "invite_invalid", "{r}");
    assert!(r["message"].as_str().unwrap().contains("revoked"), "{r}");

    // Expired: a one-second invitation, tried after it ran out.
    let short = invite(&mut admin, 5, Some(1)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = register_with(&mut p, "dave", Some(&short)).await;
    assert_eq!(r["code"], "invite_invalid", "{r}");
    assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");

    // Out-of-range requests.
    admin
        .err(json!({"type":"invite_create","uses":0}), "invalid_argument")
        .await;
    admin
        .err(
            json!({"type":"invite_create","expires_in_secs":0}),
            "invalid_argument",
        )
        .await;
}

#[tokio::test]
async fn members_invite_only_where_allowed() {
    for allowed in [false, true] {
        let server = Server::start_with(|c| {
            c.auth.registration = Registration::Invite;
            c.auth.members_invite = allowed;
        });
        let mut admin = server.connect().await;
        register_with(&mut admin, "root", None).await;
        let code = invite(&mut admin, 1, None).await;
        let mut member = server.connect().await;
        register_with(&mut member, "bob", Some(&code)).await;
        let r = member.request(json!({"type":"invite_create"})).await;
        if allowed {
            assert_eq!(r["type"], "ok", "{r}");
            // A member sees only their own, and cannot revoke the admin's.
            let own = member.ok(json!({"type":"invite_list"})).await;
            assert_eq!(own["invites"].as_array().unwrap().len(), 1, "{own}");
            let other = invite(&mut admin, 1, None).await;
            member
                .err(json!({"type":"invite_revoke","code":other}), "forbidden")
                .await;
        } else {
            assert_eq!(r["code"], "forbidden", "{r}");
        }
    }
}

#[tokio::test]
async fn admin_requests_are_for_admins() {
    let server = Server::start();
    let [mut admin, mut bob] = server.users(["root", "bob"]).await;
    for req in [
        json!({"type":"admin_users"}),
        json!({"type":"admin_create_user","username":"x1","password":PASSWORD}),
        json!({"type":"admin_reset_password","username":"root","password":PASSWORD}),
        json!({"type":"admin_set_active","username":"root","active":false}),
        json!({"type":"admin_set_role","username":"bob","role":"admin"}),
    ] {
        bob.err(req, "forbidden").await;
    }
    // Promoted: allowed at once; demoted: refused at once.
    admin
        .ok(json!({"type":"admin_set_role","username":"bob","role":"admin"}))
        .await;
    let users = bob.ok(json!({"type":"admin_users"})).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bob", "root"]);
    assert_eq!(users["users"][0]["online"], true);
    admin
        .ok(json!({"type":"admin_set_role","username":"bob","role":"member"}))
        .await;
    bob.err(json!({"type":"admin_users"}), "forbidden").await;
    // The last active admin stays one.
    admin
        .err(
            json!({"type":"admin_set_role","username":"root","role":"member"}),
            "conflict",
        )
        .await;
    admin
        .err(
            json!({"type":"admin_set_active","username":"root","active":false}),
            "conflict",
        )
        .await;
}

#[tokio::test]
async fn a_deactivated_user_is_disconnected_and_refused_until_reactivated() {
    let server = Server::start();
    let [mut admin, mut bob, mut carol] = server.users(["root", "bob", "carol"]).await;
    let dm = bob.create_dm("carol").await;
    bob.send_msg(&dm, "before").await;
    let mut bob2 = server.connect().await;
    bob2.login("bob", PASSWORD).await;

    let r = admin
        .ok(json!({"type":"admin_set_active","username":"bob","active":false}))
        .await;
    assert_eq!(r["user"]["active"], false);
    for p in [&mut bob, &mut bob2] {
        assert_closed_with(&p.expect_closed(CLOSE_WAIT).await, "account deactivated");
    }
    let mut again = server.connect().await;
    let r = again.login("bob", PASSWORD).await;
    assert_eq!(r["code"], "account_disabled", "{r}");
    let wrong = again.login("bob", "not the password").await;
    assert_eq!(
        wrong["code"], "auth_failed",
        "a wrong password learns nothing"
    );
    let mut token = server.connect().await;
    assert_eq!(token.auth(&bob.token).await["code"], "auth_failed");
    // Their messages stay.
    assert_eq!(carol.bodies(&dm).await, ["before"]);

    admin
        .ok(json!({"type":"admin_set_active","username":"bob","active":true}))
        .await;
    let r = again.login("bob", PASSWORD).await;
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn sessions_are_listed_and_revoking_one_closes_its_connections_at_once() {
    let server = Server::start();
    let mut laptop = server.user("alice").await;
    let mut phone = server.connect().await;
    let login = phone
        .ok(json!({"type":"login","username":"alice","password":PASSWORD,"device":"phone"}))
        .await;
    let token = login["token"].as_str().unwrap().to_string();
    // A second connection on the phone's token.
    let phone_token = {
        let r = phone.ok(json!({"type":"sessions"})).await;
        let sessions = r["sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{r}");
        let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["device"], "phone");
        assert_eq!(
            current[0]["last_address"], "127.0.0.1",
            "where it was used from"
        );
        assert!(
            current[0]["expires_at"].as_i64().unwrap() > current[0]["last_seen"].as_i64().unwrap()
        );
        current[0]["id"].as_str().unwrap().to_string()
    };
    let mut phone2 = server.connect().await;
    assert_eq!(phone2.auth(&token).await["type"], "ok");

    let r = laptop
        .ok(json!({"type":"revoke_session","session_id":phone_token}))
        .await;
    assert_eq!(r["revoked"], 1);
    for p in [&mut phone, &mut phone2] {
        assert_closed_with(&p.expect_closed(CLOSE_WAIT).await, "session revoked");
    }
    let mut p = server.connect().await;
    assert_eq!(p.auth(&token).await["code"], "auth_failed");
    laptop.ok(json!({"type":"conversations"})).await;
    laptop
        .err(
            json!({"type":"revoke_session","session_id":"0000000000000000"}),
            "not_found",
        )
        .await;

    // `others` ends all but this one.
    let mut tablet = server.connect().await;
    tablet.login("alice", PASSWORD).await;
    let r = laptop
        .ok(json!({"type":"revoke_session","others":true}))
        .await;
    assert_eq!(r["revoked"], 1);
    assert_closed_with(&tablet.expect_closed(CLOSE_WAIT).await, "session revoked");
    laptop.ok(json!({"type":"conversations"})).await;
}

#[tokio::test]
async fn logout_closes_every_connection_on_the_token() {
    let server = Server::start();
    let mut a = server.user("alice").await;
    let mut same = server.connect().await;
    same.auth(&a.token.clone()).await;
    a.ok(json!({"type":"logout"})).await;
    assert_closed_with(&same.expect_closed(CLOSE_WAIT).await, "logged out");
}

#[tokio::test]
async fn change_password_needs_the_old_one_and_ends_other_sessions() {
    let server = Server::start();
    let mut a = server.user("alice").await;
    let mut other = server.connect().await;
    other.login("alice", PASSWORD).await;
    a.err(
        json!({"type":"change_password","old_password":"wrong one","new_password":"new password 1"}),
        "auth_failed",
    )
    .await;
    a.err(
        json!({"type":"change_password","old_password":PASSWORD,"new_password":"short"}),
        "invalid_argument",
    )
    .await;
    let r = a
        .ok(json!({"type":"change_password","old_password":PASSWORD,"new_password":"new password 1"}))
        .await;
    assert_eq!(r["revoked"], 1);
    assert_closed_with(
        &other.expect_closed(CLOSE_WAIT).await,
        "password changed; log in again",
    );
    a.ok(json!({"type":"conversations"})).await;
    let mut p = server.connect().await;
    assert_eq!(p.login("alice", PASSWORD).await["code"], "auth_failed");
    assert_eq!(p.login("alice", "new password 1").await["type"], "ok");
}

#[tokio::test]
async fn an_admin_reset_ends_every_session() {
    let server = Server::start();
    let [mut admin, mut bob] = server.users(["root", "bob"]).await;
    admin
        .ok(json!({"type":"admin_reset_password","username":"bob","password":"temporary pw"}))
        .await;
    assert_closed_with(
        &bob.expect_closed(CLOSE_WAIT).await,
        "password changed; log in again",
    );
    let mut p = server.connect().await;
    assert_eq!(p.login("bob", "temporary pw").await["type"], "ok");
}

/// Close `p` and give the server time to finish with it: a closing
/// connection refreshes its session (see
/// `a_long_connection_refreshes_its_session_as_it_closes`), which must not
/// land after a test has aged the session.
async fn closed(p: Peer) {
    p.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// Move every session's last use (and creation) back by `days`.
fn age_sessions(data: &std::path::Path, days: i64) {
    let db = rusqlite::Connection::open(data.join("chatd.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let ms = days * 24 * 3600 * 1000;
    db.execute(
        "UPDATE sessions SET last_seen_at = last_seen_at - ?1, created_at = created_at - ?1",
        [ms],
    )
    .unwrap();
}

#[tokio::test]
async fn an_idle_session_expires_and_use_keeps_one_alive() {
    if crate::support::skip_on_postgres("ages sessions in chatd.db") {
        return;
    }
    let server = Server::start_with(|c| c.auth.session_idle_days = 30);
    let a = server.user("alice").await;
    let token = a.token.clone();
    closed(a).await;
    age_sessions(server.data_dir(), 29);
    let mut p = server.connect().await;
    assert_eq!(p.auth(&token).await["type"], "ok", "29 days idle: alive");
    closed(p).await;
    // That use refreshed it: another 29 days are fine too.
    age_sessions(server.data_dir(), 29);
    let mut p = server.connect().await;
    assert_eq!(p.auth(&token).await["type"], "ok", "refreshed on use");
    closed(p).await;
    age_sessions(server.data_dir(), 31);
    let mut p = server.connect().await;
    let r = p.auth(&token).await;
    assert_eq!(r["code"], "auth_failed", "{r}");
    assert!(r["message"].as_str().unwrap().contains("expired"), "{r}");
    // Forgotten: a second try is an unknown token.
    let r = p.auth(&token).await;
    assert!(r["message"].as_str().unwrap().contains("unknown"), "{r}");
}

#[tokio::test]
async fn a_session_past_its_maximum_age_expires_however_used() {
    if crate::support::skip_on_postgres("ages sessions in chatd.db") {
        return;
    }
    let server = Server::start_with(|c| c.auth.session_max_days = 7);
    let a = server.user("alice").await;
    let token = a.token.clone();
    age_sessions(server.data_dir(), 8);
    // Used a moment ago, but created 8 days ago.
    let db = rusqlite::Connection::open(server.data_dir().join("chatd.db")).unwrap();
    db.execute(
        "UPDATE sessions SET last_seen_at = strftime('%s','now') * 1000",
        [],
    )
    .unwrap();
    let mut p = server.connect().await;
    assert_eq!(p.auth(&token).await["code"], "auth_failed");
}

#[tokio::test]
async fn old_sessions_beyond_the_cap_end() {
    let server = Server::start_with(|c| c.limits.max_sessions_per_user = 3);
    let mut first = server.user("alice").await;
    let mut later = Vec::new();
    for _ in 0..3 {
        // Sessions are ordered by last use in milliseconds: apart, so
        // that the oldest is the first.
        tokio::time::sleep(Duration::from_millis(3)).await;
        let mut p = server.connect().await;
        p.login("alice", PASSWORD).await;
        later.push(p);
    }
    assert_closed_with(&first.expect_closed(CLOSE_WAIT).await, "session revoked");
    let r = later[2].ok(json!({"type":"sessions"})).await;
    assert_eq!(r["sessions"].as_array().unwrap().len(), 3);
}

/// `chatd admin` beside a running server: a new admin can log in, a reset
/// password ends the sessions the running server holds, within seconds.
#[tokio::test]
async fn chatd_admin_works_while_the_server_runs() {
    if crate::support::skip_on_postgres("runs `chatd admin` on the data dir's SQLite file") {
        return;
    }
    let server = Server::start();
    let [_root, mut bob] = server.users(["root", "bob"]).await;
    let data = server.data_dir().to_path_buf();
    let run = move |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("--data")
            .arg(&data)
            .arg("admin")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "chatd admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = tokio::task::spawn_blocking({
        let run = run.clone();
        move || {
            run(
                &["create-admin", "ops", "--password-stdin"],
                "ops password 1\n",
            );
            run(
                &["reset-password", "bob", "--password-stdin"],
                "bob password 2\n",
            );
            run(&["invite", "--uses", "1", "--expires", "1d"], "")
        }
    })
    .await
    .unwrap();
    let code = out.trim().to_string();
    assert_eq!(code.len(), 32, "{out}");

    let mut ops = server.connect().await;
    assert_eq!(ops.login("ops", "ops password 1").await["role"], "admin");
    ops.ok(json!({"type":"admin_users"})).await;
    // The running server noticed the reset and closed bob's connection.
    let closed = bob.expect_closed(Duration::from_secs(5)).await;
    assert_closed_with(&closed, "session revoked");
    let mut p = server.connect().await;
    assert_eq!(p.login("bob", "bob password 2").await["type"], "ok");
    // The invitation works, and the writer knows the new admin as a user.
    let mut newcomer = server.connect().await;
    assert_eq!(
        register_with(&mut newcomer, "newcomer", Some(&code)).await["type"],
        "ok"
    );
    let dm = newcomer.create_dm("ops").await;
    newcomer.send_msg(&dm, "hello ops").await;
}

#[tokio::test]
async fn an_erased_account_leaves_no_text_behind() {
    let server = Server::start();
    let [mut root, mut alice, mut bob] = server.users(["root", "alice", "bob"]).await;
    let dm = bob.create_dm("alice").await;
    let first = bob.send_msg(&dm, "my secret address").await;
    bob.ok(json!({"type":"edit","conversation_id":dm,"client_msg_id":"e1","target_seq":first,"body":"my secret phone"}))
        .await;
    let group = alice.create_group("g", &["bob"]).await;
    bob.send_msg(&group, "secret in a group").await;
    alice.send_msg(&dm, "alice stays").await;

    root.err(
        json!({"type":"admin_erase","username":"root"}),
        "invalid_argument",
    )
    .await;
    alice
        .err(json!({"type":"admin_erase","username":"bob"}), "forbidden")
        .await;
    let r = root
        .ok(json!({"type":"admin_erase","username":"bob"}))
        .await;
    assert_eq!(r["user"]["active"], false);
    assert_closed_with(&bob.expect_closed(CLOSE_WAIT).await, "account deactivated");
    // Alice's clients hear the deletions like any other.
    alice
        .expect_push(|v| is_event(v, &dm, "delete"), WAIT)
        .await;
    for conv in [&dm, &group] {
        let events = alice.full_history(conv).await;
        assert_dense(&events);
        for e in &events {
            if e["sender"] == "bob" {
                let body = e["body"].as_str().unwrap_or("");
                assert!(!body.contains("secret"), "{e}");
            }
        }
    }
    assert_eq!(alice.bodies(&dm).await.last().unwrap(), "alice stays");
    // Nothing of it is left in the server's database either.
    assert_eq!(server.events_containing("secret"), 0);
    // The account cannot be used or taken over.
    let mut p = server.connect().await;
    assert_eq!(p.login("bob", PASSWORD).await["code"], "auth_failed");
    let r = p
        .request(json!({"type":"register","username":"bob","password":PASSWORD}))
        .await;
    assert_eq!(r["code"], "username_taken");
}

/// A connection open for a long time keeps its session alive: closing it
/// refreshes the session's last use.
#[tokio::test]
async fn a_long_connection_refreshes_its_session_as_it_closes() {
    if crate::support::skip_on_postgres("ages and reads sessions in chatd.db") {
        return;
    }
    let server = Server::start_with(|c| c.auth.session_idle_days = 30);
    let a = server.user("alice").await;
    let token = a.token.clone();
    // Connected all along, while the stored last use ages 29 days.
    age_sessions(server.data_dir(), 29);
    a.close().await;
    // Two more days: without the refresh it would be 31 days idle.
    let db = rusqlite::Connection::open(server.data_dir().join("chatd.db")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let last: i64 = db
            .query_row("SELECT last_seen_at FROM sessions", [], |r| r.get(0))
            .unwrap();
        if chat::proto::now_millis() - last < 60_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refreshed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    age_sessions(server.data_dir(), 2);
    let mut p = server.connect().await;
    assert_eq!(p.auth(&token).await["type"], "ok");
}
