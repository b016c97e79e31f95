//! `chatd admin` on PostgreSQL: the account changes an operator makes when
//! nobody can log in as an admin, written to the database directly (one
//! transaction each) and noted in `account_changes`, which every running
//! node polls to disconnect what a change ends.

use super::db::{self, Db, exec, opt};
use crate::proto::{ErrorCode, Invite, Millis, Role, now_millis};
use crate::store::log::StoreError;
use crate::store::rules::rejected;

/// A connection for `chatd admin`.
pub struct Offline {
    db: Db,
}

impl Offline {
    /// Reach the database at `url`, migrating it if needed.
    pub async fn open(url: &str) -> Result<Offline, StoreError> {
        super::migrate(url).await?;
        Ok(Offline {
            db: Db::new(url, 1, db::TIMEOUTS)?,
        })
    }

    /// Create an account, or give an existing one this password and role
    /// (and activate it), ending its sessions. Whether it existed.
    pub async fn put_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<bool, StoreError> {
        let mut c = self.db.client().await?;
        let tx = c.transaction().await?;
        let existed = opt(&tx, "SELECT 1 FROM users WHERE username = $1", &[&username])
            .await?
            .is_some();
        if existed {
            exec(
                &tx,
                "UPDATE users SET password_hash = $2, role = $3, deactivated_at = NULL
                 WHERE username = $1",
                &[&username, &password_hash, &role.as_str()],
            )
            .await?;
            exec(
                &tx,
                "DELETE FROM sessions WHERE username = $1",
                &[&username],
            )
            .await?;
        } else {
            exec(
                &tx,
                "INSERT INTO users (username, password_hash, created_at, role)
                 VALUES ($1, $2, $3, $4)",
                &[&username, &password_hash, &now_millis(), &role.as_str()],
            )
            .await?;
        }
        note_change(&tx, username).await?;
        tx.commit().await?;
        Ok(existed)
    }

    /// Set the password of an existing account, ending its sessions.
    pub async fn reset_password(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let mut c = self.db.client().await?;
        let tx = c.transaction().await?;
        let n = exec(
            &tx,
            "UPDATE users SET password_hash = $2 WHERE username = $1",
            &[&username, &password_hash],
        )
        .await?;
        if n == 0 {
            return Err(rejected(
                ErrorCode::NotFound,
                format!("no user named {username}"),
            ));
        }
        exec(
            &tx,
            "DELETE FROM sessions WHERE username = $1",
            &[&username],
        )
        .await?;
        note_change(&tx, username).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Create an invitation made by `created_by` (any name; the operator).
    pub async fn create_invite(
        &self,
        code: &str,
        created_by: &str,
        max_uses: u32,
        expires_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        let c = self.db.client().await?;
        exec(
            &c,
            "INSERT INTO invites (code, created_by, created_at, expires_at, max_uses)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &code,
                &created_by,
                &now_millis(),
                &expires_at,
                &i64::from(max_uses),
            ],
        )
        .await?;
        Ok(())
    }

    /// Invitations, newest first.
    pub async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        let c = self.db.client().await?;
        super::accounts::invites(&c, None, None, u32::MAX).await
    }

    pub fn close(self) {
        self.db.close();
    }
}

async fn note_change(
    c: &impl deadpool_postgres::GenericClient,
    username: &str,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO account_changes (username, at) VALUES ($1, $2)",
        &[&username, &now_millis()],
    )
    .await?;
    Ok(())
}
