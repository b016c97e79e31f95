//! Secret conversations in the engine: this device's keys on the server,
//! its inbox of to-device messages (drained before the log is synced), the
//! device lists of the people we talk to, encrypting the outbox's entries
//! of secret conversations at send time (with the room-key shares their
//! devices need, and the recovery when the server says the devices
//! changed), and decrypting events as they are stored, with a placeholder
//! saying why for those that cannot be yet (tried again when keys arrive).
//!
//! The crypto state is saved in the cache's transactions: with the inbox
//! cursor for to-device messages, with the outbox entry for a send. The
//! command line keeps its cache in memory; its crypto state then lives in
//! the account's cache file all the same (a device is one login, and the
//! TUI and the commands share it, one process at a time).

use super::{Engine, Pending};
use crate::client::cache::{Cache, CacheError, OutboxItem, OutboxRequest};
use crate::client::e2e::wire::{MegolmPlaintext, OlmBody, PlainKind, Share};
use crate::client::e2e::{Crypto, E2eError, EncryptedEvent, Received, Trust, Undecryptable};
use crate::client::update::{DeviceLine, DevicesView, IdentityNote, Update, VerificationView};
use crate::proto::keys::{InboxMessage, InboxOk, KeysClaimOk, KeysQueryOk, KeysUploadOk};
use crate::proto::{DeviceRef, ErrorCode, Event, EventBody, OkFrame, ProtoError, Request};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// One-time keys kept waiting on the server; fewer than half starts a top-up.
const ONE_TIME_KEYS: usize = 50;
/// Inbox messages asked for per page.
const INBOX_PAGE: u32 = 200;
/// Least time between two reads of the inbox for pushed events that could
/// not be decrypted (their room key's push may have been lost on the way).
const KEY_LOOK_EVERY: Duration = Duration::from_secs(5);
/// Tries of one secret send after the server said the devices changed.
const SEND_ATTEMPTS: u32 = 4;
/// Bytes of shares a send carries itself; more go ahead in `keys_share`.
const SHARES_IN_FRAME: usize = 40 * 1024;
/// How long to wait for another process holding this device's keys.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// Users asked about in one `keys_query`.
const QUERY_USERS: usize = 100;
/// Devices claimed in one `keys_claim`.
const CLAIM_DEVICES: usize = 500;
/// What the server says of an upload carrying key ids it has seen (ids
/// are never handed out twice).
const KEY_IDS_USED: &str = "ids are never reused";
/// Meta keys of the cache holding the crypto state.
const INBOX_CURSOR: &str = "e2e_inbox_cursor";
const CREATED: &str = "e2e_created";

/// What a secret-conversation request was for.
#[derive(Debug, Clone)]
pub(super) enum SecretReq {
    /// Our own user's keys, before uploading.
    SelfQuery,
    Upload,
    Inbox,
    Ack,
    /// Device lists; `show` publishes them (`chat devices`).
    Query {
        users: Vec<String>,
        show: Option<String>,
    },
    Claim,
    /// Room keys shared ahead of a send.
    Shared {
        conv: String,
        session_id: String,
        devices: Vec<DeviceRef>,
    },
    /// A send of a secret conversation.
    Send {
        cmid: String,
        conv: String,
        session_id: String,
        devices: Vec<DeviceRef>,
    },
    /// Verification steps sent, or a device certified.
    Quiet,
}

/// The engine's secret-conversation state.
#[derive(Default)]
pub(super) struct Secret {
    crypto: Option<Crypto>,
    /// Where the crypto state is kept when the cache is in memory.
    store: Option<Cache>,
    /// Why secret conversations cannot be used here (said on use).
    unavailable: Option<String>,
    /// The server keeps keys (`None`: not known yet on this connection).
    supported: Option<bool>,
    draining: bool,
    /// A `keys_upload` is in flight.
    uploading: bool,
    /// Sync once the inbox is drained.
    sync_after: bool,
    inbox_cursor: u64,
    /// The highest seq pushed while draining.
    pushed: u64,
    /// When the inbox was last read for a pushed event that could not be
    /// decrypted.
    key_look: Option<tokio::time::Instant>,
    /// Users whose device lists are current on this connection.
    fresh: HashSet<String>,
    querying: HashSet<String>,
    /// Devices claimed on this connection (a device with no key left is
    /// not claimed again and again).
    claimed: HashSet<DeviceRef>,
    claiming: bool,
    /// Sends waiting for device lists or keys.
    waiting: BTreeSet<String>,
    attempts: HashMap<String, u32>,
    /// When this device's keys were made (ms): older events whose key
    /// never came were sent before it joined.
    created: u64,
    /// Verifications asked for, waiting for a device list or an Olm session.
    verify_next: Vec<VerifyAsk>,
    /// The next upload replaces our user's identity key on the server.
    replace_identity: bool,
    /// The user asked for a new identity key: said once it is up.
    resetting: bool,
}

/// A verification asked for and not started yet.
#[derive(Debug, Clone)]
struct VerifyAsk {
    user: String,
    device_id: Option<String>,
    /// The user's devices were asked for once for it.
    queried: bool,
    /// A key of the device was claimed once for it.
    claimed: bool,
}

/// The placeholder shown for an event that cannot be decrypted.
pub fn placeholder(why: &str) -> String {
    format!("🔒 not decrypted: {why}")
}

fn plain_kind(body: &EventBody) -> Option<PlainKind> {
    Some(match body {
        EventBody::Message { .. } => PlainKind::Message,
        EventBody::Edit { .. } => PlainKind::Edit,
        EventBody::Reaction { .. } => PlainKind::Reaction,
        EventBody::File { .. } => PlainKind::File,
        _ => return None,
    })
}

/// Put what the plaintext says into the event's body (the ciphertext stays).
fn fill_body(body: &mut EventBody, plain: &MegolmPlaintext) {
    match body {
        EventBody::Message { body, .. } | EventBody::Edit { body, .. } => {
            *body = plain.body.clone().unwrap_or_default();
        }
        EventBody::Reaction { emoji, .. } => *emoji = plain.emoji.clone().unwrap_or_default(),
        EventBody::File { file, caption, .. } => {
            if let Some(f) = &plain.file {
                file.name = f.name.clone();
                file.media_type = f.media_type.clone();
                file.width = f.width;
                file.height = f.height;
                file.key = Some(Box::new(crate::proto::FileKey {
                    key: f.key.clone(),
                    nonce: f.nonce.clone(),
                }));
            }
            *caption = plain.caption.clone();
        }
        _ => {}
    }
}

/// Put a placeholder saying `why` into the event's body.
fn fill_placeholder(body: &mut EventBody, why: &str) {
    match body {
        EventBody::Message { body, .. } | EventBody::Edit { body, .. } => *body = placeholder(why),
        EventBody::Reaction { emoji, .. } => *emoji = "🔒".into(),
        EventBody::File { caption, .. } => *caption = Some(placeholder(why)),
        _ => {}
    }
}

fn short(err: &E2eError) -> String {
    err.to_string()
}

impl Engine {
    fn key_cache(&mut self) -> Option<&mut Cache> {
        match self.secret.store.as_mut() {
            Some(s) => Some(s),
            None => self.cache.as_mut(),
        }
    }

    /// Save what changed of the crypto state, with `with` in the same
    /// transaction (on the cache that holds the crypto state).
    fn save_keys(&mut self, with: impl FnOnce(&rusqlite::Connection) -> Result<(), CacheError>) {
        let store = match self.secret.store.as_mut() {
            Some(s) => s,
            None => match self.cache.as_mut() {
                Some(c) => c,
                None => return,
            },
        };
        let Some(crypto) = self.secret.crypto.as_mut() else {
            return;
        };
        let result = (|| -> Result<(), String> {
            let tx = store.transaction().map_err(|e| e.to_string())?;
            with(&tx).map_err(|e| e.to_string())?;
            crypto.save(&tx).map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            crypto.mark_all_dirty();
            tracing::error!("saving the secret-conversation keys: {e}");
            self.notice(format!("cannot save the secret-conversation keys: {e}"));
        }
    }

    /// Open this account's crypto state (made for a new device).
    fn open_crypto(&mut self) -> Result<(), String> {
        let Some(user) = self.me.clone() else {
            return Err("not logged in".into());
        };
        if self
            .secret
            .crypto
            .as_ref()
            .is_some_and(|c| c.user() == user)
        {
            return Ok(());
        }
        self.secret.crypto = None;
        self.secret.store = None;
        let path = self.paths.cache_path(&self.server, &user);
        if self.memory_cache {
            let mut store = Cache::open(&path).map_err(|e| e.to_string())?;
            store.set_me(&user).map_err(|e| e.to_string())?;
            self.secret.store = Some(store);
        }
        let lock = crate::client::e2e::lock::lock_path_for(&path);
        let server = self.server.clone();
        let tokens = self.tokens.clone();
        let Some(cache) = self.key_cache() else {
            return Err("no local cache".into());
        };
        let fresh = !crate::client::e2e::store::exists(cache.connection()).unwrap_or(false);
        let crypto = Crypto::open(
            cache.connection(),
            &lock,
            LOCK_WAIT,
            &tokens,
            &user,
            &server,
        )
        .map_err(|e| e.to_string())?;
        let cursor = cache
            .meta(INBOX_CURSOR)
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let created = cache
            .meta(CREATED)
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok());
        self.secret.crypto = Some(crypto);
        self.secret.inbox_cursor = cursor;
        let now = crate::proto::now_millis().max(0) as u64;
        self.secret.created = created.unwrap_or(now);
        if fresh || created.is_none() {
            self.save_keys(|tx| {
                crate::client::cache::set_meta_in(tx, CREATED, &now.to_string())?;
                crate::client::cache::set_meta_in(tx, INBOX_CURSOR, "0")
            });
            self.secret.inbox_cursor = 0;
        }
        Ok(())
    }

    /// After (re)connecting: open the keys, make sure the server has them,
    /// drain the inbox, then sync. Without keys support, sync at once.
    pub(super) fn secret_start(&mut self) {
        let s = &mut self.secret;
        s.fresh.clear();
        s.querying.clear();
        s.claimed.clear();
        s.claiming = false;
        s.waiting.clear();
        s.verify_next.clear();
        s.supported = None;
        s.draining = false;
        s.uploading = false;
        if let Err(e) = self.open_crypto() {
            tracing::warn!("secret conversations unavailable: {e}");
            self.secret.unavailable = Some(e);
            return self.sync();
        }
        self.secret.unavailable = None;
        self.secret.sync_after = true;
        // Changes not accepted in an earlier run are still in force: said
        // again so that the conversations with those users warn.
        let changed = self
            .secret
            .crypto
            .as_ref()
            .map(|c| c.changed_identities())
            .unwrap_or_default();
        for (user, blocking) in changed {
            self.dirty.updates.push(Update::Identity {
                user,
                note: IdentityNote::changed(blocking),
            });
        }
        let me = self.me.clone().unwrap_or_default();
        self.secret_request(Request::KeysQuery { users: vec![me] }, SecretReq::SelfQuery);
        // The inbox does not wait for the keys: asked for at once, the
        // sync follows one round trip after connecting, not three (the
        // query, the upload, then the inbox). To-device messages pushed
        // meanwhile wait for the drain, so none is passed over.
        self.drain_inbox();
    }

    fn secret_request(&mut self, req: Request, what: SecretReq) {
        self.request(req, Pending::Secret(what));
    }

    /// The connection went down: requests in flight are lost.
    pub(super) fn secret_disconnected(&mut self) {
        self.secret.supported = None;
        self.secret.draining = false;
        self.secret.uploading = false;
        self.secret.querying.clear();
        self.secret.claiming = false;
    }

    fn upload_keys(&mut self, unclaimed: usize) {
        let Some(crypto) = self.secret.crypto.as_mut() else {
            return;
        };
        let up = crypto.keys_upload(unclaimed, ONE_TIME_KEYS, self.secret.replace_identity);
        self.secret.uploading = true;
        // The new one-time keys are kept before they go up.
        self.save_keys(|_| Ok(()));
        self.secret_request(Request::KeysUpload(up), SecretReq::Upload);
    }

    /// Ask the server how many one-time keys this device has left (an
    /// upload of nothing new, or a new fallback key); the answer tops
    /// them up.
    fn check_keys(&mut self) {
        if self.secret.supported == Some(true) && !self.secret.uploading {
            self.upload_keys(ONE_TIME_KEYS);
        }
    }

    fn drain_inbox(&mut self) {
        self.secret.draining = true;
        let after = self.secret.inbox_cursor;
        self.secret_request(
            Request::Inbox {
                after: Some(after),
                limit: Some(INBOX_PAGE),
            },
            SecretReq::Inbox,
        );
    }

    fn drained(&mut self) {
        self.secret.draining = false;
        if std::mem::take(&mut self.secret.sync_after) {
            self.sync();
        }
        self.retry_undecrypted(None);
        self.send_outbox();
    }

    pub(super) fn on_secret_reply(&mut self, what: SecretReq, result: Result<OkFrame, ProtoError>) {
        let disconnected = result.as_ref().is_err_and(|e| {
            e.code == ErrorCode::Internal && e.message == crate::client::net::task::NOT_CONNECTED
        });
        match (what, result) {
            (SecretReq::SelfQuery, Ok(ok)) => {
                self.secret.supported = Some(true);
                let me = self.me.clone().unwrap_or_default();
                let mine = ok
                    .parse::<KeysQueryOk>()
                    .ok()
                    .and_then(|mut q| q.users.remove(&me))
                    .unwrap_or_default();
                // A device the server does not list holds no keys there
                // yet: its first upload carries a full set of one-time
                // keys instead of first asking how many are left.
                let listed = self
                    .secret
                    .crypto
                    .as_ref()
                    .is_some_and(|c| mine.devices.iter().any(|d| d.device_id == c.device_id()));
                if let Some(c) = self.secret.crypto.as_mut() {
                    // The user's first device makes the identity key.
                    if mine.identity_key.is_none() && c.identity_key().is_none() {
                        c.create_identity();
                    }
                    // A new key made here whose upload did not complete
                    // (only an unpublished key goes up with the next one).
                    self.secret.replace_identity = mine.identity_key.is_some()
                        && c.identity_key().is_some()
                        && mine.identity_key != c.identity_key();
                    c.update_devices(&me, &mine);
                }
                self.secret.fresh.insert(me);
                self.upload_keys(if listed { ONE_TIME_KEYS } else { 0 });
            }
            (SecretReq::SelfQuery, Err(e)) => {
                if !disconnected {
                    // A server (or store) without secret conversations.
                    // The inbox's answer, asked for beside, starts the sync.
                    tracing::info!("no secret conversations on this server: {e}");
                    self.secret.supported = Some(false);
                    self.secret.unavailable = Some(e.message);
                }
            }
            (SecretReq::Upload, Ok(ok)) => {
                self.secret.uploading = false;
                self.secret.replace_identity = false;
                if let Some(c) = self.secret.crypto.as_mut() {
                    c.keys_uploaded();
                }
                self.save_keys(|_| Ok(()));
                if std::mem::take(&mut self.secret.resetting) {
                    self.notice(
                        "your new identity key is in place: verify your other devices again (`chat verify --incoming` on each), and tell your contacts to compare safety numbers",
                    );
                    let me = self.me.clone().unwrap_or_default();
                    self.dirty.updates.push(Update::Identity {
                        user: me,
                        note: IdentityNote::Verified,
                    });
                }
                let count = ok.parse::<KeysUploadOk>().map_or(0, |k| k.one_time_keys) as usize;
                if count < ONE_TIME_KEYS / 2 {
                    self.upload_keys(count);
                }
            }
            (SecretReq::Upload, Err(e))
                if e.code == ErrorCode::InvalidArgument && e.message.contains(KEY_IDS_USED) =>
            {
                // An earlier upload of these keys went through and its
                // answer was lost: the server has them. Send nothing
                // again; an empty upload tells how many are left.
                tracing::info!("keys uploaded before: {e}");
                self.secret.uploading = false;
                if let Some(c) = self.secret.crypto.as_mut() {
                    c.keys_uploaded();
                }
                self.upload_keys(ONE_TIME_KEYS);
            }
            (SecretReq::Upload, Err(e)) => {
                self.secret.uploading = false;
                if !disconnected {
                    tracing::warn!("keys upload refused: {e}");
                    self.secret.unavailable = Some(format!(
                        "the server refused this device's keys: {}",
                        e.message
                    ));
                }
            }
            (SecretReq::Inbox, Ok(ok)) => match ok.parse::<InboxOk>() {
                Ok(page) => self.on_inbox_page(page),
                Err(e) => {
                    tracing::warn!("bad inbox reply: {e}");
                    self.drained();
                }
            },
            (SecretReq::Inbox, Err(e)) => {
                if !disconnected {
                    if self.secret.supported == Some(false) {
                        tracing::debug!("inbox: {e}");
                    } else {
                        tracing::warn!("inbox: {e}");
                    }
                    self.drained();
                }
            }
            (SecretReq::Query { users, show }, result) => {
                for u in &users {
                    self.secret.querying.remove(u);
                }
                match result.and_then(|ok| {
                    ok.parse::<KeysQueryOk>()
                        .map_err(|e| ProtoError::new(ErrorCode::Internal, e.to_string()))
                }) {
                    Ok(q) => self.on_devices(q, show),
                    Err(e) => {
                        if let Some(u) = show {
                            self.dirty.updates.push(Update::Devices(DevicesView {
                                user: u,
                                error: Some(e.message.clone()),
                                ..DevicesView::default()
                            }));
                        }
                        tracing::warn!("keys query: {e}");
                    }
                }
                self.drive_waiting();
            }
            (SecretReq::Claim, result) => {
                self.secret.claiming = false;
                if let Ok(k) = result.and_then(|ok| {
                    ok.parse::<KeysClaimOk>()
                        .map_err(|e| ProtoError::new(ErrorCode::Internal, e.to_string()))
                }) && let Some(c) = self.secret.crypto.as_mut()
                {
                    for (d, e) in c.receive_claimed(&k.keys) {
                        tracing::warn!(device = %d, "claimed key refused: {e}");
                    }
                    self.save_keys(|_| Ok(()));
                }
                self.drive_waiting();
            }
            (
                SecretReq::Shared {
                    conv,
                    session_id,
                    devices,
                },
                Ok(_),
            ) => {
                if let Some(c) = self.secret.crypto.as_mut() {
                    c.shares_delivered(&conv, &session_id, &devices);
                }
                self.save_keys(|_| Ok(()));
            }
            (SecretReq::Shared { .. }, Err(e)) => tracing::warn!("keys share: {e}"),
            (
                SecretReq::Send {
                    cmid,
                    conv,
                    session_id,
                    devices,
                },
                result,
            ) => self.on_secret_sent(cmid, conv, session_id, devices, result),
            (SecretReq::Ack | SecretReq::Quiet, Err(e)) if !disconnected => {
                tracing::warn!("secret request: {e}")
            }
            (SecretReq::Ack | SecretReq::Quiet, _) => {}
        }
    }

    fn on_inbox_page(&mut self, page: InboxOk) {
        let mut upto = self.secret.inbox_cursor;
        let mut rekeyed = BTreeSet::new();
        for m in page.messages {
            upto = upto.max(m.seq);
            if let Some(conv) = self.take_to_device(m) {
                rekeyed.insert(conv);
            }
        }
        let more = upto < page.last || self.secret.pushed > upto;
        if upto > self.secret.inbox_cursor {
            self.secret.inbox_cursor = upto;
            self.save_keys(|tx| {
                crate::client::cache::set_meta_in(tx, INBOX_CURSOR, &upto.to_string())
            });
            self.secret_request(Request::InboxAck { upto }, SecretReq::Ack);
        }
        for conv in &rekeyed {
            self.retry_undecrypted(Some(conv));
        }
        if more && upto > 0 {
            self.drain_inbox();
        } else {
            self.drained();
        }
    }

    /// A `to_device` push.
    pub(super) fn on_to_device(&mut self, m: InboxMessage) {
        if m.seq <= self.secret.inbox_cursor || self.secret.crypto.is_none() {
            return;
        }
        // An inbox numbers its messages without holes: a push past the
        // next one means one was missed on the way (a bus between nodes
        // drops what it cannot deliver). Acknowledging this one would have
        // the server drop the missed one unread, with the room key it may
        // carry: read the inbox from the cursor instead.
        let missed = m.seq > self.secret.inbox_cursor + 1;
        if self.secret.draining || missed {
            self.secret.pushed = self.secret.pushed.max(m.seq);
            if !self.secret.draining {
                self.drain_inbox();
            }
            return;
        }
        let seq = m.seq;
        let rekeyed = self.take_to_device(m);
        self.secret.inbox_cursor = seq;
        self.save_keys(|tx| crate::client::cache::set_meta_in(tx, INBOX_CURSOR, &seq.to_string()));
        self.secret_request(Request::InboxAck { upto: seq }, SecretReq::Ack);
        if let Some(conv) = rekeyed {
            self.retry_undecrypted(Some(&conv));
        }
    }

    /// A `devices` push: that user's list is asked for again.
    pub(super) fn on_devices_push(&mut self, user: String, identity_changed: bool) {
        // The change itself is said once the new list is read (`on_devices`).
        let _ = identity_changed;
        self.secret.fresh.remove(&user);
        if self.secret.crypto.is_some() && self.secret.supported == Some(true) {
            self.query_users(vec![user], None);
        }
    }

    /// Handle one to-device message; the conversation whose key it carried.
    fn take_to_device(&mut self, m: InboxMessage) -> Option<String> {
        let crypto = self.secret.crypto.as_mut()?;
        let body: OlmBody = match serde_json::from_value(m.body) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(sender = %m.sender, "a to-device message that does not parse: {e}");
                return None;
            }
        };
        let received = crypto.receive_to_device(&m.sender, &m.sender_device, &body);
        if received.is_ok() && body.message_type == 0 {
            // A new Olm session took one of our one-time keys (or the
            // fallback key): see how many are left.
            self.check_keys();
        }
        match received {
            Ok(Received::RoomKey {
                conversation_id, ..
            }) => Some(conversation_id),
            Ok(Received::Verification {
                transaction_id,
                from,
                replies,
                outcome,
                cancelled,
            }) => {
                self.on_verification_step(
                    transaction_id,
                    from,
                    replies,
                    outcome.is_some(),
                    cancelled,
                );
                None
            }
            Ok(Received::Identity { from }) => {
                self.save_keys(|_| Ok(()));
                self.notice(format!(
                    "this device is linked: it holds your identity key now (from {})",
                    crate::client::text::clean(&from.device_id)
                ));
                self.dirty.updates.push(Update::Identity {
                    user: from.user,
                    note: IdentityNote::Verified,
                });
                None
            }
            Ok(Received::Other { .. }) => None,
            Err(e) => {
                tracing::warn!(sender = %m.sender, device = %m.sender_device, "a to-device message not decrypted: {e}");
                // The sender's keys may be new to us.
                if !self.secret.fresh.contains(&m.sender) {
                    self.query_users(vec![m.sender], None);
                }
                None
            }
        }
    }

    fn query_users(&mut self, users: Vec<String>, show: Option<String>) {
        let users: Vec<String> = users
            .into_iter()
            .filter(|u| show.is_some() || !self.secret.querying.contains(u))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in users.chunks(QUERY_USERS) {
            for u in chunk {
                self.secret.querying.insert(u.clone());
            }
            self.secret_request(
                Request::KeysQuery {
                    users: chunk.to_vec(),
                },
                SecretReq::Query {
                    users: chunk.to_vec(),
                    show: show.clone(),
                },
            );
        }
    }

    fn on_devices(&mut self, q: KeysQueryOk, show: Option<String>) {
        let Some(crypto) = self.secret.crypto.as_mut() else {
            return;
        };
        let mut changed = Vec::new();
        for (user, keys) in &q.users {
            let update = crypto.update_devices(user, keys);
            if update.identity_changed {
                changed.push((user.clone(), update.blocking));
            }
            for (device, why) in &update.rejected {
                tracing::warn!(user = %user, device = %device, "device left out: {why}");
            }
            self.secret.fresh.insert(user.clone());
        }
        self.save_keys(|_| Ok(()));
        for (u, blocking) in changed {
            let name = crate::client::text::clean(&u);
            self.notice(if blocking {
                format!(
                    "{name}'s identity key changed and you had verified it: nothing is sent to them until you compare safety numbers again (`/safety {name}`) and accept it (`/accept {name}`)"
                )
            } else {
                format!(
                    "{name}'s identity key changed (a new device setup or someone else): compare safety numbers (`/safety {name}`)"
                )
            });
            self.dirty.updates.push(Update::Identity {
                user: u,
                note: IdentityNote::changed(blocking),
            });
        }
        if let Some(user) = show {
            let view = self.devices_view(&user);
            self.dirty.updates.push(Update::Devices(view));
        }
        // Senders whose devices were unknown can be checked now.
        self.retry_undecrypted(None);
    }

    fn devices_view(&self, user: &str) -> DevicesView {
        let Some(c) = self.secret.crypto.as_ref() else {
            return DevicesView {
                user: user.to_string(),
                error: self.secret.unavailable.clone(),
                ..DevicesView::default()
            };
        };
        let trust = match c.trust(user) {
            None => "no identity key".to_string(),
            Some(Trust::Unverified { .. }) => "unverified".to_string(),
            Some(Trust::Verified { .. }) => "verified".to_string(),
            Some(Trust::Changed { .. }) => "identity key CHANGED (not accepted)".to_string(),
        };
        let mut devices: Vec<DeviceLine> = c
            .devices(user)
            .iter()
            .map(|d| DeviceLine {
                device_id: d.device_id.clone(),
                name: d.name.clone().unwrap_or_default(),
                fingerprint: fingerprint(&d.ed25519),
                certified: d.certified,
                verified: d.verified,
                this_device: user == c.user() && d.device_id == c.device_id(),
            })
            .collect();
        if user == c.user() && !devices.iter().any(|d| d.this_device) {
            devices.push(DeviceLine {
                device_id: c.device_id().to_string(),
                name: String::new(),
                fingerprint: fingerprint(&c.device_keys().ed25519),
                certified: c.identity_key().is_some(),
                verified: true,
                this_device: true,
            });
        }
        DevicesView {
            user: user.to_string(),
            identity_key: c.trust(user).and_then(Trust::accepted_key).map(fingerprint),
            trust,
            safety_number: (user != c.user())
                .then(|| c.safety_number(user).map(|n| n.groups().join(" ")))
                .flatten(),
            devices,
            error: None,
        }
    }

    /// Why this device cannot use its keys now (`None`: it can).
    fn not_ready(&self) -> Option<String> {
        if self.secret.crypto.is_some() && self.secret.supported == Some(true) {
            return None;
        }
        Some(
            self.secret
                .unavailable
                .clone()
                .unwrap_or_else(|| "this device's keys are not ready yet".into()),
        )
    }

    /// `chat devices` / `chat safety`: ask for `user`'s devices and
    /// publish them with the safety number.
    pub(super) fn show_devices(&mut self, user: String) {
        if let Some(why) = self.not_ready() {
            self.dirty.updates.push(Update::Devices(DevicesView {
                user,
                error: Some(why),
                ..DevicesView::default()
            }));
            return;
        }
        self.query_users(vec![user.clone()], Some(user));
    }

    /// Ask for the device lists of `users` not current yet.
    pub(super) fn refresh_devices(&mut self, users: Vec<String>) {
        if self.secret.crypto.is_none() || self.secret.supported != Some(true) {
            return;
        }
        let stale: Vec<String> = users
            .into_iter()
            .filter(|u| !self.secret.fresh.contains(u))
            .collect();
        if !stale.is_empty() {
            self.query_users(stale, None);
        }
    }

    /// Whether device lists are being asked for.
    pub(super) fn devices_pending(&self) -> bool {
        !self.secret.querying.is_empty()
    }

    // --- receiving ---------------------------------------------------------

    /// Decrypt the events of secret conversations in place; returns those
    /// that could not be, with why.
    pub(super) fn decrypt_events(&mut self, events: &mut [Event]) -> Vec<(String, u64, String)> {
        let mut failed = Vec::new();
        let mut unknown = BTreeSet::new();
        let mut touched = false;
        for ev in events.iter_mut() {
            let Some(enc) = ev.body.encrypted().cloned() else {
                continue;
            };
            let Some(kind) = plain_kind(&ev.body) else {
                continue;
            };
            let result = match self.secret.crypto.as_mut() {
                Some(c) => {
                    touched = true;
                    c.decrypt_event(&EncryptedEvent {
                        conversation_id: &ev.conversation_id,
                        seq: ev.seq,
                        sender: &ev.sender,
                        kind,
                        encrypted: &enc,
                    })
                }
                None => Err(Undecryptable::NoKey),
            };
            match result {
                Ok(d) => fill_body(&mut ev.body, &d.plaintext),
                Err(u) => {
                    let u = match u {
                        Undecryptable::NoKey
                            if ev.ts >= 0 && (ev.ts as u64) < self.secret.created =>
                        {
                            Undecryptable::BeforeJoined
                        }
                        Undecryptable::UnknownDevice => {
                            unknown.insert(ev.sender.clone());
                            u
                        }
                        u => u,
                    };
                    let why = u.to_string();
                    fill_placeholder(&mut ev.body, &why);
                    failed.push((ev.conversation_id.clone(), ev.seq, why));
                }
            }
        }
        if touched {
            self.save_keys(|_| Ok(()));
        }
        let unknown: Vec<String> = unknown
            .into_iter()
            .filter(|u| !self.secret.fresh.contains(u))
            .collect();
        if !unknown.is_empty() && self.secret.supported == Some(true) {
            self.query_users(unknown, None);
        }
        failed
    }

    /// A pushed event could not be decrypted: its room key may be in the
    /// inbox, its own push lost on the way (the bus between nodes drops
    /// what it cannot deliver), with no later push to show the hole. Read
    /// the inbox, at most once per [`KEY_LOOK_EVERY`]: what other users
    /// send cannot make this device spend its request budget.
    pub(super) fn look_for_keys(&mut self) {
        if self.secret.supported != Some(true) || self.secret.draining {
            return;
        }
        let now = tokio::time::Instant::now();
        if self
            .secret
            .key_look
            .is_some_and(|at| now.duration_since(at) < KEY_LOOK_EVERY)
        {
            return;
        }
        self.secret.key_look = Some(now);
        self.drain_inbox();
    }

    /// Note events stored with a placeholder, to try them again later.
    pub(super) fn note_undecrypted(&mut self, failed: &[(String, u64, String)]) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        for (conv, seq, why) in failed {
            if let Err(e) = cache.mark_undecrypted(conv, *seq, why) {
                tracing::warn!("cache: {e}");
            }
        }
    }

    /// Try the undecrypted events (of `conv`, or all) again.
    pub(super) fn retry_undecrypted(&mut self, conv: Option<&str>) {
        if self.secret.crypto.is_none() {
            return;
        }
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let mut events = match cache.undecrypted(conv) {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => return,
            Err(e) => return self.cache_error(e),
        };
        let failed = self.decrypt_events(&mut events);
        let failed: HashMap<(String, u64), String> =
            failed.into_iter().map(|(c, s, w)| ((c, s), w)).collect();
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let mut changed = false;
        for ev in &events {
            let key = (ev.conversation_id.clone(), ev.seq);
            let r = match failed.get(&key) {
                Some(why) => cache.mark_undecrypted(&ev.conversation_id, ev.seq, why),
                None => {
                    changed = true;
                    cache.set_decrypted(&ev.conversation_id, ev.seq, &ev.body)
                }
            };
            if let Err(e) = r {
                tracing::warn!("cache: {e}");
            }
        }
        if changed {
            self.dirty.list = true;
            self.dirty.messages = true;
            // Followers see the text when they get to these events.
        }
    }

    // --- sending -----------------------------------------------------------

    /// Whether `conv` is a secret conversation (as the cache knows it).
    pub(super) fn is_secret(&self, conv: &str) -> bool {
        self.cache
            .as_ref()
            .and_then(|c| c.conversation(conv).ok().flatten())
            .is_some_and(|c| c.encrypted)
    }

    fn drive_waiting(&mut self) {
        self.try_verifications();
        if self.secret.waiting.is_empty() {
            return;
        }
        for cmid in std::mem::take(&mut self.secret.waiting) {
            self.outbox_inflight.remove(&cmid);
        }
        self.send_outbox();
    }

    fn secret_fail(&mut self, cmid: &str, conv: &str, message: String) {
        self.outbox_inflight.remove(cmid);
        self.secret.waiting.remove(cmid);
        self.secret.attempts.remove(cmid);
        if let Some(cache) = self.cache.as_mut()
            && let Err(e) = cache.outbox_mark_failed(cmid, &message)
        {
            self.cache_error(e);
        }
        self.notice(message.clone());
        self.dirty.updates.push(Update::Refused {
            client_msg_id: cmid.to_string(),
            conv: conv.to_string(),
            error: ProtoError::new(ErrorCode::Forbidden, message),
        });
        self.dirty.messages = true;
        self.dirty.list = true;
    }

    /// Send an outbox entry of a secret conversation (already marked in
    /// flight): its members' devices are asked for, keys claimed, the
    /// message encrypted and sent with the room keys its devices need.
    pub(super) fn secret_send(&mut self, item: OutboxItem) {
        let cmid = item.client_msg_id.clone();
        let conv = item.conversation_id.clone();
        if let Some(why) = self.secret.unavailable.clone() {
            return self.secret_fail(
                &cmid,
                &conv,
                format!("not sent: secret conversations are not available here: {why}"),
            );
        }
        if self.secret.supported != Some(true) || self.secret.draining {
            // Still starting: the next tick tries again.
            self.outbox_inflight.remove(&cmid);
            return;
        }
        let plaintext = match &item.request {
            OutboxRequest::Send { body, .. } => {
                MegolmPlaintext::text(&conv, PlainKind::Message, body)
            }
            OutboxRequest::Edit { body, .. } => MegolmPlaintext::text(&conv, PlainKind::Edit, body),
            OutboxRequest::React { emoji, .. } => MegolmPlaintext::reaction(&conv, emoji),
            OutboxRequest::Delete { .. } => {
                let req = super::outbox::request_of(&item);
                self.request(req, Pending::Outbox { cmid, conv });
                return;
            }
            OutboxRequest::SendFile { file, caption, .. } => {
                let Some(key) = &file.key else {
                    // Uploaded in the clear (before the conversation was
                    // known to be secret): the server holds its bytes.
                    return self.secret_fail(
                        &cmid,
                        &conv,
                        "not sent: this file was uploaded unencrypted; share it again".into(),
                    );
                };
                MegolmPlaintext::file(
                    &conv,
                    crate::client::e2e::wire::FileInfo {
                        name: file.name.clone(),
                        media_type: file.media_type.clone(),
                        width: file.width,
                        height: file.height,
                        key: key.key.clone(),
                        nonce: key.nonce.clone(),
                    },
                    caption.clone(),
                )
            }
        };
        let members = self
            .cache
            .as_ref()
            .and_then(|c| c.conversation(&conv).ok().flatten())
            .map(|c| c.members)
            .unwrap_or_default();
        let stale: Vec<String> = members
            .iter()
            .filter(|u| !self.secret.fresh.contains(*u))
            .cloned()
            .collect();
        if !stale.is_empty() {
            self.secret.waiting.insert(cmid);
            return self.query_users(stale, None);
        }
        let Some(crypto) = self.secret.crypto.as_mut() else {
            return self.secret_fail(&cmid, &conv, "not sent: no keys on this device".into());
        };
        let recipients = crypto.devices_of(&members);
        let claim: Vec<DeviceRef> = crypto
            .needs_claim(&recipients)
            .into_iter()
            .filter(|d| !self.secret.claimed.contains(d))
            .collect();
        if !claim.is_empty() || self.secret.claiming {
            self.secret.waiting.insert(cmid);
            if !self.secret.claiming {
                self.secret.claiming = true;
                self.secret.claimed.extend(claim.iter().cloned());
                let devices: Vec<DeviceRef> = claim.into_iter().take(CLAIM_DEVICES).collect();
                self.secret_request(Request::KeysClaim { devices }, SecretReq::Claim);
            }
            return;
        }
        let now = (crate::proto::now_millis().max(0) as u64) / 1000;
        let out = match crypto.encrypt_for(&conv, &recipients, &plaintext, now) {
            Ok(out) => out,
            Err(E2eError::UnknownDevices(ds)) => {
                let users: Vec<String> = ds.iter().map(|d| d.user.clone()).collect();
                for u in &users {
                    self.secret.fresh.remove(u);
                }
                if self.bump_attempt(&cmid) {
                    self.secret.waiting.insert(cmid);
                    self.query_users(users, None);
                } else {
                    self.secret_fail(
                        &cmid,
                        &conv,
                        format!("not sent: {}", E2eError::UnknownDevices(ds)),
                    );
                }
                return;
            }
            Err(e @ E2eError::Withheld(_)) => {
                return self.secret_fail(
                    &cmid,
                    &conv,
                    format!(
                        "not sent: {e}; compare safety numbers (`chat safety USER`) or verify the device before sending"
                    ),
                );
            }
            Err(e @ E2eError::NeedKeys(_)) => {
                return self.secret_fail(
                    &cmid,
                    &conv,
                    format!("not sent: {e} (those devices have no keys left to claim)"),
                );
            }
            Err(e) => return self.secret_fail(&cmid, &conv, format!("not sent: {}", short(&e))),
        };
        // The ratchet moved: kept before anything goes out.
        self.save_keys(|_| Ok(()));
        let session_id = out.encrypted.session_id.clone();
        let mut shares: Vec<Share> = out.shares;
        let size: usize = shares
            .iter()
            .map(|s| s.body.ciphertext.len() + s.body.sender_key.len() + 96)
            .sum();
        if size > SHARES_IN_FRAME {
            // Ahead, in frames of their own; the server applies one
            // connection's writes in order.
            let mut chunk: Vec<Share> = Vec::new();
            let mut bytes = 0;
            for s in std::mem::take(&mut shares) {
                let n = s.body.ciphertext.len() + s.body.sender_key.len() + 96;
                if !chunk.is_empty() && bytes + n > SHARES_IN_FRAME {
                    self.share_ahead(&conv, &session_id, std::mem::take(&mut chunk));
                    bytes = 0;
                }
                bytes += n;
                chunk.push(s);
            }
            if !chunk.is_empty() {
                self.share_ahead(&conv, &session_id, chunk);
            }
        }
        let devices: Vec<DeviceRef> = shares.iter().map(Share::device).collect();
        let wire: Vec<_> = shares.iter().map(Share::to_wire).collect();
        let encrypted = Some(Box::new(out.encrypted));
        let req = match super::outbox::request_of(&item) {
            Request::Send {
                conversation_id,
                client_msg_id,
                reply_to,
                ..
            } => Request::Send {
                conversation_id,
                client_msg_id,
                body: String::new(),
                reply_to,
                encrypted,
                shares: wire,
            },
            Request::Edit {
                conversation_id,
                client_msg_id,
                target_seq,
                ..
            } => Request::Edit {
                conversation_id,
                client_msg_id,
                target_seq,
                body: String::new(),
                encrypted,
                shares: wire,
            },
            Request::SendFile {
                conversation_id,
                client_msg_id,
                file,
                reply_to,
                ..
            } => Request::SendFile {
                conversation_id,
                client_msg_id,
                // Only what the server needs to serve the ciphertext.
                file: crate::proto::FileInfo {
                    digest: file.digest,
                    size: file.size,
                    name: String::new(),
                    media_type: "application/octet-stream".into(),
                    width: None,
                    height: None,
                    preview: None,
                    key: None,
                },
                caption: None,
                reply_to,
                encrypted,
                shares: wire,
            },
            Request::React {
                conversation_id,
                client_msg_id,
                target_seq,
                remove,
                ..
            } => Request::React {
                conversation_id,
                client_msg_id,
                target_seq,
                emoji: String::new(),
                remove,
                encrypted,
                shares: wire,
            },
            other => other,
        };
        self.secret_request(
            req,
            SecretReq::Send {
                cmid,
                conv,
                session_id,
                devices,
            },
        );
    }

    fn share_ahead(&mut self, conv: &str, session_id: &str, shares: Vec<Share>) {
        let devices: Vec<DeviceRef> = shares.iter().map(Share::device).collect();
        self.secret_request(
            Request::KeysShare {
                conversation_id: conv.to_string(),
                session_id: session_id.to_string(),
                shares: shares.iter().map(Share::to_wire).collect(),
            },
            SecretReq::Shared {
                conv: conv.to_string(),
                session_id: session_id.to_string(),
                devices,
            },
        );
    }

    /// Count one more try of `cmid`; `false` when it has had enough.
    fn bump_attempt(&mut self, cmid: &str) -> bool {
        let n = self.secret.attempts.entry(cmid.to_string()).or_insert(0);
        *n += 1;
        *n <= SEND_ATTEMPTS
    }

    fn on_secret_sent(
        &mut self,
        cmid: String,
        conv: String,
        session_id: String,
        devices: Vec<DeviceRef>,
        result: Result<OkFrame, ProtoError>,
    ) {
        match result {
            Ok(ok) => {
                self.secret.attempts.remove(&cmid);
                if let Some(c) = self.secret.crypto.as_mut() {
                    c.shares_delivered(&conv, &session_id, &devices);
                }
                let seq = ok.parse::<crate::proto::AppendOk>().map(|a| a.seq);
                let Ok(seq) = seq else {
                    self.outbox_inflight.remove(&cmid);
                    return tracing::warn!("bad send reply");
                };
                if self.secret.store.is_some() {
                    if let Some(cache) = self.cache.as_mut()
                        && let Err(e) = cache.outbox_mark_sent(&cmid, seq)
                    {
                        self.cache_error(e);
                    }
                    self.save_keys(|_| Ok(()));
                } else {
                    let id = cmid.clone();
                    self.save_keys(move |tx| {
                        crate::client::cache::outbox_mark_sent_in(tx, &id, seq)
                    });
                }
                self.outbox_inflight.remove(&cmid);
                self.dirty.updates.push(Update::Acked {
                    client_msg_id: cmid,
                    conv,
                    seq,
                });
                self.dirty.list = true;
                self.dirty.messages = true;
                // The conversation's next entry, if any.
                self.send_outbox();
            }
            Err(e) if e.code == ErrorCode::DevicesChanged => {
                let diff = e.devices.clone().unwrap_or_default();
                let recovery = match self.secret.crypto.as_mut() {
                    Some(c) => c.devices_changed(&conv, &diff.missing, &diff.extra),
                    None => Default::default(),
                };
                self.save_keys(|_| Ok(()));
                tracing::info!(
                    missing = diff.missing.len(),
                    extra = diff.extra.len(),
                    rotated = recovery.rotated,
                    "the conversation's devices changed; sending again"
                );
                for u in &recovery.query_users {
                    self.secret.fresh.remove(u);
                }
                for d in &diff.missing {
                    self.secret.claimed.remove(d);
                }
                if self.bump_attempt(&cmid) {
                    self.outbox_inflight.remove(&cmid);
                    self.send_outbox();
                } else {
                    self.secret_fail(
                        &cmid,
                        &conv,
                        format!(
                            "not sent: the conversation's devices kept changing ({})",
                            e.message
                        ),
                    );
                    self.send_outbox();
                }
            }
            Err(e) => self.on_reply_failure_outbox(cmid, conv, e),
        }
    }

    // --- verification ------------------------------------------------------

    fn send_shares(&mut self, shares: Vec<Share>) {
        if shares.is_empty() {
            return;
        }
        self.secret_request(
            Request::ToDevice {
                messages: shares.iter().map(Share::to_wire).collect(),
            },
            SecretReq::Quiet,
        );
    }

    fn verification_view(&self, txn: &str, from: &DeviceRef) -> VerificationView {
        let v = self
            .secret
            .crypto
            .as_ref()
            .and_then(|c| c.verification(txn));
        VerificationView {
            transaction_id: txn.to_string(),
            user: from.user.clone(),
            device_id: from.device_id.clone(),
            state: v.map_or("unknown", |v| v.state_name()).to_string(),
            emoji: v
                .and_then(|v| v.emoji())
                .map(|e| {
                    e.iter()
                        .map(|(sym, name)| format!("{sym} {name}"))
                        .collect()
                })
                .unwrap_or_default(),
            // Verified on this side (the other side's last word may follow).
            done: v.is_some_and(|v| v.outcome().is_some()),
            cancelled: v
                .and_then(|v| v.cancelled())
                .map(|(code, reason)| format!("{code}: {reason}")),
        }
    }

    fn on_verification_step(
        &mut self,
        txn: String,
        from: DeviceRef,
        replies: Vec<Share>,
        done: bool,
        cancelled: Option<(String, String)>,
    ) {
        self.send_shares(replies);
        let mut view = self.verification_view(&txn, &from);
        view.done |= done;
        if let Some((code, reason)) = cancelled {
            view.cancelled = Some(format!("{code}: {reason}"));
        }
        if done {
            self.verified(&from);
        }
        self.dirty.updates.push(Update::Verification(view));
    }

    /// A device checked out: one of our own is certified with our identity
    /// key when this device holds it.
    fn verified(&mut self, d: &DeviceRef) {
        self.save_keys(|_| Ok(()));
        let Some(c) = self.secret.crypto.as_ref() else {
            return;
        };
        if d.user == c.user()
            && c.identity_key().is_some()
            && let Ok(ks) = c.sign_device(&d.device_id)
        {
            self.secret_request(
                Request::KeysSign {
                    device_id: ks.device_id,
                    certificate: ks.certificate,
                },
                SecretReq::Quiet,
            );
            // The other device gets the identity key too, so that it can
            // link and verify in turn (after the last step, in order).
            if let Some(c) = self.secret.crypto.as_mut() {
                match c.share_identity(&d.device_id) {
                    Ok(share) => {
                        self.save_keys(|_| Ok(()));
                        self.send_shares(vec![share]);
                    }
                    Err(e) => tracing::warn!(device = %d, "identity key not shared: {e}"),
                }
            }
        }
    }

    /// Start verifying `user`'s device `device_id` (their only other
    /// device when `None`), once its keys and an Olm session are there.
    pub(super) fn start_verification(&mut self, user: String, device_id: Option<String>) {
        if let Some(why) = self.not_ready() {
            return self.verify_failed(&user, None, format!("cannot verify: {why}"));
        }
        self.secret.verify_next.push(VerifyAsk {
            user,
            device_id,
            queried: false,
            claimed: false,
        });
        self.try_verifications();
    }

    /// Start the verifications asked for whose device is known and
    /// reachable; ask for what the others lack (once each).
    fn try_verifications(&mut self) {
        for mut ask in std::mem::take(&mut self.secret.verify_next) {
            if self.secret.querying.contains(&ask.user) {
                self.secret.verify_next.push(ask);
                continue;
            }
            if !ask.queried && !self.secret.fresh.contains(&ask.user) {
                ask.queried = true;
                self.query_users(vec![ask.user.clone()], None);
                self.secret.verify_next.push(ask);
                continue;
            }
            let Some(c) = self.secret.crypto.as_mut() else {
                return;
            };
            let me = c.me();
            let name = crate::client::text::clean(&ask.user);
            let theirs: Vec<String> = c
                .devices(&ask.user)
                .iter()
                .map(|d| d.device_id.clone())
                .filter(|id| ask.user != me.user || *id != me.device_id)
                .collect();
            let device_id = match &ask.device_id {
                Some(id) if theirs.contains(id) => id.clone(),
                Some(id) => {
                    let id = crate::client::text::clean(id);
                    let why = format!("cannot verify: {name} has no device {id}");
                    self.verify_failed(&ask.user, None, why);
                    continue;
                }
                None => match theirs.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        let why = format!(
                            "cannot verify: {name} has no other device with keys for secret conversations"
                        );
                        self.verify_failed(&ask.user, None, why);
                        continue;
                    }
                    many => {
                        let why = format!(
                            "{name} has {} devices: name one to verify ({})",
                            many.len(),
                            crate::client::text::clean(&many.join(", "))
                        );
                        self.verify_failed(&ask.user, None, why);
                        continue;
                    }
                },
            };
            let d = DeviceRef::new(ask.user.clone(), device_id);
            if !c.needs_claim(std::slice::from_ref(&d)).is_empty() {
                if ask.claimed || self.secret.claiming {
                    if ask.claimed {
                        let why = format!(
                            "cannot verify {d}: it has no keys left to start a secure channel"
                        );
                        self.verify_failed(&d.user, None, why);
                    } else {
                        self.secret.verify_next.push(ask);
                    }
                    continue;
                }
                ask.claimed = true;
                self.secret.claimed.insert(d.clone());
                self.secret.claiming = true;
                self.secret_request(Request::KeysClaim { devices: vec![d] }, SecretReq::Claim);
                self.secret.verify_next.push(ask);
                continue;
            }
            match c.start_verification(&d) {
                Ok((txn, share)) => {
                    self.save_keys(|_| Ok(()));
                    self.send_shares(vec![share]);
                    let view = self.verification_view(&txn, &d);
                    self.dirty.updates.push(Update::Verification(view));
                }
                Err(e) => self.verify_failed(&d.user, None, format!("cannot verify {d}: {e}")),
            }
        }
    }

    /// Stop verification `txn` (the user gave up, or waited too long):
    /// the other side hears so.
    pub(super) fn cancel_verification(&mut self, txn: String) {
        let Some(c) = self.secret.crypto.as_mut() else {
            return;
        };
        let Some(v) = c.verification(&txn) else {
            return;
        };
        if v.is_done() || v.is_cancelled() {
            return;
        }
        let from = DeviceRef::new(&v.them().user, &v.them().device_id);
        if let Ok(share) = c.cancel_verification(&txn, false) {
            self.save_keys(|_| Ok(()));
            self.send_shares(vec![share]);
        }
        let view = self.verification_view(&txn, &from);
        self.dirty.updates.push(Update::Verification(view));
    }

    /// Make a new identity key for our user (every device that held the
    /// old one is lost): this device certifies itself with it, the others
    /// must be verified again, and contacts see the change.
    pub(super) fn reset_identity(&mut self) {
        if let Some(why) = self.not_ready() {
            return self.notice(format!("no new identity key: {why}"));
        }
        let Some(c) = self.secret.crypto.as_mut() else {
            return;
        };
        c.create_identity();
        self.secret.replace_identity = true;
        self.secret.resetting = true;
        self.upload_keys(ONE_TIME_KEYS);
    }

    /// Accept `user`'s changed identity key.
    pub(super) fn accept_identity(&mut self, user: String) {
        let Some(c) = self.secret.crypto.as_mut() else {
            return self.notice("secret conversations are not available here");
        };
        let name = crate::client::text::clean(&user);
        if !c.accept_identity(&user) {
            return self.notice(format!("{name}'s identity key has no change to accept"));
        }
        self.save_keys(|_| Ok(()));
        self.notice(format!(
            "accepted {name}'s new identity key; it is unverified until you compare safety numbers"
        ));
        self.dirty.updates.push(Update::Identity {
            user: user.clone(),
            note: IdentityNote::Accepted,
        });
        let view = self.devices_view(&user);
        self.dirty.updates.push(Update::Devices(view));
    }

    /// The safety number with `user` matched: their key is verified.
    pub(super) fn mark_verified(&mut self, user: String) {
        let Some(c) = self.secret.crypto.as_mut() else {
            return self.notice("secret conversations are not available here");
        };
        let name = crate::client::text::clean(&user);
        let key = match c.trust(&user) {
            Some(Trust::Changed { .. }) => {
                return self.notice(format!(
                    "{name}'s identity key changed: accept it first (`/accept {name}`)"
                ));
            }
            Some(t) => t.accepted_key().map(str::to_string),
            None => None,
        };
        let Some(key) = key else {
            return self.notice(format!("{name} has no identity key yet"));
        };
        if c.mark_identity_verified(&user, &key) {
            self.save_keys(|_| Ok(()));
            self.notice(format!("{name}'s identity key is verified"));
            self.dirty.updates.push(Update::Identity {
                user: user.clone(),
                note: IdentityNote::Verified,
            });
            let view = self.devices_view(&user);
            self.dirty.updates.push(Update::Devices(view));
        }
    }

    /// The user says the emoji of `txn` match (`ok`) or not.
    pub(super) fn confirm_verification(&mut self, txn: String, ok: bool) {
        let Some(c) = self.secret.crypto.as_mut() else {
            return;
        };
        let Some(v) = c.verification(&txn) else {
            return self.verify_failed("", Some(&txn), "no such verification".into());
        };
        let from = DeviceRef::new(&v.them().user, &v.them().device_id);
        if !ok {
            if let Ok(share) = c.cancel_verification(&txn, true) {
                self.save_keys(|_| Ok(()));
                self.send_shares(vec![share]);
            }
            let view = self.verification_view(&txn, &from);
            self.dirty.updates.push(Update::Verification(view));
            return self.notice("verification cancelled: the emoji did not match");
        }
        match c.confirm_verification(&txn) {
            Ok((shares, outcome)) => {
                self.send_shares(shares);
                let mut view = self.verification_view(&txn, &from);
                view.done |= outcome.is_some();
                if outcome.is_some() {
                    self.verified(&from);
                }
                self.dirty.updates.push(Update::Verification(view));
            }
            Err(e) => {
                self.verify_failed(&from.user, Some(&txn), format!("verification failed: {e}"))
            }
        }
    }

    /// A verification could not start (`txn` none) or stopped here with
    /// an error: said with why.
    fn verify_failed(&mut self, user: &str, txn: Option<&str>, why: String) {
        self.dirty.updates.push(Update::VerificationFailed {
            user: user.to_string(),
            transaction_id: txn.map(str::to_string),
            why,
        });
    }
}

/// A key shown for comparing by eye: groups of four characters.
pub fn fingerprint(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_say_why() {
        let mut b = EventBody::Message {
            body: String::new(),
            reply_to: None,
            encrypted: None,
        };
        fill_placeholder(&mut b, &Undecryptable::BeforeJoined.to_string());
        let EventBody::Message { body, .. } = &b else {
            unreachable!()
        };
        assert_eq!(body, "🔒 not decrypted: sent before this device joined");
        fill_body(
            &mut b,
            &MegolmPlaintext::text("c", PlainKind::Message, "hi"),
        );
        assert!(matches!(&b, EventBody::Message { body, .. } if body == "hi"));
        assert_eq!(fingerprint("abcdefghij"), "abcd efgh ij");
    }

    /// Pushed events that cannot be decrypted (another member can send as
    /// many as its own budget allows) read the inbox at most once per
    /// interval: they cannot make this device spend its request budget.
    #[tokio::test(start_paused = true)]
    async fn undecryptable_pushes_read_the_inbox_at_most_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        use crate::client::net::task::{NetCommand, NetHandle};
        let (net, mut queue) = NetHandle::detached(1024);
        let mut e = super::super::tests::engine_on(net, dir.path());
        e.connected = true;
        e.secret.supported = Some(true);
        let mut inbox_reads = || {
            let mut n = 0;
            while let Ok(cmd) = queue.try_recv() {
                if let NetCommand::Request {
                    req: Request::Inbox { .. },
                    ..
                } = cmd
                {
                    n += 1;
                }
            }
            n
        };
        let burst = |e: &mut Engine| {
            for _ in 0..100 {
                e.look_for_keys();
                // Each read answered at once: nothing in flight holds the
                // next one back.
                e.secret.draining = false;
            }
        };
        burst(&mut e);
        assert_eq!(inbox_reads(), 1, "a burst reads the inbox once");
        tokio::time::advance(KEY_LOOK_EVERY / 2).await;
        burst(&mut e);
        assert_eq!(inbox_reads(), 0, "nor again within the interval");
        tokio::time::advance(KEY_LOOK_EVERY / 2).await;
        burst(&mut e);
        assert_eq!(inbox_reads(), 1, "once more after it");
    }
}
