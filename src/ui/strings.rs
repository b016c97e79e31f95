//! Every user-facing string of the TUI, in one place.

pub const APP_NAME: &str = "chat";
/// The label of a notification's default action.
pub const NOTIFY_OPEN: &str = "Open";

// Header.
pub const CONNECTING: &str = "connecting…";
pub const CONNECTED: &str = "connected";
/// Connected, but over plain HTTP: the WebSocket did not get through.
pub const CONNECTED_HTTP: &str = "connected over HTTP";
pub const CACHED: &str = "showing cached messages";
pub fn syncing(conversations: usize) -> String {
    format!("syncing… {conversations} conversations")
}
pub fn sync_failed(retry_in_secs: u64) -> String {
    format!("sync failed, retrying in {retry_in_secs} s")
}
pub fn reconnecting(in_secs: u64) -> String {
    format!("reconnecting in {in_secs} s")
}
pub fn offline(reason: &str) -> String {
    if reason.is_empty() {
        "offline".to_string()
    } else {
        format!("offline: {reason}")
    }
}

// Conversation list and message view.
pub const NO_CONVERSATIONS: &str = "No conversations yet. /join #name or /dm USER";
pub const NO_MESSAGES: &str = "No messages yet. Say hello!";
pub const NOT_LOADED: &str = "Loading…";
pub const LOADING_OLDER: &str = "loading older messages…";
pub const BEGINNING: &str = "── beginning of the conversation ──";
pub const DELETED: &str = "message deleted";
pub const REMOVED_BY_MODERATOR: &str = "message removed by a moderator";
pub const EDITED: &str = "(edited)";
/// After the name of a bot, in message rows.
pub const BOT_BADGE: &str = "bot";
pub const MISSING: &str = "missing messages — fetching…";
pub const PENDING_MARK: &str = "…";
pub const SENT_MARK: &str = "✓";
pub const DELIVERED_MARK: &str = "✓✓";
pub const READ_MARK: &str = "✔✔";
pub fn failed(reason: &str) -> String {
    format!("✗ failed: {reason}")
}
pub fn seen_by(users: &[&str]) -> String {
    format!("seen by {}", users.join(", "))
}
pub fn reply_quote(sender: &str, excerpt: &str) -> String {
    if excerpt.is_empty() {
        format!("↳ {sender}")
    } else {
        format!("↳ {sender}: {excerpt}")
    }
}

// Typing line.
pub fn typing(users: &[&str]) -> String {
    match users {
        [] => String::new(),
        [a] => format!("{a} is typing…"),
        [a, b] => format!("{a} and {b} are typing…"),
        [a, b, c] => format!("{a}, {b} and {c} are typing…"),
        [a, b, rest @ ..] => format!("{a}, {b} and {} others are typing…", rest.len()),
    }
}

// Composer and status line.
pub const COMPOSER_TITLE: &str = "message";
pub fn replying_to(sender: &str) -> String {
    format!("replying to {sender} · Esc cancels")
}
pub const EDITING: &str = "editing · Enter saves · Esc cancels";
pub const NORMAL_HINTS: &str = "i write  ↑↓ select  r reply  e edit  ^K switch  ? help  q quit";
pub const INSERT_HINTS: &str = "Enter send  Alt-Enter newline  Tab complete  ^E editor  Esc back";
pub const CONFIRM_DELETE: &str = "Delete this message? y / n";
pub const NO_CONVERSATION: &str =
    "No conversation is open: /dm USER, /join #name or /channel NAME starts one.";
pub const NO_MESSAGE_SELECTED: &str = "No message of yours to act on.";
pub const NOT_YOURS: &str = "You can only change your own messages.";
pub const MESSAGE_NOT_SENT: &str = "That message is not sent yet.";
pub const EMPTY_EDIT: &str = "An edit needs text (or /delete).";
pub const COMPLETION_NONE: &str = "No completion.";
pub const RAW_ON: &str = "showing raw text · R again for rendered markdown";
pub const RAW_OFF: &str = "showing rendered markdown · R shows raw text";
pub fn copied(lines: usize) -> String {
    let s = if lines == 1 { "" } else { "s" };
    format!(
        "copied {lines} line{s} (OSC 52) · nothing to paste? allow OSC 52 in your terminal; tmux: set -g set-clipboard on"
    )
}
pub fn copy_failed(reason: &str) -> String {
    format!("Could not write to the terminal to copy ({reason}).")
}
pub fn editor_failed(reason: &str) -> String {
    format!("Editor failed ({reason}); your draft is unchanged. Set $EDITOR to your editor.")
}
pub fn unknown_command(name: &str) -> String {
    format!("Unknown command /{name} — /help lists them")
}
pub fn usage(text: &str) -> String {
    format!("Usage: {text}")
}

// Quick switcher.
pub const SWITCHER_TITLE: &str = " Go to conversation or user ";
pub const SWITCHER_EMPTY: &str = "no match";
pub const SWITCHER_NEW_DM: &str = "(new DM)";

// Login screen.
pub const LOGIN_TITLE: &str = " Log in ";
pub const REGISTER_TITLE: &str = " Create an account ";
pub const USERNAME: &str = "Username";
pub const PASSWORD: &str = "Password";
pub const INVITATION: &str = "Invitation";
/// Beside an empty invitation field.
pub const INVITATION_OPTIONAL: &str = "optional: the code an admin gave you";
pub const LOGIN_HINTS: &str =
    "Tab next field · Enter submit · Ctrl-R log in/register · Ctrl-C quit";
pub const LOGIN_EMPTY: &str = "Enter a username and a password.";
pub fn login_server(server: &str) -> String {
    format!("Server: {server}")
}

// Help overlay.
pub const HELP_TITLE: &str = " Help · Esc closes ";
pub const HELP_TITLE_SCROLL: &str = " Help · ↑↓ scroll · Esc closes ";
pub const HELP_KEYS: &[(&str, &str)] = &[
    ("i  Enter  /", "write (/ starts a command)"),
    ("Esc", "leave composer / overlay"),
    ("↑ ↓  k j", "select previous / next"),
    ("PgUp PgDn  ^U ^D", "scroll page / half page"),
    ("Home End  g G", "oldest / newest message"),
    ("Tab S-Tab  ^N ^P", "next / prev conversation"),
    ("^K  s", "quick switcher / search"),
    ("r  e  d  +", "reply, edit, delete, react"),
    ("y", "copy code block / message"),
    ("R", "raw text: selected / all"),
    ("o  S", "open / save selected file"),
    ("mouse wheel", "scroll"),
    ("?  q  ^C", "help / quit (^C anywhere)"),
    ("Enter", "composer: send"),
    ("Alt-Enter S-Enter", "composer: new line"),
    ("↑ ↓", "composer: history"),
    ("Tab", "composer: complete"),
    ("^E", "composer: open $EDITOR"),
];
pub const HELP_COMMANDS: &[(&str, &str)] = &[
    ("/join #name", "join a public channel"),
    ("/leave", "leave this conversation"),
    ("/dm USER", "direct conversation"),
    ("/group NAME USER…", "create a private group"),
    ("/channel NAME", "create a public channel"),
    ("/invite USER…", "add people here (admins)"),
    ("/kick USER…", "remove people (admins)"),
    ("/op  /deop USER", "make or unmake an admin"),
    ("/(un)block USER", "stop / let them reach me"),
    ("/edit [text]", "edit selected / last own"),
    ("/delete", "delete selected / last own"),
    ("/react EMOJI", "react to selected / last"),
    ("/reply [text]", "reply to selected / last"),
    ("/upload PATH", "share a file"),
    ("/webhook …", "create, list, revoke hooks"),
    ("/away  /back", "set presence"),
    ("/mute  /unmute", "mute (mentions notify)"),
    ("/sessions", "devices logged in as me"),
    ("/search QUERY", "search messages"),
    ("/quit  /help", "quit / this help"),
];

// Notifications.
pub fn notification_title(sender: &str, conv_title: &str, is_dm: bool) -> String {
    if is_dm {
        sender.to_string()
    } else {
        format!("{sender} in {conv_title}")
    }
}
pub fn notification_more(count: u32) -> String {
    format!("and {count} more")
}
pub fn notification_summary(count: u32, conv_title: &str) -> String {
    format!("{count} new messages in {conv_title}")
}

/// Under the login form while the server cannot be reached.
pub fn login_unreachable(reason: &str, in_secs: u64) -> String {
    format!("cannot reach the server ({reason}); retrying in {in_secs} s")
}

// Unread navigation.
pub const NO_UNREAD: &str = "No other conversation has unread messages.";
pub const NO_UNREAD_MENTIONS: &str = "No other conversation has unread mentions.";
pub const NEW_MESSAGES: &str = "new messages";
pub const UNREAD_ONLY_TITLE: &str = "unread only · U shows all";
pub const HELP_UNREAD_KEYS: &[(&str, &str)] = &[
    ("]u  ]m", "next unread / mention"),
    ("U", "unread only (toggle)"),
];
pub const HELP_UNREAD_COMMANDS: &[(&str, &str)] = &[("/unread", "only unread conversations")];

// Files.
pub const NO_FILE_SELECTED: &str = "Select a file first (↑/k), then o opens it, s saves it.";
pub fn upload_offer(name: &str) -> String {
    format!("Upload {name} here? (y/n)")
}
pub fn no_such_file(path: &str) -> String {
    format!("No such file: {path}")
}
pub fn transfer_progress(upload: bool, name: &str, done: &str, total: &str, pct: u64) -> String {
    let way = if upload { "uploading" } else { "downloading" };
    format!("{way} {name}: {done} of {total} ({pct}%)")
}
pub fn transfer_done(upload: bool, name: &str) -> String {
    if upload {
        format!("uploaded {name}; sharing it")
    } else {
        format!("downloaded {name}")
    }
}
pub fn transfer_failed(upload: bool, name: &str, why: &str) -> String {
    let way = if upload { "upload" } else { "download" };
    format!("{way} of {name} failed: {why}")
}
pub fn saved_to(path: &str) -> String {
    format!("saved to {path}")
}
pub fn opening(name: &str) -> String {
    format!("opening {name}…")
}
pub fn open_failed(why: &str) -> String {
    format!("cannot open the file: {why}")
}

// Sessions overlay.
pub const SESSIONS_TITLE: &str = " My sessions · Esc closes ";
pub const SESSIONS_LOADING: &str = "Loading…";
pub const SESSIONS_HINTS: &str = "↑↓ select · x end selected · o end all others · r refresh";
pub const SESSIONS_CURRENT: &str = "this device";
pub const SESSIONS_NOT_CURRENT: &str = "This is the session you are using: log out to end it.";
pub const SESSIONS_USAGE: &str = "/sessions [revoke ID | others]";

// Search overlay.
pub const SEARCH_TITLE: &str = " Search · Enter runs / opens · Esc closes ";
pub const SEARCH_HINT: &str =
    "words \"a phrase\" from:USER in:#channel in:@user before:/after:YYYY-MM-DD";
pub const SEARCH_NONE: &str = "No messages match.";
pub const SEARCH_WAITING: &str = "asking the server…";
pub fn search_failed(why: &str) -> String {
    format!("server: {why}")
}

// Secret conversations: devices, safety numbers, verification, identity
// keys. `user` and `device` are cleaned by the caller.
pub const HELP_SECRET_HEADING: &str = "Secret conversations";
pub const HELP_SECRET_COMMANDS: &[(&str, &str)] = &[
    ("/dm USER --secret", "secret (encrypted) DM"),
    ("/group … --secret", "secret group"),
    ("/devices [USER]", "devices and key trust"),
    ("/safety USER", "safety number to compare"),
    ("/verify USER [DEV]", "verify a device (emoji)"),
    ("/accept USER", "accept a changed key"),
];
pub const VERIFY_USAGE: &str = "/verify USER [DEVICE]";
pub const DEVICES_LOADING: &str = "Asking the server…";
pub const DEVICES_NONE: &str = "No devices with keys for secret conversations.";
pub const DEVICE_THIS: &str = "this device";
pub const DEVICE_CERTIFIED: &str = "✓ certified";
pub const DEVICE_UNCERTIFIED: &str = "not certified";
pub const DEVICE_VERIFIED: &str = "✓ verified";
pub fn devices_title(user: &str, mine: bool) -> String {
    if mine {
        " My devices · Esc closes ".to_string()
    } else {
        format!(" {user}'s devices · Esc closes ")
    }
}
pub fn trust(trust: &str) -> String {
    format!("Trust: {trust}")
}
pub fn identity_key(key: &str) -> String {
    format!("Identity key: {key}")
}
pub fn devices_hints(user: &str) -> String {
    format!("r refresh · /verify {user} DEVICE checks one")
}
pub fn safety_title(user: &str) -> String {
    format!(" Safety number with {user} ")
}
pub fn safety_compare(user: &str, me: &str) -> String {
    format!(
        "Compare it with {user} in person or on a call: /safety {me} on their screen must show the same digits."
    )
}
pub fn safety_none(user: &str) -> String {
    format!("No safety number yet: {user} has no identity key this device knows.")
}
pub fn safety_changed(user: &str) -> String {
    format!(
        "{user}'s identity key changed. Once the numbers match, a accepts the new key, then v verifies it."
    )
}
pub const SAFETY_HINTS: &str = "v they match · Esc closes";
pub const SAFETY_HINTS_CHANGED: &str = "a accept new key · v they match · Esc closes";
pub const SAFETY_NOT_YET: &str = "There is no safety number to compare yet.";
pub fn verify_title(user: &str, device: &str, mine: bool) -> String {
    if mine {
        format!(" Verify my device {device} ")
    } else {
        format!(" Verify {user} · {device} ")
    }
}
pub fn verify_state(state: &str) -> String {
    format!("State: {state}")
}
pub fn verify_waiting(user: &str) -> String {
    format!("Waiting for {user}'s device to show the emoji…")
}
pub fn verify_question(user: &str) -> String {
    format!("Do they match what {user} sees? y / n")
}
pub const VERIFY_ANSWERED: &str = "Waiting for the other device to confirm…";
pub const VERIFY_DONE: &str = "verified ✓";
pub fn verify_done(user: &str, device: &str) -> String {
    format!("Messages to and from {user}'s device {device} are now trusted.")
}
pub fn verify_cancelled(reason: &str) -> String {
    format!("Cancelled: {reason}")
}
pub const VERIFY_MISMATCH: &str = "you said the emoji do not match";
pub const VERIFY_HINTS_ASK: &str = "y they match · n they do not · Esc hides";
pub const VERIFY_HINTS: &str = "Esc hides";
pub const VERIFY_HINTS_OVER: &str = "Esc closes";
pub fn verify_others(index: usize, total: usize) -> String {
    format!("{index} of {total} · Tab next")
}
pub const VERIFY_NONE: &str = "No verification under way: /verify USER [DEVICE] starts one.";
pub const VERIFY_TOO_SOON: &str = "Compare the emoji on both screens first, then answer.";
pub fn identity_changed_blocking(user: &str) -> String {
    format!(
        "! {user}'s identity key changed after you verified it: nothing is sent to {user} until you compare /safety {user} and /accept {user}"
    )
}
pub fn identity_changed(user: &str) -> String {
    format!("! {user}'s identity key changed: compare /safety {user}")
}
pub const SAFETY_SELF: &str = "That is you: /safety USER compares with someone else.";
pub fn verify_starting(user: &str) -> String {
    format!("Starting a verification with {user}…")
}
