//! Running a parsed slash command: most become one [`Action`], the
//! message-relative ones go through the same paths as their keys.

use super::App;
use crate::client::Action;
use crate::proto::PresenceStatus;
use crate::ui::commands::{Command, SessionsCmd};
use crate::ui::strings;

impl App {
    pub(crate) fn execute(&mut self, cmd: Command, out: &mut Vec<Action>) {
        let conv = self.focused.clone();
        let need_conv = |app: &mut App| {
            if conv.is_none() {
                app.status = Some(strings::NO_CONVERSATION.to_string());
            }
            conv.clone()
        };
        match cmd {
            Command::Join(name) => out.push(Action::Join { name }),
            Command::Upload(path) => self.upload_path(&path, out),
            Command::Dm(user) => match self.model.dm_with(&user).map(|c| c.id.clone()) {
                Some(id) => self.focus(id, out),
                None => out.push(Action::OpenDm { user }),
            },
            Command::Group { name, users } => out.push(Action::CreateGroup { name, users }),
            Command::Secret { name, users } => {
                let dm = match (&name, users.as_slice()) {
                    (None, [user]) => self.model.secret_dm_with(user).map(|c| c.id.clone()),
                    _ => None,
                };
                match dm {
                    Some(id) => self.focus(id, out),
                    None => out.push(Action::CreateSecret { name, users }),
                }
            }
            Command::Devices(user) => {
                let user = user.unwrap_or_else(|| self.model.me.clone());
                self.open_devices(user, out);
            }
            Command::Safety(user) => self.open_safety(user, out),
            Command::Verify(target) => self.verify_command(target, out),
            Command::Accept(user) => out.push(Action::AcceptIdentity { user }),
            Command::Channel(name) => out.push(Action::CreateChannel { name }),
            Command::Away => out.push(Action::SetPresence(PresenceStatus::Away)),
            Command::Back => out.push(Action::SetPresence(PresenceStatus::Online)),
            Command::Quit => self.request_quit(out),
            Command::Help => self.open_help(),
            Command::Unread => self.toggle_unread_only(),
            Command::Search(query) => self.open_search(query, out),
            Command::Sessions(what) => match what {
                SessionsCmd::List => self.open_sessions(out),
                SessionsCmd::Revoke(id) => out.push(Action::RevokeSession { id }),
                SessionsCmd::Others => out.push(Action::RevokeOtherSessions),
            },
            Command::Leave => {
                if let Some(conv) = need_conv(self) {
                    self.stop_typing(out);
                    out.push(Action::Leave { conv });
                }
            }
            Command::Invite(users) => {
                if let Some(conv) = need_conv(self) {
                    out.push(Action::Invite { conv, users });
                }
            }
            Command::Webhook(op) => {
                if let Some(conv) = need_conv(self) {
                    out.push(Action::Webhook { conv, op });
                }
            }
            Command::Kick(users) => {
                if let Some(conv) = need_conv(self) {
                    out.push(Action::Kick { conv, users });
                }
            }
            Command::Op(user, admin) => {
                if let Some(conv) = need_conv(self) {
                    out.push(Action::SetAdmin { conv, user, admin });
                }
            }
            Command::Block(user, on) => out.push(Action::Block { user, on }),
            Command::Mute | Command::Unmute => {
                if let Some(conv) = need_conv(self) {
                    let muted = cmd == Command::Mute;
                    out.push(Action::Mute { conv, muted });
                }
            }
            Command::Edit(text) => {
                if text.as_deref().is_some_and(|t| t.trim().is_empty()) {
                    self.status = Some(strings::EMPTY_EDIT.to_string());
                } else {
                    self.begin_edit(text, out);
                }
            }
            Command::Delete => self.begin_delete(),
            Command::React(emoji) => {
                let target = self.message_target(false).and_then(|m| m.seq);
                if let (Some(seq), Some(conv)) = (target, conv) {
                    out.push(Action::React { conv, seq, emoji });
                }
            }
            Command::Reply(None) => self.begin_reply(),
            Command::Reply(Some(body)) => {
                let target = self.message_target(false).and_then(|m| m.seq);
                if let (Some(seq), Some(conv)) = (target, conv) {
                    self.stop_typing(out);
                    out.push(Action::Send {
                        conv,
                        body,
                        reply_to: Some(seq),
                    });
                }
            }
        }
    }
}
