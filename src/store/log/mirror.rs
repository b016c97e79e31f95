//! The writer's mirror of what validation needs: conversation kinds, last
//! seqs, members, channel names, DM keys and usernames, loaded from the
//! database at start and after a failed commit.

use super::StoreError;
use crate::proto::ConvKind;
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
#[derive(Debug)]
pub(super) struct ConvMirror {
    pub(super) kind: ConvKind,
    pub(super) last_seq: u64,
    pub(super) members: HashSet<String>,
}

#[derive(Debug, Default)]
pub(super) struct Mirror {
    pub(super) convs: HashMap<String, ConvMirror>,
    pub(super) channels: HashMap<String, String>,
    pub(super) dms: HashMap<String, String>,
    pub(super) users: HashSet<String>,
}

impl Mirror {
    pub(super) fn load(conn: &Connection) -> Result<Mirror, StoreError> {
        let mut m = Mirror::default();
        let mut stmt = conn.prepare("SELECT username FROM users")?;
        for u in stmt.query_map([], |r| r.get::<_, String>(0))? {
            m.users.insert(u?);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT id, kind, name, dm_key, {} FROM conversations c",
            super::LAST_SEQ
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (id, kind, name, dm_key, last_seq) = row?;
            let kind = ConvKind::parse(&kind)
                .ok_or_else(|| StoreError::Open(format!("conversation {id}: bad kind {kind}")))?;
            if kind == ConvKind::Channel
                && let Some(name) = &name
            {
                m.channels.insert(name.clone(), id.clone());
            }
            if let Some(key) = dm_key {
                m.dms.insert(key, id.clone());
            }
            m.convs.insert(
                id,
                ConvMirror {
                    kind,
                    last_seq: last_seq as u64,
                    members: HashSet::new(),
                },
            );
        }
        let mut stmt = conn.prepare("SELECT conversation_id, username FROM members")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (conv, user) = row?;
            if let Some(c) = m.convs.get_mut(&conv) {
                c.members.insert(user);
            }
        }
        Ok(m)
    }
}
