//! Publishing: after each batch of work, what changed leaves as one batch
//! of [`Update`]s, and delivered pointers go to the server.

use super::{Engine, Pending};
use crate::client::update::Update;
use crate::proto::Request;

impl Engine {
    pub(super) async fn publish(&mut self) {
        self.send_delivered();
        self.publish_follows();
        let dirty = std::mem::take(&mut self.dirty);
        let mut batch = dirty.updates;
        if let Some(cache) = self.cache.as_ref() {
            if dirty.list {
                match cache.conversations() {
                    Ok(list) => batch.push(Update::Conversations(list)),
                    Err(e) => tracing::error!("cache: {e}"),
                }
            }
            if let (Some(conv), true) = (&self.focused, dirty.messages) {
                match cache.messages(conv, None, self.window) {
                    Ok(rows) => batch.push(Update::Messages {
                        conv: conv.clone(),
                        rows,
                    }),
                    Err(e) => tracing::error!("cache: {e}"),
                }
            }
            let mut receipts: Vec<&String> = dirty.receipts.iter().collect();
            receipts.sort();
            for conv in receipts {
                if let Ok(r) = cache.receipts(conv) {
                    batch.push(Update::Receipts {
                        conv: conv.clone(),
                        receipts: r,
                    });
                }
            }
        }
        if !dirty.incoming.is_empty() {
            batch.push(Update::Incoming(dirty.incoming));
        }
        if batch.is_empty() {
            return;
        }
        if self.out.send(batch).await.is_err() {
            // Nobody listens any more: the front end is gone.
            self.quit = true;
        }
    }

    /// Tell the server how far each touched conversation is delivered here.
    fn send_delivered(&mut self) {
        if !self.connected {
            return;
        }
        let convs: Vec<String> = self.dirty.delivered.drain().collect();
        let me = self.me.clone().unwrap_or_default();
        for conv in convs {
            let Some(cache) = self.cache.as_ref() else {
                return;
            };
            let cursor = cache.cursor(&conv).unwrap_or(0);
            let mine = cache
                .receipts(&conv)
                .ok()
                .and_then(|r| r.get(&me).copied())
                .unwrap_or_default();
            let sent = self.delivered_sent.get(&conv).copied().unwrap_or(0);
            if cursor > mine.delivered && cursor > sent {
                self.delivered_sent.insert(conv.clone(), cursor);
                self.request(
                    Request::Receipt {
                        conversation_id: conv,
                        delivered: Some(cursor),
                        read: None,
                    },
                    Pending::Ignore,
                );
            }
        }
    }
}
