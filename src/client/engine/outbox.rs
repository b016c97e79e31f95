//! The outbox on the wire: each entry the cache keeps becomes the request
//! that carries it, with its `client_msg_id`, so a retry is idempotent.

use crate::client::cache::{OutboxItem, OutboxRequest};
use crate::proto::Request;

/// The wire request that carries `item`.
pub fn request_of(item: &OutboxItem) -> Request {
    let conversation_id = item.conversation_id.clone();
    let client_msg_id = item.client_msg_id.clone();
    match item.request.clone() {
        OutboxRequest::Send { body, reply_to } => Request::Send {
            conversation_id,
            client_msg_id,
            body,
            reply_to,
            encrypted: None,
            shares: Vec::new(),
        },
        OutboxRequest::SendFile {
            file,
            caption,
            reply_to,
        } => Request::SendFile {
            conversation_id,
            client_msg_id,
            file,
            caption,
            reply_to,
            encrypted: None,
            shares: Vec::new(),
        },
        OutboxRequest::Edit { target_seq, body } => Request::Edit {
            conversation_id,
            client_msg_id,
            target_seq,
            body,
            encrypted: None,
            shares: Vec::new(),
        },
        OutboxRequest::Delete { target_seq } => Request::Delete {
            conversation_id,
            client_msg_id,
            target_seq,
        },
        OutboxRequest::React {
            target_seq,
            emoji,
            remove,
        } => Request::React {
            conversation_id,
            client_msg_id,
            target_seq,
            emoji,
            remove,
            encrypted: None,
            shares: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(request: OutboxRequest) -> OutboxItem {
        OutboxItem {
            client_msg_id: "m".into(),
            conversation_id: "c".into(),
            request,
            created_at: 0,
        }
    }

    #[test]
    fn items_become_wire_requests() {
        let r = request_of(&item(OutboxRequest::React {
            target_seq: 4,
            emoji: "+1".into(),
            remove: true,
        }));
        assert_eq!(
            r,
            Request::React {
                conversation_id: "c".into(),
                client_msg_id: "m".into(),
                target_seq: 4,
                emoji: "+1".into(),
                remove: true,
                encrypted: None,
                shares: Vec::new(),
            }
        );
        assert!(matches!(
            request_of(&item(OutboxRequest::Send {
                body: "b".into(),
                reply_to: None
            })),
            Request::Send { .. }
        ));
    }
}
