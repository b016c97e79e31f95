//! Publishing: after each batch of work, what changed goes to the UI as one
//! model update, and delivered pointers go to the server.

use super::{Engine, Pending};
use crate::proto::Request;
use crate::ui::UiEvent;

impl Engine {
    pub(super) async fn publish(&mut self) {
        self.send_delivered();
        let dirty = std::mem::take(&mut self.dirty);
        let Some(cache) = self.cache.as_ref() else {
            if !dirty.patches.is_empty() {
                let patches = dirty.patches;
                let _ = self
                    .ui
                    .send(UiEvent::Update(Box::new(move |m| {
                        for p in patches {
                            p(m);
                        }
                    })))
                    .await;
            }
            return;
        };
        let list = if dirty.list {
            cache.conversations().ok()
        } else {
            None
        };
        let messages = match (&self.focused, dirty.messages) {
            (Some(conv), true) => cache
                .messages(conv, None, self.window)
                .ok()
                .map(|rows| (conv.clone(), rows)),
            _ => None,
        };
        let mut receipts = Vec::new();
        for conv in &dirty.receipts {
            if let Ok(r) = cache.receipts(conv) {
                receipts.push((conv.clone(), r));
            }
        }
        let focused = self.focused.clone();
        let nothing = list.is_none()
            && messages.is_none()
            && receipts.is_empty()
            && dirty.patches.is_empty()
            && dirty.incoming.is_empty();
        if nothing {
            return;
        }
        let (patches, incoming) = (dirty.patches, dirty.incoming);
        let update = move |m: &mut crate::ui::Model| {
            for p in patches {
                p(m);
            }
            if let Some(list) = list {
                let users: Vec<String> = list.iter().flat_map(|c| c.members.clone()).collect();
                m.conversations = list;
                for u in users {
                    if !m.users.contains(&u) {
                        m.users.push(u);
                    }
                }
                m.users.sort();
            }
            if let Some((conv, rows)) = messages {
                // Only the focused conversation's window is kept in memory.
                m.messages.retain(|k, _| Some(k) == focused.as_ref());
                m.messages.insert(conv, rows);
            }
            for (conv, r) in receipts {
                m.receipts.insert(conv, r);
            }
            m.incoming.extend(incoming);
        };
        let _ = self.ui.send(UiEvent::Update(Box::new(update))).await;
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
