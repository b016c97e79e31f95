//! Device keys for raw peers (secret conversations): a vodozemac account
//! whose keys a session uploads with real signatures, and to-device
//! messages for it.

use super::Peer;
use chat::proto::keys::{certificate_text, key_text};
use serde_json::{Value, json};
use vodozemac::Ed25519Keypair;
use vodozemac::olm::Account;

/// A session's device: its id and the account that holds its keys.
pub struct Device {
    pub id: String,
    pub account: Account,
}

/// A device id (10 letters A-Z) made from `n`.
pub fn device_id(n: u64) -> String {
    let mut n = n;
    (0..10)
        .map(|_| {
            let c = (b'A' + (n % 26) as u8) as char;
            n /= 26;
            c
        })
        .collect()
}

/// A key of `user`'s device `id` as uploaded: signed by the device.
fn signed(account: &Account, user: &str, id: &str, key_id: &str, key: &str) -> Value {
    let signature = account.sign(key_text(user, id, key_id, key)).to_base64();
    json!({"key_id": key_id, "key": key, "signature": signature})
}

/// `count` new signed one-time keys of `user`'s device `id`, in key id
/// order.
pub fn one_time_keys(account: &mut Account, user: &str, id: &str, count: usize) -> Vec<Value> {
    account.generate_one_time_keys(count);
    let mut keys: Vec<Value> = account
        .one_time_keys()
        .into_iter()
        .map(|(k, v)| signed(account, user, id, &k.to_base64(), &v.to_base64()))
        .collect();
    account.mark_keys_as_published();
    keys.sort_by(|a, b| a["key_id"].as_str().cmp(&b["key_id"].as_str()));
    keys
}

/// A new signed fallback key of `user`'s device `id`.
pub fn fallback_key(account: &mut Account, user: &str, id: &str) -> Value {
    account.generate_fallback_key();
    let (k, v) = account
        .fallback_key()
        .into_iter()
        .next()
        .expect("a fallback key");
    let key = signed(account, user, id, &k.to_base64(), &v.to_base64());
    account.mark_keys_as_published();
    key
}

/// The first `keys_upload` of `user`'s device `id`: its keys, `identity`
/// and a certificate by it, `otks` one-time keys and a fallback key.
pub fn first_upload(
    account: &mut Account,
    user: &str,
    id: &str,
    identity: &Ed25519Keypair,
    otks: usize,
) -> Value {
    let curve = account.curve25519_key().to_base64();
    let ed = account.ed25519_key().to_base64();
    let cert = identity
        .sign(certificate_text(user, id, &curve, &ed).as_bytes())
        .to_base64();
    let one_time = one_time_keys(account, user, id, otks);
    let fallback = fallback_key(account, user, id);
    json!({"type":"keys_upload","device_id":id,
           "keys":{"curve25519":curve,"ed25519":ed},
           "identity_key":identity.public_key().to_base64(),
           "certificate":cert,
           "one_time_keys":one_time,
           "fallback_key":fallback})
}

/// Give `peer`'s session a new device: its keys, `identity` and a
/// certificate by it, `otks` signed one-time keys and a fallback key.
pub async fn upload(peer: &mut Peer, identity: &Ed25519Keypair, otks: usize) -> Device {
    let mut account = Account::new();
    let id = device_id(super::unique() * 7919 + 13);
    let up = first_upload(&mut account, &peer.user, &id, identity, otks);
    let r = peer.ok(up).await;
    assert_eq!(r["one_time_keys"], otks as u64, "{r}");
    Device { id, account }
}

/// A to-device message (an Olm-shaped body) for `user`'s device `id`.
pub fn message(user: &str, id: &str, n: u64) -> Value {
    json!({"user": user, "device_id": id,
           "body": {"algorithm":"olm.v1","sender_key":"k","type":0,"ciphertext": format!("c{n}")}})
}
