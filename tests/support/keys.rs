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

/// Give `peer`'s session a new device: its keys, `identity` and a
/// certificate by it, `otks` signed one-time keys and a fallback key.
pub async fn upload(peer: &mut Peer, identity: &Ed25519Keypair, otks: usize) -> Device {
    let mut account = Account::new();
    let id = device_id(super::unique() * 7919 + 13);
    let user = peer.user.clone();
    let curve = account.curve25519_key().to_base64();
    let ed = account.ed25519_key().to_base64();
    let cert = identity
        .sign(certificate_text(&user, &id, &curve, &ed).as_bytes())
        .to_base64();
    let sign = |account: &Account, key_id: &str, key: &str| {
        account.sign(key_text(&user, &id, key_id, key)).to_base64()
    };
    account.generate_one_time_keys(otks);
    let one_time: Vec<Value> = account
        .one_time_keys()
        .into_iter()
        .map(|(k, v)| {
            let (k, v) = (k.to_base64(), v.to_base64());
            json!({"key_id": k, "key": v, "signature": sign(&account, &k, &v)})
        })
        .collect();
    account.generate_fallback_key();
    let fallback = account
        .fallback_key()
        .into_iter()
        .next()
        .map(|(k, v)| {
            let (k, v) = (k.to_base64(), v.to_base64());
            json!({"key_id": k, "key": v, "signature": sign(&account, &k, &v)})
        })
        .unwrap_or(Value::Null);
    account.mark_keys_as_published();
    let r = peer
        .ok(json!({"type":"keys_upload","device_id":id,
                   "keys":{"curve25519":curve,"ed25519":ed},
                   "identity_key":identity.public_key().to_base64(),
                   "certificate":cert,
                   "one_time_keys":one_time,
                   "fallback_key":fallback}))
        .await;
    assert_eq!(r["one_time_keys"], otks as u64, "{r}");
    Device { id, account }
}

/// A to-device message (an Olm-shaped body) for `user`'s device `id`.
pub fn message(user: &str, id: &str, n: u64) -> Value {
    json!({"user": user, "device_id": id,
           "body": {"algorithm":"olm.v1","sender_key":"k","type":0,"ciphertext": format!("c{n}")}})
}
