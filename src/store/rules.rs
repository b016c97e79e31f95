//! The rules every write to a conversation obeys, apart from storage.
//!
//! Who may post, edit, delete, react, add, remove, rename, change roles and
//! join; the shape of a DM; member and membership caps; blocks; what a
//! retried request answers. Both stores decide with these functions and then
//! only read and write: the SQLite writer answers the questions from its
//! mirror and its one connection, the PostgreSQL store from the transaction
//! it holds (with the conversation's counter row locked, so the answers
//! cannot change before it commits).
//!
//! A backend implements [`Facts`] for whatever it reads through; every
//! decision is an `async fn` over it. The SQLite writer's facts never wait,
//! so it runs the decisions to completion in place ([`decide_now`]).
//!
//! A group or channel has one owner (its creator, until they hand it over)
//! and any number of admins. Owners and admins add and remove members,
//! rename, set roles and delete any message; only the owner demotes or
//! removes an admin, or hands the conversation over. Someone removed from a
//! channel cannot join it again until an admin adds them back. A user who
//! blocks another is not put in a DM or group by them and receives nothing
//! from them in a DM; nobody is told.

use super::log::{Appended, StoreError, WriteLimits};
use crate::proto::{ConvKind, ErrorCode, EventBody, MemberRole, ProtoError};
use std::future::Future;

pub mod secret;

/// A refusal, as the store reports it.
pub fn rejected(code: ErrorCode, message: impl Into<String>) -> StoreError {
    StoreError::Rejected(ProtoError::new(code, message))
}

/// A request made before with the same (sender, client_msg_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    pub conversation_id: String,
    pub seq: u64,
    pub ts: i64,
    /// The event kind it wrote (`message`, `edit`, …).
    pub kind: String,
}

/// A message an edit, deletion, reaction or reply points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sender: String,
    /// Its event kind.
    pub kind: String,
    /// Whether a `delete` event names it.
    pub deleted: bool,
}

/// What the rules ask of a store, inside the write's transaction.
pub trait Facts {
    /// A conversation's kind, or `None` when there is no such conversation.
    fn kind(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<Option<ConvKind>, StoreError>> + Send;
    /// `user`'s role in `conv`, or `None` when they are not a member.
    fn role(
        &mut self,
        conv: &str,
        user: &str,
    ) -> impl Future<Output = Result<Option<MemberRole>, StoreError>> + Send;
    /// How many members `conv` has.
    fn member_count(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// Every member of `conv` with their role.
    fn members(
        &mut self,
        conv: &str,
    ) -> impl Future<Output = Result<Vec<(String, MemberRole)>, StoreError>> + Send;
    /// Whether an account of that name exists.
    fn user_exists(&mut self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Whether `user` is an active admin of the server.
    fn server_admin(&mut self, user: &str)
    -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Whether `blocker` blocks `blocked`.
    fn blocks(
        &mut self,
        blocker: &str,
        blocked: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// How many conversations `user` is in.
    fn memberships(&mut self, user: &str)
    -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// The DM with this [`dm_key`], if one exists.
    fn dm(&mut self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// The channel with this name, if one exists.
    fn channel(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Whether `user` was removed from `conv` (and not added back since).
    fn removed(
        &mut self,
        conv: &str,
        user: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The event `user` wrote with `client_msg_id`, if any.
    fn prior(
        &mut self,
        user: &str,
        client_msg_id: &str,
    ) -> impl Future<Output = Result<Option<Prior>, StoreError>> + Send;
    /// The event at `seq` in `conv`, if any.
    fn target(
        &mut self,
        conv: &str,
        seq: u64,
    ) -> impl Future<Output = Result<Option<Target>, StoreError>> + Send;
    /// The size of `digest` as `user` uploaded it, if they did.
    fn upload_size(
        &mut self,
        user: &str,
        digest: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Whether `conv` is a secret conversation (see [`secret`]). A store
    /// that has none answers `false`.
    fn encrypted(&mut self, conv: &str) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = conv;
        std::future::ready(Ok(false))
    }
}

/// Run a decision whose facts never wait (the SQLite writer's).
pub fn decide_now<T>(decision: impl Future<Output = T>) -> T {
    use futures_util::FutureExt;
    let mut decision = std::pin::pin!(decision);
    match decision.as_mut().now_or_never() {
        Some(done) => done,
        // Facts that answer in place make every await ready at once.
        None => unreachable!("a decision over facts that never wait did not finish"),
    }
}

/// What a write comes to: nothing more to do (with the answer to give), or
/// what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    Done(Appended),
    Write(T),
}

fn nothing<T>(conversation_id: &str) -> Decision<T> {
    Decision::Done(Appended {
        conversation_id: conversation_id.to_string(),
        seq: None,
    })
}

/// The key that makes a DM unique: its two members, sorted.
pub fn dm_key<'a>(members: impl IntoIterator<Item = &'a String>) -> String {
    let mut m: Vec<&str> = members.into_iter().map(String::as_str).collect();
    m.sort_unstable();
    m.join("\n")
}

/// `user`'s role in `conv`, refusing non-members and unknown conversations.
pub async fn member(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
) -> Result<(ConvKind, MemberRole), StoreError> {
    let kind = f
        .kind(conv)
        .await?
        .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
    match f.role(conv, user).await? {
        Some(role) => Ok((kind, role)),
        None => Err(rejected(
            ErrorCode::Forbidden,
            "you are not a member of this conversation",
        )),
    }
}

/// A group or channel `user` manages (owner or admin): their role there.
async fn managed(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
    dm_why: &str,
    why: &str,
) -> Result<(ConvKind, MemberRole), StoreError> {
    let (kind, role) = member(f, user, conv).await?;
    if kind == ConvKind::Dm {
        return Err(rejected(ErrorCode::InvalidArgument, dm_why));
    }
    if !role.manages() {
        return Err(rejected(ErrorCode::Forbidden, why));
    }
    Ok((kind, role))
}

async fn check_user(f: &mut impl Facts, name: &str) -> Result<(), StoreError> {
    if f.user_exists(name).await? {
        Ok(())
    } else {
        Err(rejected(
            ErrorCode::NotFound,
            format!("no user named {name}"),
        ))
    }
}

/// Refuse when `blocker` blocks `user` (without saying so).
async fn check_not_blocked_by(
    f: &mut impl Facts,
    blocker: &str,
    user: &str,
) -> Result<(), StoreError> {
    if f.blocks(blocker, user).await? {
        return Err(rejected(
            ErrorCode::Forbidden,
            format!("you cannot add {blocker} to a conversation"),
        ));
    }
    Ok(())
}

/// Refuse when one of `users` is in as many conversations as allowed.
async fn check_room(
    f: &mut impl Facts,
    limits: &WriteLimits,
    users: &[String],
) -> Result<(), StoreError> {
    let max = limits.max_conversations_per_user;
    for u in users {
        if f.memberships(u).await? >= max {
            return Err(rejected(
                ErrorCode::LimitExceeded,
                format!("max_conversations_per_user: {u} is in {max} conversations already"),
            ));
        }
    }
    Ok(())
}

/// The original answer of a retried request, a conflict when its
/// client_msg_id was used for something else, or `None` for a new one.
pub async fn prior(
    f: &mut impl Facts,
    user: &str,
    client_msg_id: Option<&str>,
    conv: &str,
    kind: &str,
) -> Result<Option<Appended>, StoreError> {
    let Some(cmid) = client_msg_id else {
        return Ok(None);
    };
    match f.prior(user, cmid).await? {
        None => Ok(None),
        Some(p) if p.conversation_id == conv && p.kind == kind => Ok(Some(Appended {
            conversation_id: p.conversation_id,
            seq: Some((p.seq, p.ts)),
        })),
        Some(_) => Err(rejected(
            ErrorCode::Conflict,
            "client_msg_id already used for a different request",
        )),
    }
}

/// The message at `seq` that something points at: its author, whether it
/// was deleted, and whether it is a shared file.
async fn target(
    f: &mut impl Facts,
    conv: &str,
    seq: u64,
) -> Result<(String, bool, bool), StoreError> {
    match f.target(conv, seq).await? {
        Some(t) if t.kind == "message" || t.kind == "file" => {
            Ok((t.sender, t.deleted, t.kind == "file"))
        }
        Some(_) => Err(rejected(
            ErrorCode::InvalidArgument,
            format!("event {seq} is not a message"),
        )),
        None => Err(rejected(
            ErrorCode::NotFound,
            format!("no message with seq {seq}"),
        )),
    }
}

/// A message, file, edit, deletion or reaction by `user` in `conv`.
///
/// A retry must get its original answer even if what it refers to has
/// changed since, so requests that check a target look for a prior copy
/// first. A plain message leaves that to the insert, which finds a prior
/// copy through the idempotency index (and then answers with [`prior`]).
pub async fn event(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
    client_msg_id: Option<&str>,
    body: &EventBody,
) -> Result<Decision<()>, StoreError> {
    let (kind, role) = member(f, user, conv).await?;
    // A secret conversation takes ciphertext only (a deletion carries no
    // text); a normal one never does.
    match (f.encrypted(conv).await?, body.encrypted().is_some()) {
        (true, false) if !matches!(body, EventBody::Delete { .. }) => {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "this is a secret conversation: send the text encrypted",
            ));
        }
        (false, true) => {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "this is not a secret conversation: send the text as it is",
            ));
        }
        _ => {}
    }
    if kind == ConvKind::Dm {
        let members = f.members(conv).await?;
        if let Some((other, _)) = members.iter().find(|(m, _)| m != user)
            && f.blocks(other, user).await?
        {
            return Err(rejected(
                ErrorCode::Forbidden,
                "you cannot write in this conversation",
            ));
        }
    }
    let checks_target = !matches!(
        body,
        EventBody::Message { reply_to: None, .. } | EventBody::File { reply_to: None, .. }
    );
    if checks_target && let Some(done) = prior(f, user, client_msg_id, conv, body.kind()).await? {
        return Ok(Decision::Done(done));
    }
    match body {
        EventBody::Message {
            reply_to: Some(t), ..
        }
        | EventBody::File {
            reply_to: Some(t), ..
        } => {
            target(f, conv, *t).await?;
        }
        EventBody::Edit { target_seq, .. } | EventBody::Delete { target_seq } => {
            let (author, deleted, file) = target(f, conv, *target_seq).await?;
            let edit = matches!(body, EventBody::Edit { .. });
            if file && edit {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "a shared file cannot be edited; delete it and share it again",
                ));
            }
            // Admins of the conversation and of the server may delete any
            // message; only its author edits it.
            let may = author == user || (!edit && (role.manages() || f.server_admin(user).await?));
            if !may {
                return Err(rejected(
                    ErrorCode::Forbidden,
                    "only the author can edit or delete a message",
                ));
            }
            if deleted {
                return Err(rejected(ErrorCode::NotFound, "that message was deleted"));
            }
        }
        EventBody::Reaction { target_seq, .. } => {
            let (_, deleted, _) = target(f, conv, *target_seq).await?;
            if deleted {
                return Err(rejected(ErrorCode::NotFound, "that message was deleted"));
            }
        }
        _ => {}
    }
    // A shared file: the sender uploaded those bytes, of that size.
    if let EventBody::File { file, .. } = body {
        match f.upload_size(user, &file.digest).await? {
            None => {
                return Err(rejected(
                    ErrorCode::NotFound,
                    "no upload of that file by you; upload it first",
                ));
            }
            Some(s) if s != file.size => {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    format!("that file is {s} bytes, not {}", file.size),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(Decision::Write(()))
}

/// A new conversation, as decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    /// Every member, the creator included, sorted.
    pub members: Vec<String>,
    /// A group's or channel's name; a DM has none.
    pub name: Option<String>,
    /// A DM's [`dm_key`].
    pub dm_key: Option<String>,
}

/// `user` creates a conversation with `members`. Creating a DM that exists
/// answers the existing one.
pub async fn create(
    f: &mut impl Facts,
    limits: &WriteLimits,
    user: &str,
    kind: ConvKind,
    name: Option<String>,
    members: Vec<String>,
) -> Result<Decision<NewConversation>, StoreError> {
    create_kind(f, limits, user, kind, name, members, false).await
}

/// [`create`], of a secret conversation (`secret`: see [`secret::create`]),
/// whose DM is another than the plain DM of the same two users.
async fn create_kind(
    f: &mut impl Facts,
    limits: &WriteLimits,
    user: &str,
    kind: ConvKind,
    name: Option<String>,
    members: Vec<String>,
    secret: bool,
) -> Result<Decision<NewConversation>, StoreError> {
    let mut everyone: Vec<String> = vec![user.to_string()];
    for m in members {
        check_user(f, &m).await?;
        check_not_blocked_by(f, &m, user).await?;
        if !everyone.contains(&m) {
            everyone.push(m);
        }
    }
    everyone.sort();
    if everyone.len() > limits.max_members {
        return Err(rejected(ErrorCode::TooLarge, "too many members"));
    }
    let mut dm = None;
    let name = match kind {
        ConvKind::Dm => {
            if everyone.len() != 2 {
                return Err(rejected(
                    ErrorCode::InvalidArgument,
                    "a DM is with exactly one other user",
                ));
            }
            let key = if secret {
                secret::secret_dm_key(&everyone)
            } else {
                dm_key(&everyone)
            };
            if let Some(id) = f.dm(&key).await? {
                return Ok(nothing(&id));
            }
            dm = Some(key);
            None
        }
        ConvKind::Group | ConvKind::Channel => {
            let name = name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                rejected(
                    ErrorCode::InvalidArgument,
                    "a group or channel needs a name",
                )
            })?;
            if kind == ConvKind::Channel && f.channel(&name).await?.is_some() {
                return Err(rejected(
                    ErrorCode::Conflict,
                    format!("a channel named {name} exists; join it instead"),
                ));
            }
            Some(name)
        }
    };
    check_room(f, limits, &everyone).await?;
    Ok(Decision::Write(NewConversation {
        members: everyone,
        name,
        dm_key: dm,
    }))
}

/// `user` joins a channel by id or by name: the channel's id to add them to.
pub async fn join(
    f: &mut impl Facts,
    limits: &WriteLimits,
    user: &str,
    id: Option<String>,
    name: Option<String>,
) -> Result<Decision<String>, StoreError> {
    let id = match (id, name) {
        (Some(id), _) => id,
        (None, Some(name)) => {
            let name = name.trim_start_matches('#');
            f.channel(name)
                .await?
                .ok_or_else(|| rejected(ErrorCode::NotFound, format!("no channel named #{name}")))?
        }
        (None, None) => {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "join needs a conversation_id or a name",
            ));
        }
    };
    let kind = f
        .kind(&id)
        .await?
        .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
    let already = f.role(&id, user).await?.is_some();
    // Do not reveal private conversations to non-members.
    if kind != ConvKind::Channel && !already {
        return Err(rejected(
            ErrorCode::Forbidden,
            "only channels can be joined",
        ));
    }
    if already {
        return Ok(nothing(&id));
    }
    if f.member_count(&id).await? >= limits.max_members {
        return Err(rejected(ErrorCode::TooLarge, "this channel is full"));
    }
    if f.removed(&id, user).await? {
        return Err(rejected(
            ErrorCode::Forbidden,
            "you were removed from this channel; an admin may add you back",
        ));
    }
    check_room(f, limits, &[user.to_string()]).await?;
    Ok(Decision::Write(id))
}

/// An admin adds `members`: those not in yet, sorted.
pub async fn add_members(
    f: &mut impl Facts,
    limits: &WriteLimits,
    user: &str,
    conv: &str,
    members: Vec<String>,
) -> Result<Decision<Vec<String>>, StoreError> {
    managed(
        f,
        user,
        conv,
        "a DM has exactly two members; create a group instead",
        "only an admin of this conversation may add members",
    )
    .await?;
    let mut new: Vec<String> = Vec::new();
    for m in members {
        check_user(f, &m).await?;
        check_not_blocked_by(f, &m, user).await?;
        if !new.contains(&m) && f.role(conv, &m).await?.is_none() {
            new.push(m);
        }
    }
    if new.is_empty() {
        return Ok(nothing(conv));
    }
    let count = f.member_count(conv).await? + new.len();
    if count > limits.max_members {
        return Err(rejected(ErrorCode::TooLarge, "too many members"));
    }
    if count > secret::MAX_SECRET_MEMBERS && f.encrypted(conv).await? {
        return Err(secret::too_many());
    }
    check_room(f, limits, &new).await?;
    new.sort();
    Ok(Decision::Write(new))
}

/// `user` renames a group or channel. What is renamed is of the kind given.
pub async fn rename(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
    client_msg_id: Option<&str>,
    name: &str,
) -> Result<Decision<ConvKind>, StoreError> {
    if let Some(done) = prior(f, user, client_msg_id, conv, "rename").await? {
        return Ok(Decision::Done(done));
    }
    let (kind, _) = managed(
        f,
        user,
        conv,
        "a DM has no name",
        "only an admin of this conversation may rename it",
    )
    .await?;
    if kind == ConvKind::Channel && f.channel(name).await?.is_some_and(|other| other != conv) {
        return Err(rejected(
            ErrorCode::Conflict,
            "a channel with that name exists",
        ));
    }
    Ok(Decision::Write(kind))
}

/// `user` leaves a group or channel. An owner who leaves others behind hands
/// it to an admin (the first by name), or else to a member: the heir.
pub async fn leave(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
) -> Result<Option<String>, StoreError> {
    let (kind, role) = member(f, user, conv).await?;
    if kind == ConvKind::Dm {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            "you cannot leave a DM",
        ));
    }
    if role != MemberRole::Owner {
        return Ok(None);
    }
    let members = f.members(conv).await?;
    let others = members.iter().filter(|(m, _)| m != user);
    let admin = others
        .clone()
        .filter(|(_, r)| *r == MemberRole::Admin)
        .map(|(m, _)| m)
        .min();
    Ok(admin.or_else(|| others.map(|(m, _)| m).min()).cloned())
}

/// An admin removes members: those to remove, sorted. Nobody removes the
/// owner; only the owner removes an admin; leaving is how one removes
/// oneself.
pub async fn remove_members(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
    members: Vec<String>,
) -> Result<Decision<Vec<String>>, StoreError> {
    let (_, mine) = managed(
        f,
        user,
        conv,
        "a DM has exactly two members",
        "only an admin of this conversation may remove members",
    )
    .await?;
    let mut gone: Vec<String> = Vec::new();
    for m in members {
        if m == user {
            return Err(rejected(
                ErrorCode::InvalidArgument,
                "to remove yourself, leave",
            ));
        }
        match f.role(conv, &m).await? {
            None => {
                return Err(rejected(
                    ErrorCode::NotFound,
                    format!("{m} is not a member"),
                ));
            }
            Some(MemberRole::Owner) => {
                return Err(rejected(ErrorCode::Forbidden, "nobody removes the owner"));
            }
            Some(MemberRole::Admin) if mine != MemberRole::Owner => {
                return Err(rejected(
                    ErrorCode::Forbidden,
                    "only the owner removes an admin",
                ));
            }
            Some(_) => {}
        }
        if !gone.contains(&m) {
            gone.push(m);
        }
    }
    if gone.is_empty() {
        return Ok(nothing(conv));
    }
    gone.sort();
    Ok(Decision::Write(gone))
}

/// What giving a role changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleChange {
    /// The owner hands the conversation over and becomes an admin.
    pub hand_over: bool,
}

/// `user` gives `target` a role. Admins make members admins; the owner also
/// demotes admins, and hands the conversation over (`owner`).
pub async fn set_role(
    f: &mut impl Facts,
    user: &str,
    conv: &str,
    target: &str,
    role: MemberRole,
) -> Result<Decision<RoleChange>, StoreError> {
    let (_, mine) = managed(
        f,
        user,
        conv,
        "a DM has no roles",
        "only an admin of this conversation may change roles",
    )
    .await?;
    let theirs = f
        .role(conv, target)
        .await?
        .ok_or_else(|| rejected(ErrorCode::NotFound, format!("{target} is not a member")))?;
    if theirs == role {
        return Ok(nothing(conv));
    }
    if theirs == MemberRole::Owner {
        return Err(rejected(
            ErrorCode::Forbidden,
            "the owner's role changes only when they hand the conversation over",
        ));
    }
    let owner_only = role == MemberRole::Owner || theirs == MemberRole::Admin;
    if owner_only && mine != MemberRole::Owner {
        return Err(rejected(ErrorCode::Forbidden, "only the owner may do that"));
    }
    Ok(Decision::Write(RoleChange {
        hand_over: role == MemberRole::Owner,
    }))
}

/// An admin of a group or channel adds a webhook, a bot account named
/// `username` that joins it.
pub async fn webhook(
    f: &mut impl Facts,
    limits: &WriteLimits,
    by: &str,
    conv: &str,
    username: &str,
) -> Result<(), StoreError> {
    managed(
        f,
        by,
        conv,
        "webhooks post in groups and channels, not in DMs",
        "only an admin of this conversation may add a webhook",
    )
    .await?;
    if f.encrypted(conv).await? {
        return Err(rejected(
            ErrorCode::Forbidden,
            "a webhook cannot post in a secret conversation",
        ));
    }
    if f.member_count(conv).await? >= limits.max_members {
        return Err(rejected(ErrorCode::TooLarge, "too many members"));
    }
    if f.user_exists(username).await? {
        return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
    }
    check_room(f, limits, &[username.to_string()]).await
}

/// `blocker` starts or stops blocking `blocked`.
pub async fn block(f: &mut impl Facts, blocker: &str, blocked: &str) -> Result<(), StoreError> {
    if blocker == blocked {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            "you cannot block yourself",
        ));
    }
    check_user(f, blocked).await
}

/// A member's receipt pointers as asked, bounded by the conversation's last
/// seq, and delivered never below read. They only move forward: the store
/// keeps the larger of these and what it has.
pub fn receipt_bounds(last_seq: u64, delivered: u64, read: u64) -> (u64, u64) {
    let read = read.min(last_seq);
    (delivered.max(read).min(last_seq), read)
}

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;
