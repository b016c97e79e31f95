//! UI actions: each becomes cache writes (the outbox first, so nothing the
//! user typed is lost) and requests.

use super::{Engine, Pending, WINDOW};
use crate::client::Action;
use crate::client::cache::{OutboxItem, OutboxRequest};
use crate::client::net::{Credentials, NetCommand};
use crate::client::text::clean;
use crate::client::update::Update;
use crate::proto::{ConvKind, MemberRole, Request, now_millis};

/// A fresh client_msg_id: a UUIDv7, so that one client's ids grow with
/// time. The server's idempotency index is ordered by (sender, id): ids
/// that grow land next to the sender's previous one, on a page that is
/// already being written, where random ones would each touch a page of
/// their own.
pub fn new_client_msg_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

impl Engine {
    pub(super) fn on_action(&mut self, action: Action) {
        match action {
            Action::Send {
                conv,
                body,
                reply_to,
            } => self.enqueue(
                new_client_msg_id(),
                conv,
                OutboxRequest::Send { body, reply_to },
            ),
            Action::SendWithId {
                conv,
                body,
                client_msg_id,
            } => self.enqueue(
                client_msg_id,
                conv,
                OutboxRequest::Send {
                    body,
                    reply_to: None,
                },
            ),
            Action::Follow { conv, last } => self.follow(conv, last),
            Action::Upload {
                conv,
                path,
                caption,
            } => self.upload(conv, path, caption),
            Action::Download { file, purpose } => self.download(file, purpose),
            Action::Edit { conv, seq, body } => self.enqueue(
                new_client_msg_id(),
                conv,
                OutboxRequest::Edit {
                    target_seq: seq,
                    body,
                },
            ),
            Action::Delete { conv, seq } => self.enqueue(
                new_client_msg_id(),
                conv,
                OutboxRequest::Delete { target_seq: seq },
            ),
            Action::React { conv, seq, emoji } => {
                // Reacting again with the same emoji takes it back.
                let me = self.me.clone().unwrap_or_default();
                let remove = self
                    .cache
                    .as_ref()
                    .and_then(|c| c.messages(&conv, Some(seq + 1), 1).ok())
                    .and_then(|rows| {
                        rows.into_iter().find_map(|r| match r {
                            crate::client::view::MessageRow::Message(m) if m.seq == Some(seq) => {
                                Some(m)
                            }
                            _ => None,
                        })
                    })
                    .is_some_and(|m| {
                        m.reactions
                            .iter()
                            .any(|r| r.emoji == emoji && r.users.contains(&me))
                    });
                self.enqueue(
                    new_client_msg_id(),
                    conv,
                    OutboxRequest::React {
                        target_seq: seq,
                        emoji,
                        remove,
                    },
                )
            }
            Action::MarkRead { conv, seq } => {
                let me = self.me.clone().unwrap_or_default();
                if let Some(cache) = self.cache.as_mut()
                    && let Err(e) = cache.apply_receipt(&conv, &me, seq, seq)
                {
                    self.cache_error(e);
                }
                self.dirty.list = true;
                self.dirty.receipts.insert(conv.clone());
                if self.connected {
                    let read = self.privacy.read_receipts.then_some(seq);
                    self.request(
                        Request::Receipt {
                            conversation_id: conv,
                            delivered: Some(seq),
                            read,
                        },
                        Pending::Ignore,
                    );
                }
            }
            Action::Typing { conv, active } => {
                if self.connected && self.privacy.typing {
                    self.request(
                        Request::Typing {
                            conversation_id: conv,
                            active,
                        },
                        Pending::Ignore,
                    );
                }
            }
            Action::SetPresence(status) => {
                if self.connected {
                    self.request(Request::Presence { status }, Pending::Ignore);
                }
            }
            Action::Join { name } => {
                self.request(
                    Request::Join {
                        conversation_id: None,
                        name: Some(name.trim_start_matches('#').to_string()),
                    },
                    Pending::Conv { focus: true },
                );
            }
            Action::Leave { conv } => {
                self.request(
                    Request::Leave {
                        conversation_id: conv.clone(),
                    },
                    Pending::Leave { conv },
                );
            }
            Action::OpenDm { user } => {
                self.request(
                    Request::Create {
                        kind: ConvKind::Dm,
                        name: None,
                        members: vec![user],
                        encrypted: false,
                    },
                    Pending::Conv { focus: true },
                );
            }
            Action::CreateGroup { name, users } => {
                self.request(
                    Request::Create {
                        kind: ConvKind::Group,
                        name: Some(name),
                        members: users,
                        encrypted: false,
                    },
                    Pending::Conv { focus: true },
                );
            }
            Action::CreateSecret { name, users } => {
                let kind = if name.is_none() && users.len() == 1 {
                    ConvKind::Dm
                } else {
                    ConvKind::Group
                };
                self.request(
                    Request::Create {
                        kind,
                        name,
                        members: users,
                        encrypted: true,
                    },
                    Pending::Conv { focus: true },
                );
            }
            Action::Devices { user } => self.show_devices(user),
            Action::Verify { user, device_id } => self.start_verification(user, device_id),
            Action::AcceptIdentity { user } => self.accept_identity(user),
            Action::ResetIdentity => self.reset_identity(),
            Action::CancelVerification { transaction_id } => {
                self.cancel_verification(transaction_id)
            }
            Action::MarkVerified { user } => self.mark_verified(user),
            Action::ConfirmVerification { transaction_id, ok } => {
                self.confirm_verification(transaction_id, ok)
            }
            Action::CreateChannel { name } => {
                self.request(
                    Request::Create {
                        kind: ConvKind::Channel,
                        name: Some(name.trim_start_matches('#').to_string()),
                        members: Vec::new(),
                        encrypted: false,
                    },
                    Pending::Conv { focus: true },
                );
            }
            Action::Invite { conv, users } => {
                self.request(
                    Request::AddMembers {
                        conversation_id: conv,
                        members: users,
                    },
                    Pending::Conv { focus: false },
                );
            }
            Action::Kick { conv, users } => {
                self.request(
                    Request::RemoveMembers {
                        conversation_id: conv,
                        members: users,
                    },
                    Pending::Conv { focus: false },
                );
            }
            Action::SetAdmin { conv, user, admin } => {
                let role = if admin {
                    MemberRole::Admin
                } else {
                    MemberRole::Member
                };
                self.request(
                    Request::SetMemberRole {
                        conversation_id: conv,
                        user,
                        role,
                    },
                    Pending::Conv { focus: false },
                );
            }
            Action::Block { user, on } => {
                let shown = clean(&user);
                let (req, notice) = if on {
                    (
                        Request::Block { user },
                        format!("blocked {shown}: they cannot reach you or see your presence"),
                    )
                } else {
                    (Request::Unblock { user }, format!("unblocked {shown}"))
                };
                self.request(req, Pending::Done(notice));
            }
            Action::Mute { conv, muted } => {
                if let Some(cache) = self.cache.as_mut()
                    && let Err(e) = cache.set_muted(&conv, muted)
                {
                    self.cache_error(e);
                }
                self.dirty.list = true;
            }
            Action::LoadOlder { conv, before_seq } => self.load_older(conv, before_seq),
            Action::OpenConversation { conv } => {
                if self.focused.as_deref() != Some(conv.as_str()) {
                    self.window = WINDOW;
                }
                self.focused = Some(conv.clone());
                self.dirty.messages = true;
                self.dirty.now = true;
                self.dirty.receipts.insert(conv);
            }
            Action::Login { username, password } => {
                self.net.send(NetCommand::Credentials(Credentials::Login {
                    username,
                    password,
                }));
            }
            Action::Register {
                username,
                password,
                invite,
            } => {
                self.net
                    .send(NetCommand::Credentials(Credentials::Register {
                        username,
                        password,
                        invite,
                    }));
            }
            Action::Sessions => self.list_sessions(),
            Action::RevokeSession { id } => self.revoke_session(Some(id)),
            Action::RevokeOtherSessions => self.revoke_session(None),
            Action::Webhook { conv, op } => self.webhook(conv, op),
            Action::ChangePassword { old, new } => self.change_password(old, new),
            Action::Search { id, query, conv } => self.search(id, query, conv),
            Action::JumpTo { conv, seq } => self.jump_to(conv, seq),
            Action::Quit => self.quit = true,
        }
    }

    /// Write to the outbox first, then send if connected.
    pub(super) fn enqueue(&mut self, client_msg_id: String, conv: String, request: OutboxRequest) {
        let item = OutboxItem {
            client_msg_id,
            conversation_id: conv,
            request,
            created_at: now_millis(),
        };
        let Some(cache) = self.cache.as_mut() else {
            self.notice("not logged in");
            return;
        };
        if let Err(e) = cache.outbox_push(&item) {
            return self.cache_error(e);
        }
        self.dirty.messages = true;
        self.dirty.list = true;
        self.send_outbox();
    }

    fn load_older(&mut self, conv: String, before_seq: u64) {
        self.window += WINDOW;
        self.dirty.messages = true;
        let held_below = self
            .cache
            .as_ref()
            .and_then(|c| c.oldest_held(&conv).ok().flatten())
            .is_some_and(|oldest| oldest < before_seq);
        if held_below || before_seq <= 1 || self.older.contains_key(&conv) || !self.connected {
            self.dirty.updates.push(Update::LoadingOlder(false));
            return;
        }
        let tag = self.request(
            Request::History {
                conversation_id: conv.clone(),
                after: None,
                before: Some(before_seq),
                limit: Some(WINDOW as u32),
            },
            Pending::Older { conv: conv.clone() },
        );
        self.older.insert(conv, tag);
        self.dirty.updates.push(Update::LoadingOlder(true));
    }
}
