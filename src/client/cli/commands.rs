//! The command-line commands, each a short conversation with the server.

use super::live::Live;
use super::{Command, CreateWhat, Exit, Failure};
use crate::client::config::Loaded;
use crate::client::credentials::{Stored, TokenStore};
use crate::client::engine::actions::new_client_msg_id;
use crate::client::net::{ClientError, Conn, Credentials};
use crate::client::paths::Paths;
use crate::client::text::{clean, conv_label, conv_title};
use crate::client::update::IdentityNote;
use crate::client::{Action, Update};
use crate::proto::{
    ConvKind, Conversation, ConversationOk, ConversationsOk, ErrorCode, MemberEntry, MembersOk,
    Request,
};
use std::io::{BufRead, Read};
use std::time::Duration;

pub(super) const TIMEOUT: Duration = Duration::from_secs(15);

/// Who we are on which server, for commands that need to be logged in.
pub(super) struct SignedIn {
    pub user: String,
    /// The stored token this session authenticated with.
    pub token: String,
    pub conn: Conn,
}

pub(super) fn server_of(loaded: &Loaded) -> String {
    loaded.config.server.clone()
}

fn user_of(loaded: &Loaded, server: &str) -> Option<String> {
    Some(loaded.config.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| Paths::default().last_user(server))
}

/// Connect to `server` as the configuration says (`--insecure`,
/// `--ca-file`, `--transport`).
async fn connect(loaded: &Loaded, server: &str) -> Result<Conn, ClientError> {
    Conn::connect_via(
        server,
        TIMEOUT,
        loaded.config.insecure,
        loaded.config.ca_file.as_deref(),
        loaded.config.transport,
    )
    .await
}

/// Connect and authenticate with the token in `CHAT_TOKEN`, if set, else
/// the stored one.
pub(super) async fn session(loaded: &Loaded) -> Result<SignedIn, Failure> {
    let server = server_of(loaded);
    if let Some(token) = crate::client::credentials::env_token() {
        let mut conn = connect(loaded, &server).await?;
        let ok = conn
            .handshake(&Credentials::Token(token.clone()), &loaded.config.device)
            .await
            .map_err(|e| {
                let mut f = Failure::from(e);
                if f.code == Exit::Auth {
                    f.message = format!("{server} refused the token in CHAT_TOKEN: {}", f.message);
                }
                f
            })?;
        return Ok(SignedIn {
            user: ok.user,
            token,
            conn,
        });
    }
    let user = user_of(loaded, &server).ok_or_else(|| {
        Failure::new(
            Exit::Auth,
            format!("not logged in on {server}: run `chat login` or `chat register`"),
        )
    })?;
    let tokens = TokenStore::new(TokenStore::default_file());
    let (token, _) = tokens.load(&user, &server).ok_or_else(|| {
        Failure::new(
            Exit::Auth,
            format!("not logged in as {user} on {server}: run `chat login {user}`"),
        )
    })?;
    let mut conn = connect(loaded, &server).await?;
    conn.handshake(&Credentials::Token(token.clone()), &loaded.config.device)
        .await
        .map_err(|e| {
            let disabled = matches!(&e, ClientError::Server(p) if p.code == ErrorCode::AccountDisabled);
            let mut f = Failure::from(e);
            if f.code == Exit::Auth && !disabled {
                f.message = format!(
                    "the stored session of {user} on {server} has ended (logged out, revoked, expired, or the account deactivated): run `chat login {user}`"
                );
            }
            f
        })?;
    Ok(SignedIn { user, token, conn })
}

pub(super) async fn dispatch(command: Command, loaded: Loaded) -> Result<(), Failure> {
    match command {
        Command::Register {
            username,
            password_stdin,
            invite,
        } => authenticate(&loaded, username, password_stdin, Some(invite)).await,
        Command::Login {
            username,
            password_stdin,
        } => authenticate(&loaded, username, password_stdin, None).await,
        Command::Logout => logout(&loaded).await,
        Command::Conversations { json } => conversations(&loaded, json).await,
        Command::Send {
            target,
            text,
            timeout,
        } => send(&loaded, &target, text, Duration::from_secs(timeout.max(1))).await,
        Command::Tail {
            target,
            follow,
            json,
            n,
        } => super::tail::tail(&loaded, &target, follow, json, n).await,
        Command::Upload {
            target,
            paths,
            caption,
        } => super::files::upload(&loaded, &target, &paths, caption).await,
        Command::Download {
            target,
            seq,
            output,
            force,
        } => super::files::download(&loaded, &target, seq, output, force).await,
        Command::Search {
            query,
            within,
            json,
            limit,
        } => super::search::search(&loaded, &query, within.as_deref(), json, limit).await,
        Command::Create { what, json } => create(&loaded, what, json).await,
        Command::Join { channel } => join(&loaded, &channel).await,
        Command::Members { target, json } => members(&loaded, &target, json).await,
        Command::Export => super::export::export(&loaded).await,
        Command::Block { name } => super::account::block(&loaded, name, true).await,
        Command::Unblock { name } => super::account::block(&loaded, name, false).await,
        Command::Blocks { json } => super::account::blocks(&loaded, json).await,
        Command::Invite { what } => super::account::invite(&loaded, what).await,
        Command::Admin { what } => super::account::admin(&loaded, what).await,
        Command::Webhook { what } => super::bots::webhook(&loaded, what).await,
        Command::Sessions {
            revoke,
            others,
            json,
        } => super::account::sessions(&loaded, revoke, others, json).await,
        Command::Passwd { password_stdin } => super::account::passwd(&loaded, password_stdin).await,
        Command::Devices { user, json } => super::secret::devices(&loaded, user, json).await,
        Command::Safety { user, verified } => super::secret::safety(&loaded, &user, verified).await,
        Command::Accept { user } => super::secret::accept(&loaded, &user).await,
        Command::ResetIdentity { yes } => super::secret::reset_identity(&loaded, yes).await,
        Command::Verify {
            user,
            device,
            incoming: _,
            timeout,
        } => {
            let wait = Duration::from_secs(timeout.max(1));
            super::verify::verify(&loaded, user, device, wait).await
        }
        Command::Config => {
            println!("{}", loaded.describe());
            Ok(())
        }
        Command::Server { .. } => Err(Failure::new(Exit::Failure, "handled by main")),
    }
}

pub(super) fn read_password(from_stdin: bool) -> Result<String, Failure> {
    read_secret("Password: ", from_stdin)
}

/// A password: one line of standard input, or asked at the terminal with
/// `prompt` (not echoed).
pub(super) fn read_secret(prompt: &str, from_stdin: bool) -> Result<String, Failure> {
    let pw = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(Exit::Failure, format!("cannot read the password: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        rpassword::prompt_password(prompt)
            .map_err(|e| Failure::new(Exit::Failure, format!("cannot read the password: {e}")))?
    };
    if pw.is_empty() {
        return Err(Failure::new(Exit::Failure, "the password is empty"));
    }
    Ok(pw)
}

async fn authenticate(
    loaded: &Loaded,
    username: Option<String>,
    password_stdin: bool,
    // `Some` to register, with an invitation code or none.
    register: Option<Option<String>>,
) -> Result<(), Failure> {
    let server = server_of(loaded);
    let username =
        match username.or_else(|| Some(loaded.config.user.clone()).filter(|u| !u.is_empty())) {
            Some(u) => u,
            None => {
                eprint!("Username: ");
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
                line.trim().to_string()
            }
        };
    let password = read_password(password_stdin)?;
    let creds = if let Some(invite) = register.clone() {
        Credentials::Register {
            username: username.clone(),
            password,
            invite,
        }
    } else {
        Credentials::Login {
            username: username.clone(),
            password,
        }
    };
    let mut conn = connect(loaded, &server).await?;
    let ok = conn.handshake(&creds, &loaded.config.device).await?;
    let token = ok
        .token
        .ok_or_else(|| Failure::new(Exit::Failure, "the server sent no token"))?;
    let tokens = TokenStore::new(TokenStore::default_file());
    match tokens.save(&ok.user, &server, &token) {
        Ok(Stored::File(path)) => eprintln!(
            "chat: no keyring available; the token is stored in {} (mode 0600)",
            path.display()
        ),
        Ok(Stored::Keyring) => {}
        Err(e) => return Err(Failure::new(Exit::Failure, e.to_string())),
    }
    Paths::default().remember_user(&server, &ok.user);
    conn.close().await;
    eprintln!(
        "{} as {} on {server}",
        if register.is_some() {
            "Registered and logged in"
        } else {
            "Logged in"
        },
        ok.user
    );
    Ok(())
}

async fn logout(loaded: &Loaded) -> Result<(), Failure> {
    let server = server_of(loaded);
    let tokens = TokenStore::new(TokenStore::default_file());
    // Revoke on the server when it answers; forget locally in any case.
    if let Ok(mut s) = session(loaded).await {
        let _ = s.conn.request(&Request::Logout {}).await;
        let _ = tokens.remove(&s.user, &server);
        Paths::default().forget_user(&server);
        eprintln!("Logged out {} on {server}", s.user);
        return Ok(());
    }
    match user_of(loaded, &server) {
        Some(user) => {
            let _ = tokens.remove(&user, &server);
            Paths::default().forget_user(&server);
            eprintln!("Forgot the session of {user} on {server}");
            Ok(())
        }
        None => Err(Failure::new(
            Exit::Auth,
            format!("not logged in on {server}"),
        )),
    }
}

impl SignedIn {
    /// Send a request and read its reply as `T`.
    pub(super) async fn ask<T: serde::de::DeserializeOwned>(
        &mut self,
        req: &Request,
    ) -> Result<T, Failure> {
        self.ask_or(req, None).await
    }

    /// [`SignedIn::ask`]; with `forbidden`, a `forbidden` refusal is worded
    /// so.
    pub(super) async fn ask_or<T: serde::de::DeserializeOwned>(
        &mut self,
        req: &Request,
        forbidden: Option<&str>,
    ) -> Result<T, Failure> {
        self.conn
            .request(req)
            .await
            .map_err(|e| match forbidden {
                Some(f) => super::account::refused(e, f),
                None => e.into(),
            })?
            .parse()
            .map_err(|e| Failure::new(Exit::Failure, format!("unexpected reply: {e}")))
    }

    /// Every entry of a paged list: `req` asks for the page after its
    /// argument, `split` takes a reply apart into its entries and the next
    /// page's `after` (none: the list is complete).
    pub(super) async fn all_pages<R: serde::de::DeserializeOwned, T>(
        &mut self,
        forbidden: Option<&str>,
        req: impl Fn(Option<String>) -> Request,
        split: impl Fn(R) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, Failure> {
        let mut out = Vec::new();
        let mut after = None;
        // Each page holds at least one entry: the bound only guards
        // against a broken server.
        for _ in 0..1_000_000 {
            let (page, next) = split(self.ask_or(&req(after.take()), forbidden).await?);
            out.extend(page);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
        Err(Failure::new(
            Exit::Failure,
            "the server's list does not end",
        ))
    }

    /// Ask for a conversation (create, join) and print it.
    async fn conversation(&mut self, req: &Request, json: bool) -> Result<(), Failure> {
        let reply: ConversationOk = self.ask(req).await?;
        print_conversation(&reply.conversation, &self.user, json);
        Ok(())
    }
}

/// Every conversation I belong to, page after page.
pub(super) async fn list(s: &mut SignedIn) -> Result<Vec<Conversation>, Failure> {
    s.all_pages(
        None,
        |after| Request::Conversations { after, limit: None },
        |p: ConversationsOk| (p.conversations, p.next),
    )
    .await
}

/// `chat members TARGET`: every member, page after page.
async fn members(loaded: &Loaded, target: &str, json: bool) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let conv = resolve(&mut s, target, false).await?;
    let all: Vec<MemberEntry> = s
        .all_pages(
            None,
            |after| Request::Members {
                conversation_id: conv.id.clone(),
                after,
                limit: None,
            },
            |p: MembersOk| (p.members, p.next),
        )
        .await?;
    s.conn.close().await;
    if json {
        println!("{}", serde_json::to_string(&all).unwrap_or_default());
    } else {
        for m in &all {
            let name = if m.bot {
                format!("{} [bot]", clean(&m.user))
            } else {
                clean(&m.user)
            };
            println!("{:<32} {:<6} read {}", name, m.role.as_str(), m.read);
        }
    }
    Ok(())
}

/// A conversation's display name for `me`, with its sigil (`@bob`, `#general`).
pub(super) fn title(c: &Conversation, me: &str) -> String {
    let t = conv_title(&c.id, c.kind, c.name.as_deref(), &c.members, me);
    conv_label(c.kind, &t)
}

async fn conversations(loaded: &Loaded, json: bool) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let convs = list(&mut s).await?;
    if json {
        let out = serde_json::to_string(&convs).unwrap_or_else(|_| "[]".into());
        println!("{out}");
    } else {
        for c in &convs {
            let read = c.receipts.get(&s.user).map(|r| r.read).unwrap_or(0);
            let unread = c.last_seq.saturating_sub(read);
            println!(
                "{:<24} {:<8} {:>6} unread  {}",
                title(c, &s.user),
                c.kind.as_str(),
                unread,
                c.id
            );
        }
    }
    s.conn.close().await;
    Ok(())
}

/// Resolve TARGET: `@user` (a DM, created when `create_dm`), `#name`, or an id.
pub(super) async fn resolve(
    s: &mut SignedIn,
    target: &str,
    create_dm: bool,
) -> Result<Conversation, Failure> {
    let convs = list(s).await?;
    if let Some(user) = target.strip_prefix('@') {
        if let Some(c) = convs.iter().find(|c| {
            c.kind == ConvKind::Dm
                && !c.encrypted
                && user != s.user
                && c.members.iter().any(|m| m == user)
        }) {
            return Ok(c.clone());
        }
        if !create_dm {
            return Err(Failure::new(
                Exit::NotFound,
                format!("no conversation with @{user}"),
            ));
        }
        let reply: ConversationOk = s
            .conn
            .request(&Request::Create {
                kind: ConvKind::Dm,
                name: None,
                members: vec![user.to_string()],
                encrypted: false,
            })
            .await
            .map_err(|e| {
                let mut f = Failure::from(e);
                if f.code == Exit::NotFound {
                    f = Failure::new(Exit::NotFound, format!("no user named {user}"));
                }
                f
            })?
            .parse()
            .map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
        return Ok(reply.conversation);
    }
    if let Some(name) = target
        .strip_prefix('#')
        .or_else(|| target.strip_prefix('+'))
    {
        return convs
            .into_iter()
            .find(|c| c.kind != ConvKind::Dm && c.name.as_deref() == Some(name))
            .ok_or_else(|| {
                Failure::new(
                    Exit::NotFound,
                    format!("you are in no conversation named #{name} (for a channel: `chat join #{name}`)"),
                )
            });
    }
    convs.into_iter().find(|c| c.id == target).ok_or_else(|| {
        Failure::new(
            Exit::NotFound,
            format!(
                "no conversation {target:?}: use @user, #name or an id from `chat conversations`"
            ),
        )
    })
}

async fn send(
    loaded: &Loaded,
    target: &str,
    text: Option<String>,
    timeout: Duration,
) -> Result<(), Failure> {
    let body = match text {
        Some(t) => t,
        None => {
            let mut buf = String::new();
            std::io::stdin().read_to_string(&mut buf).map_err(|e| {
                Failure::new(Exit::Failure, format!("cannot read standard input: {e}"))
            })?;
            buf.trim_end_matches('\n').to_string()
        }
    };
    if body.trim().is_empty() {
        return Err(Failure::new(Exit::Failure, "nothing to send"));
    }
    let mut s = session(loaded).await?;
    let conv = resolve(&mut s, target, true).await?;
    let (user, token) = (s.user.clone(), s.token.clone());
    s.conn.close().await;
    // The engine sends from its outbox and retries through reconnects with
    // the same client_msg_id: the server appends it at most once.
    let mut live = Live::start(loaded, &user, token);
    if conv.encrypted {
        // The engine encrypts once it knows the conversation and holds
        // this device's keys: both are there after the first sync.
        live.synced(timeout).await?;
    }
    let cmid = new_client_msg_id();
    live.act(Action::SendWithId {
        conv: conv.id.clone(),
        body,
        client_msg_id: cmid.clone(),
    });
    let answer = async {
        loop {
            match live.next().await? {
                Update::Acked { client_msg_id, .. } if client_msg_id == cmid => return Ok(()),
                Update::Refused {
                    client_msg_id,
                    error,
                    ..
                } if client_msg_id == cmid => {
                    return Err(Failure::from(ClientError::Server(error)));
                }
                Update::Identity {
                    user,
                    note: IdentityNote::Changed | IdentityNote::ChangedBlocking,
                } => {
                    let user = crate::client::text::clean(&user);
                    eprintln!(
                        "chat: {user}'s identity key changed: compare safety numbers (`chat safety {user}`)"
                    );
                }
                _ => {}
            }
        }
    };
    let result = match tokio::time::timeout(timeout, answer).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            Exit::Unreachable,
            format!(
                "the server did not acknowledge the message within {}s (it may still arrive: a retry with the same command could send it twice)",
                timeout.as_secs()
            ),
        )),
    };
    live.stop().await;
    result
}

async fn create(loaded: &Loaded, what: CreateWhat, json: bool) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let req = match what {
        CreateWhat::Dm { user, secret } => Request::Create {
            kind: ConvKind::Dm,
            name: None,
            members: vec![user.trim_start_matches('@').to_string()],
            encrypted: secret,
        },
        CreateWhat::Group {
            name,
            users,
            secret,
        } => Request::Create {
            kind: ConvKind::Group,
            name: Some(name),
            members: users
                .into_iter()
                .map(|u| u.trim_start_matches('@').to_string())
                .collect(),
            encrypted: secret,
        },
        CreateWhat::Channel { name } => Request::Create {
            kind: ConvKind::Channel,
            name: Some(name.trim_start_matches('#').to_string()),
            members: Vec::new(),
            encrypted: false,
        },
    };
    s.conversation(&req, json).await?;
    s.conn.close().await;
    Ok(())
}

fn print_conversation(c: &Conversation, me: &str, json: bool) {
    if json {
        println!("{}", serde_json::to_string(c).unwrap_or_default());
    } else {
        let secret = if c.encrypted { " (secret)" } else { "" };
        println!("{} {}{secret}", c.id, title(c, me));
    }
}

async fn join(loaded: &Loaded, channel: &str) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let req = match channel.strip_prefix('#') {
        Some(name) => Request::Join {
            conversation_id: None,
            name: Some(name.to_string()),
        },
        None => Request::Join {
            conversation_id: Some(channel.to_string()),
            name: None,
        },
    };
    s.conversation(&req, false).await?;
    s.conn.close().await;
    Ok(())
}
