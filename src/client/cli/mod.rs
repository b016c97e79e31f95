//! The command line: `chat` with no command opens the TUI; the commands are
//! for people and for scripts. They reuse stored credentials, print one
//! clear line on failure, and exit with a meaningful code (see [`Exit`]).

mod account;
mod bots;
mod commands;
mod export;
mod files;
mod live;
mod search;
mod secret;
mod tail;
mod verify;

use crate::client::accounts;
use crate::client::config::Loaded;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// A terminal chat client.
#[derive(Parser, Debug)]
#[command(name = "chat", version, about, long_about = None)]
pub struct Cli {
    /// Server address (host:port, ws:// or wss:// URL)
    #[arg(long, global = true, value_name = "URL", env = "CHAT_SERVER")]
    pub server: Option<String>,
    /// Username to act as
    #[arg(long, global = true, value_name = "NAME", env = "CHAT_USER")]
    pub user: Option<String>,
    /// Configuration file [default: the platform config dir's chat/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Allow sending a password or token over cleartext ws:// to another
    /// machine (a bare host name uses wss://)
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Also trust the certificates in this PEM file for wss:// (a private CA,
    /// or the server's self-signed certificate)
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// How to reach the server: ws (WebSocket), http (server-sent events
    /// and POST, where proxies refuse WebSockets) or auto (the WebSocket,
    /// falling back to HTTP) [default: auto]
    #[arg(
        long,
        global = true,
        value_name = "ws|http|auto",
        env = "CHAT_TRANSPORT"
    )]
    pub transport: Option<crate::client::net::Transport>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account and log in
    Register {
        /// Username (2-32 of a-z 0-9 _ . -)
        username: Option<String>,
        /// Read the password from standard input (one line)
        #[arg(long)]
        password_stdin: bool,
        /// The invitation code a server admin gave you
        #[arg(long, value_name = "CODE")]
        invite: Option<String>,
    },
    /// Log in and store the session token
    Login {
        username: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the session token and forget it
    Logout,
    /// List my conversations
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Send a message (text from standard input when omitted)
    Send {
        /// @user (a DM, created on first use), #name, or a conversation id
        target: String,
        text: Option<String>,
        /// Give up (exit 5) when the server has not acknowledged the
        /// message after this many seconds; until then it is retried
        /// through reconnects, never sent twice
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        timeout: u64,
    },
    /// Upload files and share each in a conversation (the caption goes
    /// with the first)
    Upload {
        /// @user (a DM, created on first use), #name, or a conversation id
        target: String,
        /// The files to share, in order
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// A line of text shown with the (first) file
        #[arg(long, value_name = "TEXT")]
        caption: Option<String>,
    },
    /// Download a shared file by its event's seq (as `chat tail` shows it)
    Download {
        /// @user, #name, or a conversation id
        target: String,
        /// The seq of the file event
        seq: u64,
        /// Where to write it [default: the file's name in the current
        /// directory]; a directory puts it there under its name
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace an existing file
        #[arg(long)]
        force: bool,
    },
    /// Print the last messages of a conversation
    Tail {
        target: String,
        /// Keep printing new events as they arrive, each once and in order,
        /// through reconnects, until interrupted
        #[arg(long, short)]
        follow: bool,
        /// One JSON event per line
        #[arg(long)]
        json: bool,
        /// How many events
        #[arg(short = 'n', default_value_t = 20)]
        n: u32,
    },
    /// Search messages: the local cache at once (offline too), then the
    /// server. Words and "phrases", from:USER, in:#channel, in:@user,
    /// in:group, before:YYYY-MM-DD, after:YYYY-MM-DD
    Search {
        query: String,
        /// Only this conversation: @user, #name or an id
        #[arg(long = "in", value_name = "TARGET")]
        within: Option<String>,
        /// One JSON object per hit, with its `source` (cache or server)
        #[arg(long)]
        json: bool,
        /// How many hits from each source (at most 50)
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: u32,
    },
    /// Create a conversation
    Create {
        #[command(subcommand)]
        what: CreateWhat,
        #[arg(long, global = true)]
        json: bool,
    },
    /// List a conversation's members, with their roles and how far each
    /// has read
    Members {
        /// @user, #name, or a conversation id
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Join a channel
    Join {
        /// #name or a conversation id
        channel: String,
    },
    /// Block a user: they cannot start a DM with you, add you anywhere or
    /// see your presence; nobody is told
    Block { name: String },
    /// Stop blocking a user
    Unblock { name: String },
    /// The users you block
    Blocks {
        #[arg(long)]
        json: bool,
    },
    /// Write everything the server holds that you may read (your account,
    /// your conversations and their whole history) as JSON to standard output
    Export,
    /// Invitations to this server: create, list, revoke
    Invite {
        #[command(subcommand)]
        what: InviteWhat,
    },
    /// Manage accounts (admins only)
    Admin {
        #[command(subcommand)]
        what: AdminWhat,
    },
    /// Incoming webhooks of a group or channel (its admins): create, list,
    /// revoke
    Webhook {
        #[command(subcommand)]
        what: WebhookWhat,
    },
    /// List this account's sessions (devices), or end some
    Sessions {
        /// End the session with this id (from the list)
        #[arg(long, value_name = "ID", conflicts_with = "others")]
        revoke: Option<String>,
        /// End every session but this one
        #[arg(long)]
        others: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change this account's password (other sessions end; this one stays)
    Passwd {
        /// Read the old and the new password from standard input (two lines)
        #[arg(long)]
        password_stdin: bool,
    },
    /// A user's devices (yours when omitted) with their key fingerprints
    /// and how far they are trusted, for secret conversations
    Devices {
        #[arg(id = "peer", value_name = "USER")]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The safety number of your secret conversations with a user: compare
    /// it with theirs (in person or on a call) to know no one is in between
    Safety {
        #[arg(id = "peer", value_name = "USER")]
        user: String,
        /// The number matched theirs: mark USER's identity key verified
        /// (a later change of it then holds sending back until accepted)
        #[arg(long)]
        verified: bool,
    },
    /// Verify a device by comparing seven emoji on both screens (one side
    /// starts, the other waits with --incoming). Exits 1 when the emoji do
    /// not match or the verification is cancelled, 5 when it does not
    /// finish in time
    Verify {
        /// Whose device to verify (your own name for another device of
        /// yours)
        #[arg(
            id = "peer",
            value_name = "USER",
            required_unless_present = "incoming",
            conflicts_with = "incoming"
        )]
        user: Option<String>,
        /// The device to verify [default: USER's only other device]
        #[arg(value_name = "DEVICE", requires = "peer")]
        device: Option<String>,
        /// Wait for another device to start a verification with this one
        /// (how a new device of yours is linked: run this on it, and
        /// `chat verify YOURNAME NEWDEVICE` on one you already have)
        #[arg(long)]
        incoming: bool,
        /// Give up after this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 120)]
        timeout: u64,
    },
    /// Accept a user's changed identity key (after comparing the safety
    /// number again): sending to them resumes
    Accept {
        #[arg(id = "peer", value_name = "USER")]
        user: String,
    },
    /// Make a new identity key for your account, when every device that
    /// held the old one is lost: this device signs itself with it, your
    /// other devices must be verified again, and your contacts are told
    /// the key changed (and must compare safety numbers again)
    ResetIdentity {
        /// Confirm: the old key is replaced for good
        #[arg(long)]
        yes: bool,
    },
    /// Print the effective configuration and where each value came from
    Config,
    /// Run a chat server (chatd) in the foreground
    Server {
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// chatd's TOML configuration file
        #[arg(long = "server-config", value_name = "FILE")]
        server_config: Option<PathBuf>,
        /// Who may register: open, invite or closed [default: the config's, else invite]
        #[arg(long, value_name = "POLICY", value_parser = ["open", "invite", "closed"])]
        registration: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CreateWhat {
    /// A direct conversation with one user
    Dm {
        // An id of its own: `user` is the global `--user`.
        #[arg(id = "peer", value_name = "USER")]
        user: String,
        /// A secret conversation: end-to-end encrypted, only its members'
        /// devices can read it
        #[arg(long)]
        secret: bool,
    },
    /// A private group
    Group {
        name: String,
        users: Vec<String>,
        /// A secret group: end-to-end encrypted (at most 100 members)
        #[arg(long)]
        secret: bool,
    },
    /// A public channel
    Channel { name: String },
}

#[derive(Subcommand, Debug)]
pub enum InviteWhat {
    /// Create an invitation; prints its code
    Create {
        /// How many accounts it may create
        #[arg(long, value_name = "N", default_value_t = 1)]
        uses: u32,
        /// When it stops working: 30m, 12h, 7d, 2w or never
        #[arg(long, value_name = "SPAN", default_value = "7d")]
        expires: String,
    },
    /// List invitations (all for an admin, one's own for a member)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an invitation
    Revoke { code: String },
}

#[derive(Subcommand, Debug)]
pub enum AdminWhat {
    /// Every account: role, state, last seen
    Users {
        #[arg(long)]
        json: bool,
    },
    /// Create an account (under any registration policy)
    Create {
        name: String,
        /// Make it an admin
        #[arg(long)]
        admin: bool,
        /// Read its password from standard input (one line)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password; the account's sessions end
    ResetPassword {
        name: String,
        /// Read the new password from standard input (one line)
        #[arg(long)]
        password_stdin: bool,
    },
    /// Deactivate an account: disconnected at once, cannot log in
    Deactivate { name: String },
    /// Let a deactivated account log in again
    Reactivate { name: String },
    /// Make an account an admin
    Promote { name: String },
    /// Make an admin a member
    Demote { name: String },
    /// Erase an account for good: its messages are deleted and their text
    /// removed from the server; the name stays taken
    Erase {
        name: String,
        /// Confirm: this cannot be undone
        #[arg(long)]
        yes: bool,
    },
    /// Bot accounts: create, list, give a new token (deactivate one with
    /// `chat admin deactivate NAME`)
    Bot {
        #[command(subcommand)]
        what: BotWhat,
    },
}

#[derive(Subcommand, Debug)]
pub enum BotWhat {
    /// Create a bot account; prints its token once (for CHAT_TOKEN)
    Create { name: String },
    /// The bot accounts
    List {
        #[arg(long)]
        json: bool,
    },
    /// Give a bot a new token; the old one stops working at once
    Token { name: String },
}

#[derive(Subcommand, Debug)]
pub enum WebhookWhat {
    /// Create a webhook posting as a new bot account NAME; prints its
    /// secret URL once
    Create {
        /// #channel, group name, or a conversation id
        target: String,
        name: String,
    },
    /// A conversation's webhooks: id, name, creator, created, last used
    List {
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a webhook by its id
    Revoke { id: String },
}

/// Exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Anything else that failed.
    Failure = 1,
    /// Not logged in, or the server refused the credentials.
    Auth = 3,
    /// No such conversation or user.
    NotFound = 4,
    /// The server could not be reached.
    Unreachable = 5,
    /// The server refused the request (forbidden, too large, ...).
    Refused = 6,
    /// Interrupted (Ctrl-C) while following.
    Interrupted = 130,
}

/// A command's failure: one line for the user and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(code: Exit, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::client::net::ClientError> for Failure {
    fn from(e: crate::client::net::ClientError) -> Failure {
        use crate::client::net::ClientError as E;
        use crate::proto::ErrorCode as C;
        let code = match &e {
            E::Connect { .. } | E::Tls { .. } => Exit::Unreachable,
            E::Server(p) => match p.code {
                C::AuthFailed
                | C::Unauthenticated
                | C::UsernameTaken
                | C::AccountDisabled
                | C::InviteRequired
                | C::InviteInvalid
                | C::RegistrationClosed => Exit::Auth,
                C::NotFound => Exit::NotFound,
                C::Forbidden | C::TooLarge | C::RateLimited | C::InvalidArgument | C::Conflict => {
                    Exit::Refused
                }
                _ => Exit::Failure,
            },
            _ => Exit::Failure,
        };
        let message = match &e {
            E::Server(p) => match p.code {
                C::InviteRequired => format!(
                    "{} and run `chat register NAME --invite CODE`",
                    accounts::refusal(p)
                ),
                C::InviteInvalid | C::RegistrationClosed | C::AccountDisabled => {
                    accounts::refusal(p)
                }
                C::RateLimited if p.retry_after_ms.is_some() => accounts::refusal(p),
                _ => e.to_string(),
            },
            _ => e.to_string(),
        };
        Failure::new(code, message)
    }
}

/// Run a command (not the TUI). Returns the exit code.
pub async fn run(cli: Cli, loaded: Loaded) -> i32 {
    let Some(command) = cli.command else {
        return Exit::Failure as i32;
    };
    match commands::dispatch(command, loaded).await {
        Ok(()) => Exit::Ok as i32,
        Err(f) => {
            eprintln!("chat: {}", f.message);
            f.code as i32
        }
    }
}
