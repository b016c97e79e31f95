//! The writer's mirror of what validation needs: conversation kinds, last
//! seqs, members, channel names, DM keys and usernames. Built from the same
//! snapshot the hub starts from, and rebuilt from the database after a
//! failed commit.

use super::roles::Blocks;
use super::{Snapshot, StoreError};
use crate::proto::{ConvKind, MemberRole};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};

#[derive(Debug)]
pub(super) struct ConvMirror {
    pub(super) kind: ConvKind,
    pub(super) last_seq: u64,
    pub(super) members: HashSet<String>,
    /// Owner and admins.
    pub(super) roles: HashMap<String, MemberRole>,
    /// A secret conversation.
    pub(super) encrypted: bool,
}

impl ConvMirror {
    /// `user`'s role (members without one are plain members).
    pub(super) fn role(&self, user: &str) -> MemberRole {
        self.roles.get(user).copied().unwrap_or_default()
    }
}

#[derive(Debug, Default)]
pub(super) struct Mirror {
    pub(super) convs: HashMap<String, ConvMirror>,
    pub(super) channels: HashMap<String, String>,
    pub(super) dms: HashMap<String, String>,
    pub(super) users: HashSet<String>,
    /// Bot accounts: their events are marked `bot`.
    pub(super) bots: HashSet<String>,
    /// (blocker, blocked).
    pub(super) blocks: Blocks,
    /// How many conversations each user is in.
    pub(super) memberships: HashMap<String, usize>,
}

pub(super) use crate::store::rules::dm_key;
use crate::store::rules::secret::secret_dm_key;

impl Mirror {
    pub(super) fn from_snapshot(snap: &Snapshot) -> Mirror {
        let mut m = Mirror {
            users: snap.users.iter().cloned().collect(),
            bots: snap.bots.iter().cloned().collect(),
            blocks: Blocks::from_pairs(snap.blocks.iter().cloned()),
            ..Mirror::default()
        };
        let secret: HashSet<&str> = snap.encrypted.iter().map(String::as_str).collect();
        for c in &snap.conversations {
            match (c.kind, &c.name) {
                (ConvKind::Channel, Some(name)) => {
                    m.channels.insert(name.clone(), c.id.clone());
                }
                (ConvKind::Dm, _) => {
                    // A DM's members never change.
                    let key = if secret.contains(c.id.as_str()) {
                        secret_dm_key(c.receipts.keys())
                    } else {
                        dm_key(c.receipts.keys())
                    };
                    m.dms.insert(key, c.id.clone());
                }
                _ => {}
            }
            for u in c.receipts.keys() {
                *m.memberships.entry(u.clone()).or_default() += 1;
            }
            m.convs.insert(
                c.id.clone(),
                ConvMirror {
                    kind: c.kind,
                    last_seq: c.last_seq,
                    members: c.receipts.keys().cloned().collect(),
                    roles: c.roles.iter().map(|(u, r)| (u.clone(), *r)).collect(),
                    encrypted: secret.contains(c.id.as_str()),
                },
            );
        }
        m
    }

    pub(super) fn load(conn: &Connection) -> Result<Mirror, StoreError> {
        Ok(Mirror::from_snapshot(&super::read::load_snapshot(conn)?))
    }
}
