//! Secret conversations over a real WebSocket: the device key directory
//! (signatures checked, one-time keys handed out once, the fallback key
//! after them), devices that go with their sessions, the per-device
//! inbox, and secret conversations (ciphertext only, shares in the same
//! write, the coverage check, session ownership, the group cap). Keys and
//! signatures are real ones, made with vodozemac. On either store.

use crate::support::keys::{self, device_id};
use crate::support::*;
use chat::proto::keys::{certificate_text, key_text};
use serde_json::{Value, json};
use std::time::Duration;
use vodozemac::Ed25519Keypair;
use vodozemac::olm::Account;

/// One logged-in session with its device keys.
struct Dev {
    peer: Peer,
    id: String,
    account: Account,
}

/// `count` signed one-time keys of `dev` (new ones).
fn one_time_keys(dev: &mut Dev, count: usize) -> Vec<Value> {
    keys::one_time_keys(&mut dev.account, &dev.peer.user, &dev.id, count)
}

/// The first upload of a device: its keys, `identity` and a certificate
/// by it, `otks` one-time keys and a fallback key.
fn first_upload(dev: &mut Dev, identity: &Ed25519Keypair, otks: usize) -> Value {
    keys::first_upload(&mut dev.account, &dev.peer.user, &dev.id, identity, otks)
}

/// `peer` with a new device, uploaded with `identity` (one-time keys and
/// a fallback key).
async fn with_device(mut peer: Peer, identity: &Ed25519Keypair, otks: usize) -> Dev {
    let keys::Device { id, account } = keys::upload(&mut peer, identity, otks).await;
    Dev { peer, id, account }
}

/// `peer` with a new device under an identity key of its own, and no
/// one-time keys.
async fn keyed(peer: Peer) -> Dev {
    with_device(peer, &Ed25519Keypair::new(), 0).await
}

/// What `keys_query` answers `peer` about `user`: identity key and devices.
async fn keys_of(peer: &mut Peer, user: &str) -> Value {
    let q = peer.ok(json!({"type":"keys_query","users":[user]})).await;
    q["users"][user].clone()
}

/// A `keys_claim` of one key of `dev`.
fn claim(dev: &Dev) -> Value {
    json!({"type":"keys_claim","devices":[dref(dev)]})
}

/// `peer` creates a secret conversation of `kind` (named or not) with
/// `members`; its id.
async fn create_secret(
    peer: &mut Peer,
    kind: &str,
    name: Option<&str>,
    members: &[&str],
) -> String {
    let mut create = json!({"type":"create","kind":kind,"members":members,"encrypted":true});
    if let Some(name) = name {
        create["name"] = json!(name);
    }
    conv_id(&peer.ok(create).await["conversation"])
}

fn dref(dev: &Dev) -> Value {
    json!({"user": dev.peer.user, "device_id": dev.id})
}

/// A share (or to-device message) for `to`.
fn share(to: &Dev, n: u64) -> Value {
    keys::message(&to.peer.user, &to.id, n)
}

/// A share for each of `to`, numbered from 1.
fn shares_to(to: &[&Dev]) -> Vec<Value> {
    to.iter().zip(1..).map(|(d, n)| share(d, n)).collect()
}

/// A `to_device` request of one message for `dev`.
fn to(dev: &Dev, n: u64) -> Value {
    json!({"type":"to_device","messages":[share(dev, n)]})
}

fn encrypted(from: &Dev, session: &str) -> Value {
    json!({"algorithm":"megolm.v1","device_id":from.id,"session_id":session,"ciphertext":"AwgAEhAbc"})
}

/// A secret send from `from` in `conv` with `session` and `shares`.
fn secret_send(from: &Dev, conv: &str, session: &str, shares: Vec<Value>) -> Value {
    json!({"type":"send","conversation_id":conv,"client_msg_id":format!("s{}", unique()),
           "body":"","encrypted":encrypted(from, session),"shares":shares})
}

fn devices_of(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["user"].as_str().unwrap_or_default().to_string(),
                        d["device_id"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn pair(dev: &Dev) -> (String, String) {
    (dev.peer.user.clone(), dev.id.clone())
}

async fn inbox(dev: &mut Dev, after: u64) -> Value {
    dev.peer
        .ok(json!({"type":"inbox","after":after,"limit":100}))
        .await
}

fn seqs(inbox: &Value) -> Vec<u64> {
    inbox["messages"]
        .as_array()
        .map(|m| m.iter().map(seq_of).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn one_time_keys_are_claimed_once_then_the_fallback_key() {
    let server = Server::start();
    let [alice, mut bob] = server.users(["alice", "bob"]).await;
    let identity = Ed25519Keypair::new();
    let alice = with_device(alice, &identity, 2).await;

    let q = bob
        .ok(json!({"type":"keys_query","users":["alice","nobody"]}))
        .await;
    let a = &q["users"]["alice"];
    assert_eq!(a["identity_key"], identity.public_key().to_base64());
    let devices = a["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["device_id"], alice.id.as_str());
    assert_eq!(devices[0]["name"], "test");
    assert_eq!(
        devices[0]["curve25519"],
        alice.account.curve25519_key().to_base64()
    );
    assert!(devices[0]["certificate"].is_string());
    assert!(
        q["users"]["nobody"]["devices"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let request = claim(&alice);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = bob.ok(request.clone()).await;
        let k = &r["keys"][0];
        assert_eq!(k["fallback"], false, "{r}");
        // The signature is the device's, over the canonical string.
        let sig =
            vodozemac::Ed25519Signature::from_base64(k["signature"].as_str().unwrap()).unwrap();
        let text = key_text(
            "alice",
            &alice.id,
            k["key_id"].as_str().unwrap(),
            k["key"].as_str().unwrap(),
        );
        alice
            .account
            .ed25519_key()
            .verify(text.as_bytes(), &sig)
            .expect("the key's signature verifies");
        ids.push(k["key_id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1], "a one-time key is handed out once");
    for _ in 0..2 {
        let r = bob.ok(request.clone()).await;
        assert_eq!(r["keys"][0]["fallback"], true, "{r}");
    }
    // An unknown device is left out.
    let r = bob
        .ok(json!({"type":"keys_claim","devices":[{"user":"alice","device_id":"ZZZZZZZZZZ"}]}))
        .await;
    assert_eq!(r["keys"], json!([]));
}

#[tokio::test]
async fn bad_signatures_and_reused_key_ids_are_refused() {
    let server = Server::start();
    let [alice, mut bob] = server.users(["alice", "bob"]).await;
    let identity = Ed25519Keypair::new();
    let mut dev = Dev {
        peer: alice,
        id: device_id(42),
        account: Account::new(),
    };
    // A certificate by another key.
    let mut up = first_upload(&mut dev, &identity, 1);
    up["identity_key"] = json!(Ed25519Keypair::new().public_key().to_base64());
    dev.peer.err(up, "invalid_argument").await;
    // A one-time key signed over something else.
    let mut up = first_upload(&mut dev, &identity, 1);
    up["one_time_keys"][0]["signature"] = json!(dev.account.sign("chat-otk-v1\nother").to_base64());
    dev.peer.err(up, "invalid_argument").await;
    // Nothing was kept.
    let q = keys_of(&mut bob, "alice").await;
    assert_eq!(q["devices"], json!([]));
    assert!(q["identity_key"].is_null());

    let up = first_upload(&mut dev, &identity, 1);
    let used = up["one_time_keys"][0].clone();
    dev.peer.ok(up).await;
    // Claimed or not, an id comes once.
    let again = json!({"type":"keys_upload","device_id":dev.id,"one_time_keys":[used]});
    dev.peer.err(again.clone(), "invalid_argument").await;
    bob.ok(claim(&dev)).await;
    dev.peer.err(again, "invalid_argument").await;
    // One session, one device; and a device's keys do not change.
    let other = json!({"type":"keys_upload","device_id":device_id(43),
                       "keys":{"curve25519":dev.account.curve25519_key().to_base64(),
                               "ed25519":dev.account.ed25519_key().to_base64()}});
    dev.peer.err(other, "invalid_argument").await;
    let fresh = Account::new();
    let changed = json!({"type":"keys_upload","device_id":dev.id,
                         "keys":{"curve25519":fresh.curve25519_key().to_base64(),
                                 "ed25519":fresh.ed25519_key().to_base64()}});
    dev.peer.err(changed, "invalid_argument").await;
    // More keys come with the ones signed by this device.
    let more = one_time_keys(&mut dev, 3);
    let r = dev
        .peer
        .ok(json!({"type":"keys_upload","device_id":dev.id,"one_time_keys":more}))
        .await;
    assert_eq!(r["one_time_keys"], 3);
}

#[tokio::test]
async fn a_device_goes_with_its_session_and_contacts_hear_of_it() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    alice.create_dm("bob").await;
    let identity = Ed25519Keypair::new();
    let laptop = server.login("alice").await;
    bob.clear_pushes();
    let mut laptop = with_device(laptop, &identity, 1).await;
    let is_devices = |v: &Value| v["type"] == "devices" && v["user"] == "alice";
    let push = bob.expect_push(is_devices, WAIT).await;
    assert_eq!(push["identity_changed"], false);
    alice.expect_push(is_devices, WAIT).await;
    // The device's inbox and keys go with it.
    let mut bob = keyed(bob).await;
    bob.peer
        .ok(json!({"type":"to_device","messages":[share(&laptop, 1)]}))
        .await;
    assert_eq!(seqs(&inbox(&mut laptop, 0).await), [1]);

    laptop.peer.ok(json!({"type":"logout"})).await;
    bob.peer.expect_push(is_devices, WAIT).await;
    let q = keys_of(&mut bob.peer, "alice").await;
    assert_eq!(q["devices"], json!([]));
    // The identity key is the user's: it stays.
    assert_eq!(q["identity_key"], identity.public_key().to_base64());
    bob.peer
        .err(
            json!({"type":"to_device","messages":[share(&laptop, 2)]}),
            "not_found",
        )
        .await;
    let r = bob.peer.ok(claim(&laptop)).await;
    assert_eq!(r["keys"], json!([]));

    // Revoking a session from another one does the same.
    let phone = server.login("alice").await;
    let phone = with_device(phone, &identity, 0).await;
    bob.peer.expect_push(is_devices, WAIT).await;
    let sessions = alice.ok(json!({"type":"sessions"})).await;
    let other = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false && s["id"].is_string())
        .map(|s| s["id"].clone())
        .unwrap();
    let _ = phone;
    alice
        .ok(json!({"type":"revoke_session","session_id":other}))
        .await;
    bob.peer.expect_push(is_devices, WAIT).await;
    let q = keys_of(&mut bob.peer, "alice").await;
    assert_eq!(q["devices"], json!([]));
}

#[tokio::test]
async fn replacing_the_identity_key_drops_certificates() {
    let server = Server::start();
    let [alice, mut bob] = server.users(["alice", "bob"]).await;
    bob.create_dm("alice").await;
    let identity = Ed25519Keypair::new();
    let mut alice = with_device(alice, &identity, 0).await;
    let new = Ed25519Keypair::new();
    let key = new.public_key().to_base64();
    alice
        .peer
        .err(
            json!({"type":"keys_upload","device_id":alice.id,"identity_key":key}),
            "invalid_argument",
        )
        .await;
    bob.clear_pushes();
    alice
        .peer
        .ok(json!({"type":"keys_upload","device_id":alice.id,"identity_key":key,"replace_identity":true}))
        .await;
    bob.expect_push(
        |v| v["type"] == "devices" && v["identity_changed"] == true,
        WAIT,
    )
    .await;
    let q = keys_of(&mut bob, "alice").await;
    assert!(q["devices"][0]["certificate"].is_null());
    // Signed again with the new key.
    let curve = alice.account.curve25519_key().to_base64();
    let ed = alice.account.ed25519_key().to_base64();
    let text = certificate_text("alice", &alice.id, &curve, &ed);
    let old = identity.sign(text.as_bytes()).to_base64();
    alice
        .peer
        .err(
            json!({"type":"keys_sign","device_id":alice.id,"certificate":old}),
            "invalid_argument",
        )
        .await;
    let cert = new.sign(text.as_bytes()).to_base64();
    alice
        .peer
        .ok(json!({"type":"keys_sign","device_id":alice.id,"certificate":cert}))
        .await;
    let q = keys_of(&mut bob, "alice").await;
    assert_eq!(q["devices"][0]["certificate"], cert);
}

#[tokio::test]
async fn the_inbox_keeps_order_is_acknowledged_and_bounded() {
    let server = Server::start_with(|c| c.limits.max_inbox_messages = 3);
    let [alice, bob] = server.users(["alice", "bob"]).await;
    // A session without keys may not send to devices.
    let mut alice = alice;
    let mut bob = keyed(bob).await;
    alice.err(to(&bob, 0), "forbidden").await;
    let mut alice = keyed(alice).await;

    alice
        .peer
        .ok(json!({"type":"to_device","messages":[share(&bob, 1), share(&bob, 2)]}))
        .await;
    for n in 1..=2u64 {
        let push = bob
            .peer
            .expect_push(|v| v["type"] == "to_device", WAIT)
            .await;
        assert_eq!(push["seq"], n);
        assert_eq!(push["sender"], "alice");
        assert_eq!(push["sender_device"], alice.id.as_str());
        assert_eq!(push["body"]["ciphertext"], format!("c{n}"));
    }
    alice.peer.ok(to(&bob, 3)).await;
    alice.peer.err(to(&bob, 4), "limit_exceeded").await;
    let page = inbox(&mut bob, 0).await;
    assert_eq!(seqs(&page), [1, 2, 3]);
    assert_eq!(page["last"], 3);
    assert_eq!(page["messages"][2]["body"]["ciphertext"], "c3");
    assert_eq!(seqs(&inbox(&mut bob, 1).await), [2, 3]);
    bob.peer.ok(json!({"type":"inbox_ack","upto":2})).await;
    assert_eq!(seqs(&inbox(&mut bob, 0).await), [3]);
    alice.peer.ok(to(&bob, 5)).await;
    let page = inbox(&mut bob, 0).await;
    assert_eq!(seqs(&page), [3, 4]);
    assert_eq!(page["last"], 4);
    // A body that is not an object, and one over 8 KiB.
    let mut bad = share(&bob, 6);
    bad["body"] = json!("text");
    alice
        .peer
        .err(
            json!({"type":"to_device","messages":[bad]}),
            "invalid_argument",
        )
        .await;
    let mut big = share(&bob, 7);
    big["body"]["ciphertext"] = json!("x".repeat(9000));
    alice
        .peer
        .err(json!({"type":"to_device","messages":[big]}), "too_large")
        .await;
}

#[tokio::test]
async fn a_to_device_message_is_pushed_to_its_device_only() {
    let server = Server::start();
    let [alice, bob] = server.users(["alice", "bob"]).await;
    let identity = Ed25519Keypair::new();
    let bob_phone = server.login("bob").await;
    let bob = with_device(bob, &identity, 0).await;
    let mut bob_phone = with_device(bob_phone, &identity, 0).await;
    // Another connection of the phone's session: the same device.
    let mut phone_again = server.device(&bob_phone.peer.token).await;
    let mut alice = keyed(alice).await;
    let mut bob = bob;
    bob.peer.clear_pushes();
    alice
        .peer
        .ok(json!({"type":"to_device","messages":[share(&bob_phone, 1)]}))
        .await;
    let is_msg = |v: &Value| v["type"] == "to_device";
    bob_phone.peer.expect_push(is_msg, WAIT).await;
    phone_again.expect_push(is_msg, WAIT).await;
    bob.peer
        .expect_no_push_matching(is_msg, Duration::from_millis(300))
        .await;
    assert!(seqs(&inbox(&mut bob, 0).await).is_empty());
}

#[tokio::test]
async fn a_secret_dm_is_another_than_the_plain_one() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let plain = alice.create_dm("bob").await;
    let create = json!({"type":"create","kind":"dm","members":["bob"],"encrypted":true});
    let secret = alice.ok(create.clone()).await["conversation"].clone();
    assert_eq!(secret["encrypted"], true);
    let secret = conv_id(&secret);
    assert_ne!(secret, plain);
    // Asking again answers the same one, from either side.
    let again = alice.ok(create).await;
    assert_eq!(conv_id(&again["conversation"]), secret);
    let theirs = bob
        .ok(json!({"type":"create","kind":"dm","members":["alice"],"encrypted":true}))
        .await;
    assert_eq!(conv_id(&theirs["conversation"]), secret);
    assert_eq!(bob.create_dm("alice").await, plain);
    // Listed with the flag; the plain one without it.
    let list = bob.ok(json!({"type":"conversations"})).await;
    for c in list["conversations"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        if id == secret {
            assert_eq!(c["encrypted"], true);
        } else {
            assert!(c.get("encrypted").is_none(), "{c}");
        }
    }
    let sync = bob.ok(json!({"type":"sync","cursors":{}})).await;
    assert!(
        sync["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == secret.as_str() && c["encrypted"] == true)
    );
    // Channels are never secret.
    alice
        .err(
            json!({"type":"create","kind":"channel","name":"general","encrypted":true}),
            "invalid_argument",
        )
        .await;
}

#[tokio::test]
async fn text_is_refused_in_a_secret_conversation_and_ciphertext_in_a_normal_one() {
    let server = Server::start();
    let [alice, mut bob] = server.users(["alice", "bob"]).await;
    let mut alice = keyed(alice).await;
    let plain = alice.peer.create_dm("bob").await;
    let secret = create_secret(&mut alice.peer, "dm", None, &["bob"]).await;
    alice
        .peer
        .err(
            json!({"type":"send","conversation_id":secret,"client_msg_id":"p1","body":"hello"}),
            "invalid_argument",
        )
        .await;
    alice
        .peer
        .err(
            secret_send(&alice, &plain, "S1", vec![]),
            "invalid_argument",
        )
        .await;
    // Text beside the ciphertext.
    let mut both = secret_send(&alice, &secret, "S1", vec![]);
    both["body"] = json!("leak");
    alice.peer.err(both, "invalid_argument").await;
    // A reaction and a file: the same.
    alice
        .peer
        .err(
            json!({"type":"react","conversation_id":secret,"client_msg_id":"r1","target_seq":1,"emoji":"👍"}),
            "invalid_argument",
        )
        .await;
    // bob has no device: a send with no shares covers everyone.
    let r = alice
        .peer
        .ok(secret_send(&alice, &secret, "S1", vec![]))
        .await;
    let seq = seq_of(&r);
    let ev = bob
        .expect_push(|v| v["type"] == "event" && v["kind"] == "message", WAIT)
        .await;
    assert_eq!(ev["body"], "");
    assert_eq!(ev["encrypted"]["session_id"], "S1");
    assert_eq!(ev["encrypted"]["device_id"], alice.id.as_str());
    let history = bob.full_history(&secret).await;
    assert_eq!(
        history.last().unwrap()["encrypted"]["ciphertext"],
        "AwgAEhAbc"
    );
    // A deletion carries no text: allowed in the clear.
    alice
        .peer
        .ok(json!({"type":"delete","conversation_id":secret,"client_msg_id":"d1","target_seq":seq}))
        .await;
    // Webhooks cannot post in one.
    let group = create_secret(&mut alice.peer, "group", Some("g"), &["bob"]).await;
    alice
        .peer
        .err(
            json!({"type":"webhook_create","conversation_id":group,"name":"hook"}),
            "forbidden",
        )
        .await;
    // The server's search never finds a secret message.
    let found = bob.ok(json!({"type":"search","query":"AwgAEhAbc"})).await;
    assert_eq!(found["hits"], json!([]));
}

/// alice, bob and carol with a device each, in the secret group alice made:
/// (alice, bob, carol, conversation).
async fn secret_group(server: &Server) -> (Dev, Dev, Dev, String) {
    let [alice, bob, carol] = server.users(["alice", "bob", "carol"]).await;
    let mut alice = keyed(alice).await;
    let bob = keyed(bob).await;
    let carol = keyed(carol).await;
    let conv = create_secret(&mut alice.peer, "group", Some("plans"), &["bob", "carol"]).await;
    (alice, bob, carol, conv)
}

#[tokio::test]
async fn a_send_must_cover_exactly_the_conversations_devices() {
    let server = Server::start();
    let (mut alice, mut bob, mut carol, conv) = secret_group(&server).await;
    let before = alice.peer.last_seq(&conv).await;

    // carol's device is missing: refused, and nothing is kept.
    let r = alice
        .peer
        .err(
            secret_send(&alice, &conv, "S1", vec![share(&bob, 1)]),
            "devices_changed",
        )
        .await;
    assert_eq!(devices_of(&r["missing"]), [pair(&carol)]);
    assert_eq!(r["extra"], json!([]));
    assert_eq!(alice.peer.last_seq(&conv).await, before);
    assert!(seqs(&inbox(&mut bob, 0).await).is_empty());

    // The exact set: written, with each share in its inbox.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", shares_to(&[&bob, &carol])))
        .await;
    assert_eq!(alice.peer.last_seq(&conv).await, before + 1);
    assert_eq!(seqs(&inbox(&mut bob, 0).await), [1]);
    let page = inbox(&mut carol, 0).await;
    assert_eq!(page["messages"][0]["sender"], "alice");
    assert_eq!(page["messages"][0]["sender_device"], alice.id.as_str());
    // The recorded shares cover the next send of the session.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", vec![]))
        .await;

    // carol leaves: her device still holds S1.
    carol
        .peer
        .ok(json!({"type":"leave","conversation_id":conv}))
        .await;
    let r = alice
        .peer
        .err(secret_send(&alice, &conv, "S1", vec![]), "devices_changed")
        .await;
    assert_eq!(devices_of(&r["extra"]), [pair(&carol)]);
    assert_eq!(r["missing"], json!([]));
    // A new session for those left.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S2", vec![share(&bob, 3)]))
        .await;
    // A share to someone who is not a member is extra too.
    let r = alice
        .peer
        .err(
            secret_send(&alice, &conv, "S3", vec![share(&bob, 4), share(&carol, 5)]),
            "devices_changed",
        )
        .await;
    assert_eq!(devices_of(&r["extra"]), [pair(&carol)]);
    assert_eq!(seqs(&inbox(&mut bob, 0).await), [1, 2]);
}

#[tokio::test]
async fn a_session_belongs_to_the_device_that_started_it() {
    let server = Server::start();
    let (alice, bob, carol, conv) = secret_group(&server).await;
    let (mut alice, mut bob) = (alice, bob);
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", shares_to(&[&bob, &carol])))
        .await;
    bob.peer
        .err(
            secret_send(&bob, &conv, "S1", shares_to(&[&alice, &carol])),
            "forbidden",
        )
        .await;
    // Claiming another device's id in the ciphertext is refused as well.
    let mut lie = secret_send(&bob, &conv, "B1", shares_to(&[&alice, &carol]));
    lie["encrypted"]["device_id"] = json!(alice.id);
    bob.peer.err(lie, "invalid_argument").await;
    bob.peer
        .ok(secret_send(&bob, &conv, "B1", shares_to(&[&alice, &carol])))
        .await;
}

#[tokio::test]
async fn a_rotated_out_session_is_forgotten_by_who_holds_it() {
    let server = Server::start();
    let (mut alice, mut bob, carol, conv) = secret_group(&server).await;
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", shares_to(&[&bob, &carol])))
        .await;
    bob.peer
        .ok(secret_send(&bob, &conv, "B1", shares_to(&[&alice, &carol])))
        .await;
    // Every holder of S1 is recorded: a send needs no shares.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", vec![]))
        .await;
    // Alice's device starts S2: what it shared of S1 is no longer kept.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S2", shares_to(&[&bob, &carol])))
        .await;
    let r = alice
        .peer
        .err(secret_send(&alice, &conv, "S1", vec![]), "devices_changed")
        .await;
    let mut missing = devices_of(&r["missing"]);
    missing.sort();
    let mut want = vec![pair(&bob), pair(&carol)];
    want.sort();
    assert_eq!(missing, want);
    // S2 is covered, and so is bob's own session: only alice's old one went.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S2", vec![]))
        .await;
    bob.peer.ok(secret_send(&bob, &conv, "B1", vec![])).await;
    // Sharing S1 anew works.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", shares_to(&[&bob, &carol])))
        .await;
}

#[tokio::test]
async fn keys_share_delivers_ahead_of_a_send() {
    let server = Server::start();
    let (mut alice, mut bob, mut carol, conv) = secret_group(&server).await;
    let share_req = |shares: Vec<Value>| json!({"type":"keys_share","conversation_id":conv,"session_id":"S1","shares":shares});
    alice.peer.ok(share_req(vec![share(&bob, 1)])).await;
    let push = bob
        .peer
        .expect_push(|v| v["type"] == "to_device", WAIT)
        .await;
    assert_eq!(push["sender"], "alice");
    alice.peer.ok(share_req(vec![share(&carol, 2)])).await;
    assert_eq!(seqs(&inbox(&mut carol, 0).await), [1]);
    // Not a member's device: refused.
    let outsider = server.user("mallory").await;
    let outsider = keyed(outsider).await;
    let r = alice
        .peer
        .err(share_req(vec![share(&outsider, 3)]), "devices_changed")
        .await;
    assert_eq!(devices_of(&r["extra"]), [pair(&outsider)]);
    // Everyone holds S1 now: a send needs no shares.
    alice
        .peer
        .ok(secret_send(&alice, &conv, "S1", vec![]))
        .await;
    // Another device may not share alice's session.
    bob.peer
        .err(
            json!({"type":"keys_share","conversation_id":conv,"session_id":"S1","shares":[share(&carol, 4)]}),
            "forbidden",
        )
        .await;
}

#[tokio::test]
async fn a_secret_group_has_at_most_100_members() {
    let server = Server::start();
    let mut alice = server.user("alice").await;
    let mut names = Vec::new();
    for i in 0..100 {
        let name = format!("m{i:03}");
        alice
            .ok(json!({"type":"admin_create_user","username":name,"password":PASSWORD}))
            .await;
        names.push(name);
    }
    let create = |members: &[String]| json!({"type":"create","kind":"group","name":"big","members":members,"encrypted":true});
    alice.err(create(&names), "limit_exceeded").await;
    let conv = conv_id(&alice.ok(create(&names[..99])).await["conversation"]);
    alice
        .err(
            json!({"type":"add_members","conversation_id":conv,"members":[names[99]]}),
            "limit_exceeded",
        )
        .await;
    // A normal group takes them all.
    alice
        .ok(json!({"type":"create","kind":"group","name":"open","members":names}))
        .await;
}
