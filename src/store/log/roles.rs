//! Roles, removals and blocks as the writer stores them; who may change
//! what is decided in [`crate::store::rules`].

use super::writer::Writer;
use super::{Appended, Committed, StoreError};
use crate::proto::{EventBody, MemberRole, now_millis};
use crate::store::rules::{self, decide_now};
use rusqlite::params;
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

    /// `user` leaves a group or channel, handing it to `heir` when they
    /// own it and others stay.
    pub(super) fn leave(
        &mut self,
        user: &str,
        conv_id: &str,
        heir: Option<String>,
    ) -> Result<Appended, StoreError> {
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

    /// An admin removes members; they cannot join again until added back.
    pub(super) fn remove_members(
        &mut self,
        user: &str,
        conv_id: &str,
        gone: Vec<String>,
    ) -> Result<Appended, StoreError> {
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

    /// `blocker` starts (`on`) or stops blocking `blocked`.
    pub(super) fn block(
        &mut self,
        blocker: &str,
        blocked: &str,
        on: bool,
    ) -> Result<(), StoreError> {
        decide_now(rules::block(&mut self.facts(), blocker, blocked))?;
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
