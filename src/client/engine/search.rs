//! Search: the cache answers at once (offline too), then the server is
//! asked and its hits follow as a second update; and the jump from a hit
//! to its message, with the messages around it fetched when the cache
//! lacks them.

use super::{Engine, Pending, WINDOW};
use crate::client::update::{HitSource, Update};
use crate::proto::search::SearchQuery;
use crate::proto::{ProtoError, Request, SearchOk, SearchOrder};

/// Hits asked of each source.
pub const SEARCH_LIMIT: usize = 50;

impl Engine {
    pub(super) fn search(&mut self, id: u64, query: String, conv: Option<String>) {
        let parsed = match SearchQuery::parse(&query) {
            Ok(q) => q,
            Err(e) => {
                self.dirty.updates.push(Update::SearchEnded {
                    id,
                    error: Some(e.message),
                });
                return;
            }
        };
        if let Some(cache) = self.cache.as_ref() {
            match cache.search(&parsed, conv.as_deref(), SEARCH_LIMIT) {
                Ok(hits) => self.dirty.updates.push(Update::SearchHits {
                    id,
                    source: HitSource::Cache,
                    hits,
                }),
                Err(e) => self.cache_error(e),
            }
        }
        if !self.connected {
            self.dirty.updates.push(Update::SearchEnded {
                id,
                error: Some(crate::client::text::SEARCH_OFFLINE.into()),
            });
            return;
        }
        self.request(
            Request::Search {
                query,
                conversation_id: conv,
                order: SearchOrder::Newest,
                after: None,
                limit: Some(SEARCH_LIMIT as u32),
            },
            Pending::Search { id },
        );
    }

    pub(super) fn on_search_reply(&mut self, id: u64, ok: Result<SearchOk, ProtoError>) {
        match ok {
            Ok(reply) => {
                self.dirty.updates.push(Update::SearchHits {
                    id,
                    source: HitSource::Server,
                    hits: reply.hits,
                });
                self.dirty
                    .updates
                    .push(Update::SearchEnded { id, error: None });
            }
            Err(e) => self.dirty.updates.push(Update::SearchEnded {
                id,
                error: Some(e.message),
            }),
        }
    }

    /// Show `conv` with message `seq` in the window; fetch the messages
    /// around it when the cache does not hold it.
    pub(super) fn jump_to(&mut self, conv: String, seq: u64) {
        let held = self
            .cache
            .as_ref()
            .and_then(|c| c.event(&conv, seq).ok().flatten())
            .is_some();
        let last = self
            .cache
            .as_ref()
            .and_then(|c| c.conversation(&conv).ok().flatten())
            .map_or(seq, |c| c.last_seq.max(seq));
        // The window counts rows from the newest: wide enough to reach
        // `seq` and half a window before it.
        self.window = WINDOW.max((last - seq) as usize + WINDOW / 2);
        self.focused = Some(conv.clone());
        self.dirty.messages = true;
        self.dirty.receipts.insert(conv.clone());
        if !held && self.connected && !self.older.contains_key(&conv) {
            let tag = self.request(
                Request::History {
                    conversation_id: conv.clone(),
                    after: Some(seq.saturating_sub(WINDOW as u64 / 2)),
                    before: None,
                    limit: Some(WINDOW as u32),
                },
                Pending::Older { conv: conv.clone() },
            );
            self.older.insert(conv, tag);
            self.dirty.updates.push(Update::LoadingOlder(true));
        }
    }
}
