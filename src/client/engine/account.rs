//! The account's own requests: listing and ending device sessions and
//! changing the password. Answers become an [`Update::Sessions`] or a
//! notice; refusals become a notice saying what to do.

use super::{Engine, Pending};
use crate::client::accounts::{password_notice, revoked_notice};
use crate::client::action::WebhookOp;
use crate::client::text::clean;
use crate::client::update::Update;
use crate::proto::{OkFrame, Request, RevokedOk, SessionsOk, WebhookOk, WebhooksOk, now_millis};

/// Which account request an answer belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccountRequest {
    Sessions,
    /// `Some(id)`: one session; `None`: every other one.
    Revoke(Option<String>),
    Password,
    /// A webhook request (the id of the one revoked).
    Webhook(WebhookOp),
}

impl Engine {
    pub(super) fn list_sessions(&mut self) {
        self.account_request(Request::Sessions {}, AccountRequest::Sessions);
    }

    pub(super) fn revoke_session(&mut self, id: Option<String>) {
        let req = Request::RevokeSession {
            session_id: id.clone(),
            others: id.is_none(),
        };
        self.account_request(req, AccountRequest::Revoke(id));
    }

    pub(super) fn change_password(&mut self, old: String, new: String) {
        let req = Request::ChangePassword {
            old_password: old,
            new_password: new,
        };
        self.account_request(req, AccountRequest::Password);
    }

    pub(super) fn webhook(&mut self, conv: String, op: WebhookOp) {
        let req = match &op {
            WebhookOp::Create(name) => Request::WebhookCreate {
                conversation_id: conv,
                name: name.clone(),
            },
            WebhookOp::List => Request::WebhookList {
                conversation_id: conv,
            },
            WebhookOp::Revoke(id) => Request::WebhookRevoke {
                webhook_id: id.clone(),
            },
        };
        self.account_request(req, AccountRequest::Webhook(op));
    }

    fn account_request(&mut self, req: Request, what: AccountRequest) {
        if !self.connected {
            self.notice("not connected; try again when the connection is back");
            return;
        }
        self.request(req, Pending::Account(what));
    }

    pub(super) fn on_account_reply(&mut self, what: AccountRequest, ok: OkFrame) {
        match what {
            AccountRequest::Sessions => match ok.parse::<SessionsOk>() {
                Ok(s) => self.dirty.updates.push(Update::Sessions(s.sessions)),
                Err(e) => tracing::warn!("bad sessions reply: {e}"),
            },
            AccountRequest::Revoke(id) => {
                let revoked = ok.parse::<RevokedOk>().map(|r| r.revoked).unwrap_or(0);
                self.notice(revoked_notice(id.as_deref(), revoked));
                self.list_sessions();
            }
            AccountRequest::Password => {
                let revoked = ok.parse::<RevokedOk>().map(|r| r.revoked).unwrap_or(0);
                self.notice(password_notice(revoked));
            }
            AccountRequest::Webhook(op) => {
                let text = webhook_notice(&op, ok, &self.server);
                self.notice(text);
            }
        }
        self.dirty.now = true;
    }
}

/// The one line a webhook answer becomes.
fn webhook_notice(op: &WebhookOp, ok: OkFrame, server: &str) -> String {
    match op {
        WebhookOp::Create(_) => match ok.parse::<WebhookOk>() {
            Ok(w) => format!(
                "webhook {} posts as {}; its URL, shown once: {}",
                clean(&w.webhook.id),
                clean(&w.webhook.name),
                crate::client::net::hook_url(server, &clean(&w.path))
            ),
            Err(_) => "the server's answer was not understood".into(),
        },
        WebhookOp::List => match ok.parse::<WebhooksOk>() {
            Ok(l) if l.webhooks.is_empty() => "no webhooks here".into(),
            Ok(l) => {
                let now = now_millis();
                let each: Vec<String> = l
                    .webhooks
                    .iter()
                    .map(|w| {
                        let used = w
                            .last_used
                            .map_or("never".into(), |t| crate::client::accounts::ago(now, t));
                        format!(
                            "{} {} by {}, last used {used}",
                            clean(&w.id),
                            clean(&w.name),
                            clean(&w.created_by)
                        )
                    })
                    .collect();
                format!("webhooks: {}", each.join("; "))
            }
            Err(_) => "the server's answer was not understood".into(),
        },
        WebhookOp::Revoke(id) => format!("revoked webhook {}", clean(id)),
    }
}
