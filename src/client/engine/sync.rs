//! Keeping the cache equal to the server's log: the sync after every
//! (re)connect, catch-up and gap filling by exact history ranges, pushes,
//! receipts, and the outbox's acknowledgements.

use super::{Engine, FETCH_CONCURRENCY, INITIAL_DEPTH, PAGE, Pending};
use crate::client::accounts;
use crate::client::cache::{OutboxItem, OutboxRequest};
use crate::client::net::NetEvent;
use crate::client::net::task::NOT_CONNECTED;
use crate::client::text::{self, conv_title};
use crate::client::update::Update;
use crate::client::view::{ConnState, Incoming, PresenceView};
use crate::proto::{
    AppendOk, ConvKind, ConversationOk, ConversationsOk, ErrorCode, Event, EventBody, HistoryOk,
    OkFrame, Presence, ProtoError, Request, ServerFrame, UsersOk, now_millis,
};
use std::collections::{HashMap, HashSet, VecDeque};
use tokio::time::{Duration, Instant};

/// Bytes of cursors and heads one `sync` request carries (the server
/// takes frames up to 64 KiB).
const CURSOR_CHUNK_BYTES: usize = 48 * 1024;

/// A sync under way: pages asked for one after another, the client's
/// cursors sent along in chunks, and the conversations described so far.
pub(super) struct SyncRun {
    pub(super) id: u64,
    chunks: VecDeque<CursorChunk>,
    seen: HashSet<String>,
    pages: u32,
}

type CursorChunk = (HashMap<String, u64>, HashMap<String, String>);

impl SyncRun {
    fn new(id: u64, cursors: HashMap<String, u64>, heads: HashMap<String, String>) -> SyncRun {
        let max = crate::proto::Limits::default().max_sync_cursors;
        let mut ids: Vec<&String> = cursors.keys().collect();
        ids.sort();
        let mut chunks = VecDeque::new();
        let mut chunk: CursorChunk = Default::default();
        let mut bytes = 0;
        for id in ids {
            let head = heads.get(id);
            // `"id":seq,` and `"id":"eid",`
            let size = id.len() + 24 + head.map_or(0, |h| id.len() + h.len() + 6);
            if !chunk.0.is_empty() && (bytes + size > CURSOR_CHUNK_BYTES || chunk.0.len() >= max) {
                chunks.push_back(std::mem::take(&mut chunk));
                bytes = 0;
            }
            bytes += size;
            chunk.0.insert(id.clone(), cursors[id]);
            if let Some(h) = head {
                chunk.1.insert(id.clone(), h.clone());
            }
        }
        if !chunk.0.is_empty() {
            chunks.push_back(chunk);
        }
        SyncRun {
            id,
            chunks,
            seen: HashSet::new(),
            pages: 0,
        }
    }
}

/// My newest messages sent again into a conversation whose history the
/// server no longer has as this cache does.
const RESEND_LIMIT: u32 = 1000;

impl Engine {
    pub(super) fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::State(state) => {
                let connected = state == ConnState::Connected;
                if !connected {
                    self.connected = false;
                    self.secret_disconnected();
                }
                self.dirty.updates.push(Update::Conn(state));
            }
            NetEvent::Ready { user, token, http } => {
                self.dirty.updates.push(Update::Transport { http });
                self.on_ready(user, token)
            }
            NetEvent::AuthFailed(e) => {
                if let Some(me) = self.me.clone()
                    && let Err(e) = self.tokens.remove(&me, &self.server)
                {
                    tracing::warn!("cannot forget the refused token: {e}");
                }
                self.dirty.updates.push(Update::AuthFailed {
                    message: accounts::refusal(&e),
                });
            }
            NetEvent::Reply { tag, result } => {
                if let Some(p) = self.pending.remove(&tag) {
                    self.on_reply(p, result);
                }
            }
            NetEvent::Push(frame) => self.on_push(frame),
        }
    }

    fn on_ready(&mut self, user: String, token: Option<String>) {
        if let Some(token) = token {
            match self.tokens.save(&user, &self.server, &token) {
                Ok(crate::client::credentials::Stored::File(path)) => self.notice(format!(
                    "no keyring available: the login token is stored in {} (mode 0600)",
                    path.display()
                )),
                Ok(_) => {}
                Err(e) => self.notice(format!("cannot store the login token: {e}")),
            }
        }
        // A bot on CHAT_TOKEN must not become this machine's last user.
        if !self.tokens.is_fixed() {
            self.paths.remember_user(&self.server, &user);
        }
        self.open_cache(&user);
        self.connected = true;
        self.dirty
            .updates
            .push(Update::LoggedIn { user: user.clone() });
        // Secret conversations first: keys, then the inbox, then the sync.
        self.secret_start();
        self.request(
            Request::Users {
                prefix: None,
                limit: Some(200),
            },
            Pending::Users,
        );
    }

    pub(super) fn on_reply(&mut self, pending: Pending, result: Result<OkFrame, ProtoError>) {
        let pending = match pending {
            Pending::Secret(what) => return self.on_secret_reply(what, result),
            p => p,
        };
        let ok = match result {
            Ok(ok) => ok,
            Err(e) => return self.on_failure(pending, e),
        };
        match pending {
            Pending::Sync { run } if self.sync_run_is(run) => match ok.parse::<ConversationsOk>() {
                Ok(reply) => self.on_sync_page(reply),
                Err(e) => {
                    tracing::warn!("bad sync reply: {e}");
                    self.sync_failed(&format!("an unreadable answer ({e})"));
                }
            },
            // A page of a run given up on.
            Pending::Sync { .. } => {}
            Pending::Fill { conv } => {
                self.fetching.remove(&conv);
                if let Ok(h) = ok.parse::<HistoryOk>() {
                    let got = !h.events.is_empty();
                    self.apply_history(&conv, h);
                    if got {
                        self.fill(&conv);
                    }
                }
                self.pump();
            }
            Pending::Older { conv } => {
                self.older.remove(&conv);
                if let Ok(h) = ok.parse::<HistoryOk>() {
                    self.apply_history(&conv, h);
                }
                self.dirty.updates.push(Update::LoadingOlder(false));
                self.dirty.messages = true;
            }
            Pending::Outbox { cmid, conv } => {
                self.outbox_inflight.remove(&cmid);
                match (ok.parse::<AppendOk>(), self.cache.as_mut()) {
                    (Ok(a), Some(cache)) => {
                        if let Err(e) = cache.outbox_mark_sent(&cmid, a.seq) {
                            self.cache_error(e);
                        }
                        self.dirty.updates.push(Update::Acked {
                            client_msg_id: cmid,
                            conv,
                            seq: a.seq,
                        });
                    }
                    (Err(e), _) => tracing::warn!("bad send reply: {e}"),
                    (_, None) => {}
                }
                self.dirty.list = true;
                self.dirty.messages = true;
                // The conversation's next entry, if any.
                self.send_outbox();
            }
            Pending::Conv { focus } => {
                if let Ok(c) = ok.parse::<ConversationOk>() {
                    let id = c.conversation.id.clone();
                    self.upsert(&c.conversation);
                    if focus {
                        self.dirty.updates.push(Update::Focus(id));
                    }
                }
            }
            Pending::Leave { conv } => {
                if let Some(cache) = self.cache.as_mut()
                    && let Err(e) = cache.remove_conversation(&conv)
                {
                    self.cache_error(e);
                }
                self.dirty.list = true;
            }
            Pending::Search { id } => {
                let reply = ok.parse::<crate::proto::SearchOk>().map_err(|e| {
                    crate::proto::ProtoError::new(crate::proto::ErrorCode::Internal, e.to_string())
                });
                self.on_search_reply(id, reply);
            }
            Pending::Users => {
                if let Ok(u) = ok.parse::<UsersOk>() {
                    let users: Vec<String> = u.users.iter().map(|p| p.user.clone()).collect();
                    self.dirty.updates.push(Update::Users(users));
                    self.apply_presence(u.users.iter().filter_map(|e| e.presence()).collect());
                }
            }
            Pending::Account(what) => self.on_account_reply(what, ok),
            Pending::Ignore | Pending::Secret(_) => {}
            Pending::Done(notice) => self.notice(notice),
        }
    }

    fn on_failure(&mut self, pending: Pending, e: ProtoError) {
        let disconnected = e.code == ErrorCode::Internal && e.message == NOT_CONNECTED;
        match pending {
            Pending::Fill { conv } => {
                self.fetching.remove(&conv);
                if !disconnected {
                    tracing::warn!("history of {conv}: {e}");
                }
            }
            Pending::Older { conv } => {
                self.older.remove(&conv);
                self.dirty.updates.push(Update::LoadingOlder(false));
            }
            Pending::Outbox { cmid, conv } => self.on_reply_failure_outbox(cmid, conv, e),
            Pending::Account(_) => {
                if disconnected {
                    self.notice("not connected; try again when the connection is back");
                } else {
                    self.notice(accounts::refusal(&e));
                }
            }
            Pending::Sync { run } if !disconnected && self.sync_run_is(run) => {
                self.sync_failed(&e.to_string())
            }
            Pending::Search { id } => {
                let e = if disconnected {
                    ProtoError::new(ErrorCode::Internal, crate::client::text::SEARCH_OFFLINE)
                } else {
                    e
                };
                self.on_search_reply(id, Err(e));
            }
            Pending::Sync { .. } | Pending::Users | Pending::Ignore | Pending::Secret(_) => {}
            Pending::Conv { .. } | Pending::Leave { .. } | Pending::Done(_) => {
                if !disconnected {
                    self.notice(e.message);
                } else {
                    self.notice("not connected; try again when the connection is back");
                }
            }
        }
    }

    /// An outbox entry's send failed: transient failures stay pending and
    /// are retried; a refusal is final and shown.
    pub(super) fn on_reply_failure_outbox(&mut self, cmid: String, conv: String, e: ProtoError) {
        let disconnected = e.code == ErrorCode::Internal && e.message == NOT_CONNECTED;
        self.outbox_inflight.remove(&cmid);
        if !disconnected && !e.code.is_transient() {
            if let Some(cache) = self.cache.as_mut()
                && let Err(err) = cache.outbox_mark_failed(&cmid, &e.message)
            {
                self.cache_error(err);
            }
            self.dirty.updates.push(Update::Refused {
                client_msg_id: cmid,
                conv,
                error: e,
            });
            self.dirty.messages = true;
            self.dirty.list = true;
            // Refused for good: the conversation's next entry goes now.
            self.send_outbox();
        }
    }

    /// Whether `run` is the sync under way (not one given up on).
    fn sync_run_is(&self, run: u64) -> bool {
        self.sync_run.as_ref().is_some_and(|r| r.id == run)
    }

    /// Ask for everything after the cache's cursors: the first page of a
    /// new sync run (one already under way is dropped).
    pub(super) fn sync(&mut self) {
        let cursors = self
            .cache
            .as_ref()
            .and_then(|c| c.cursors().ok())
            .unwrap_or_default();
        let heads = self
            .cache
            .as_ref()
            .and_then(|c| c.heads().ok())
            .unwrap_or_default();
        self.sync_runs += 1;
        self.sync_run = Some(SyncRun::new(self.sync_runs, cursors, heads));
        self.next_sync_page(None);
    }

    /// Ask for the page after `after` (the first with `None`), carrying the
    /// next chunk of cursors.
    fn next_sync_page(&mut self, after: Option<String>) {
        let Some(run) = self.sync_run.as_mut() else {
            return;
        };
        let (cursors, heads) = run.chunks.pop_front().unwrap_or_default();
        let first = run.pages == 0;
        run.pages += 1;
        let id = run.id;
        // Past the last page, the cursors left are only checked.
        let limit = (!first && after.is_none()).then_some(0);
        self.request(
            Request::Sync {
                cursors,
                heads,
                after,
                limit,
            },
            Pending::Sync { run: id },
        );
    }

    /// One page of a sync run: store what it describes, and ask for the
    /// next or finish.
    fn on_sync_page(&mut self, reply: ConversationsOk) {
        if self.cache.is_none() {
            return;
        }
        if !reply.diverged.is_empty() {
            self.start_over(&reply.diverged);
        }
        for conv in &reply.conversations {
            if let Err(e) = self.store_conversation(conv) {
                self.cache_error(e);
            }
        }
        let Some(run) = self.sync_run.as_mut() else {
            return;
        };
        run.seen
            .extend(reply.conversations.iter().map(|c| c.id.clone()));
        let first = run.pages == 1;
        let (described, more_cursors) = (run.seen.len(), !run.chunks.is_empty());
        if first
            && let Some(cutoff) = reply.retention_cutoff
            && let Some(cache) = self.cache.as_mut()
        {
            // Text the server no longer keeps is not kept here either.
            match cache.forget_text_before(cutoff) {
                Ok(0) => {}
                Ok(_) => self.dirty.messages = true,
                Err(e) => tracing::warn!("clearing old text: {e}"),
            }
        }
        self.apply_presence(reply.presence);
        self.dirty.list = true;
        if reply.next.is_some() || more_cursors {
            self.dirty.updates.push(Update::Syncing {
                conversations: described,
            });
            return self.next_sync_page(reply.next);
        }
        let Some(run) = self.sync_run.take() else {
            return;
        };
        if self.sync_retry.take().is_some() {
            self.notice("caught up with the server again");
        }
        self.finish_sync(run.seen);
    }

    /// Every page is in: drop the conversations no page described, and
    /// catch up the rest.
    fn finish_sync(&mut self, ids: HashSet<String>) {
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        // Conversations I no longer belong to go; the rest, newest activity
        // first, is the order catch-up takes.
        let mut failed = None;
        let mut order = cache.conversation_ids_by_activity().unwrap_or_default();
        order.retain(|id| {
            let kept = ids.contains(id);
            if !kept && let Err(e) = cache.remove_conversation(id) {
                failed = Some(e);
            }
            kept
        });
        self.behind.clear();
        for id in order {
            if !self.watches(&id) {
                continue;
            }
            let missing = self
                .cache
                .as_ref()
                .and_then(|c| c.missing_ranges(&id).ok())
                .is_some_and(|r| !r.is_empty());
            if missing {
                self.behind.push_back(id);
            }
        }
        if let Some(e) = failed {
            self.cache_error(e);
        }
        self.dirty.updates.push(Update::Synced);
        self.dirty.list = true;
        self.dirty.messages = true;
        self.pump();
        self.send_outbox();
    }

    /// Start catch-up fetches up to the concurrency bound.
    pub(super) fn pump(&mut self) {
        while self.fetching.len() < FETCH_CONCURRENCY {
            let Some(conv) = self.behind.pop_front() else {
                break;
            };
            self.fill(&conv);
        }
    }

    /// Fetch the first missing range of `conv`, if any and none in flight.
    pub(super) fn fill(&mut self, conv: &str) {
        if !self.connected || self.fetching.contains_key(conv) || !self.watches(conv) {
            return;
        }
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let Some((from, to)) = cache
            .missing_ranges(conv)
            .ok()
            .and_then(|r| r.first().copied())
        else {
            return;
        };
        let limit = (to - from + 1).min(u64::from(PAGE)) as u32;
        let tag = self.request(
            Request::History {
                conversation_id: conv.to_string(),
                after: Some(from - 1),
                before: None,
                limit: Some(limit),
            },
            Pending::Fill {
                conv: conv.to_string(),
            },
        );
        self.fetching.insert(conv.to_string(), tag);
    }

    fn apply_history(&mut self, conv: &str, mut h: HistoryOk) {
        let failed = self.decrypt_events(&mut h.events);
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        if let Err(e) = cache.set_last_seq(conv, h.last_seq) {
            return self.cache_error(e);
        }
        if let Err(e) = cache.apply_events(&h.events) {
            return self.cache_error(e);
        }
        self.note_undecrypted(&failed);
        self.after_events(conv, &h.events, false);
    }

    /// Bookkeeping after events of `conv` were stored.
    fn after_events(&mut self, conv: &str, events: &[Event], live: bool) {
        self.dirty.list = true;
        if self.focused.as_deref() == Some(conv) {
            self.dirty.messages = true;
        }
        self.dirty.delivered.insert(conv.to_string());
        let membership = events.iter().any(|e| {
            matches!(
                e.body,
                EventBody::Join { .. }
                    | EventBody::Leave { .. }
                    | EventBody::Remove { .. }
                    | EventBody::Role { .. }
                    | EventBody::Rename { .. }
                    | EventBody::Create { .. }
            )
        });
        if membership {
            self.dirty.receipts.insert(conv.to_string());
        }
        if !live {
            return;
        }
        let me = self.me.clone().unwrap_or_default();
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        let conversation = cache.conversation(conv).ok().flatten();
        let muted = cache.is_muted(conv).unwrap_or(false);
        let (title, is_dm) = match &conversation {
            Some(c) => (
                conv_title(conv, c.kind, c.name.as_deref(), &c.members, &me),
                c.kind == ConvKind::Dm,
            ),
            None => (conv.to_string(), false),
        };
        for ev in events {
            // A shared file notifies as its one-line description; its
            // caption may mention me.
            let (body, said) = match &ev.body {
                EventBody::Message { body, .. } => (body.clone(), body.as_str()),
                EventBody::File { file, caption, .. } => (
                    crate::client::text::file_line(file, caption.as_deref()),
                    caption.as_deref().unwrap_or(""),
                ),
                _ => continue,
            };
            if ev.sender == me {
                continue;
            }
            self.dirty.incoming.push(Incoming {
                conv: conv.to_string(),
                conv_title: title.clone(),
                is_dm,
                sender: ev.sender.clone(),
                mentions_me: crate::client::cache::mentions_user(said, &me),
                body,
                muted,
            });
        }
    }

    fn on_push(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::ToDevice(m) => self.on_to_device(m),
            ServerFrame::Devices(d) => self.on_devices_push(d.user, d.identity_changed),
            ServerFrame::Event(mut ev) => {
                let conv = ev.conversation_id.clone();
                let failed = self.decrypt_events(std::slice::from_mut(&mut ev));
                let Some(cache) = self.cache.as_mut() else {
                    return;
                };
                let outcome = match cache.apply_events(std::slice::from_ref(&ev)) {
                    Ok(o) => o,
                    Err(e) => return self.cache_error(e),
                };
                self.note_undecrypted(&failed);
                if !failed.is_empty() {
                    self.look_for_keys();
                }
                let stored = outcome.stored_any();
                let gap = outcome
                    .conversations
                    .get(&conv)
                    .is_some_and(|p| !p.missing.is_empty());
                if stored {
                    self.after_events(&conv, std::slice::from_ref(&ev), true);
                }
                // Taken out of it: the description that follows may not
                // list its members to say so.
                let me = self.me.as_deref().unwrap_or_default();
                if let EventBody::Leave { members } | EventBody::Remove { members } = &ev.body
                    && members.iter().any(|m| m == me)
                {
                    if let Some(cache) = self.cache.as_mut()
                        && let Err(e) = cache.remove_conversation(&conv)
                    {
                        self.cache_error(e);
                    }
                    self.dirty.list = true;
                    return;
                }
                if gap {
                    self.fill(&conv);
                }
            }
            ServerFrame::Conversation { conversation } => {
                let me = self.me.clone().unwrap_or_default();
                let known = || {
                    self.cache
                        .as_ref()
                        .and_then(|c| c.conversation(&conversation.id).ok())
                        .flatten()
                        .is_some()
                };
                // One too large to list its members comes after the event
                // that added me (which the cache holds) or not at all.
                let member = if conversation.members_listed() {
                    conversation.members.contains(&me)
                } else {
                    known()
                };
                if member {
                    self.upsert(&conversation);
                } else if let Some(cache) = self.cache.as_mut() {
                    if let Err(e) = cache.remove_conversation(&conversation.id) {
                        self.cache_error(e);
                    }
                    self.dirty.list = true;
                }
            }
            ServerFrame::Receipt(r) => {
                if let Some(cache) = self.cache.as_mut()
                    && let Err(e) =
                        cache.apply_receipt(&r.conversation_id, &r.user, r.delivered, r.read)
                {
                    self.cache_error(e);
                }
                self.dirty.list = true;
                self.dirty.receipts.insert(r.conversation_id);
            }
            ServerFrame::Typing(t) => self.dirty.updates.push(Update::Typing {
                conv: t.conversation_id,
                user: t.user,
                active: t.active,
            }),
            ServerFrame::Presence(p) => self.apply_presence(vec![p]),
            ServerFrame::Ok(_) | ServerFrame::Error(_) => {}
        }
    }

    /// Store a conversation's description and catch it up.
    pub(super) fn upsert(&mut self, conv: &crate::proto::Conversation) {
        if let Err(e) = self.store_conversation(conv) {
            return self.cache_error(e);
        }
        // A page already past it will not describe it: the run's end must
        // not take it for one I left.
        if let Some(run) = self.sync_run.as_mut() {
            run.seen.insert(conv.id.clone());
        }
        self.dirty.list = true;
        self.dirty.receipts.insert(conv.id.clone());
        self.fill(&conv.id);
    }

    /// Store a conversation's description; one seen for the first time is
    /// held back only [`INITIAL_DEPTH`] events (older ones come on
    /// scrollback), unless it is followed from a floor of its own.
    fn store_conversation(
        &mut self,
        conv: &crate::proto::Conversation,
    ) -> Result<(), crate::client::cache::CacheError> {
        let followed = self.followed(&conv.id);
        let Some(cache) = self.cache.as_mut() else {
            return Ok(());
        };
        let fresh = cache.cursor(&conv.id).unwrap_or(0) == 0;
        cache.upsert_conversation(conv)?;
        if fresh && !followed && conv.last_seq > INITIAL_DEPTH {
            cache.set_floor(&conv.id, conv.last_seq - INITIAL_DEPTH + 1)?;
        }
        Ok(())
    }

    fn apply_presence(&mut self, list: Vec<Presence>) {
        if list.is_empty() {
            return;
        }
        let list = list
            .into_iter()
            .map(|p| {
                let view = PresenceView {
                    status: p.status,
                    last_seen: p.last_seen,
                };
                (p.user, view)
            })
            .collect();
        self.dirty.updates.push(Update::Presence(list));
    }

    /// Send every pending outbox entry not already in flight, in order.
    /// `sync` failed: say so (the list may be stale) and try again with
    /// backoff, rather than go quiet.
    fn sync_failed(&mut self, why: &str) {
        self.sync_run = None;
        let failures = self.sync_retry.map_or(0, |(_, n)| n) + 1;
        let wait = Duration::from_secs(2u64.saturating_pow(failures).min(60));
        self.sync_retry = Some((Instant::now() + wait, failures));
        self.dirty.updates.push(Update::SyncFailed {
            retry_in_secs: wait.as_secs(),
        });
        self.notice(text::sync_failed_notice(why, wait.as_secs()));
    }

    /// The server's history of `convs` is not this cache's (it was
    /// restored from a backup, or lost acknowledged writes in a power
    /// failure): forget what is held of them, queue my own messages again
    /// (the server answers the ones it kept with their seq and appends the
    /// ones it lost), and fetch them anew. One notice says so.
    fn start_over(&mut self, convs: &[String]) {
        let me = self.me.clone().unwrap_or_default();
        let Some(cache) = self.cache.as_mut() else {
            return;
        };
        let mut again = 0usize;
        let mut failed = None;
        for conv in convs {
            let mine = match cache.my_messages_to_resend(conv, &me, RESEND_LIMIT) {
                Ok(m) => m,
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            };
            if let Err(e) = cache.reset_history(conv) {
                failed = Some(e);
                continue;
            }
            for (cmid, body, reply_to) in mine {
                let item = OutboxItem {
                    client_msg_id: cmid,
                    conversation_id: conv.clone(),
                    request: OutboxRequest::Send { body, reply_to },
                    created_at: now_millis(),
                };
                match cache.outbox_push(&item) {
                    Ok(()) => again += 1,
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(e) = failed {
            self.cache_error(e);
        }
        tracing::warn!(
            conversations = convs.len(),
            resent = again,
            "history diverged from the server's"
        );
        self.notice(text::diverged_notice(convs.len(), again));
        self.dirty.list = true;
        self.dirty.messages = true;
    }

    /// Send what the outbox holds: in each conversation its oldest pending
    /// entry, once the one before it is answered. One at a time per
    /// conversation keeps the server's order the order they were typed in:
    /// were later entries already on their way, a transient failure of an
    /// earlier one (retried on a later tick) would put it after them.
    pub(super) fn send_outbox(&mut self) {
        if !self.connected {
            return;
        }
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        for item in cache.outbox_next().unwrap_or_default() {
            // Not while it is on its way already.
            if !self.outbox_inflight.insert(item.client_msg_id.clone()) {
                continue;
            }
            if self.is_secret(&item.conversation_id) {
                self.secret_send(item);
                continue;
            }
            // Refused by a full network queue, it fails as transient and
            // a later tick sends it again.
            let req = super::outbox::request_of(&item);
            self.request(
                req,
                Pending::Outbox {
                    cmid: item.client_msg_id,
                    conv: item.conversation_id,
                },
            );
        }
    }
}
