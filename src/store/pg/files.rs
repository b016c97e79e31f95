//! Files on PostgreSQL: who uploaded which bytes (their quota), which
//! `file` events share which bytes (who may download them), and what
//! nothing refers to any more.

use super::db::{exec, get, one, opt, rows};
use super::{PgReaders, rejected};
use crate::proto::{ErrorCode, EventBody, Millis, now_millis};
use crate::store::log::{AccountReply, StoreError};
use deadpool_postgres::GenericClient;

/// Bytes `username`'s uploads take.
async fn usage(c: &impl GenericClient, username: &str) -> Result<u64, StoreError> {
    let used: i64 = get(
        &one(
            c,
            "SELECT COALESCE(SUM(size), 0)::bigint FROM uploads WHERE username = $1",
            &[&username],
        )
        .await?,
        0,
    )?;
    Ok(used.max(0) as u64)
}

/// Whether any upload or `file` event refers to `digest`.
async fn referenced(c: &impl GenericClient, digest: &str) -> Result<bool, StoreError> {
    get(
        &one(
            c,
            "SELECT EXISTS (SELECT 1 FROM uploads WHERE digest = $1)
                 OR EXISTS (SELECT 1 FROM file_refs WHERE digest = $1)",
            &[&digest],
        )
        .await?,
        0,
    )
}

/// The size of `username`'s upload of `digest`, if they made one.
pub(super) async fn upload_size(
    c: &impl GenericClient,
    username: &str,
    digest: &str,
) -> Result<Option<u64>, StoreError> {
    let row = opt(
        c,
        "SELECT size FROM uploads WHERE username = $1 AND digest = $2",
        &[&username, &digest],
    )
    .await?;
    Ok(row
        .map(|r| get::<i64>(&r, 0))
        .transpose()?
        .map(|s| s.max(0) as u64))
}

/// Record that `username` holds the bytes of `digest`, within their quota:
/// a new upload counts `size` against it, the same bytes again only
/// refresh the record.
pub(super) async fn record_upload(
    c: &impl GenericClient,
    username: &str,
    digest: &str,
    size: u64,
    quota: u64,
) -> Result<AccountReply, StoreError> {
    if upload_size(c, username, digest).await?.is_none() {
        let used = usage(c, username).await?;
        if used.saturating_add(size) > quota {
            return Err(rejected(
                ErrorCode::LimitExceeded,
                format!(
                    "over your storage quota: {used} of {quota} bytes are used by your uploads"
                ),
            ));
        }
    }
    exec(
        c,
        "INSERT INTO uploads (username, digest, size, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (username, digest) DO UPDATE SET at = excluded.at",
        &[
            &username,
            &digest,
            &(size.min(i64::MAX as u64) as i64),
            &now_millis(),
        ],
    )
    .await?;
    Ok(AccountReply::Done)
}

/// Forget uploads made before `before` that none of their uploader's
/// `file` events refers to; answers the digests nothing at all refers to
/// any more, whose bytes may go.
pub(super) async fn collect_uploads(
    c: &impl GenericClient,
    before: Millis,
) -> Result<AccountReply, StoreError> {
    let gone = rows(
        c,
        "DELETE FROM uploads
         WHERE at < $1
           AND NOT EXISTS (SELECT 1 FROM file_refs f
                           WHERE f.digest = uploads.digest AND f.sender = uploads.username)
         RETURNING digest",
        &[&before],
    )
    .await?;
    let mut orphans: Vec<String> = Vec::new();
    for r in &gone {
        let digest: String = get(r, 0)?;
        if !orphans.contains(&digest) && !referenced(c, &digest).await? {
            orphans.push(digest);
        }
    }
    Ok(AccountReply::Digests(orphans))
}

/// Keep `file_refs` in step with an event just written at `seq`: a `file`
/// event refers to its bytes, deleting it ends that.
pub(super) async fn track_file(
    c: &impl GenericClient,
    user: &str,
    conv: &str,
    seq: i64,
    body: &EventBody,
) -> Result<(), StoreError> {
    match body {
        EventBody::File { file, .. } => {
            exec(
                c,
                "INSERT INTO file_refs (digest, conversation_id, seq, sender)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&file.digest, &conv, &seq, &user],
            )
            .await?;
        }
        EventBody::Delete { target_seq } => {
            exec(
                c,
                "DELETE FROM file_refs WHERE conversation_id = $1 AND seq = $2",
                &[&conv, &(*target_seq as i64)],
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

impl PgReaders {
    /// Bytes `username`'s uploads take against their quota, and whether
    /// one of them is `digest` already (which would not count again).
    pub async fn upload_usage(
        &self,
        username: &str,
        digest: Option<String>,
    ) -> Result<(u64, bool), StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let held = match &digest {
                    None => false,
                    Some(d) => upload_size(&c, username, d).await?.is_some(),
                };
                Ok((usage(&c, username).await?, held))
            })
            .await
    }

    /// Whether `username` may download `digest`: they are a member of a
    /// conversation with a `file` event (not deleted) of it, or uploaded it
    /// themselves.
    pub async fn may_read_file(&self, username: &str, digest: &str) -> Result<bool, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                get(
                    &one(
                        &c,
                        "SELECT EXISTS (SELECT 1 FROM file_refs f
                                        JOIN members m ON m.conversation_id = f.conversation_id
                                        WHERE f.digest = $1 AND m.username = $2)
                             OR EXISTS (SELECT 1 FROM uploads WHERE digest = $1 AND username = $2)",
                        &[&digest, &username],
                    )
                    .await?,
                    0,
                )
            })
            .await
    }

    /// Whether any upload or `file` event refers to `digest`.
    pub async fn file_referenced(&self, digest: &str) -> Result<bool, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                referenced(&c, digest).await
            })
            .await
    }
}
