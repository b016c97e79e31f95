//! `search`: search latency on a large store, and the client's offline
//! search on a large cache.
//!
//! Users and groups are made over the wire; chatd is then stopped and the
//! messages are appended straight through the store's writer (the real
//! write path, search index included, without the network), which is much
//! faster than sending them; chatd starts again on that data and one user
//! (a member of half the groups) runs a mix of queries, each timed from
//! request to reply. The offline part fills a client cache through
//! `Cache::apply_events` and times `Cache::search` on the same mix.

use super::report::{Report, Samples};
use super::server::{Server, ServerOpts};
use super::wire;
use crate::client::cache::Cache;
use crate::proto::search::SearchQuery;
use crate::proto::{ConvKind, Conversation, Event, EventBody};
use crate::store::log::{Append, LogStore, NoSink, StoreConfig, SyncMode, WriteLimits};
use anyhow::Context;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct SearchArgs {
    /// Messages in the server's store.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Groups they are spread over; the searching user is in every other one.
    #[arg(long, default_value_t = 200)]
    pub conversations: usize,
    /// Users (five members per group).
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// Messages in the client cache searched offline.
    #[arg(long, default_value_t = 100_000)]
    pub cache_messages: usize,
    /// Times the query mix runs (each run is one query of every kind).
    #[arg(long, default_value_t = 40)]
    pub rounds: usize,
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Words: pronounceable, 4,000 of them, drawn with a Zipf-like law (the
/// first few are very common, most are rare), like words in chat.
const VOCABULARY: usize = 4000;
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "lan", "dor", "ek", "is", "um",
    "bra", "te", "qu", "xo", "zen",
];

fn word(rank: usize) -> String {
    let n = SYLLABLES.len();
    let mut w = String::new();
    let mut r = rank + n;
    while r > 0 {
        w.push_str(SYLLABLES[r % n]);
        r /= n;
    }
    w
}

fn zipf_rank(rng: &mut Rng) -> usize {
    // Log-uniform over 1..=V: P(rank) ~ 1/rank.
    let r = (VOCABULARY as f64).powf(rng.unit()) as usize;
    r.clamp(1, VOCABULARY) - 1
}

fn body(rng: &mut Rng) -> String {
    let n = 6 + rng.below(12);
    (0..n)
        .map(|_| word(zipf_rank(rng)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One kind of query in the mix.
#[derive(Clone, Copy)]
enum Kind {
    Common,
    Medium,
    Rare,
    TwoWords,
    Phrase,
    From,
    In,
    FiltersOnly,
    Ranked,
}

const KINDS: &[(Kind, &str)] = &[
    (Kind::Common, "common_word"),
    (Kind::Medium, "medium_word"),
    (Kind::Rare, "rare_word"),
    (Kind::TwoWords, "two_words"),
    (Kind::Phrase, "phrase"),
    (Kind::From, "from_and_word"),
    (Kind::In, "in_and_word"),
    (Kind::FiltersOnly, "filters_only"),
    (Kind::Ranked, "common_by_rank"),
];

/// A query of `kind`; `group` names one of the searcher's groups, `user`
/// another user.
fn query(kind: Kind, rng: &mut Rng, group: &str, user: &str) -> String {
    let common = word(rng.below(5));
    let medium = word(50 + rng.below(150));
    match kind {
        Kind::Common | Kind::Ranked => common,
        Kind::Medium => medium,
        Kind::Rare => word(2000 + rng.below(VOCABULARY - 2000)),
        Kind::TwoWords => format!("{common} {medium}"),
        Kind::Phrase => format!("\"{} {}\"", word(rng.below(20)), word(rng.below(20))),
        Kind::From => format!("from:{user} {medium}"),
        Kind::In => format!("in:{group} {common}"),
        Kind::FiltersOnly => format!("from:{user} in:{group}"),
    }
}

/// Append `n` messages to the stopped server's store, as fast as the
/// writer takes them. Returns the seconds it took.
async fn fill_store(
    data: &std::path::Path,
    groups: &[(String, Vec<String>)],
    n: usize,
    rng: &mut Rng,
) -> anyhow::Result<f64> {
    let config = StoreConfig {
        sync: SyncMode::Normal,
        ..StoreConfig::default()
    };
    let limits = WriteLimits {
        max_members: 10_000,
        max_conversations_per_user: 100_000,
    };
    let (store, _) = LogStore::open(data, &config, limits, Arc::new(NoSink))
        .map_err(|e| anyhow::anyhow!("opening the store: {e}"))?;
    let t0 = Instant::now();
    let mut waiting = VecDeque::new();
    for i in 0..n {
        let (conv, members) = &groups[rng.below(groups.len())];
        let user = members[rng.below(members.len())].clone();
        let rx = store
            .submit_append(Append::Event {
                user,
                conversation_id: conv.clone(),
                client_msg_id: format!("fill-{i}"),
                body: EventBody::Message {
                    body: body(rng),
                    reply_to: None,
                    encrypted: None,
                },
            })
            .await
            .map_err(|e| anyhow::anyhow!("append: {e}"))?;
        waiting.push_back(rx);
        while waiting.len() > 4096 {
            if let Some(rx) = waiting.pop_front() {
                rx.await
                    .context("the writer stopped")?
                    .map_err(|e| anyhow::anyhow!("append: {e}"))?;
            }
        }
    }
    for rx in waiting {
        rx.await
            .context("the writer stopped")?
            .map_err(|e| anyhow::anyhow!("append: {e}"))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    store.close().await;
    Ok(secs)
}

/// Fill seconds, every sample, the samples of each kind, hits.
type Offline = (f64, Samples, Vec<(&'static str, Samples)>, usize);

/// Fill a client cache with `n` messages over `convs` groups; time each
/// kind of query on it. Returns (fill seconds, all samples, per kind).
fn offline(n: usize, convs: usize, rounds: usize, rng: &mut Rng) -> anyhow::Result<Offline> {
    let dir = std::env::temp_dir().join(format!("chat-bench-search-{}", super::run_tag()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let mut cache = Cache::open(dir.join("cache.db"))?;
        cache.set_me("u0")?;
        let members: Vec<String> = (0..5).map(|i| format!("u{i}")).collect();
        for c in 0..convs {
            cache.upsert_conversation(&Conversation {
                id: format!("c{c}"),
                kind: ConvKind::Group,
                name: Some(format!("g{c}")),
                members: members.clone(),
                member_count: 5,
                last_seq: 0,
                receipts: BTreeMap::new(),
                roles: BTreeMap::new(),
                encrypted: false,
            })?;
        }
        let t0 = Instant::now();
        let mut seqs = vec![0u64; convs];
        let base = crate::proto::now_millis() - n as i64 * 1000;
        let mut batch = Vec::with_capacity(1000);
        for i in 0..n {
            let c = rng.below(convs);
            seqs[c] += 1;
            batch.push(Event {
                conversation_id: format!("c{c}"),
                seq: seqs[c],
                ts: base + i as i64 * 1000,
                sender: members[rng.below(members.len())].clone(),
                client_msg_id: None,
                eid: None,
                bot: false,
                body: EventBody::Message {
                    body: body(rng),
                    reply_to: None,
                    encrypted: None,
                },
            });
            if batch.len() == 1000 {
                cache.apply_events(&batch)?;
                batch.clear();
            }
        }
        cache.apply_events(&batch)?;
        let fill = t0.elapsed().as_secs_f64();
        let mut all = Samples::default();
        let mut per: Vec<(&'static str, Samples)> = KINDS
            .iter()
            .map(|(_, n)| (*n, Samples::default()))
            .collect();
        let mut hits = 0;
        for _ in 0..rounds {
            for (k, (kind, _)) in KINDS.iter().enumerate() {
                let group = format!("g{}", rng.below(convs));
                let user = format!("u{}", rng.below(members.len()));
                let q = SearchQuery::parse(&query(*kind, rng, &group, &user))?;
                let t = Instant::now();
                hits += cache.search(&q, None, 50)?.len();
                let us = t.elapsed().as_micros() as u64;
                all.push(us);
                per[k].1.push(us);
            }
        }
        Ok::<_, anyhow::Error>((fill, all, per, hits))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The scenario (it stops and restarts its chatd, so it takes the server
/// mutably).
pub async fn run(
    server: &mut Server,
    opts: &ServerOpts,
    args: &SearchArgs,
) -> anyhow::Result<Report> {
    let data = server
        .data_dir()
        .context("search needs a chatd it starts itself (not --url)")?;
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let users = args.users.max(6);
    let names: Vec<String> = (0..users).map(|i| format!("u{i}")).collect();
    let registered = wire::register_many(&server.addrs, names.clone(), 16, 4, true).await?;
    let token = registered[0].1.token.clone();
    let mut conns: Vec<wire::Client> = registered.into_iter().filter_map(|(c, _)| c).collect();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut mine: Vec<String> = Vec::new();
    for g in 0..args.conversations.max(2) {
        // Even groups have u0; the others are made of the rest.
        let creator = if g % 2 == 0 { 0 } else { 1 + g % (users - 1) };
        let mut members: Vec<String> = Vec::new();
        while members.len() < 4 {
            let m = 1 + rng.below(users - 1);
            if m != creator && !members.contains(&names[m]) {
                members.push(names[m].clone());
            }
        }
        let name = format!("g{g}");
        let ok = conns[creator]
            .call(json!({"type":"create","kind":"group","name":name,"members":members}))
            .await?;
        let id = ok["conversation"]["id"]
            .as_str()
            .context("no conversation id")?
            .to_string();
        members.push(names[creator].clone());
        if g % 2 == 0 {
            mine.push(name);
        }
        groups.push((id, members));
    }
    drop(conns);
    server.pause();
    let fill_secs = fill_store(&data, &groups, args.messages, &mut rng).await?;
    server.resume(opts).await?;

    let mut c = wire::auth(&server.addr, wire::source(0, 1), &token).await?;
    let mut all = Samples::default();
    let mut per: Vec<(&'static str, Samples)> = KINDS
        .iter()
        .map(|(_, n)| (*n, Samples::default()))
        .collect();
    let mut hits = 0usize;
    let mut errors = 0u64;
    // One round unmeasured: the first queries read the index from disk.
    for round in 0..=args.rounds {
        for (k, (kind, _)) in KINDS.iter().enumerate() {
            let group = &mine[rng.below(mine.len())];
            let user = &names[1 + rng.below(users - 1)];
            let q = query(*kind, &mut rng, group, user);
            let order = if matches!(kind, Kind::Ranked) {
                "rank"
            } else {
                "newest"
            };
            let t = Instant::now();
            let r = c
                .call(json!({"type":"search","query":q,"order":order,"limit":20}))
                .await;
            let us = t.elapsed().as_micros() as u64;
            match r {
                Ok(ok) if round > 0 => {
                    hits += ok["hits"].as_array().map_or(0, Vec::len);
                    all.push(us);
                    per[k].1.push(us);
                }
                Ok(_) => {}
                Err(_) => errors += 1,
            }
        }
    }
    let (cache_fill, mut off_all, mut off_per, off_hits) = {
        let n = args.cache_messages;
        let convs = (args.conversations / 2).max(1);
        let rounds = args.rounds;
        let mut rng2 = Rng(rng.next() | 1);
        tokio::task::spawn_blocking(move || offline(n, convs, rounds, &mut rng2)).await??
    };
    let db_bytes = std::fs::metadata(crate::store::log::db_path(&data)).map_or(0, |m| m.len());
    let mut r = Report::new("search");
    r.set("messages", args.messages as u64)
        .set("groups", groups.len() as u64)
        .set("searcher_groups", mine.len() as u64)
        .set("fill_s", super::report::r3(fill_secs))
        .set(
            "fill_msgs_per_s",
            super::report::r3(args.messages as f64 / fill_secs.max(1e-9)),
        )
        .set("db_bytes", db_bytes)
        .set("queries", all.len() as u64)
        .set("errors", errors)
        .set("hits", hits as u64)
        .set("latency", all.summary().to_json());
    let mut kinds = serde_json::Map::new();
    for (name, s) in per.iter_mut() {
        kinds.insert((*name).into(), s.summary().to_json());
    }
    r.set("latency_by_kind", serde_json::Value::Object(kinds))
        .set("cache_messages", args.cache_messages as u64)
        .set("cache_fill_s", super::report::r3(cache_fill))
        .set("offline_queries", off_all.len() as u64)
        .set("offline_hits", off_hits as u64)
        .set("offline_latency", off_all.summary().to_json());
    let mut kinds = serde_json::Map::new();
    for (name, s) in off_per.iter_mut() {
        kinds.insert((*name).into(), s.summary().to_json());
    }
    r.set("offline_latency_by_kind", serde_json::Value::Object(kinds));
    Ok(r)
}
