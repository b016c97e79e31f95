//! Who may change a group or channel, and blocking.
//!
//! A group or channel has one owner (its creator, until they hand it over)
//! and any number of admins. Owners and admins add and remove members,
//! rename, set roles and delete any message; only the owner makes or
//! unmakes admins' peers of equal rank (demotes or removes an admin) or
//! hands the conversation over. Someone removed from a channel cannot join
//! it again until an admin adds them back. A user who blocks another is not
//! put in a DM or group by them and receives nothing from them in a DM;
//! nobody is told.

use super::mirror::ConvMirror;
use super::writer::{Writer, rejected};
use super::{Appended, Committed, StoreError};
use crate::proto::{ConvKind, ErrorCode, EventBody, MemberRole, now_millis};
use rusqlite::{OptionalExtension, params};
use std::collections::{HashMap, HashSet};

/// Who blocks whom, looked up without building keys: the writer's mirror
/// and the hub (for presence) each keep one.
#[derive(Debug, Default)]
pub struct Blocks(HashMap<String, HashSet<String>>);

impl Blocks {
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Blocks {
        let mut b = Blocks::default();
        for (blocker, blocked) in pairs {
            b.set(&blocker, &blocked, true);
        }
        b
    }

    /// Whether `blocker` blocks `blocked`.
    pub fn blocks(&self, blocker: &str, blocked: &str) -> bool {
        self.0.get(blocker).is_some_and(|s| s.contains(blocked))
    }

    /// `blocker` starts (`on`) or stops blocking `blocked`.
    pub fn set(&mut self, blocker: &str, blocked: &str, on: bool) {
        if on {
            self.0
                .entry(blocker.to_string())
                .or_default()
                .insert(blocked.to_string());
        } else if let Some(s) = self.0.get_mut(blocker) {
            s.remove(blocked);
            if s.is_empty() {
                self.0.remove(blocker);
            }
        }
    }
}

impl Writer {
    /// A group or channel `user` manages (owner or admin).
    pub(super) fn managed_conv(
        &self,
        user: &str,
        id: &str,
        dm_why: &str,
        why: &str,
    ) -> Result<&ConvMirror, StoreError> {
        let conv = self.member_conv(user, id)?;
        if conv.kind == ConvKind::Dm {
            return Err(rejected(ErrorCode::InvalidArgument, dm_why));
        }
        if !conv.role(user).manages() {
            return Err(rejected(ErrorCode::Forbidden, why));
        }
        Ok(conv)
    }

    /// Refuse when `blocker` blocks `user` (without saying so).
    pub(super) fn check_not_blocked_by(&self, blocker: &str, user: &str) -> Result<(), StoreError> {
        if self.mirror.blocks.blocks(blocker, user) {
            return Err(rejected(
                ErrorCode::Forbidden,
                format!("you cannot add {blocker} to a conversation"),
            ));
        }
        Ok(())
    }

    /// Whether `user` is an admin of the server.
    pub(super) fn server_admin(&self, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM users WHERE username = ?1 AND role = 'admin'
                 AND deactivated_at IS NULL",
            )?
            .query_row([user], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Record `role` for a member, in the database and the mirror.
    pub(super) fn store_role(
        &mut self,
        conv: &str,
        user: &str,
        role: MemberRole,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE members SET role = ?3 WHERE conversation_id = ?1 AND username = ?2",
            )?
            .execute(params![conv, user, role.as_str()])?;
        if let Some(c) = self.mirror.convs.get_mut(conv) {
            if role.manages() {
                c.roles.insert(user.to_string(), role);
            } else {
                c.roles.remove(user);
            }
        }
        Ok(())
    }

    /// Members added by an admin may join again later.
    pub(super) fn forget_removals(&self, conv: &str, users: &[String]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM removed WHERE conversation_id = ?1 AND username = ?2")?;
        for u in users {
            stmt.execute(params![conv, u])?;
        }
        Ok(())
    }

    /// Refuse a join by someone removed from the channel.
    pub(super) fn check_not_removed(&self, conv: &str, user: &str) -> Result<(), StoreError> {
        let removed = self
            .conn
            .prepare_cached("SELECT 1 FROM removed WHERE conversation_id = ?1 AND username = ?2")?
            .query_row(params![conv, user], |_| Ok(()))
            .optional()?
            .is_some();
        if removed {
            return Err(rejected(
                ErrorCode::Forbidden,
                "you were removed from this channel; an admin may add you back",
            ));
        }
        Ok(())
    }

    fn drop_members(&mut self, conv: &str, users: &[String]) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("DELETE FROM members WHERE conversation_id = ?1 AND username = ?2")?;
        for u in users {
            stmt.execute(params![conv, u])?;
        }
        if let Some(c) = self.mirror.convs.get_mut(conv) {
            for u in users {
                if c.members.remove(u)
                    && let Some(n) = self.mirror.memberships.get_mut(u)
                {
                    *n = n.saturating_sub(1);
                }
                c.roles.remove(u);
            }
        }
        Ok(())
    }

    /// `user` leaves a group or channel. An owner who leaves others behind
    /// hands it to an admin (the first by name), or else to a member.
    pub(super) fn leave(&mut self, user: &str, conv_id: &str) -> Result<Appended, StoreError> {
        let conv = self.member_conv(user, conv_id)?;
        if conv.kind == ConvKind::Dm {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "you cannot leave a DM",
            ));
        }
        let heir = (conv.role(user) == MemberRole::Owner)
            .then(|| {
                let others = conv.members.iter().filter(|m| *m != user);
                let admins = others
                    .clone()
                    .filter(|m| conv.role(m) == MemberRole::Admin)
                    .min();
                admins.or_else(|| others.min()).cloned()
            })
            .flatten();
        if let Some(heir) = heir {
            self.store_role(conv_id, &heir, MemberRole::Owner)?;
            self.write_event(
                user,
                conv_id,
                None,
                EventBody::Role {
                    user: heir,
                    role: MemberRole::Owner,
                },
            )?;
        }
        let ev = self.write_event(
            user,
            conv_id,
            None,
            EventBody::Leave {
                members: vec![user.to_string()],
            },
        )?;
        self.drop_members(conv_id, &[user.to_string()])?;
        Ok(ev)
    }

    /// An admin removes members. Nobody removes the owner; only the owner
    /// removes an admin; leaving is how one removes oneself.
    pub(super) fn remove_members(
        &mut self,
        user: &str,
        conv_id: &str,
        members: Vec<String>,
    ) -> Result<Appended, StoreError> {
        let conv = self.managed_conv(
            user,
            conv_id,
            "a DM has exactly two members",
            "only an admin of this conversation may remove members",
        )?;
        let mine = conv.role(user);
        let mut gone: Vec<String> = Vec::new();
        for m in members {
            if m == user {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "to remove yourself, leave",
                ));
            }
            if !conv.members.contains(&m) {
                return Err(rejected(
                    ErrorCode::NotFound,
                    format!("{m} is not a member"),
                ));
            }
            match conv.role(&m) {
                MemberRole::Owner => {
                    return Err(rejected(ErrorCode::Forbidden, "nobody removes the owner"));
                }
                MemberRole::Admin if mine != MemberRole::Owner => {
                    return Err(rejected(
                        ErrorCode::Forbidden,
                        "only the owner removes an admin",
                    ));
                }
                _ => {}
            }
            if !gone.contains(&m) {
                gone.push(m);
            }
        }
        if gone.is_empty() {
            return Ok(Appended {
                conversation_id: conv_id.to_string(),
                seq: None,
            });
        }
        gone.sort();
        let ev = self.write_event(
            user,
            conv_id,
            None,
            EventBody::Remove {
                members: gone.clone(),
            },
        )?;
        self.drop_members(conv_id, &gone)?;
        let mut stmt = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO removed (conversation_id, username, removed_by, at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        let now = now_millis();
        for m in &gone {
            stmt.execute(params![conv_id, m, user, now])?;
        }
        Ok(ev)
    }

    /// Give `target` a role. Admins make members admins; the owner also
    /// demotes admins, and hands the conversation over (`owner`), becoming
    /// an admin.
    pub(super) fn set_role(
        &mut self,
        user: &str,
        conv_id: &str,
        target: &str,
        role: MemberRole,
    ) -> Result<Appended, StoreError> {
        let conv = self.managed_conv(
            user,
            conv_id,
            "a DM has no roles",
            "only an admin of this conversation may change roles",
        )?;
        if !conv.members.contains(target) {
            return Err(rejected(
                ErrorCode::NotFound,
                format!("{target} is not a member"),
            ));
        }
        let (mine, theirs) = (conv.role(user), conv.role(target));
        if theirs == role {
            return Ok(Appended {
                conversation_id: conv_id.to_string(),
                seq: None,
            });
        }
        let owner_only = role == MemberRole::Owner || theirs == MemberRole::Admin;
        if theirs == MemberRole::Owner {
            return Err(rejected(
                ErrorCode::Forbidden,
                "the owner's role changes only when they hand the conversation over",
            ));
        }
        if owner_only && mine != MemberRole::Owner {
            return Err(rejected(ErrorCode::Forbidden, "only the owner may do that"));
        }
        if role == MemberRole::Owner {
            self.store_role(conv_id, user, MemberRole::Admin)?;
        }
        self.store_role(conv_id, target, role)?;
        self.write_event(
            user,
            conv_id,
            None,
            EventBody::Role {
                user: target.to_string(),
                role,
            },
        )
    }

    /// `blocker` starts (`on`) or stops blocking `blocked`.
    pub(super) fn block(
        &mut self,
        blocker: &str,
        blocked: &str,
        on: bool,
    ) -> Result<(), StoreError> {
        if blocker == blocked {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "you cannot block yourself",
            ));
        }
        self.check_user(blocked)?;
        if on {
            self.conn.execute(
                "INSERT OR IGNORE INTO blocks (blocker, blocked, created_at) VALUES (?1, ?2, ?3)",
                params![blocker, blocked, now_millis()],
            )?;
        } else {
            self.conn.execute(
                "DELETE FROM blocks WHERE blocker = ?1 AND blocked = ?2",
                params![blocker, blocked],
            )?;
        }
        self.mirror.blocks.set(blocker, blocked, on);
        self.changes.push(Committed::Block {
            blocker: blocker.to_string(),
            blocked: blocked.to_string(),
            on,
        });
        Ok(())
    }
}
