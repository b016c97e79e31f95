//! Files in the store: who uploaded which bytes (their quota, and the proof
//! that they hold what they share), which `file` events share which bytes
//! (who may download them), and what nothing refers to any more.
//!
//! The bytes themselves live in a blob store beside the database
//! (`server::files`); these tables are the only record of who may read
//! them.

use super::read::Readers;
use super::writer::{Writer, rejected};
use super::{AccountReply, StoreError};
use crate::proto::{ErrorCode, EventBody, Millis, now_millis};
use rusqlite::{OptionalExtension, params};

impl Writer {
    /// Record that `username` holds the bytes of `digest`, within their
    /// quota: a new upload counts `size` against it, the same bytes again
    /// only refresh the record.
    pub(super) fn record_upload(
        &mut self,
        username: &str,
        digest: &str,
        size: u64,
        quota: u64,
    ) -> Result<AccountReply, StoreError> {
        let known: Option<i64> = self
            .conn
            .prepare_cached("SELECT size FROM uploads WHERE username = ?1 AND digest = ?2")?
            .query_row(params![username, digest], |r| r.get(0))
            .optional()?;
        if known.is_none() {
            let used = usage(&self.conn, username)?;
            if used.saturating_add(size) > quota {
                return Err(rejected(
                    ErrorCode::LimitExceeded,
                    format!(
                        "over your storage quota: {used} of {quota} bytes are used by your uploads"
                    ),
                ));
            }
        }
        self.conn
            .prepare_cached(
                "INSERT INTO uploads (username, digest, size, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (username, digest) DO UPDATE SET at = excluded.at",
            )?
            .execute(params![username, digest, size as i64, now_millis()])?;
        Ok(AccountReply::Done)
    }

    /// Forget uploads made before `before` that none of their uploader's
    /// `file` events refers to; answers the digests that nothing at all
    /// refers to any more, whose bytes may go.
    pub(super) fn collect_uploads(&mut self, before: Millis) -> Result<AccountReply, StoreError> {
        let gone: Vec<String> = self
            .conn
            .prepare_cached(
                "DELETE FROM uploads
                 WHERE at < ?1
                   AND NOT EXISTS (SELECT 1 FROM file_refs f
                                   WHERE f.digest = uploads.digest AND f.sender = uploads.username)
                 RETURNING digest",
            )?
            .query_map([before], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut orphans = Vec::new();
        for digest in gone {
            if !referenced(&self.conn, &digest)? && !orphans.contains(&digest) {
                orphans.push(digest);
            }
        }
        Ok(AccountReply::Digests(orphans))
    }

    /// Keep `file_refs` in step with an event just written at `seq`: a
    /// `file` event refers to its bytes, deleting it ends that.
    pub(super) fn track_file(
        &self,
        user: &str,
        conv: &str,
        seq: u64,
        body: &EventBody,
    ) -> Result<(), StoreError> {
        match body {
            EventBody::File { file, .. } => {
                self.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO file_refs (digest, conversation_id, seq, sender)
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![file.digest, conv, seq as i64, user])?;
            }
            EventBody::Delete { target_seq } => {
                self.conn
                    .prepare_cached(
                        "DELETE FROM file_refs WHERE conversation_id = ?1 AND seq = ?2",
                    )?
                    .execute(params![conv, *target_seq as i64])?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Bytes `username`'s uploads take.
fn usage(c: &rusqlite::Connection, username: &str) -> Result<u64, StoreError> {
    let used: i64 = c
        .prepare_cached("SELECT COALESCE(SUM(size), 0) FROM uploads WHERE username = ?1")?
        .query_row([username], |r| r.get(0))?;
    Ok(used.max(0) as u64)
}

/// Whether any upload or `file` event refers to `digest`.
fn referenced(c: &rusqlite::Connection, digest: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM uploads WHERE digest = ?1)
             OR EXISTS (SELECT 1 FROM file_refs WHERE digest = ?1)",
    )?
    .query_row([digest], |r| r.get(0))?)
}

impl Readers {
    /// Bytes `username`'s uploads take against their quota, and whether
    /// one of them is `digest` already (which would not count again).
    pub async fn upload_usage(
        &self,
        username: &str,
        digest: Option<String>,
    ) -> Result<(u64, bool), StoreError> {
        let username = username.to_string();
        self.with(move |c| {
            let held = match digest {
                None => false,
                Some(d) => c
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM uploads WHERE username = ?1 AND digest = ?2)",
                    )?
                    .query_row(params![username, d], |r| r.get(0))?,
            };
            Ok((usage(c, &username)?, held))
        })
        .await
    }

    /// Whether `username` may download `digest`: they are a member of a
    /// conversation with a `file` event (not deleted) of it, or uploaded it
    /// themselves.
    pub async fn may_read_file(&self, username: &str, digest: &str) -> Result<bool, StoreError> {
        let (username, digest) = (username.to_string(), digest.to_string());
        self.with(move |c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM file_refs f
                                JOIN members m ON m.conversation_id = f.conversation_id
                                WHERE f.digest = ?1 AND m.username = ?2)
                     OR EXISTS (SELECT 1 FROM uploads WHERE digest = ?1 AND username = ?2)",
            )?
            .query_row(params![digest, username], |r| r.get(0))?)
        })
        .await
    }

    /// Whether any upload or `file` event refers to `digest`.
    pub async fn file_referenced(&self, digest: &str) -> Result<bool, StoreError> {
        let digest = digest.to_string();
        self.with(move |c| referenced(c, &digest)).await
    }
}
