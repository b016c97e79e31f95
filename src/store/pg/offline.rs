//! `chatd admin` on PostgreSQL: the account changes an operator makes when
//! nobody can log in as an admin, written to the database directly (one
//! transaction each) and noted in `account_changes`, which every running
//! node polls to disconnect what a change ends.

use super::accounts;
use super::db::{self, Db, exec};
use crate::proto::{Invite, Millis, Role, now_millis};
use crate::store::log::StoreError;

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
        let existed = accounts::exists(&tx, username).await?;
        if existed {
            accounts::set_password(&tx, username, password_hash, None).await?;
            exec(
                &tx,
                "UPDATE users SET role = $2, deactivated_at = NULL WHERE username = $1",
                &[&username, &role.as_str()],
            )
            .await?;
        } else {
            accounts::insert_user(&tx, username, password_hash, role).await?;
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
        accounts::set_password(&tx, username, password_hash, None).await?;
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
        accounts::create_invite(&c, code, created_by, max_uses, expires_at).await
    }

    /// Invitations, newest first.
    pub async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        let c = self.db.client().await?;
        accounts::invites(&c, None, None, u32::MAX).await
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
