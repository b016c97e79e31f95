//! Following conversations (`chat tail --follow`): every event exactly once,
//! in seq order, whatever happens to the connection. The cache's cursor (the
//! highest seq up to which everything is held) only moves forward, so the
//! events between the last one published and the cursor are always the
//! next ones, with no hole and no repeat.

use super::{Engine, PROBE_EVERY, Pending};
use crate::client::update::Update;
use crate::proto::Request;
use tokio::time::Instant;

/// Where a followed conversation stands.
#[derive(Debug, Clone, Copy)]
pub(super) struct Follow {
    /// The last seq published as an event.
    emitted: u64,
    /// When the last event was published or the server last asked.
    quiet_since: Instant,
}

impl Engine {
    /// Start following `conv`, from its last `last` events.
    pub(super) fn follow(&mut self, conv: String, last: u64) {
        let Some(cache) = self.cache.as_mut() else {
            self.notice("not logged in");
            return;
        };
        let (last_seq, secret) = match cache.conversation(&conv) {
            Ok(Some(c)) => (c.last_seq, c.encrypted.then_some(c.members)),
            Ok(None) => {
                self.notice(format!("no conversation {conv}"));
                return;
            }
            Err(e) => return self.cache_error(e),
        };
        let floor = last_seq.saturating_sub(last) + 1;
        if let Err(e) = cache.set_floor(&conv, floor) {
            return self.cache_error(e);
        }
        self.follows.insert(
            conv.clone(),
            Follow {
                emitted: floor - 1,
                quiet_since: Instant::now(),
            },
        );
        if let Some(members) = secret {
            // Their devices first, so that the events decrypt as they come.
            self.refresh_devices(members);
        }
        self.fill(&conv);
    }

    /// Queue the events that became contiguous since the last publish.
    pub(super) fn publish_follows(&mut self) {
        let Some(cache) = self.cache.as_ref() else {
            return;
        };
        if self.devices_pending() {
            // Events waiting on a sender's devices decrypt once they come.
            return;
        }
        let mut convs: Vec<&String> = self.follows.keys().collect();
        convs.sort();
        let mut batches = Vec::new();
        for conv in convs {
            let emitted = self.follows[conv].emitted;
            let cursor = match cache.cursor(conv) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("cache: {e}");
                    continue;
                }
            };
            if cursor <= emitted {
                continue;
            }
            match cache.events(conv, emitted + 1, cursor) {
                Ok(events) => batches.push((conv.clone(), cursor, events)),
                Err(e) => tracing::error!("cache: {e}"),
            }
        }
        let now = Instant::now();
        for (conv, cursor, events) in batches {
            if let Some(f) = self.follows.get_mut(&conv) {
                f.emitted = cursor;
                f.quiet_since = now;
            }
            self.dirty.updates.push(Update::Events { conv, events });
        }
    }

    /// Ask the server about followed conversations that have been quiet: a
    /// lost push shows up as a higher `last_seq`, which starts a fill.
    pub(super) fn probe_follows(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .follows
            .iter()
            .filter(|(conv, f)| {
                now.duration_since(f.quiet_since) >= PROBE_EVERY
                    && !self.fetching.contains_key(*conv)
            })
            .map(|(conv, _)| conv.clone())
            .collect();
        for conv in due {
            let Some(cursor) = self.cache.as_ref().and_then(|c| c.cursor(&conv).ok()) else {
                continue;
            };
            if let Some(f) = self.follows.get_mut(&conv) {
                f.quiet_since = now;
            }
            let tag = self.request(
                Request::History {
                    conversation_id: conv.clone(),
                    after: Some(cursor),
                    before: None,
                    limit: Some(1),
                },
                Pending::Fill { conv: conv.clone() },
            );
            self.fetching.insert(conv, tag);
        }
    }

    /// Whether `conv` is followed (its floor is then the follower's).
    pub(super) fn followed(&self, conv: &str) -> bool {
        self.follows.contains_key(conv)
    }
}
