//! The account commands: invitations (`chat invite`), administration
//! (`chat admin`), this account's sessions (`chat sessions`) and password
//! (`chat passwd`). Each signs in with the stored token, asks once, and
//! prints a table, JSON, or one line; a refusal is one line saying who may
//! or what to do.

use super::commands::{SignedIn, read_secret, server_of, session};
use super::{AdminWhat, Exit, Failure, InviteWhat};
use crate::client::accounts::{InviteState, ago, password_notice, revoked_notice, within};
use crate::client::config::Loaded;
use crate::client::net::ClientError;
use crate::client::text::clean;
use crate::proto::{
    Account, AccountOk, AccountsOk, ErrorCode, Invite, InviteOk, InvitesOk, Millis, Request,
    RevokedOk, Role, SessionsOk, now_millis, parse_span,
};

/// A refused account request as one line: `forbidden` says who may.
pub(super) fn refused(e: ClientError, forbidden: &str) -> Failure {
    let ClientError::Server(p) = &e else {
        return e.into();
    };
    match p.code {
        ErrorCode::Forbidden => Failure::new(Exit::Refused, forbidden),
        ErrorCode::NotFound => Failure::new(Exit::NotFound, clean(&p.message)),
        ErrorCode::UsernameTaken
        | ErrorCode::Conflict
        | ErrorCode::InvalidArgument
        | ErrorCode::TooLarge => Failure::new(Exit::Refused, clean(&p.message)),
        _ => e.into(),
    }
}

impl SignedIn {
    /// Ask, reading the reply as `T`; a refusal says `forbidden` when the
    /// server answers `forbidden`.
    async fn account<T: serde::de::DeserializeOwned>(
        &mut self,
        req: &Request,
        forbidden: &str,
    ) -> Result<T, Failure> {
        self.ask_or(req, Some(forbidden)).await
    }
}

/// A new password: one line of standard input, or asked twice.
fn new_password(prompt: &str, from_stdin: bool) -> Result<String, Failure> {
    let pw = read_secret(prompt, from_stdin)?;
    if !from_stdin && read_secret("Again: ", false)? != pw {
        return Err(Failure::new(Exit::Failure, "the two passwords differ"));
    }
    Ok(pw)
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
    );
}

pub(super) async fn invite(loaded: &Loaded, what: InviteWhat) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    match what {
        InviteWhat::Create { uses, expires } => {
            let expires_in_secs = match expires.trim() {
                "never" => None,
                span => Some(parse_span(span).ok_or_else(|| {
                    Failure::new(
                        Exit::Failure,
                        format!("--expires {span}: use 30m, 12h, 7d, 2w or never"),
                    )
                })?),
            };
            let req = Request::InviteCreate {
                uses: Some(uses),
                expires_in_secs,
            };
            let reply: InviteOk = s
                .account(&req, "only an admin may create invitations on this server")
                .await?;
            let inv = reply.invite;
            let code = clean(&inv.code);
            println!("{code}");
            let accounts = if inv.max_uses == 1 {
                "1 account".to_string()
            } else {
                format!("{} accounts", inv.max_uses)
            };
            let until = match inv.expires_at {
                Some(t) => format!("expires {}", within(now_millis(), t)),
                None => "never expires".into(),
            };
            let insecure = if loaded.config.insecure {
                " --insecure"
            } else {
                ""
            };
            eprintln!("Invitation for {accounts}, {until}. The newcomer runs:");
            eprintln!(
                "chat --server {}{insecure} register NAME --invite {code}",
                server_of(loaded)
            );
        }
        InviteWhat::List { json } => {
            let reply = InvitesOk {
                invites: s
                    .all_pages(
                        Some("only an admin may list invitations"),
                        |after| Request::InviteList { after },
                        |p: InvitesOk| (p.invites, p.next),
                    )
                    .await?,
                next: None,
            };
            let now = now_millis();
            if json {
                let list: Vec<serde_json::Value> = reply
                    .invites
                    .iter()
                    .map(|i| {
                        let mut v = serde_json::to_value(i).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("state".into(), InviteState::of(i, now).as_str().into());
                        }
                        v
                    })
                    .collect();
                print_json(&list);
            } else {
                for i in &reply.invites {
                    println!("{}", invite_line(i, now));
                }
            }
        }
        InviteWhat::Revoke { code } => {
            let req = Request::InviteRevoke { code: code.clone() };
            let _: serde_json::Value = s
                .account(
                    &req,
                    "only its creator or an admin may revoke an invitation",
                )
                .await?;
            eprintln!("Revoked the invitation {}", clean(&code));
        }
    }
    s.conn.close().await;
    Ok(())
}

/// `code  creator  used/max  expiry  state  used by`.
fn invite_line(i: &Invite, now: Millis) -> String {
    let expiry = match i.expires_at {
        None => "never".to_string(),
        Some(t) if t <= now => format!("ended {}", ago(now, t)),
        Some(t) => within(now, t),
    };
    let used_by: Vec<String> = i.used_by.iter().map(|u| clean(u)).collect();
    format!(
        "{:<32}  {:<12} {:>4}  {:<16} {:<8} {}",
        clean(&i.code),
        clean(&i.created_by),
        format!("{}/{}", i.used_by.len(), i.max_uses),
        expiry,
        InviteState::of(i, now).as_str(),
        used_by.join(", ")
    )
    .trim_end()
    .to_string()
}

pub(super) async fn admin(loaded: &Loaded, what: AdminWhat) -> Result<(), Failure> {
    let what = match what {
        AdminWhat::Bot { what } => return super::bots::bot(loaded, what).await,
        other => other,
    };
    // Passwords first: a prompt must not wait on an open connection.
    let password = match &what {
        AdminWhat::Create {
            name,
            password_stdin,
            ..
        }
        | AdminWhat::ResetPassword {
            name,
            password_stdin,
        } => Some(new_password(
            &format!("Password for {name}: "),
            *password_stdin,
        )?),
        _ => None,
    };
    let mut s = session(loaded).await?;
    let only = |verb: &str| format!("only an admin may {verb}");
    match what {
        AdminWhat::Users { json } => {
            let reply = AccountsOk {
                users: s
                    .all_pages(
                        Some(&only("list accounts")),
                        |after| Request::AdminUsers { after, limit: None },
                        |p: AccountsOk| (p.users, p.next),
                    )
                    .await?,
                next: None,
            };
            if json {
                print_json(&reply.users);
            } else {
                let now = now_millis();
                for a in &reply.users {
                    println!("{}", account_line(a, now));
                }
            }
        }
        AdminWhat::Create { name, admin, .. } => {
            let role = if admin { Role::Admin } else { Role::Member };
            let req = Request::AdminCreateUser {
                username: name,
                password: password.unwrap_or_default(),
                role: Some(role),
            };
            let reply: AccountOk = s.account(&req, &only("create accounts")).await?;
            eprintln!(
                "Created {} ({})",
                clean(&reply.user.username),
                reply.user.role.as_str()
            );
        }
        AdminWhat::ResetPassword { name, .. } => {
            let req = Request::AdminResetPassword {
                username: name.clone(),
                password: password.unwrap_or_default(),
            };
            let _: serde_json::Value = s.account(&req, &only("reset passwords")).await?;
            eprintln!(
                "Set a new password for {}; their sessions ended",
                clean(&name)
            );
        }
        AdminWhat::Deactivate { name } => {
            let req = Request::AdminSetActive {
                username: name,
                active: false,
            };
            let reply: AccountOk = s.account(&req, &only("deactivate accounts")).await?;
            eprintln!(
                "Deactivated {}: disconnected, and cannot log in until reactivated",
                clean(&reply.user.username)
            );
        }
        AdminWhat::Reactivate { name } => {
            let req = Request::AdminSetActive {
                username: name,
                active: true,
            };
            let reply: AccountOk = s.account(&req, &only("reactivate accounts")).await?;
            eprintln!(
                "Reactivated {}: they can log in again",
                clean(&reply.user.username)
            );
        }
        AdminWhat::Erase { name, yes } => {
            if !yes {
                return Err(Failure::new(
                    Exit::Failure,
                    format!(
                        "erasing {} deletes every message they wrote and cannot be undone: \
                         run again with --yes",
                        clean(&name)
                    ),
                ));
            }
            let req = Request::AdminErase { username: name };
            let reply: AccountOk = s.account(&req, &only("erase accounts")).await?;
            eprintln!(
                "Erased {}: their messages are deleted and the account cannot be used",
                clean(&reply.user.username)
            );
        }
        AdminWhat::Promote { name } => set_role(&mut s, name, Role::Admin).await?,
        AdminWhat::Demote { name } => set_role(&mut s, name, Role::Member).await?,
        AdminWhat::Bot { .. } => {}
    }
    s.conn.close().await;
    Ok(())
}

async fn set_role(s: &mut SignedIn, name: String, role: Role) -> Result<(), Failure> {
    let req = Request::AdminSetRole {
        username: name,
        role,
    };
    let reply: AccountOk = s.account(&req, "only an admin may change roles").await?;
    eprintln!(
        "{} is now {}",
        clean(&reply.user.username),
        match reply.user.role {
            Role::Admin => "an admin",
            Role::Member => "a member",
        }
    );
    Ok(())
}

/// `name  role  active  online  last seen`.
fn account_line(a: &Account, now: Millis) -> String {
    let seen = match (a.online, a.last_seen) {
        (true, _) => "now".to_string(),
        (false, Some(t)) => ago(now, t),
        (false, None) => "never".to_string(),
    };
    format!(
        "{:<20} {:<7} {:<12} {:<8} {}",
        clean(&a.username),
        a.role.as_str(),
        if a.active { "active" } else { "deactivated" },
        if a.online { "online" } else { "offline" },
        seen
    )
}

pub(super) async fn sessions(
    loaded: &Loaded,
    revoke: Option<String>,
    others: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let mine = "you may only list your own sessions";
    let list: SessionsOk = s.account(&Request::Sessions {}, mine).await?;
    if let Some(id) = revoke {
        if list.sessions.iter().any(|x| x.current && x.id == id) {
            return Err(Failure::new(
                Exit::Refused,
                "that is the session in use here: end it with `chat logout`",
            ));
        }
        let req = Request::RevokeSession {
            session_id: Some(id.clone()),
            others: false,
        };
        let reply: RevokedOk = s.account(&req, mine).await.map_err(|mut f| {
            if f.code == Exit::NotFound {
                f.message = format!(
                    "no session {} among yours: `chat sessions` lists them",
                    clean(&id)
                );
            }
            f
        })?;
        eprintln!(
            "{}",
            capital(&revoked_notice(Some(&clean(&id)), reply.revoked))
        );
    } else if others {
        let req = Request::RevokeSession {
            session_id: None,
            others: true,
        };
        let reply: RevokedOk = s.account(&req, mine).await?;
        eprintln!("{}", capital(&revoked_notice(None, reply.revoked)));
    } else if json {
        print_json(&list.sessions);
    } else {
        let now = now_millis();
        for x in &list.sessions {
            let line = format!(
                "{} {:<16}  {:<16} {:<12} {:<16}{}",
                if x.current { "*" } else { " " },
                clean(&x.id),
                clean(&x.device),
                ago(now, x.last_seen),
                x.last_address.as_deref().map(clean).unwrap_or("-".into()),
                if x.current { "  (this device)" } else { "" }
            );
            println!("{}", line.trim_end());
        }
    }
    s.conn.close().await;
    Ok(())
}

pub(super) async fn passwd(loaded: &Loaded, password_stdin: bool) -> Result<(), Failure> {
    let old = read_secret("Current password: ", password_stdin)?;
    let new = new_password("New password: ", password_stdin)?;
    let mut s = session(loaded).await?;
    let req = Request::ChangePassword {
        old_password: old,
        new_password: new,
    };
    let reply: RevokedOk = match s.conn.request(&req).await {
        Ok(ok) => ok
            .parse()
            .map_err(|e| Failure::new(Exit::Failure, format!("unexpected reply: {e}")))?,
        Err(ClientError::Server(p)) if p.code == ErrorCode::AuthFailed => {
            return Err(Failure::new(
                Exit::Auth,
                "the current password is wrong; nothing changed",
            ));
        }
        Err(e) => return Err(refused(e, "the server refused the password change")),
    };
    eprintln!(
        "{}; this device stays logged in",
        capital(&password_notice(reply.revoked))
    );
    s.conn.close().await;
    Ok(())
}

/// `text` with its first letter in capitals (notices are shared with the
/// TUI's status line, which writes them in lower case).
fn capital(text: &str) -> String {
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `chat block NAME` / `chat unblock NAME`.
pub(super) async fn block(loaded: &Loaded, name: String, on: bool) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let shown = clean(&name);
    let req = if on {
        Request::Block { user: name }
    } else {
        Request::Unblock { user: name }
    };
    let _: serde_json::Value = s.ask(&req).await?;
    s.conn.close().await;
    if on {
        eprintln!(
            "Blocked {shown}: they cannot start a DM with you, add you anywhere or see your presence"
        );
    } else {
        eprintln!("Unblocked {shown}");
    }
    Ok(())
}

/// `chat blocks`: the users this account blocks.
pub(super) async fn blocks(loaded: &Loaded, json: bool) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let reply: crate::proto::BlocksOk = s.ask(&Request::Blocks {}).await?;
    s.conn.close().await;
    if json {
        println!(
            "{}",
            serde_json::to_string(&reply.users).unwrap_or_default()
        );
    } else {
        for u in &reply.users {
            println!("{}", clean(u));
        }
    }
    Ok(())
}
