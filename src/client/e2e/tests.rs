//! Several users and devices talking through an in-memory stand-in for
//! chatd: it keeps uploaded keys, hands out one-time keys once, queues
//! to-device messages per device and checks a send's coverage the way
//! the agreed format says (`devices_changed` with `missing` / `extra`).

use super::lock::DeviceLock;
use super::wire::*;
use super::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

const NOW: u64 = 1_700_000_000;

struct ServerDevice {
    keys: DeviceKeys,
    certificate: Option<String>,
    otks: VecDeque<SignedKey>,
    fallback: Option<SignedKey>,
}

#[derive(Default)]
struct Server {
    devices: BTreeMap<DeviceRef, ServerDevice>,
    identity: BTreeMap<String, String>,
    inbox: BTreeMap<DeviceRef, VecDeque<(DeviceRef, OlmBody)>>,
    members: BTreeMap<String, BTreeSet<String>>,
    holders: BTreeMap<(String, String), BTreeSet<DeviceRef>>,
    log: BTreeMap<String, Vec<(String, Encrypted)>>,
}

#[derive(Debug)]
struct DevicesChanged {
    missing: Vec<DeviceRef>,
    extra: Vec<DeviceRef>,
}

impl Server {
    fn upload(&mut self, user: &str, up: KeysUpload) {
        let d = DeviceRef::new(user, &up.device_id);
        let keys = up.keys.clone().expect("device keys on every upload");
        if let Some(id) = &up.identity_key {
            if up.replace_identity {
                for (dr, sd) in self.devices.iter_mut() {
                    if dr.user == user {
                        sd.certificate = None;
                    }
                }
            }
            self.identity.insert(user.into(), id.clone());
        }
        let dev = self.devices.entry(d).or_insert(ServerDevice {
            keys: keys.clone(),
            certificate: None,
            otks: VecDeque::new(),
            fallback: None,
        });
        assert_eq!(dev.keys, keys, "device keys never change");
        if up.certificate.is_some() {
            dev.certificate = up.certificate;
        }
        // chatd checks every signature it is given.
        let ed = sign::ed25519("k", &keys.ed25519).unwrap();
        for k in up.one_time_keys.iter().chain(&up.fallback_key) {
            let text = sign::one_time_key_string(user, &up.device_id, &k.key_id, &k.key);
            sign::verify(&ed, &text, &k.signature, "otk").unwrap();
        }
        dev.otks.extend(up.one_time_keys);
        if up.fallback_key.is_some() {
            dev.fallback = up.fallback_key;
        }
    }

    fn sign(&mut self, user: &str, ks: KeysSign) {
        let d = DeviceRef::new(user, &ks.device_id);
        let dev = self.devices.get_mut(&d).unwrap();
        let id = sign::ed25519("id", &self.identity[user]).unwrap();
        let text = sign::device_certificate_string(
            user,
            &ks.device_id,
            &dev.keys.curve25519,
            &dev.keys.ed25519,
        );
        sign::verify(&id, &text, &ks.certificate, "cert").unwrap();
        dev.certificate = Some(ks.certificate);
    }

    fn query(&self, user: &str) -> QueriedUser {
        QueriedUser {
            identity_key: self.identity.get(user).cloned(),
            devices: self
                .devices
                .iter()
                .filter(|(d, _)| d.user == user)
                .map(|(d, s)| QueriedDevice {
                    device_id: d.device_id.clone(),
                    name: String::new(),
                    curve25519: s.keys.curve25519.clone(),
                    ed25519: s.keys.ed25519.clone(),
                    certificate: s.certificate.clone(),
                })
                .collect(),
        }
    }

    fn claim(&mut self, d: &DeviceRef) -> Option<ClaimedKey> {
        let dev = self.devices.get_mut(d)?;
        let (k, fallback) = match dev.otks.pop_front() {
            Some(k) => (k, false),
            None => (dev.fallback.clone()?, true),
        };
        Some(ClaimedKey {
            user: d.user.clone(),
            device_id: d.device_id.clone(),
            key_id: k.key_id,
            key: k.key,
            signature: k.signature,
            fallback,
        })
    }

    fn deliver(&mut self, from: &DeviceRef, shares: &[Share]) {
        for s in shares {
            self.inbox
                .entry(s.device())
                .or_default()
                .push_back((from.clone(), s.body.clone()));
        }
    }

    /// A send with its shares, checked for coverage as chatd does.
    fn send(
        &mut self,
        from: &DeviceRef,
        conv: &str,
        enc: &Encrypted,
        shares: &[Share],
    ) -> Result<u64, DevicesChanged> {
        let key = (conv.to_string(), enc.session_id.clone());
        let mut holding = self.holders.get(&key).cloned().unwrap_or_default();
        holding.extend(shares.iter().map(Share::device));
        let members = &self.members[conv];
        let want: BTreeSet<DeviceRef> = self
            .devices
            .keys()
            .filter(|d| members.contains(&d.user) && *d != from)
            .cloned()
            .collect();
        if holding != want {
            return Err(DevicesChanged {
                missing: want.difference(&holding).cloned().collect(),
                extra: holding.difference(&want).cloned().collect(),
            });
        }
        self.holders.insert(key, holding);
        self.deliver(from, shares);
        let log = self.log.entry(conv.into()).or_default();
        log.push((from.user.clone(), enc.clone()));
        Ok(log.len() as u64)
    }
}

struct Dev {
    c: Crypto,
    _dir: tempfile::TempDir,
}

impl Dev {
    fn new(server: &mut Server, user: &str, with_identity: bool) -> Dev {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeviceLock::acquire(&dir.path().join("lock"), Duration::ZERO).unwrap();
        let mut c = Crypto::new(user, PickleKey::random(), lock);
        if with_identity {
            c.create_identity();
        }
        let up = c.keys_upload(0, 10, false);
        server.upload(user, up);
        c.keys_uploaded();
        Dev { c, _dir: dir }
    }

    fn me(&self) -> DeviceRef {
        self.c.me()
    }

    fn refresh(&mut self, server: &Server, users: &[&str]) {
        for u in users {
            self.c.update_devices(u, &server.query(u));
        }
    }

    /// Claim keys for the devices we hold no session with.
    fn claim(&mut self, server: &mut Server, devices: &[DeviceRef]) {
        let keys: Vec<ClaimedKey> = devices.iter().filter_map(|d| server.claim(d)).collect();
        let failed = self.c.receive_claimed(&keys);
        assert!(failed.is_empty(), "{failed:?}");
    }

    /// Take every to-device message waiting; replies go out at once.
    fn pump(&mut self, server: &mut Server) -> Vec<Received> {
        let mut out = Vec::new();
        while let Some((from, body)) = server.inbox.entry(self.me()).or_default().pop_front() {
            let r = self
                .c
                .receive_to_device(&from.user, &from.device_id, &body)
                .unwrap();
            if let Received::Verification { replies, .. } = &r {
                server.deliver(&self.me(), replies);
            }
            out.push(r);
        }
        out
    }

    /// Send `text` in `conv` as the engine would: query, claim, share,
    /// recover from `devices_changed`. Returns the seq and the object.
    fn send(&mut self, server: &mut Server, conv: &str, text: &str, now: u64) -> (u64, Encrypted) {
        let members: Vec<String> = server.members[conv].iter().cloned().collect();
        let plain = MegolmPlaintext::text(conv, PlainKind::Message, text);
        for _ in 0..4 {
            let users: Vec<&str> = members.iter().map(String::as_str).collect();
            self.refresh(server, &users);
            let recipients = self.c.devices_of(&members);
            let claim = self.c.needs_claim(&recipients);
            self.claim(server, &claim);
            let out = self.c.encrypt_for(conv, &recipients, &plain, now).unwrap();
            match server.send(&self.me(), conv, &out.encrypted, &out.shares) {
                Ok(seq) => {
                    let held: Vec<DeviceRef> = out.shares.iter().map(Share::device).collect();
                    self.c
                        .shares_delivered(conv, &out.encrypted.session_id, &held);
                    return (seq, out.encrypted);
                }
                Err(dc) => {
                    self.c.devices_changed(conv, &dc.missing, &dc.extra);
                }
            }
        }
        panic!("the send never went through");
    }

    fn read(
        &mut self,
        conv: &str,
        seq: u64,
        sender: &str,
        enc: &Encrypted,
    ) -> Result<String, Undecryptable> {
        let ev = EncryptedEvent {
            conversation_id: conv,
            seq,
            sender,
            kind: PlainKind::Message,
            encrypted: enc,
        };
        self.c
            .decrypt_event(&ev)
            .map(|d| d.plaintext.body.unwrap_or_default())
    }
}

/// Verify `a` and `b` with each other through the server's inboxes.
fn verify(server: &mut Server, a: &mut Dev, b: &mut Dev) {
    a.refresh(server, &[&b.me().user]);
    b.refresh(server, &[&a.me().user]);
    a.claim(server, &[b.me()]);
    let (txn, start) = a.c.start_verification(&b.me()).unwrap();
    server.deliver(&a.me(), &[start]);
    b.pump(server); // answers with its key
    a.pump(server); // sends its key
    b.pump(server);
    let (ea, eb) = (
        a.c.verification(&txn).unwrap().emoji().unwrap(),
        b.c.verification(&txn).unwrap().emoji().unwrap(),
    );
    assert_eq!(ea, eb, "both screens show the same emoji");
    let (shares, _) = a.c.confirm_verification(&txn).unwrap();
    server.deliver(&a.me(), &shares);
    b.pump(server); // a's MAC waits for b's user to confirm
    let (shares, outcome) = b.c.confirm_verification(&txn).unwrap();
    assert_eq!(outcome.unwrap().device_id, a.me().device_id);
    server.deliver(&b.me(), &shares);
    let got = a.pump(server);
    assert!(
        got.iter().any(|r| matches!(r, Received::Verification { outcome: Some(o), .. } if o.device_id == b.me().device_id)),
        "{got:?}"
    );
    b.pump(server);
}

/// Alice with two devices (the second signed by the first after a
/// verification) and Bob with one, in a secret DM.
fn alice_two_devices_and_bob() -> (Server, Dev, Dev, Dev) {
    let mut server = Server::default();
    let mut a1 = Dev::new(&mut server, "alice", true);
    let mut a2 = Dev::new(&mut server, "alice", false);
    let b1 = Dev::new(&mut server, "bob", true);
    verify(&mut server, &mut a1, &mut a2);
    let ks = a1.c.sign_device(&a2.me().device_id).unwrap();
    server.sign("alice", ks);
    server
        .members
        .insert("dm".into(), ["alice".to_string(), "bob".to_string()].into());
    (server, a1, a2, b1)
}

#[test]
fn alices_two_devices_and_bob_exchange_room_keys_and_messages() {
    let (mut server, mut a1, mut a2, mut b1) = alice_two_devices_and_bob();
    let (seq, enc) = a1.send(&mut server, "dm", "hello bob", NOW);
    assert_eq!(enc.device_id, a1.me().device_id);
    // Before the room key is taken in: no key yet.
    assert_eq!(b1.read("dm", seq, "alice", &enc), Err(Undecryptable::NoKey));
    b1.refresh(&server, &["alice"]);
    a2.refresh(&server, &["alice", "bob"]);
    assert!(matches!(
        b1.pump(&mut server)[..],
        [Received::RoomKey { .. }]
    ));
    a2.pump(&mut server);
    assert_eq!(b1.read("dm", seq, "alice", &enc).unwrap(), "hello bob");
    assert_eq!(a2.read("dm", seq, "alice", &enc).unwrap(), "hello bob");
    // Alice reads her own message too.
    assert_eq!(a1.read("dm", seq, "alice", &enc).unwrap(), "hello bob");
    // Bob answers; both of Alice's devices read it.
    let (seq2, enc2) = b1.send(&mut server, "dm", "hi alice", NOW);
    a1.pump(&mut server);
    a2.pump(&mut server);
    assert_eq!(a1.read("dm", seq2, "bob", &enc2).unwrap(), "hi alice");
    assert_eq!(a2.read("dm", seq2, "bob", &enc2).unwrap(), "hi alice");
    // A second message reuses the session and needs no new shares.
    let (seq3, enc3) = a1.send(&mut server, "dm", "again", NOW);
    assert_eq!(enc3.session_id, enc.session_id);
    assert!(server.inbox.get(&b1.me()).is_none_or(VecDeque::is_empty));
    assert_eq!(b1.read("dm", seq3, "alice", &enc3).unwrap(), "again");
    // Alice's second device is verified by her first; its trust shows.
    let ev = EncryptedEvent {
        conversation_id: "dm",
        seq: seq2,
        sender: "bob",
        kind: PlainKind::Message,
        encrypted: &enc2,
    };
    assert_eq!(
        a2.c.decrypt_event(&ev).unwrap().trust,
        SenderTrust::Unverified
    );
    // The event's kind must match the plaintext's.
    let ev = EncryptedEvent {
        kind: PlainKind::Edit,
        ..ev
    };
    assert!(matches!(
        a1.c.decrypt_event(&ev),
        Err(Undecryptable::Malformed(_))
    ));
    // Someone else cannot pass Alice's message off as theirs.
    assert!(matches!(
        b1.read("dm", seq, "carol", &enc),
        Err(Undecryptable::Untrusted(_))
    ));
}

#[test]
fn the_session_rotates_after_a_hundred_messages_and_after_a_week() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    b1.refresh(&server, &["alice"]);
    let mut sessions = BTreeSet::new();
    let mut sent = Vec::new();
    for n in 0..=megolm::ROTATE_AFTER_MESSAGES {
        let (seq, enc) = a1.send(&mut server, "dm", &format!("m{n}"), NOW);
        sessions.insert(enc.session_id.clone());
        sent.push((seq, enc));
    }
    assert_eq!(sessions.len(), 2, "the 101st message starts a new session");
    assert_eq!(sent[99].1.session_id, sent[0].1.session_id);
    assert_ne!(sent[100].1.session_id, sent[0].1.session_id);
    b1.pump(&mut server);
    for (n, (seq, enc)) in sent.iter().enumerate() {
        assert_eq!(b1.read("dm", *seq, "alice", enc).unwrap(), format!("m{n}"));
    }
    let (_, week) = a1.send(&mut server, "dm", "later", NOW + megolm::ROTATE_AFTER_SECS);
    assert!(!sessions.contains(&week.session_id));
}

#[test]
fn a_member_leaving_starts_a_new_session_they_cannot_read() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let mut c1 = Dev::new(&mut server, "carol", true);
    server.members.insert(
        "g".into(),
        ["alice", "bob", "carol"].map(String::from).into(),
    );
    let (seq1, enc1) = a1.send(&mut server, "g", "all of us", NOW);
    for d in [&mut b1, &mut c1] {
        d.refresh(&server, &["alice"]);
        d.pump(&mut server);
        assert_eq!(d.read("g", seq1, "alice", &enc1).unwrap(), "all of us");
    }
    // Carol leaves; Alice's next send is refused for `extra` and rotates.
    server.members.get_mut("g").unwrap().remove("carol");
    let (seq2, enc2) = a1.send(&mut server, "g", "without carol", NOW);
    assert_ne!(enc2.session_id, enc1.session_id);
    b1.pump(&mut server);
    c1.pump(&mut server);
    assert_eq!(b1.read("g", seq2, "alice", &enc2).unwrap(), "without carol");
    assert_eq!(
        c1.read("g", seq2, "alice", &enc2),
        Err(Undecryptable::NoKey)
    );
}

#[test]
fn a_device_added_later_cannot_read_what_came_before() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let (seq1, enc1) = a1.send(&mut server, "dm", "before", NOW);
    let mut b2 = Dev::new(&mut server, "bob", false);
    // Until Bob's identity key certifies it, Alice withholds the key from it.
    a1.refresh(&server, &["bob"]);
    let recipients = a1.c.devices_of(&["alice".into(), "bob".into()]);
    let plain = MegolmPlaintext::text("dm", PlainKind::Message, "after");
    let err =
        a1.c.encrypt_for("dm", &recipients, &plain, NOW)
            .unwrap_err();
    assert!(
        matches!(&err, E2eError::Withheld(w) if w == &[(b2.me(), Withheld::Uncertified)]),
        "{err}"
    );
    // Bob's first device verifies the new one and signs it.
    verify(&mut server, &mut b1, &mut b2);
    let ks = b1.c.sign_device(&b2.me().device_id).unwrap();
    server.sign("bob", ks);
    let (seq2, enc2) = a1.send(&mut server, "dm", "after", NOW);
    assert_eq!(
        enc1.session_id, enc2.session_id,
        "a new device is only missing"
    );
    b2.refresh(&server, &["alice"]);
    b2.pump(&mut server);
    assert_eq!(b2.read("dm", seq2, "alice", &enc2).unwrap(), "after");
    assert_eq!(
        b2.read("dm", seq1, "alice", &enc1),
        Err(Undecryptable::BeforeJoined)
    );
}

#[test]
fn a_replayed_message_is_refused() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let (seq, enc) = a1.send(&mut server, "dm", "pay 10", NOW);
    b1.refresh(&server, &["alice"]);
    b1.pump(&mut server);
    assert_eq!(b1.read("dm", seq, "alice", &enc).unwrap(), "pay 10");
    // Reading the same event again is fine; the same ciphertext as
    // another event is a replay.
    assert_eq!(b1.read("dm", seq, "alice", &enc).unwrap(), "pay 10");
    assert_eq!(
        b1.read("dm", seq + 1, "alice", &enc),
        Err(Undecryptable::Replay)
    );
    // Unless the server lost that event and it comes again.
    b1.c.forget_events_from("dm", seq);
    assert_eq!(b1.read("dm", seq + 1, "alice", &enc).unwrap(), "pay 10");
}

#[test]
fn a_tampered_to_device_envelope_is_refused() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    a1.send(&mut server, "dm", "x", NOW);
    b1.refresh(&server, &["alice"]);
    let (from, body) = server.inbox.get_mut(&b1.me()).unwrap().pop_front().unwrap();
    // The server says another user or device sent it.
    assert!(matches!(
        b1.c.receive_to_device("bob", &from.device_id, &body),
        Err(E2eError::Envelope(_))
    ));
    assert!(
        b1.c.receive_to_device("alice", "AAAAAAAAAA", &body)
            .is_err()
    );
    // A body whose sender_key is swapped for another device's.
    let mut swapped = body.clone();
    swapped.sender_key = b1.c.device_keys().curve25519;
    assert!(
        b1.c.receive_to_device("alice", &from.device_id, &swapped)
            .is_err()
    );
    // A flipped bit in the ciphertext.
    let mut bytes = vodozemac::base64_decode(&body.ciphertext).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let mut flipped = body.clone();
    flipped.ciphertext = vodozemac::base64_encode(bytes);
    assert!(
        b1.c.receive_to_device("alice", &from.device_id, &flipped)
            .is_err()
    );
    // The genuine message still goes through afterwards.
    assert!(matches!(
        b1.c.receive_to_device("alice", &from.device_id, &body),
        Ok(Received::RoomKey { .. })
    ));
}

#[test]
fn an_envelope_signed_for_another_device_key_is_refused() {
    // Mallory's device sends a real Olm message but claims, inside, Alice's
    // device key: the known device list catches it.
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let mut m = Dev::new(&mut server, "mallory", true);
    m.refresh(&server, &["bob"]);
    b1.refresh(&server, &["alice", "mallory"]);
    m.claim(&mut server, &[b1.me()]);
    let share =
        m.c.encrypt_to_device(&b1.me(), serde_json::json!({"type":"hello"}))
            .unwrap();
    // Delivered as if Alice's device sent it.
    let err =
        b1.c.receive_to_device("alice", &a1.me().device_id, &share.body)
            .unwrap_err();
    assert!(matches!(err, E2eError::Envelope(_)), "{err}");
    let _ = &mut a1;
}

#[test]
fn a_changed_identity_key_of_an_unverified_user_is_said_and_taken() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    a1.send(&mut server, "dm", "x", NOW);
    b1.c.create_identity();
    let up = b1.c.keys_upload(0, 10, true);
    server.upload("bob", up);
    b1.c.keys_uploaded();
    let update = a1.c.update_devices("bob", &server.query("bob"));
    assert!(update.identity_changed && !update.blocking);
    assert!(
        matches!(a1.c.trust("bob"), Some(Trust::Unverified { identity_key }) if Some(identity_key.clone()) == b1.c.identity_key())
    );
    let recipients = a1.c.devices_of(&["alice".into(), "bob".into()]);
    let plain = MegolmPlaintext::text("dm", PlainKind::Message, "y");
    assert!(a1.c.encrypt_for("dm", &recipients, &plain, NOW).is_ok());
    // Seen again, the same key is no change.
    let again = a1.c.update_devices("bob", &server.query("bob"));
    assert!(!again.identity_changed && !again.blocking);
}

#[test]
fn a_changed_identity_key_of_a_verified_user_stops_sharing_until_accepted() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    a1.send(&mut server, "dm", "x", NOW);
    let held =
        a1.c.trust("bob")
            .and_then(Trust::accepted_key)
            .unwrap()
            .to_string();
    assert!(a1.c.mark_identity_verified("bob", &held));
    // Bob replaces his identity key (and signs his device again).
    b1.c.create_identity();
    let up = b1.c.keys_upload(0, 10, true);
    assert!(up.replace_identity);
    server.upload("bob", up);
    b1.c.keys_uploaded();
    let update = a1.c.update_devices("bob", &server.query("bob"));
    assert!(update.identity_changed && update.blocking);
    assert!(matches!(a1.c.trust("bob"), Some(Trust::Changed { .. })));
    let recipients = a1.c.devices_of(&["alice".into(), "bob".into()]);
    let plain = MegolmPlaintext::text("dm", PlainKind::Message, "y");
    let err =
        a1.c.encrypt_for("dm", &recipients, &plain, NOW)
            .unwrap_err();
    assert!(
        matches!(&err, E2eError::Withheld(w) if w.iter().all(|(d, r)| d.user == "bob" && *r == Withheld::IdentityChanged)),
        "{err}"
    );
    assert!(a1.c.accept_identity("bob"));
    assert!(a1.c.encrypt_for("dm", &recipients, &plain, NOW).is_ok());
}

#[test]
fn the_safety_number_is_the_same_on_both_sides() {
    let (mut server, mut a1, mut a2, mut b1) = alice_two_devices_and_bob();
    a1.refresh(&server, &["bob"]);
    a2.refresh(&server, &["alice", "bob"]);
    b1.refresh(&server, &["alice"]);
    let ab = a1.c.safety_number("bob").unwrap();
    assert_eq!(ab, b1.c.safety_number("alice").unwrap());
    // Alice's second device, which does not hold the identity key, agrees.
    assert_eq!(ab, a2.c.safety_number("bob").unwrap());
    assert_eq!(ab.groups().len(), 12);
    let _ = &mut server;
}

#[test]
fn verifying_a_device_marks_it_and_its_users_identity() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    verify(&mut server, &mut a1, &mut b1);
    assert!(a1.c.trust("bob").unwrap().is_verified());
    assert!(b1.c.trust("alice").unwrap().is_verified());
    assert!(a1.c.devices("bob")[0].verified);
    // A cancelled verification tells the other side.
    a1.claim(&mut server, &[]);
    let (txn, start) = a1.c.start_verification(&b1.me()).unwrap();
    server.deliver(&a1.me(), &[start]);
    b1.pump(&mut server);
    a1.pump(&mut server);
    b1.pump(&mut server);
    let cancel = b1.c.cancel_verification(&txn, true).unwrap();
    server.deliver(&b1.me(), &[cancel]);
    let got = a1.pump(&mut server);
    assert!(
        matches!(&got[..], [Received::Verification { cancelled: Some((code, _)), .. }] if code == "mismatched_sas"),
        "{got:?}"
    );
}

#[test]
fn the_state_survives_a_real_cache_file_and_the_lock_refuses_a_second_holder() {
    use crate::client::cache::Cache;
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bob.db");
    let lock_path = lock::lock_path_for(&path);
    let (seq1, enc1) = a1.send(&mut server, "dm", "one", NOW);
    b1.refresh(&server, &["alice"]);
    b1.pump(&mut server);
    assert_eq!(b1.read("dm", seq1, "alice", &enc1).unwrap(), "one");
    // Bob's state goes into his cache file under his key...
    let key = b1.c.key.clone();
    let device_id = b1.me().device_id;
    {
        let mut cache = Cache::open(&path).unwrap();
        assert!(!store::exists(cache.connection()).unwrap());
        let tx = cache.transaction().unwrap();
        b1.c.save(&tx).unwrap();
        tx.commit().unwrap();
        assert!(store::exists(cache.connection()).unwrap());
    }
    drop(b1);
    // ...and comes back in another process's worth of objects.
    let cache = Cache::open(&path).unwrap();
    let lock = DeviceLock::acquire(&lock_path, Duration::ZERO).unwrap();
    let second = DeviceLock::acquire(&lock_path, Duration::from_millis(100));
    assert!(matches!(second, Err(lock::LockError::Held { .. })));
    // A wrong key does not open it.
    let other_lock = tempfile::tempdir().unwrap();
    let l2 = DeviceLock::acquire(&other_lock.path().join("l"), Duration::ZERO).unwrap();
    assert!(Crypto::load(cache.connection(), PickleKey::random(), l2).is_err());
    let c = Crypto::load(cache.connection(), key.clone(), lock)
        .unwrap()
        .unwrap();
    let mut b1 = Dev { c, _dir: dir };
    assert_eq!(b1.me().device_id, device_id);
    assert!(b1.c.identity_key().is_some());
    // Old messages, new messages, replies: all still work.
    assert_eq!(b1.read("dm", seq1, "alice", &enc1).unwrap(), "one");
    assert_eq!(
        b1.read("dm", seq1 + 7, "alice", &enc1),
        Err(Undecryptable::Replay)
    );
    let (seq2, enc2) = a1.send(&mut server, "dm", "two", NOW);
    assert_eq!(b1.read("dm", seq2, "alice", &enc2).unwrap(), "two");
    let (seq3, enc3) = b1.send(&mut server, "dm", "three", NOW);
    a1.pump(&mut server);
    assert_eq!(a1.read("dm", seq3, "bob", &enc3).unwrap(), "three");
    // A second save writes only what changed, and loads again.
    let mut cache = cache;
    let tx = cache.transaction().unwrap();
    b1.c.save(&tx).unwrap();
    tx.commit().unwrap();
    let lock2 = tempfile::tempdir().unwrap();
    let l3 = DeviceLock::acquire(&lock2.path().join("l"), Duration::ZERO).unwrap();
    let mut again = Crypto::load(cache.connection(), key, l3).unwrap().unwrap();
    let ev = EncryptedEvent {
        conversation_id: "dm",
        seq: seq3,
        sender: "bob",
        kind: PlainKind::Message,
        encrypted: &enc3,
    };
    assert_eq!(again.decrypt_event(&ev).unwrap().trust, SenderTrust::Own);
    assert_eq!(
        again.shared_with("dm").unwrap().1.len(),
        2,
        "both of Alice's devices hold Bob's session"
    );
}

#[test]
fn a_key_from_an_unknown_device_waits_for_its_keys() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let (seq, enc) = a1.send(&mut server, "dm", "hi", NOW);
    // Bob never queried Alice's devices: the room key is held, but the
    // message waits until the sending device is known.
    b1.pump(&mut server);
    assert_eq!(
        b1.read("dm", seq, "alice", &enc),
        Err(Undecryptable::UnknownDevice)
    );
    b1.refresh(&server, &["alice"]);
    assert_eq!(b1.read("dm", seq, "alice", &enc).unwrap(), "hi");
}

#[test]
fn a_shared_file_travels_with_its_key_inside_the_message() {
    let (mut server, mut a1, _a2, mut b1) = alice_two_devices_and_bob();
    let bytes = b"\x89PNG not really".to_vec();
    let sealed = files::encrypt(&bytes).unwrap();
    let plain = MegolmPlaintext::file(
        "dm",
        sealed.info("diagram.png", "image/png", Some((2, 1))),
        Some("the plan".into()),
    );
    a1.refresh(&server, &["alice", "bob"]);
    let recipients = a1.c.devices_of(&["alice".into(), "bob".into()]);
    let claim = a1.c.needs_claim(&recipients);
    a1.claim(&mut server, &claim);
    let out = a1.c.encrypt_for("dm", &recipients, &plain, NOW).unwrap();
    let seq = server
        .send(&a1.me(), "dm", &out.encrypted, &out.shares)
        .unwrap();
    b1.refresh(&server, &["alice"]);
    b1.pump(&mut server);
    let ev = EncryptedEvent {
        conversation_id: "dm",
        seq,
        sender: "alice",
        kind: PlainKind::File,
        encrypted: &out.encrypted,
    };
    let got = b1.c.decrypt_event(&ev).unwrap().plaintext;
    assert_eq!(got.caption.as_deref(), Some("the plan"));
    let file = got.file.unwrap();
    assert_eq!(file.name, "diagram.png");
    // The server held only the ciphertext; the key opens it.
    let opened = files::decrypt(&sealed.ciphertext, &file.key, &file.nonce).unwrap();
    assert_eq!(opened, bytes);
}

/// Sends by the devices of three users in a group, a member leaving and
/// a device added at most once each, with every device's to-device
/// messages and log events taken in an arbitrary interleaving (some
/// twice). Events that cannot be read yet are tried again whenever a
/// room key arrives, as the engine does; at the end every device reads
/// every message sent while it was a member's device.
mod interleavings {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send(usize),
        /// Take a device's next to-device message (twice when set).
        ToDevice(usize, bool),
        /// Take a device's next log event (twice when set).
        Log(usize, bool),
        /// Carol leaves the group.
        Leave,
        /// Bob adds a device, verified and certified by his first.
        AddDevice,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..4usize).prop_map(Op::Send),
            4 => (0..4usize, prop::bool::weighted(0.2)).prop_map(|(d, t)| Op::ToDevice(d, t)),
            4 => (0..4usize, prop::bool::weighted(0.2)).prop_map(|(d, t)| Op::Log(d, t)),
            1 => Just(Op::Leave),
            1 => Just(Op::AddDevice),
        ]
    }

    struct Sent {
        seq: u64,
        sender: String,
        enc: Encrypted,
        text: String,
        /// The group's members when it was sent.
        members: BTreeSet<String>,
        /// The devices of those members then.
        readers: BTreeSet<DeviceRef>,
    }

    struct Run {
        server: Server,
        devs: Vec<Dev>,
        sent: Vec<Sent>,
        /// Per device: the next log event it takes.
        cursor: Vec<usize>,
        /// Per device: events it could not read yet.
        pending: Vec<BTreeSet<usize>>,
        left: bool,
        added: bool,
    }

    const USERS: [&str; 3] = ["alice", "bob", "carol"];

    impl Run {
        fn new() -> Run {
            let mut server = Server::default();
            let devs: Vec<Dev> = USERS
                .iter()
                .map(|u| Dev::new(&mut server, u, true))
                .collect();
            server
                .members
                .insert("g".into(), USERS.map(String::from).into());
            Run {
                server,
                cursor: vec![0; devs.len()],
                pending: vec![BTreeSet::new(); devs.len()],
                devs,
                sent: Vec::new(),
                left: false,
                added: false,
            }
        }

        fn members(&self) -> BTreeSet<String> {
            self.server.members["g"].clone()
        }

        fn apply(&mut self, op: &Op) {
            let n = self.devs.len();
            match *op {
                Op::Send(i) => self.send(i % n),
                Op::ToDevice(i, twice) => self.take_to_device(i % n, twice),
                Op::Log(i, twice) => self.log(i % n, twice),
                Op::Leave if !self.left => {
                    self.left = true;
                    self.server.members.get_mut("g").unwrap().remove("carol");
                }
                Op::AddDevice if !self.added => self.add_device(),
                Op::Leave | Op::AddDevice => {}
            }
        }

        fn send(&mut self, i: usize) {
            let members = self.members();
            if !members.contains(&self.devs[i].me().user) {
                return;
            }
            let text = format!("message {}", self.sent.len());
            let (seq, enc) = self.devs[i].send(&mut self.server, "g", &text, NOW);
            let readers = self
                .server
                .devices
                .keys()
                .filter(|d| members.contains(&d.user))
                .cloned()
                .collect();
            self.sent.push(Sent {
                seq,
                sender: self.devs[i].me().user,
                enc,
                text,
                members,
                readers,
            });
        }

        fn take_to_device(&mut self, i: usize, twice: bool) {
            let me = self.devs[i].me();
            let Some((from, body)) = self.server.inbox.entry(me).or_default().pop_front() else {
                return;
            };
            self.devs[i].refresh(&self.server, &USERS);
            let got = self.devs[i]
                .c
                .receive_to_device(&from.user, &from.device_id, &body);
            let got = got.unwrap_or_else(|e| panic!("a to-device message from {from}: {e}"));
            if twice {
                // The same message again is refused or changes nothing.
                let _ = self.devs[i]
                    .c
                    .receive_to_device(&from.user, &from.device_id, &body);
            }
            if matches!(got, Received::RoomKey { .. }) {
                self.retry(i);
            }
        }

        fn read(&mut self, i: usize, k: usize) -> Result<String, Undecryptable> {
            self.devs[i].refresh(&self.server, &USERS);
            let s = &self.sent[k];
            self.devs[i].read("g", s.seq, &s.sender, &s.enc)
        }

        fn log(&mut self, i: usize, twice: bool) {
            let user = self.devs[i].me().user;
            // The server shows a member the events of its conversations.
            while self.cursor[i] < self.sent.len()
                && !self.sent[self.cursor[i]].members.contains(&user)
            {
                self.cursor[i] += 1;
            }
            let k = self.cursor[i];
            if k >= self.sent.len() {
                return;
            }
            self.cursor[i] += 1;
            for _ in 0..if twice { 2 } else { 1 } {
                match self.read(i, k) {
                    Ok(text) => {
                        assert_eq!(text, self.sent[k].text);
                        self.pending[i].remove(&k);
                    }
                    Err(_) => {
                        self.pending[i].insert(k);
                    }
                }
            }
        }

        fn retry(&mut self, i: usize) {
            for k in self.pending[i].clone() {
                if let Ok(text) = self.read(i, k) {
                    assert_eq!(text, self.sent[k].text);
                    self.pending[i].remove(&k);
                }
            }
        }

        fn add_device(&mut self) {
            self.added = true;
            let mut b2 = Dev::new(&mut self.server, "bob", false);
            verify(&mut self.server, &mut self.devs[1], &mut b2);
            let ks = self.devs[1].c.sign_device(&b2.me().device_id).unwrap();
            self.server.sign("bob", ks);
            self.devs.push(b2);
            self.cursor.push(0);
            self.pending.push(BTreeSet::new());
            // Bob's first device took its inbox in during the verification.
            self.retry(1);
        }

        /// Everything left is delivered; every device reads what it
        /// should.
        fn finish(&mut self) {
            for i in 0..self.devs.len() {
                let me = self.devs[i].me();
                for _ in 0..10_000 {
                    if self.server.inbox.get(&me).is_none_or(VecDeque::is_empty) {
                        break;
                    }
                    self.take_to_device(i, false);
                }
                while self.cursor[i] < self.sent.len() {
                    self.log(i, false);
                }
                self.retry(i);
            }
            for (k, s) in self.sent.iter().enumerate() {
                for (i, d) in self.devs.iter().enumerate() {
                    if s.readers.contains(&d.me()) {
                        assert!(
                            !self.pending[i].contains(&k),
                            "{} never read {:?} from {}",
                            d.me(),
                            s.text,
                            s.sender
                        );
                    }
                }
            }
            for k in 0..self.sent.len() {
                for i in 0..self.devs.len() {
                    if self.sent[k].readers.contains(&self.devs[i].me()) {
                        let got = self.read(i, k);
                        assert_eq!(got.as_ref(), Ok(&self.sent[k].text), "device {i}");
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_member_device_reads_every_message_in_any_delivery_order(
            ops in prop::collection::vec(op(), 1..40)
        ) {
            let mut run = Run::new();
            for op in &ops {
                run.apply(op);
            }
            run.finish();
        }
    }
}
