//! `chat search QUERY [--in TARGET] [--json] [--limit N]`: what the local
//! cache holds is printed at once (offline too), then the server is asked
//! and what it adds is printed after, each hit marked with where it came
//! from. The same query language on both sides ([`crate::proto::search`]).

use super::commands::{list, session, title};
use super::{Exit, Failure};
use crate::client::cache::Cache;
use crate::client::clock::TimeZone;
use crate::client::config::Loaded;
use crate::client::paths::Paths;
use crate::client::text::{clean, conv_label, search_line};
use crate::proto::search::SearchQuery;
use crate::proto::{ConvKind, Request, SearchHit, SearchOk, SearchOrder};
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// Where a hit came from.
#[derive(Clone, Copy)]
enum Source {
    Cache,
    Server,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Server => "server",
        }
    }
}

fn print(hit: &SearchHit, label: &str, source: Source, json: bool) {
    let line = if json {
        let mut v = serde_json::to_value(hit).unwrap_or_default();
        v["source"] = source.as_str().into();
        v["conversation"] = clean(label).into();
        v["sender"] = clean(&hit.sender).into();
        v["snippet"] = clean(&hit.snippet).into();
        v.to_string()
    } else {
        search_line(source.as_str(), label, hit, TimeZone::Local)
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The conversation `target` names in the cache (`@user`, `#name`,
/// `+name` or an id).
fn cached_target(cache: &Cache, target: &str) -> Option<String> {
    let convs = cache.conversations().ok()?;
    convs
        .into_iter()
        .find(|c| {
            if let Some(u) = target.strip_prefix('@') {
                c.kind == ConvKind::Dm && c.title == u
            } else if let Some(n) = target
                .strip_prefix('#')
                .or_else(|| target.strip_prefix('+'))
            {
                c.kind != ConvKind::Dm && c.title == n
            } else {
                c.id == target
            }
        })
        .map(|c| c.id)
}

/// The cache of the signed-in user on this server, if there is one.
fn open_cache(loaded: &Loaded) -> Option<Cache> {
    let server = super::commands::server_of(loaded);
    let user = Some(loaded.config.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| Paths::default().last_user(&server))?;
    let path = Paths::default().cache_path(&server, &user);
    if !path.exists() {
        return None;
    }
    match Cache::open(&path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("chat: the local cache cannot be read ({e})");
            None
        }
    }
}

pub(super) async fn search(
    loaded: &Loaded,
    query: &str,
    within: Option<&str>,
    json: bool,
    limit: u32,
) -> Result<(), Failure> {
    let parsed = SearchQuery::parse(query).map_err(|e| Failure::new(Exit::Refused, e.message))?;
    let limit = limit.clamp(1, 50);
    let mut shown: HashSet<(String, u64)> = HashSet::new();
    if let Some(cache) = open_cache(loaded) {
        let labels: HashMap<String, String> = cache
            .conversations()
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.id.clone(), conv_label(c.kind, &c.title)))
            .collect();
        let only = within.map(|t| cached_target(&cache, t).unwrap_or_else(|| t.to_string()));
        match cache.search(&parsed, only.as_deref(), limit as usize) {
            Ok(hits) => {
                for h in hits {
                    let label = labels.get(&h.conversation_id).cloned().unwrap_or_default();
                    print(&h, &label, Source::Cache, json);
                    shown.insert((h.conversation_id, h.seq));
                }
            }
            Err(e) => eprintln!("chat: searching the local cache failed: {e}"),
        }
    }
    let mut s = match session(loaded).await {
        Ok(s) => s,
        Err(f) if f.code == Exit::Unreachable => {
            if shown.is_empty() {
                return Err(Failure::new(
                    Exit::Unreachable,
                    format!(
                        "the server was not reached ({}), and the local cache holds no match",
                        f.message
                    ),
                ));
            }
            eprintln!(
                "chat: the server was not reached ({}); these are results from the local cache only",
                f.message
            );
            return Ok(());
        }
        Err(f) => return Err(f),
    };
    let convs = list(&mut s).await?;
    let conversation_id = match within {
        Some(t) => Some(super::commands::resolve(&mut s, t, false).await?.id),
        None => None,
    };
    let reply: SearchOk = s
        .ask(&Request::Search {
            query: query.to_string(),
            conversation_id,
            order: SearchOrder::Newest,
            after: None,
            limit: Some(limit),
        })
        .await?;
    s.conn.close().await;
    let labels: HashMap<&str, String> = convs
        .iter()
        .map(|c| (c.id.as_str(), title(c, &s.user)))
        .collect();
    for h in reply.hits {
        if shown.insert((h.conversation_id.clone(), h.seq)) {
            let label = labels
                .get(h.conversation_id.as_str())
                .cloned()
                .unwrap_or_default();
            print(&h, &label, Source::Server, json);
        }
    }
    if shown.is_empty() && !json {
        eprintln!("chat: no messages match");
    }
    Ok(())
}
