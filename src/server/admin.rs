//! `chatd admin`: what an operator on the server host needs when nobody can
//! log in as an admin — create an admin, reset a password, create and list
//! invitations. It writes the server's database directly (the SQLite file in
//! its data dir, waiting for the running server's writer if need be, or the
//! PostgreSQL database of `[store] url`), in one transaction each, and notes
//! each account change, which every running chatd picks up within seconds
//! to disconnect the sessions the change ended.

use super::auth::Hasher;
use super::config::Config;
use super::session::new_invite_code;
use crate::proto::Invite;
use crate::proto::{Limits, Role, now_millis, parse_span, valid_username};
use crate::store::log::{StoreError, offline};
use crate::store::pg::offline::Offline;
use std::io::BufRead;

/// One `chatd admin` command.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum AdminCommand {
    /// Create an admin account, or make an existing account an admin with a
    /// new password (ending its sessions)
    CreateAdmin {
        username: String,
        /// Read the password from standard input (one line)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an account and end all of its sessions
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Create an invitation and print the command a newcomer runs
    Invite {
        /// How many accounts it may create
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// When it expires: 30m, 12h, 7d, 2w, or "never"
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// List invitations and who used them
    Invites,
}

/// Run `command` against the data dir of `config`; returns the exit code.
pub async fn run(config: &Config, command: AdminCommand) -> i32 {
    match run_inner(config, command).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chatd admin: {e}");
            1
        }
    }
}

/// The database `chatd admin` writes.
enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Offline),
}

impl Db {
    async fn open(config: &Config) -> Result<Db, StoreError> {
        match &config.store.url {
            Some(url) => {
                crate::store::kind_of(Some(url))?;
                Ok(Db::Postgres(Offline::open(url).await?))
            }
            None => {
                let data = config
                    .data_dir()
                    .map_err(|e| StoreError::Open(e.to_string()))?;
                Ok(Db::Sqlite(offline::open(&data)?))
            }
        }
    }

    async fn put_user(&mut self, name: &str, hash: &str, role: Role) -> Result<bool, StoreError> {
        match self {
            Db::Sqlite(c) => offline::put_user(c, name, hash, role),
            Db::Postgres(p) => p.put_user(name, hash, role).await,
        }
    }

    async fn reset_password(&mut self, name: &str, hash: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => offline::reset_password(c, name, hash),
            Db::Postgres(p) => p.reset_password(name, hash).await,
        }
    }

    async fn create_invite(
        &mut self,
        code: &str,
        by: &str,
        uses: u32,
        expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => offline::create_invite(c, code, by, uses, expires_at),
            Db::Postgres(p) => p.create_invite(code, by, uses, expires_at).await,
        }
    }

    async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        match self {
            Db::Sqlite(c) => offline::invites(c),
            Db::Postgres(p) => p.invites().await,
        }
    }
}

async fn run_inner(config: &Config, command: AdminCommand) -> Result<(), String> {
    let mut db = Db::open(config).await.map_err(|e| e.to_string())?;
    let limits = &config.limits;
    match command {
        AdminCommand::CreateAdmin {
            username,
            password_stdin,
        } => {
            check_name(&username)?;
            let hash = new_hash(config, limits, password_stdin).await?;
            let existed = db
                .put_user(&username, &hash, Role::Admin)
                .await
                .map_err(|e| e.to_string())?;
            if existed {
                println!("{username} is now an admin with the new password; their sessions ended");
            } else {
                println!("created the admin account {username}");
            }
        }
        AdminCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            check_name(&username)?;
            let hash = new_hash(config, limits, password_stdin).await?;
            db.reset_password(&username, &hash)
                .await
                .map_err(|e| e.to_string())?;
            println!("set a new password for {username}; their sessions ended");
        }
        AdminCommand::Invite { uses, expires } => {
            if uses == 0 || uses > limits.max_invite_uses {
                return Err(format!("--uses must be 1 to {}", limits.max_invite_uses));
            }
            let expires_at = match expires.as_str() {
                "never" => None,
                span => Some(
                    now_millis()
                        + 1000
                            * parse_span(span).ok_or_else(|| {
                                format!("--expires {span}: use 30m, 12h, 7d, 2w or never")
                            })? as i64,
                ),
            };
            let code = new_invite_code();
            db.create_invite(&code, "chatd-admin", uses, expires_at)
                .await
                .map_err(|e| e.to_string())?;
            println!("{code}");
            eprintln!(
                "a newcomer runs: chat --server ADDRESS register NAME --invite {code}\n\
                 ({} use{}, {})",
                uses,
                if uses == 1 { "" } else { "s" },
                match expires_at {
                    None => "never expires".to_string(),
                    Some(_) => format!("expires in {expires}"),
                }
            );
        }
        AdminCommand::Invites => {
            let invites = db.invites().await.map_err(|e| e.to_string())?;
            let now = now_millis();
            for i in invites {
                let state = if i.revoked {
                    "revoked".to_string()
                } else if i.expires_at.is_some_and(|e| e <= now) {
                    "expired".to_string()
                } else if i.used_by.len() as u32 >= i.max_uses {
                    "used up".to_string()
                } else {
                    "open".to_string()
                };
                println!(
                    "{}  by {}  {}/{} used  {}  {}",
                    i.code,
                    i.created_by,
                    i.used_by.len(),
                    i.max_uses,
                    state,
                    i.used_by.join(",")
                );
            }
        }
    }
    Ok(())
}

fn check_name(username: &str) -> Result<(), String> {
    if valid_username(username) {
        Ok(())
    } else {
        Err(format!(
            "{username:?} is not a valid username (2-32 of a-z 0-9 _ . -)"
        ))
    }
}

/// Read a new password (twice at a terminal) and hash it.
async fn new_hash(config: &Config, limits: &Limits, from_stdin: bool) -> Result<String, String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let a = rpassword::prompt_password("New password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let b = rpassword::prompt_password("Again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if a != b {
            return Err("the passwords differ".into());
        }
        a
    };
    super::validate::password(&password, limits).map_err(|e| e.message)?;
    let hasher = Hasher::new(&config.auth).map_err(|e| e.to_string())?;
    hasher.hash(password).await.map_err(|e| e.to_string())
}
