//! Tests against a real PostgreSQL server. They run only when
//! `CHATD_TEST_PG` holds a base URL (a superuser's, e.g.
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`); each creates a
//! database of its own with a random name and drops it at the end.

use super::*;
use crate::proto::search::SearchQuery;
use crate::proto::{ConvKind, ErrorCode, Event, EventBody, MemberRole, Role, SearchOrder};
use crate::store::log::{
    Registration, Revoke, SearchPage, SearchScope, SessionLife, SessionUse, Webhook,
};
use std::collections::HashSet;
use std::sync::Mutex as StdMutex;

/// A database made for one test, dropped when it ends.
struct TestDb {
    base: String,
    name: String,
    url: String,
}

/// `base` with its database name replaced by `name`.
fn with_db(base: &str, name: &str) -> String {
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let (head, query) = match base.find('?') {
        Some(q) => (&base[..q], &base[q..]),
        None => (base, ""),
    };
    let head = match head[after_scheme..].find('/') {
        Some(slash) => &head[..after_scheme + slash],
        None => head,
    };
    format!("{head}/{name}{query}")
}

async fn admin(base: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(base, tokio_postgres::NoTls)
        .await
        .expect("CHATD_TEST_PG does not connect");
    tokio::spawn(conn);
    client
}

impl TestDb {
    async fn new() -> Option<TestDb> {
        let Some(base) = std::env::var("CHATD_TEST_PG")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            eprintln!("skipped: set CHATD_TEST_PG to a PostgreSQL URL to run this test");
            return None;
        };
        let name = format!("chatd_test_{}", hex::encode(rand::random::<[u8; 6]>()));
        admin(&base)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_db(&base, &name);
        Some(TestDb { base, name, url })
    }

    async fn sql(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                admin(&base)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

#[derive(Default)]
struct Sink(StdMutex<Vec<Committed>>);

impl CommitSink for Sink {
    fn committed(&self, changes: &[Committed]) {
        self.0.lock().unwrap().extend_from_slice(changes);
    }
}

impl Sink {
    /// The seqs of `conv`'s events, in the order they were published.
    fn seqs(&self, conv: &str) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| match c {
                Committed::Event(e, _) if e.conversation_id == conv => Some(e.seq),
                _ => None,
            })
            .collect()
    }
}

fn limits() -> WriteLimits {
    WriteLimits {
        max_members: 50,
        max_conversations_per_user: 20,
    }
}

async fn open(db: &TestDb) -> (PgStore, Arc<Sink>) {
    let sink = Arc::new(Sink::default());
    let config = StoreConfig {
        pool: 8,
        ..StoreConfig::default()
    };
    let (store, _) = PgStore::open(&db.url, &config, limits(), sink.clone())
        .await
        .unwrap();
    (store, sink)
}

fn code<T: std::fmt::Debug>(r: Result<T, StoreError>) -> ErrorCode {
    match r {
        Err(StoreError::Rejected(e)) => e.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn user(store: &PgStore, name: &str) {
    store
        .account(AccountOp::CreateUser {
            username: name.into(),
            password_hash: format!("hash-{name}"),
            role: Role::Member,
        })
        .await
        .unwrap();
}

async fn create(store: &PgStore, by: &str, kind: ConvKind, name: &str, members: &[&str]) -> String {
    store
        .append(Append::Create {
            user: by.into(),
            kind,
            name: (kind != ConvKind::Dm).then(|| name.to_string()),
            members: members.iter().map(|m| m.to_string()).collect(),
        })
        .await
        .unwrap()
        .conversation_id
}

/// Users alice and bob, and a group `g` of alice's with bob in it.
async fn alice_and_bob_in_a_group(store: &PgStore) -> String {
    for n in ["alice", "bob"] {
        user(store, n).await;
    }
    create(store, "alice", ConvKind::Group, "g", &["bob"]).await
}

fn say(user: &str, conv: &str, cmid: &str, text: &str) -> Append {
    Append::Event {
        user: user.into(),
        conversation_id: conv.into(),
        client_msg_id: cmid.into(),
        body: EventBody::Message {
            body: text.into(),
            reply_to: None,
            encrypted: None,
        },
    }
}

fn seq(a: &Appended) -> u64 {
    a.seq.expect("an event was written").0
}

/// The pool hands out the connection returned last: a node's writes keep
/// to the few connections they need, whose statements are prepared and
/// whose backends are warm, instead of going round every pooled
/// connection in turn (which put a fan-out's p99 through three nodes at
/// 15–20 ms instead of 6–9).
#[tokio::test]
async fn the_pool_hands_out_the_connection_returned_last() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let pool = db::Db::new(&db.url, 4, db::TIMEOUTS).unwrap();
    async fn pid(c: &deadpool_postgres::Object) -> i32 {
        c.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    }
    let held = [
        pool.client().await.unwrap(),
        pool.client().await.unwrap(),
        pool.client().await.unwrap(),
    ];
    let mut pids = Vec::new();
    for c in &held {
        pids.push(pid(c).await);
    }
    // Returned in order: the third last.
    drop(held);
    for _ in 0..5 {
        let c = pool.client().await.unwrap();
        assert_eq!(pid(&c).await, pids[2]);
    }
}

#[tokio::test]
async fn migrations_run_once_and_nodes_share_a_cluster_id() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    assert_eq!(migrate(&db.url).await.unwrap(), SCHEMA_VERSION);
    assert_eq!(migrate(&db.url).await.unwrap(), SCHEMA_VERSION);
    // Nodes starting together migrate once between them.
    let (a, b) = tokio::join!(open(&db), open(&db));
    let (a, b) = (a.0, b.0);
    assert_eq!(a.cluster_id(), b.cluster_id());
    assert_eq!(a.cluster_id().len(), 32);
    let sql = db.sql().await;
    let n: i64 = sql
        .query_one("SELECT COUNT(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(SCHEMA_VERSION));
    a.ping().await.unwrap();
    // A database from a newer chatd is refused.
    sql.batch_execute("INSERT INTO schema_migrations VALUES (999, 0)")
        .await
        .unwrap();
    assert!(matches!(migrate(&db.url).await, Err(StoreError::Open(_))));
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn appenders_on_three_nodes_get_dense_seqs() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(open(&db).await);
    }
    let names: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
    for n in &names {
        user(&nodes[0].0, n).await;
    }
    let others: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    let conv = create(&nodes[0].0, &names[0], ConvKind::Group, "busy", &others).await;
    const EACH: usize = 10;
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let store = nodes[i % 3].0.clone();
        let (name, conv) = (name.clone(), conv.clone());
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..EACH {
                let a = store
                    .append(say(&name, &conv, &format!("{name}-{k}"), "hello"))
                    .await
                    .unwrap();
                got.push(seq(&a));
            }
            got
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let got = t.await.unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "one appender's seqs rise"
        );
        seqs.extend(got);
    }
    seqs.sort_unstable();
    let total = names.len() * EACH;
    assert_eq!(
        seqs,
        (2..=total as u64 + 1).collect::<Vec<_>>(),
        "dense, no duplicates"
    );
    let history = nodes[1]
        .0
        .readers()
        .history(&conv, None, None, 1000, usize::MAX)
        .await
        .unwrap();
    let logged: Vec<u64> = history.iter().map(|e| e.seq).collect();
    assert_eq!(logged, (1..=total as u64 + 1).collect::<Vec<_>>());
    for (_, sink) in &nodes {
        let published = sink.seqs(&conv);
        assert!(
            published.windows(2).all(|w| w[0] < w[1]),
            "each node publishes a conversation's events in seq order"
        );
    }
    let all: usize = nodes.iter().map(|(_, s)| s.seqs(&conv).len()).sum();
    assert_eq!(all, total + 1, "every event published once, by its node");
    for (store, _) in nodes {
        store.close().await;
    }
}

#[tokio::test]
async fn queued_writes_commit_together_and_a_refusal_stays_alone() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (store, sink) = open(&db).await;
    for n in ["ann", "bob", "eve"] {
        user(&store, n).await;
    }
    let conv = create(&store, "ann", ConvKind::Group, "team", &["bob"]).await;
    // Submitted one after another without waiting: they queue in the
    // conversation's lane and commit in shared transactions.
    const N: usize = 200;
    let mut pending = Vec::new();
    for k in 0..N {
        let op = match k % 50 {
            // A stranger's send is refused among the others.
            7 => say("eve", &conv, &format!("eve-{k}"), "let me in"),
            // A retry of the send just before it, in the same batch.
            9 => say("ann", &conv, &format!("ann-{}", k - 1), "again"),
            _ => say("ann", &conv, &format!("ann-{k}"), "hello"),
        };
        pending.push(store.submit_append(op).await.unwrap());
    }
    let mut seqs = Vec::new();
    for (k, rx) in pending.into_iter().enumerate() {
        let r = rx.await.unwrap();
        match k % 50 {
            7 => assert_eq!(code(r), ErrorCode::Forbidden),
            9 => assert_eq!(seq(&r.unwrap()), *seqs.last().unwrap(), "the original seq"),
            _ => seqs.push(seq(&r.unwrap())),
        }
    }
    let written = N - 2 * (N / 50);
    assert_eq!(
        seqs,
        (2..=written as u64 + 1).collect::<Vec<_>>(),
        "in order, dense"
    );
    assert_eq!(
        sink.seqs(&conv),
        (1..=written as u64 + 1).collect::<Vec<_>>()
    );
    let history = store
        .readers()
        .history(&conv, None, None, 1000, usize::MAX)
        .await
        .unwrap();
    assert_eq!(history.len(), written + 1, "the log holds each once");
    let stats = store.stats().batch_ops.snapshot();
    assert!(
        (stats.count as usize) < N,
        "{N} writes took {} transactions: they were not grouped",
        stats.count
    );
    store.close().await;
}

#[tokio::test]
async fn a_retry_gets_the_original_seq() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (a, sink) = open(&db).await;
    let (b, _) = open(&db).await;
    for n in ["alice", "bob"] {
        user(&a, n).await;
    }
    let conv = create(&a, "alice", ConvKind::Dm, "", &["bob"]).await;
    assert_eq!(
        create(&b, "bob", ConvKind::Dm, "", &["alice"]).await,
        conv,
        "the DM that exists"
    );
    let first = a.append(say("alice", &conv, "m1", "hi")).await.unwrap();
    let again = b.append(say("alice", &conv, "m1", "hi")).await.unwrap();
    assert_eq!(first, again);
    // The same retry racing itself on two nodes: one event.
    let (x, y) = tokio::join!(
        a.append(say("alice", &conv, "m2", "x")),
        b.append(say("alice", &conv, "m2", "x"))
    );
    assert_eq!(x.unwrap(), y.unwrap());
    let history = a
        .readers()
        .history(&conv, None, None, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(history.len(), 3, "create, m1, m2");
    // The id reused for something else is a conflict.
    let other = create(&a, "alice", ConvKind::Group, "g", &["bob"]).await;
    assert_eq!(
        code(a.append(say("alice", &other, "m1", "hi")).await),
        ErrorCode::Conflict
    );
    let edit = Append::Event {
        user: "alice".into(),
        conversation_id: conv.clone(),
        client_msg_id: "m1".into(),
        body: EventBody::Edit {
            target_seq: seq(&first),
            body: "changed".into(),
            encrypted: None,
        },
    };
    assert_eq!(code(a.append(edit).await), ErrorCode::Conflict);
    // The push frame is built from the stored text.
    let pushed = sink.0.lock().unwrap().iter().find_map(|c| match c {
        Committed::Event(e, push) if e.client_msg_id.as_deref() == Some("m1") => Some(push.clone()),
        _ => None,
    });
    let pushed = pushed.unwrap();
    assert!(pushed.contains(r#""body":"hi""#), "{pushed}");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_message_decided_before_its_sender_was_removed_is_decided_again_under_the_lock() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (a, _) = open(&db).await;
    let (b, _) = open(&db).await;
    for n in ["ann", "bob", "cat"] {
        user(&a, n).await;
    }
    let g = create(&a, "ann", ConvKind::Group, "g", &["bob", "cat"]).await;
    let sql = db.sql().await;
    let changes = async || -> i64 {
        sql.query_one(
            "SELECT member_changes FROM conversations WHERE id = $1",
            &[&g],
        )
        .await
        .unwrap()
        .get(0)
    };
    let at_create = changes().await;
    // Messages and receipts leave the count of member changes alone.
    a.append(say("bob", &g, "m0", "before")).await.unwrap();
    a.receipt("cat", &g, 2, 2).await.unwrap();
    assert_eq!(changes().await, at_create);

    // Bob's message is decided (he is a member) without any lock; before
    // it is written, another node removes him.
    let hold = bulk::hold::at(&g);
    let sent = a
        .submit_append(say("bob", &g, "m1", "decided while a member"))
        .await
        .unwrap();
    hold.reached.notified().await;
    let removal = Append::RemoveMembers {
        user: "ann".into(),
        conversation_id: g.clone(),
        members: vec!["bob".into()],
    };
    let removed = seq(&b.append(removal).await.unwrap());
    assert!(changes().await > at_create);
    hold.release.notify_one();
    // Decided again under the lock, it is refused: he is no member now.
    assert_eq!(code(sent.await.unwrap()), ErrorCode::Forbidden);
    let history = a
        .readers()
        .history(&g, None, None, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(history.last().map(|e| e.seq), Some(removed), "{history:?}");
    assert!(
        history
            .iter()
            .all(|e| e.client_msg_id.as_deref() != Some("m1")),
        "{history:?}"
    );
    // A message decided while the count holds is written without a lock.
    a.append(say("cat", &g, "m2", "after")).await.unwrap();
    // A role changed counts as a member change too.
    let before = changes().await;
    a.append(Append::SetRole {
        user: "ann".into(),
        conversation_id: g.clone(),
        target: "cat".into(),
        role: MemberRole::Admin,
    })
    .await
    .unwrap();
    assert_eq!(changes().await, before + 1);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_transaction_dropped_while_open_takes_its_connection_along() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    user(&s, "ann").await;
    let tx = db::Tx::on(s.inner.db.client().await.unwrap());
    tx.begin().await.unwrap();
    tx.conn()
        .execute(
            "UPDATE users SET password_hash = 'changed' WHERE username = 'ann'",
            &[],
        )
        .await
        .unwrap();
    // As when its task is cancelled mid-transaction.
    drop(tx);
    let sql = db.sql().await;
    let mut inside = -1;
    for _ in 0..100 {
        inside = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if inside == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inside, 0, "a backend is left inside the transaction");
    let hash: String = sql
        .query_one(
            "SELECT password_hash FROM users WHERE username = 'ann'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(hash, "hash-ann", "rolled back");
    // The pool hands out working connections still.
    user(&s, "bob").await;
    s.close().await;
}

#[tokio::test]
async fn history_and_event_ids_page() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    let conv = alice_and_bob_in_a_group(&s).await;
    for i in 0..30 {
        s.append(say("bob", &conv, &format!("c{i}"), &format!("message {i}")))
            .await
            .unwrap();
    }
    let r = s.readers();
    let seqs = |evs: Vec<Event>| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(
            r.history(&conv, Some(0), None, 10, usize::MAX)
                .await
                .unwrap()
        ),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            r.history(&conv, Some(25), None, 10, usize::MAX)
                .await
                .unwrap()
        ),
        (26..=31).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            r.history(&conv, None, Some(31), 5, usize::MAX)
                .await
                .unwrap()
        ),
        (26..=30).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            r.history(&conv, Some(3), Some(8), 100, usize::MAX)
                .await
                .unwrap()
        ),
        (4..=7).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(
            r.history(&conv, None, Some(u64::MAX), 2, usize::MAX)
                .await
                .unwrap()
        ),
        [30, 31]
    );
    // A byte budget stops a page early, but never before one event.
    assert_eq!(
        r.history(&conv, Some(1), None, 10, 1).await.unwrap().len(),
        1
    );
    let page = r.history(&conv, Some(1), None, 10, 400).await.unwrap();
    assert!(page.len() > 1 && page.len() < 10, "{}", page.len());
    let all = r.history(&conv, None, None, 100, usize::MAX).await.unwrap();
    let ids = r
        .event_ids(vec![
            (conv.clone(), 2),
            ("nope".into(), 1),
            (conv.clone(), 99),
            (conv.clone(), u64::MAX),
            (conv.clone(), 31),
        ])
        .await
        .unwrap();
    assert_eq!(
        ids,
        [all[1].eid.clone(), None, None, None, all[30].eid.clone()]
    );
    assert!(ids[0].is_some());
    assert_eq!(r.users("a", 10).await.unwrap(), ["alice"]);
    assert_eq!(r.users("", 10).await.unwrap(), ["alice", "bob"]);
    s.close().await;
}

#[tokio::test]
async fn registration_follows_the_policy() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, sink) = open(&db).await;
    let register = |name: &str, invite: Option<&str>, policy| AccountOp::Register {
        username: name.into(),
        password_hash: "h".into(),
        invite: invite.map(str::to_string),
        policy,
    };
    assert!(s.readers().no_accounts().await.unwrap());
    assert_eq!(
        s.account(register("root", None, Registration::Closed))
            .await
            .unwrap(),
        AccountReply::Role(Role::Admin),
        "the first account runs the server"
    );
    assert!(!s.readers().no_accounts().await.unwrap());
    assert_eq!(
        code(s.account(register("x", None, Registration::Closed)).await),
        ErrorCode::RegistrationClosed
    );
    assert_eq!(
        code(s.account(register("x", None, Registration::Invite)).await),
        ErrorCode::InviteRequired
    );
    assert_eq!(
        code(
            s.account(register("x", Some("nope"), Registration::Invite))
                .await
        ),
        ErrorCode::InviteInvalid
    );
    let invite = |code: &str, max_uses, max_per_user| AccountOp::CreateInvite {
        code: code.into(),
        created_by: "root".into(),
        max_uses,
        expires_at: None,
        max_per_user,
    };
    s.account(invite("one", 1, 2)).await.unwrap();
    s.account(invite("two", 2, 2)).await.unwrap();
    assert_eq!(
        code(s.account(invite("three", 1, 2)).await),
        ErrorCode::TooLarge
    );
    assert_eq!(
        s.account(register("x", Some("one"), Registration::Invite))
            .await
            .unwrap(),
        AccountReply::Role(Role::Member)
    );
    assert_eq!(
        code(
            s.account(register("y", Some("one"), Registration::Invite))
                .await
        ),
        ErrorCode::InviteInvalid,
        "used up"
    );
    assert_eq!(
        code(s.account(register("x", None, Registration::Open)).await),
        ErrorCode::UsernameTaken
    );
    assert_eq!(
        code(
            s.account(AccountOp::RevokeInvite {
                code: "two".into(),
                by: "x".into(),
                admin: false
            })
            .await
        ),
        ErrorCode::Forbidden
    );
    s.account(AccountOp::RevokeInvite {
        code: "two".into(),
        by: "root".into(),
        admin: false,
    })
    .await
    .unwrap();
    assert_eq!(
        code(
            s.account(register("y", Some("two"), Registration::Invite))
                .await
        ),
        ErrorCode::InviteInvalid,
        "revoked"
    );
    let listed = s.readers().invites(None, None, 10).await.unwrap();
    let codes: Vec<&str> = listed.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes, ["two", "one"]);
    assert_eq!(listed[1].used_by, ["x"]);
    assert!(listed[0].revoked);
    let rest = s
        .readers()
        .invites(Some("root".into()), Some("two".into()), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    let users: Vec<String> = sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|c| match c {
            Committed::User(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(users, ["root", "x"]);
    let accounts = s.readers().accounts(None, 10).await.unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].role, Role::Admin);
    assert_eq!(
        s.readers().password_hash("x").await.unwrap().as_deref(),
        Some("h")
    );
    s.close().await;
}

#[tokio::test]
async fn sessions_expire_are_capped_and_revoked() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    user(&s, "root").await;
    s.account(AccountOp::SetRole {
        username: "root".into(),
        role: Role::Admin,
    })
    .await
    .unwrap();
    user(&s, "ann").await;
    let session = |token: &str| AccountOp::CreateSession {
        username: "ann".into(),
        token_hash: token.into(),
        device: "laptop".into(),
        address: Some("10.0.0.1".into()),
        max_per_user: 2,
    };
    let use_ = |token: &str, idle_ms| AccountOp::UseSession {
        token_hash: token.into(),
        address: None,
        life: SessionLife {
            idle_ms,
            max_ms: None,
        },
    };
    let AccountReply::Session { id, role, ended } = s.account(session("t1")).await.unwrap() else {
        panic!("a session");
    };
    assert_eq!((role, ended.len()), (Role::Member, 0));
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.account(session("t2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let AccountReply::Session { ended, .. } = s.account(session("t3")).await.unwrap() else {
        panic!("a session");
    };
    assert_eq!(ended, ["t1"], "the oldest beyond the cap ends");
    assert_eq!(
        s.account(use_("t1", 60_000)).await.unwrap(),
        AccountReply::Used(SessionUse::Unknown)
    );
    assert_eq!(
        s.account(use_("t2", 60_000)).await.unwrap(),
        AccountReply::Used(SessionUse::Live {
            username: "ann".into(),
            role: Role::Member
        })
    );
    assert_eq!(
        s.account(use_("t3", 0)).await.unwrap(),
        AccountReply::Used(SessionUse::Expired)
    );
    assert_eq!(s.readers().sessions("ann").await.unwrap().len(), 1);
    s.account(AccountOp::TouchSession {
        token_hash: "t2".into(),
        address: None,
    })
    .await
    .unwrap();
    s.account(session("t4")).await.unwrap();
    let listed = s.readers().sessions("ann").await.unwrap();
    assert_eq!(listed[0].token_hash, "t4", "most recently used first");
    assert_eq!(listed[0].last_address.as_deref(), Some("10.0.0.1"));
    assert!(!listed.iter().any(|r| r.id == id));
    let t4 = listed[0].id.clone();
    assert_eq!(
        s.account(AccountOp::RevokeSessions {
            username: "ann".into(),
            which: Revoke::Id(t4)
        })
        .await
        .unwrap(),
        AccountReply::Revoked(vec!["t4".into()])
    );
    // A new password ends every session but the one kept.
    s.account(session("t5")).await.unwrap();
    assert_eq!(
        s.account(AccountOp::SetPassword {
            username: "ann".into(),
            password_hash: "h2".into(),
            keep: Some("t5".into()),
        })
        .await
        .unwrap(),
        AccountReply::Revoked(vec!["t2".into()])
    );
    assert_eq!(
        code(
            s.account(AccountOp::SetPassword {
                username: "nobody".into(),
                password_hash: "h".into(),
                keep: None
            })
            .await
        ),
        ErrorCode::NotFound
    );
    // Deactivation ends the rest and refuses new sessions.
    assert_eq!(
        s.account(AccountOp::SetActive {
            username: "ann".into(),
            active: false
        })
        .await
        .unwrap(),
        AccountReply::Revoked(vec!["t5".into()])
    );
    assert_eq!(
        code(s.account(session("t6")).await),
        ErrorCode::AccountDisabled
    );
    assert!(!s.readers().account("ann").await.unwrap().unwrap().active);
    // The last active admin stays.
    let demote = AccountOp::SetRole {
        username: "root".into(),
        role: Role::Member,
    };
    assert_eq!(code(s.account(demote.clone()).await), ErrorCode::Conflict);
    let off = AccountOp::SetActive {
        username: "root".into(),
        active: false,
    };
    assert_eq!(code(s.account(off).await), ErrorCode::Conflict);
    s.account(AccountOp::SetActive {
        username: "ann".into(),
        active: true,
    })
    .await
    .unwrap();
    s.account(AccountOp::SetRole {
        username: "ann".into(),
        role: Role::Admin,
    })
    .await
    .unwrap();
    s.account(demote).await.unwrap();
    assert_eq!(
        s.readers().account("root").await.unwrap().unwrap().role,
        Role::Member
    );
    s.close().await;
}

#[tokio::test]
async fn uploads_blocks_bots_and_webhooks() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, sink) = open(&db).await;
    for n in ["alice", "bob"] {
        user(&s, n).await;
    }
    let upload = |digest: &str, size| AccountOp::RecordUpload {
        username: "alice".into(),
        digest: digest.into(),
        size,
        quota: 100,
    };
    s.account(upload("d1", 60)).await.unwrap();
    s.account(upload("d1", 60)).await.unwrap();
    assert_eq!(
        code(s.account(upload("d2", 41)).await),
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        s.readers()
            .upload_usage("alice", Some("d1".into()))
            .await
            .unwrap(),
        (60, true)
    );
    assert!(s.readers().may_read_file("alice", "d1").await.unwrap());
    assert!(!s.readers().may_read_file("bob", "d1").await.unwrap());
    assert_eq!(
        s.account(AccountOp::CollectUploads {
            before: crate::proto::now_millis() + 1
        })
        .await
        .unwrap(),
        AccountReply::Digests(vec!["d1".into()])
    );
    assert!(!s.readers().file_referenced("d1").await.unwrap());

    let block = |blocker: &str, blocked: &str, on| AccountOp::Block {
        blocker: blocker.into(),
        blocked: blocked.into(),
        on,
    };
    assert_eq!(
        code(s.account(block("bob", "bob", true)).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(s.account(block("bob", "eve", true)).await),
        ErrorCode::NotFound
    );
    s.account(block("bob", "alice", true)).await.unwrap();
    assert_eq!(s.readers().blocks("bob").await.unwrap(), ["alice"]);
    assert_eq!(
        code(
            s.append(Append::Create {
                user: "alice".into(),
                kind: ConvKind::Group,
                name: Some("g".into()),
                members: vec!["bob".into()],
            })
            .await
        ),
        ErrorCode::Forbidden,
        "not put in a group by someone they block"
    );
    s.account(block("bob", "alice", false)).await.unwrap();
    assert!(s.readers().blocks("bob").await.unwrap().is_empty());
    assert!(
        sink.0
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Committed::Block { on: false, .. }))
    );

    s.account(AccountOp::Bot(BotOp::Create {
        username: "ci".into(),
        token_hash: "bt1".into(),
    }))
    .await
    .unwrap();
    assert_eq!(s.readers().password_hash("ci").await.unwrap(), None);
    assert_eq!(
        s.account(AccountOp::Bot(BotOp::NewToken {
            username: "ci".into(),
            token_hash: "bt2".into()
        }))
        .await
        .unwrap(),
        AccountReply::Revoked(vec!["bt1".into()])
    );
    assert_eq!(
        code(
            s.account(AccountOp::Bot(BotOp::NewToken {
                username: "alice".into(),
                token_hash: "x".into()
            }))
            .await
        ),
        ErrorCode::NotFound
    );
    let bots = s.readers().bots(None, 10).await.unwrap();
    assert_eq!(bots.len(), 1);
    assert!(bots[0].bot);

    let conv = create(&s, "alice", ConvKind::Group, "team", &["bob"]).await;
    let hook = |by: &str, name: &str| {
        AccountOp::Bot(BotOp::CreateWebhook {
            id: format!("w-{name}"),
            conversation_id: conv.clone(),
            by: by.into(),
            username: name.into(),
            secret_sha256: "00".into(),
        })
    };
    assert_eq!(
        code(s.account(hook("bob", "hook1")).await),
        ErrorCode::Forbidden
    );
    let AccountReply::Webhook(Webhook { info, .. }) =
        s.account(hook("alice", "hook1")).await.unwrap()
    else {
        panic!("a webhook");
    };
    assert_eq!(info.name, "hook1");
    assert_eq!(
        code(s.account(hook("alice", "bob")).await),
        ErrorCode::UsernameTaken
    );
    assert_eq!(s.readers().webhooks(&conv).await.unwrap().len(), 1);
    assert_eq!(
        s.readers().member_role(&conv, "hook1").await.unwrap(),
        Some(MemberRole::Member)
    );
    assert_eq!(
        s.readers()
            .bots_among(vec!["alice".into(), "hook1".into(), "ci".into()])
            .await
            .unwrap(),
        ["hook1", "ci"]
    );
    let posted = s
        .append(say("hook1", &conv, "h1", "build passed"))
        .await
        .unwrap();
    let history = s
        .readers()
        .history(&conv, Some(seq(&posted) - 1), None, 1, usize::MAX)
        .await
        .unwrap();
    assert!(history[0].bot, "a webhook's events are marked");
    s.account(AccountOp::Bot(BotOp::Used {
        id: "w-hook1".into(),
        at: 5,
    }))
    .await
    .unwrap();
    assert_eq!(
        code(
            s.account(AccountOp::Bot(BotOp::RevokeWebhook {
                id: "w-hook1".into(),
                by: "bob".into(),
                admin: false
            }))
            .await
        ),
        ErrorCode::Forbidden
    );
    s.account(AccountOp::Bot(BotOp::RevokeWebhook {
        id: "w-hook1".into(),
        by: "bob".into(),
        admin: true,
    }))
    .await
    .unwrap();
    let hook = s.readers().webhook("w-hook1").await.unwrap().unwrap();
    assert!(hook.disabled);
    assert_eq!(hook.info.last_used, Some(5));
    assert!(s.readers().webhooks(&conv).await.unwrap().is_empty());
    s.close().await;
}

#[tokio::test]
async fn membership_roles_and_receipts() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, sink) = open(&db).await;
    for n in ["alice", "bob", "carol"] {
        user(&s, n).await;
    }
    let ch = create(&s, "alice", ConvKind::Channel, "general", &[]).await;
    assert_eq!(
        code(
            s.append(Append::Create {
                user: "bob".into(),
                kind: ConvKind::Channel,
                name: Some("general".into()),
                members: vec![],
            })
            .await
        ),
        ErrorCode::Conflict
    );
    let join = |u: &str| Append::Join {
        user: u.into(),
        conversation_id: None,
        name: Some("#general".into()),
    };
    assert!(s.append(join("bob")).await.unwrap().seq.is_some());
    assert_eq!(s.append(join("bob")).await.unwrap().seq, None, "already in");
    s.append(join("carol")).await.unwrap();
    s.append(Append::SetRole {
        user: "alice".into(),
        conversation_id: ch.clone(),
        target: "carol".into(),
        role: MemberRole::Admin,
    })
    .await
    .unwrap();
    assert_eq!(
        code(
            s.append(Append::RemoveMembers {
                user: "carol".into(),
                conversation_id: ch.clone(),
                members: vec!["alice".into()],
            })
            .await
        ),
        ErrorCode::Forbidden
    );
    s.append(Append::RemoveMembers {
        user: "carol".into(),
        conversation_id: ch.clone(),
        members: vec!["bob".into()],
    })
    .await
    .unwrap();
    assert_eq!(
        code(s.append(join("bob")).await),
        ErrorCode::Forbidden,
        "removed"
    );
    // The owner leaves: the admin inherits.
    s.append(Append::Leave {
        user: "alice".into(),
        conversation_id: ch.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        s.readers().member_role(&ch, "carol").await.unwrap(),
        Some(MemberRole::Owner)
    );
    s.append(Append::AddMembers {
        user: "carol".into(),
        conversation_id: ch.clone(),
        members: vec!["bob".into()],
    })
    .await
    .unwrap();
    let renamed = s
        .append(Append::Rename {
            user: "carol".into(),
            conversation_id: ch.clone(),
            client_msg_id: Some("r1".into()),
            name: "lobby".into(),
        })
        .await
        .unwrap();
    let history = s
        .readers()
        .history(&ch, None, None, 100, usize::MAX)
        .await
        .unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds,
        [
            "create", "join", "join", "role", "remove", "role", "leave", "join", "rename"
        ]
    );
    assert_eq!(seq(&renamed), 9);
    // Receipts move forward only, within the log.
    let r = s.receipt("bob", &ch, 100, 4).await.unwrap();
    assert_eq!(
        r,
        Some(ReceiptPair {
            delivered: 9,
            read: 4
        })
    );
    assert_eq!(s.receipt("bob", &ch, 3, 3).await.unwrap(), None);
    assert_eq!(
        code(s.receipt("alice", &ch, 1, 1).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(s.receipt("bob", "nope", 1, 1).await),
        ErrorCode::NotFound
    );
    assert!(
        sink.0
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Committed::Receipt { .. }))
    );
    // What a node starts from.
    s.close().await;
    let (_, snapshot) = PgStore::open(
        &db.url,
        &StoreConfig::default(),
        limits(),
        Arc::new(Sink::default()),
    )
    .await
    .unwrap();
    let rec = snapshot.conversations.iter().find(|c| c.id == ch).unwrap();
    assert_eq!(rec.name.as_deref(), Some("lobby"));
    assert_eq!(rec.last_seq, 9);
    assert_eq!(
        rec.receipts["bob"],
        ReceiptPair {
            delivered: 9,
            read: 4
        }
    );
    assert_eq!(rec.roles.get("carol"), Some(&MemberRole::Owner));
    assert_eq!(snapshot.users, ["alice", "bob", "carol"]);
}

fn scope(text: &str, readable: &[&str], order: SearchOrder) -> SearchScope {
    SearchScope {
        query: SearchQuery::parse(text).unwrap(),
        readable: readable
            .iter()
            .map(|s| s.to_string())
            .collect::<HashSet<_>>(),
        order,
        cursor: None,
        limit: 10,
    }
}

#[tokio::test]
async fn search_finds_current_text_where_one_may_read() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    for n in ["alice", "bob", "carol"] {
        user(&s, n).await;
    }
    let ab = create(&s, "alice", ConvKind::Group, "ab", &["bob"]).await;
    let cc = create(&s, "carol", ConvKind::Group, "cc", &[]).await;
    let old = s
        .append(say("alice", &ab, "1", "old deploy key"))
        .await
        .unwrap();
    s.append(Append::Event {
        user: "alice".into(),
        conversation_id: ab.clone(),
        client_msg_id: "2".into(),
        body: EventBody::Edit {
            target_seq: seq(&old),
            body: "rotated Token".into(),
            encrypted: None,
        },
    })
    .await
    .unwrap();
    let gone = s
        .append(say("bob", &ab, "3", "launch codes token"))
        .await
        .unwrap();
    s.append(Append::Event {
        user: "bob".into(),
        conversation_id: ab.clone(),
        client_msg_id: "4".into(),
        body: EventBody::Delete {
            target_seq: seq(&gone),
        },
    })
    .await
    .unwrap();
    s.append(say("carol", &cc, "5", "token elsewhere"))
        .await
        .unwrap();
    s.append(say("bob", &ab, "6", "the token rotated again, token"))
        .await
        .unwrap();
    let hits = |page: SearchPage| {
        page.hits
            .iter()
            .map(|(h, _)| (h.sender.clone(), h.snippet.clone()))
            .collect::<Vec<_>>()
    };
    let r = s.readers();
    let page = r
        .search(scope("token", &[&ab], SearchOrder::Newest))
        .await
        .unwrap();
    assert_eq!(
        hits(page),
        [
            (
                "bob".to_string(),
                "the token rotated again, token".to_string()
            ),
            ("alice".to_string(), "rotated Token".to_string())
        ]
    );
    assert!(
        hits(
            r.search(scope("deploy", &[&ab], SearchOrder::Newest))
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert!(
        hits(
            r.search(scope("launch", &[&ab], SearchOrder::Newest))
                .await
                .unwrap()
        )
        .is_empty()
    );
    assert_eq!(
        hits(
            r.search(scope("\"rotated token\"", &[&ab], SearchOrder::Rank))
                .await
                .unwrap()
        )
        .len(),
        1,
        "a phrase matches its words in order"
    );
    let ranked = r
        .search(scope("token", &[&ab, &cc], SearchOrder::Rank))
        .await
        .unwrap();
    assert_eq!(ranked.hits.len(), 3);
    assert_eq!(ranked.hits[0].0.sender, "bob", "two matches rank first");
    let from = r
        .search(scope("token from:carol", &[&ab, &cc], SearchOrder::Newest))
        .await
        .unwrap();
    assert_eq!(hits(from).len(), 1);
    // Paging: a page of one, then the rest from its cursor.
    let mut first = scope("token", &[&ab, &cc], SearchOrder::Newest);
    first.limit = 1;
    let page = r.search(first).await.unwrap();
    assert_eq!(page.hits.len(), 2, "one more when more follow");
    let mut next = scope("token", &[&ab, &cc], SearchOrder::Newest);
    next.cursor = Some(page.hits[0].1);
    let rest = r.search(next).await.unwrap();
    assert_eq!(rest.hits.len(), 2);
    // Erasing an account deletes its messages and clears their text.
    let AccountReply::Revoked(_) = s
        .account(AccountOp::Erase {
            username: "bob".into(),
        })
        .await
        .unwrap()
    else {
        panic!("revoked sessions");
    };
    let left = r
        .search(scope("token", &[&ab], SearchOrder::Newest))
        .await
        .unwrap();
    assert_eq!(hits(left).len(), 1, "only alice's");
    let history = r.history(&ab, None, None, 100, usize::MAX).await.unwrap();
    let last = history.last().unwrap();
    assert!(matches!(last.body, EventBody::Delete { .. }) && last.sender == "bob");
    for e in &history {
        if let (true, EventBody::Message { body, .. }) = (e.sender == "bob", &e.body) {
            assert!(body.is_empty(), "cleared");
        }
    }
    assert_eq!(r.password_hash("bob").await.unwrap().as_deref(), Some("!"));
    s.close().await;
}

#[tokio::test]
async fn a_database_that_does_not_answer_is_unavailable_quickly() {
    // No server needed: nothing listens on port 1.
    let started = Instant::now();
    let opened = PgStore::open(
        "postgres://chatd@127.0.0.1:1/chatd",
        &StoreConfig::default(),
        limits(),
        Arc::new(Sink::default()),
    )
    .await;
    assert!(
        matches!(opened, Err(StoreError::Unavailable(_))),
        "{:?}",
        opened.err()
    );
    assert!(started.elapsed() < db::TIMEOUTS.connect + Duration::from_secs(1));
    assert!(matches!(
        migrate("postgres://chatd@127.0.0.1:1/chatd").await,
        Err(StoreError::Unavailable(_))
    ));
    let Some(db) = TestDb::new().await else {
        return;
    };
    // Connections dropped under a running store: it answers Unavailable
    // at worst, and works again without a restart.
    let (s, _) = open(&db).await;
    user(&s, "ann").await;
    let sql = db.sql().await;
    sql.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND application_name = 'chatd'",
        &[&db.name],
    )
    .await
    .unwrap();
    let mut recovered = false;
    for _ in 0..3 {
        match s.readers().account("ann").await {
            Ok(a) => {
                assert!(a.is_some());
                recovered = true;
                break;
            }
            Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e}"),
        }
    }
    assert!(recovered);
    s.ping().await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_changes_waiting_their_turn_leave_the_pool_to_others() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    user(&s, "ann").await;
    // Another node's account change holds the lock for a while.
    let sql = db.sql().await;
    sql.execute("SELECT pg_advisory_lock($1)", &[&ACCOUNTS_LOCK])
        .await
        .unwrap();
    // More registrations than the pool has connections queue behind it.
    let queued: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.account(AccountOp::CreateUser {
                    username: format!("u{i}"),
                    password_hash: "h".into(),
                    role: Role::Member,
                })
                .await
            })
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity
         WHERE datname = $1 AND wait_event_type = 'Lock' AND wait_event = 'advisory'";
    let mut seen = 0;
    for _ in 0..100 {
        seen = sql
            .query_one(waiting, &[&db.name])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen > 0, "no registration reached the lock");
    // Let the rest of the burst take what it would.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen: i64 = sql.query_one(waiting, &[&db.name]).await.unwrap().get(0);
    assert_eq!(seen, 1, "one connection of the node waits on the lock");
    // Reads are not starved of connections meanwhile.
    assert!(s.readers().account("ann").await.unwrap().is_some());
    sql.execute("SELECT pg_advisory_unlock($1)", &[&ACCOUNTS_LOCK])
        .await
        .unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_clears_old_text_and_its_search_words() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (s, _) = open(&db).await;
    user(&s, "alice").await;
    let g = create(&s, "alice", ConvKind::Group, "g", &[]).await;
    let old = s
        .append(say("alice", &g, "1", "ancient secret"))
        .await
        .unwrap();
    s.append(say("alice", &g, "2", "fresh news")).await.unwrap();
    // The first message is made old.
    db.sql()
        .await
        .execute(
            "UPDATE events SET ts = 1 WHERE conversation_id = $1 AND seq <= $2",
            &[&g, &(seq(&old) as i64)],
        )
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let cleared = super::retention::sweep(&s, 1_000, &stop).await.unwrap();
    assert_eq!(cleared, 1);
    let events = s
        .readers()
        .history(&g, None, None, 100, usize::MAX)
        .await
        .unwrap();
    let bodies: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Message { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(bodies, vec![String::new(), "fresh news".to_string()]);
    let hits = s
        .readers()
        .search(scope("secret", &[&g], SearchOrder::Newest))
        .await
        .unwrap();
    assert!(hits.hits.is_empty(), "cleared text is not found");
    // A second sweep has nothing left to do.
    assert_eq!(super::retention::sweep(&s, 1_000, &stop).await.unwrap(), 0);
}

// Secret conversations: device keys, inboxes and secret sends.

use crate::proto::keys::{DeviceKeys, Encrypted, KeysUpload, SignedKey};
use crate::proto::{DeviceRef, ToDeviceMessage};
use crate::store::log::{KeyCaps, KeyOp, KeyReply, SecretOp};

fn caps(inbox: usize) -> KeyCaps {
    KeyCaps {
        devices_per_user: 4,
        one_time_keys: 100,
        inbox,
    }
}

/// The (hex) token hash of test session `n`.
fn token(n: u8) -> String {
    hex::encode([n; 32])
}

/// A session `token(n)` of `name` with device `device_id`, `otks` one-time
/// keys and a fallback key (signatures are the server's to check, not the
/// store's).
async fn with_device(store: &PgStore, name: &str, n: u8, device_id: &str, otks: usize) {
    store
        .account(AccountOp::CreateSession {
            username: name.into(),
            token_hash: token(n),
            device: "phone".into(),
            address: None,
            max_per_user: 10,
        })
        .await
        .unwrap();
    let key = |i: usize| SignedKey {
        key_id: format!("k{i:03}"),
        key: format!("key-{name}-{i}"),
        signature: "sig".into(),
    };
    let keys = DeviceKeys {
        curve25519: format!("curve-{name}-{n}"),
        ed25519: format!("ed-{name}-{n}"),
    };
    let upload = KeysUpload {
        device_id: device_id.into(),
        keys: Some(keys.clone()),
        identity_key: None,
        replace_identity: false,
        certificate: None,
        one_time_keys: (0..otks).map(key).collect(),
        fallback_key: Some(SignedKey {
            key_id: "f0".into(),
            ..key(999)
        }),
    };
    let r = store
        .keys(KeyOp::Upload {
            user: name.into(),
            token_hash: token(n),
            keys,
            upload: Box::new(upload),
            identity_seen: None,
            caps: caps(100),
        })
        .await
        .unwrap();
    assert_eq!(r, KeyReply::Count(otks as u32));
}

fn to_device(user: &str, device_id: &str, n: usize) -> ToDeviceMessage {
    ToDeviceMessage {
        user: user.into(),
        device_id: device_id.into(),
        body: serde_json::json!({"ciphertext": format!("c{n}")}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_keys_are_claimed_once_from_three_stores_at_once() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(open(&db).await.0);
    }
    user(&nodes[0], "ann").await;
    const KEYS: usize = 30;
    with_device(&nodes[0], "ann", 1, "ANNPHONEAA", KEYS).await;
    let ann = DeviceRef {
        user: "ann".into(),
        device_id: "ANNPHONEAA".into(),
    };
    // 45 claims, 15 on each store, all at once: 30 one-time keys go out
    // once each, then the fallback key.
    let mut tasks = Vec::new();
    for i in 0..45 {
        let store = nodes[i % 3].clone();
        let ann = ann.clone();
        tasks.push(tokio::spawn(async move {
            match store
                .keys(KeyOp::Claim {
                    devices: vec![ann.clone(), ann],
                })
                .await
                .unwrap()
            {
                KeyReply::Claimed(keys) => keys,
                other => panic!("not a claim: {other:?}"),
            }
        }));
    }
    let mut one_time = Vec::new();
    let mut fallbacks = 0;
    for t in tasks {
        let keys = t.await.unwrap();
        assert_eq!(keys.len(), 1, "one key per device, asked twice or not");
        for k in keys {
            if k.fallback {
                assert_eq!(k.key_id, "f0");
                fallbacks += 1;
            } else {
                one_time.push(k.key_id);
            }
        }
    }
    let distinct: HashSet<&String> = one_time.iter().collect();
    assert_eq!(one_time.len(), KEYS, "every one-time key handed out");
    assert_eq!(distinct.len(), KEYS, "none of them twice");
    assert_eq!(fallbacks, 45 - KEYS);
    for s in nodes {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_stays_dense_and_capped_under_senders_on_three_stores() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(open(&db).await);
    }
    let s0 = &nodes[0].0;
    user(s0, "ann").await;
    with_device(s0, "ann", 1, "ANNPHONEAA", 0).await;
    let senders = ["bob", "cat", "dan"];
    for (i, name) in senders.iter().enumerate() {
        user(s0, name).await;
        with_device(s0, name, 10 + i as u8, "SENDERDEVA", 0).await;
    }
    // 60 messages from three senders on three stores, into an inbox that
    // holds 40: exactly 40 get in, numbered 1 to 40.
    const CAP: usize = 40;
    let mut tasks = Vec::new();
    for (i, name) in senders.iter().enumerate() {
        let store = nodes[i].0.clone();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            let mut full = 0;
            for k in 0..20 {
                let r = store
                    .keys(KeyOp::ToDevice {
                        user: name.clone(),
                        token_hash: token(10 + i as u8),
                        messages: vec![to_device("ann", "ANNPHONEAA", k)],
                        caps: caps(CAP),
                    })
                    .await;
                match r {
                    Ok(KeyReply::Done) => ok += 1,
                    Err(StoreError::Rejected(e)) if e.code == ErrorCode::LimitExceeded => full += 1,
                    other => panic!("unexpected: {other:?}"),
                }
            }
            (ok, full)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (o, full) = t.await.unwrap();
        assert_eq!(o + full, 20);
        ok += o;
    }
    assert_eq!(ok, CAP, "the cap holds with senders racing");
    let (page, last) = nodes[2]
        .0
        .readers()
        .inbox(&token(1), 0, 1000)
        .await
        .unwrap();
    let seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=CAP as u64).collect::<Vec<_>>(), "dense");
    assert_eq!(last, CAP as u64);
    // Each message was pushed once, to ann's session, by its node.
    let pushed: Vec<u64> = nodes
        .iter()
        .flat_map(|(_, sink)| {
            sink.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|c| match c {
                    Committed::ToDevice { user, token: t, .. } if user == "ann" => {
                        assert_eq!(hex::encode(t), token(1));
                        Some(1)
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(pushed.len(), CAP);
    // Acknowledged messages go; the numbering goes on.
    nodes[1]
        .0
        .keys(KeyOp::Ack {
            token_hash: token(1),
            upto: 35,
        })
        .await
        .unwrap();
    let (page, _) = s0.readers().inbox(&token(1), 0, 1000).await.unwrap();
    assert_eq!(page.len(), 5);
    s0.keys(KeyOp::ToDevice {
        user: "bob".into(),
        token_hash: token(10),
        messages: vec![to_device("ann", "ANNPHONEAA", 99)],
        caps: caps(CAP),
    })
    .await
    .unwrap();
    let (page, last) = s0.readers().inbox(&token(1), 40, 10).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [41]);
    assert_eq!(last, 41);
    // A device goes with its session, and its user's contacts hear of it.
    s0.account(AccountOp::RevokeSessions {
        username: "ann".into(),
        which: Revoke::All,
    })
    .await
    .unwrap();
    assert!(
        s0.readers()
            .device_of_session(&token(1))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        nodes[0]
            .1
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Committed::Devices { user, .. } if user == "ann"))
    );
    let (page, last) = s0.readers().inbox(&token(1), 0, 10).await.unwrap();
    assert!(page.is_empty());
    assert_eq!(last, 0);
    for (s, _) in nodes {
        s.close().await;
    }
}

#[tokio::test]
async fn plaintext_is_refused_in_a_secret_conversation_through_the_bulk_path() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (store, _sink) = open(&db).await;
    for n in ["ann", "bob"] {
        user(&store, n).await;
    }
    with_device(&store, "ann", 1, "ANNPHONEAA", 0).await;
    with_device(&store, "bob", 2, "BOBPHONEAA", 0).await;
    let secret = store
        .submit_secret(SecretOp::Create {
            user: "ann".into(),
            kind: ConvKind::Dm,
            name: None,
            members: vec!["bob".into()],
        })
        .await
        .unwrap()
        .await
        .unwrap()
        .unwrap()
        .conversation_id;
    let plain = create(&store, "ann", ConvKind::Dm, "", &["bob"]).await;
    assert_ne!(secret, plain);

    // A run of plain messages, decided together by the bulk path: the one
    // into the secret DM is refused, the others are written.
    let ops = vec![
        say("ann", &plain, "m1", "hello"),
        say("ann", &secret, "m2", "in the clear"),
        say("bob", &plain, "m3", "hi"),
    ];
    assert!(ops.iter().all(bulk::plain));
    let tx = Tx::on(store.inner.db.client().await.unwrap());
    tx.begin().await.unwrap();
    let limits = limits();
    let mut w = W {
        tx: tx.conn(),
        changes: Vec::new(),
        limits: &limits,
    };
    let mut answers: Vec<_> = bulk::apply(&mut w, ops, bulk::Mode::Locked(Default::default()))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.expect("decided under the lock"))
        .collect();
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    assert!(answers[2].is_ok(), "{:?}", answers[2]);
    assert_eq!(
        code(answers.remove(1)),
        ErrorCode::InvalidArgument,
        "plain text into a secret conversation"
    );
    drop(w);
    tx.commit().await.unwrap();

    // A message carrying ciphertext is never a plain one; through the
    // lanes the same refusal holds.
    let sealed = Append::Event {
        user: "ann".into(),
        conversation_id: plain.clone(),
        client_msg_id: "m4".into(),
        body: EventBody::Message {
            body: String::new(),
            reply_to: None,
            encrypted: Some(Box::new(Encrypted {
                algorithm: "megolm.v1".into(),
                device_id: "ANNPHONEAA".into(),
                session_id: "c2Vzc2lvbg".into(),
                ciphertext: "AwgAEhAbc".into(),
            })),
        },
    };
    assert!(!bulk::plain(&sealed));
    assert_eq!(code(store.append(sealed).await), ErrorCode::InvalidArgument);
    let mut burst = Vec::new();
    for k in 0..20 {
        let conv = if k % 2 == 0 { &secret } else { &plain };
        burst.push(
            store
                .submit_append(say("bob", conv, &format!("b{k}"), "text"))
                .await
                .unwrap(),
        );
    }
    for (k, rx) in burst.into_iter().enumerate() {
        let r = rx.await.unwrap();
        if k % 2 == 0 {
            assert_eq!(code(r), ErrorCode::InvalidArgument);
        } else {
            assert!(r.is_ok(), "{r:?}");
        }
    }
    // The secret DM holds its create event only.
    let log = store
        .readers()
        .history(&secret, None, None, 100, usize::MAX)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    store.close().await;
}

#[tokio::test]
async fn devices_go_with_sessions_ended_by_chatd_admin_or_expiry() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (store, sink) = open(&db).await;
    for n in ["ann", "bob"] {
        user(&store, n).await;
    }
    with_device(&store, "ann", 1, "ANNPHONEAA", 3).await;
    with_device(&store, "bob", 2, "BOBPHONEAA", 0).await;
    let devices_of = |who: &str| {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| matches!(c, Committed::Devices { user, .. } if user == who))
            .count()
    };
    let before = devices_of("ann");
    // `chatd admin` resets ann's password from another process: her
    // sessions end, and her device with its keys.
    let admin = offline::Offline::open(&db.url).await.unwrap();
    admin.reset_password("ann", "new-hash").await.unwrap();
    admin.close();
    assert!(
        store
            .readers()
            .device("ann", "ANNPHONEAA")
            .await
            .unwrap()
            .is_none()
    );
    let left: i64 = db
        .sql()
        .await
        .query_one(
            "SELECT COUNT(*) FROM one_time_keys WHERE username = 'ann'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    // The node's next account change tells her contacts.
    user(&store, "cat").await;
    assert_eq!(devices_of("ann"), before + 1);
    // An idle session's device expires, though the session was never
    // presented again.
    let before = devices_of("bob");
    store
        .keys(KeyOp::Expire {
            life: SessionLife {
                idle_ms: 0,
                max_ms: None,
            },
        })
        .await
        .unwrap();
    assert!(
        store
            .readers()
            .device_of_session(&token(2))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(devices_of("bob"), before + 1);
    store.close().await;
}

#[tokio::test]
async fn a_runs_earlier_writes_are_found_through_the_index_with_a_generic_plan() {
    let Some(db) = TestDb::new().await else {
        return;
    };
    let (store, _) = open(&db).await;
    let conv = alice_and_bob_in_a_group(&store).await;
    for i in 0..20 {
        store
            .append(say("alice", &conv, &format!("m{i}"), "hi"))
            .await
            .unwrap();
    }
    // A young log, where the plain join's generic plan hashed all of it.
    let sql = db.sql().await;
    sql.execute(
        "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, data)
         SELECT $1, 1000 + g, 0, 'bob', 'message', 'x' || g, '{}'
         FROM generate_series(1, 1500) AS g",
        &[&conv],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE events").await.unwrap();
    // The plan every run of plain messages uses (see `bulk::GENERIC`).
    sql.batch_execute(&format!(
        "SET plan_cache_mode = force_generic_plan;
         PREPARE prior(text[], text[]) AS {}",
        bulk::PRIOR
    ))
    .await
    .unwrap();
    let plan: Vec<String> = sql
        .query("EXPLAIN EXECUTE prior('{alice}', '{m7}')", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("events_idempotency"), "{plan}");
    assert!(!plan.contains("Seq Scan on events"), "{plan}");
    let found = sql
        .query("EXECUTE prior('{alice,bob}', '{m7,m7}')", &[])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "alice's m7, and no m7 of bob's");
    store.close().await;
}
