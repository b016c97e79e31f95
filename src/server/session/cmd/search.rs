//! `search`: a page of the messages that match a query, from the
//! conversations the user belongs to now (the rule `history` follows),
//! newest first or best match first.

use super::super::{Outcome, Session, error};
use crate::proto::search::{Place, SearchQuery};
use crate::proto::{ByteBudget, ConvKind, ProtoError, SearchOk, SearchOrder, encode_ok};
use crate::server::hub::Readable;
use crate::store::log::{Cursor, SearchScope};
use futures_util::FutureExt;
use std::collections::HashSet;

/// The fields of a `search` request.
pub(super) struct SearchRequest {
    pub query: String,
    pub conversation_id: Option<String>,
    pub order: SearchOrder,
    pub after: Option<String>,
    pub limit: Option<u32>,
}

/// The conversations of `readable` that `place` names.
fn resolve(readable: &[Readable], place: &Place) -> Result<HashSet<String>, ProtoError> {
    let found: HashSet<String> = readable
        .iter()
        .filter(|c| match place {
            Place::Channel(n) => c.kind == ConvKind::Channel && c.name.as_deref() == Some(n),
            Place::Named(n) => c.kind != ConvKind::Dm && c.name.as_deref() == Some(n),
            Place::Dm(u) => c.dm_with.as_deref() == Some(u),
        })
        .map(|c| c.id.clone())
        .collect();
    if found.is_empty() {
        let what = match place {
            Place::Channel(n) => format!("#{n}"),
            Place::Named(n) => n.clone(),
            Place::Dm(u) => format!("a DM with @{u}"),
        };
        return Err(ProtoError::not_found(format!(
            "in: you are in no conversation {what}"
        )));
    }
    Ok(found)
}

impl Session {
    #[allow(clippy::too_many_arguments)] // the request's fields, as dispatched
    pub(super) fn search(
        &self,
        rid: u64,
        user: &str,
        req: SearchRequest,
    ) -> Result<Outcome, ProtoError> {
        let SearchRequest {
            query,
            conversation_id,
            order,
            after,
            limit,
        } = req;
        let shared = self.shared.clone();
        let query = SearchQuery::parse(&query)?;
        let cursor = match after.as_deref() {
            None => None,
            Some(s) => Some(
                Cursor::decode(s)
                    .ok_or_else(|| ProtoError::invalid("after: not a cursor this server gave"))?,
            ),
        };
        let readable = shared.hub.readable(user);
        let mut allowed: HashSet<String> = readable.iter().map(|c| c.id.clone()).collect();
        if let Some(id) = &conversation_id {
            shared.hub.check_member(user, id)?;
            allowed.retain(|c| c == id);
        }
        if let Some(place) = &query.within {
            let named = resolve(&readable, place)?;
            allowed.retain(|c| named.contains(c));
        }
        let cap = shared.limits.search_page_cap.max(1);
        let size = limit.unwrap_or(cap).clamp(1, cap) as usize;
        let max_bytes = shared.limits.reply_bytes();
        let scope = SearchScope {
            query,
            readable: allowed,
            order,
            cursor,
            limit: size,
        };
        Ok(Outcome::Later(
            async move {
                if scope.readable.is_empty() {
                    return encode_ok(
                        rid,
                        &SearchOk {
                            hits: Vec::new(),
                            next: None,
                        },
                    );
                }
                let page = match shared.store.readers().search(scope).await {
                    Ok(p) => p,
                    Err(e) => return error(Some(rid), &e.to_proto()),
                };
                let mut more = page.hits.len() > size;
                let mut budget = ByteBudget::new(max_bytes);
                let mut hits = Vec::with_capacity(size);
                let mut last = None;
                for (hit, after) in page.hits.into_iter().take(size) {
                    let len = serde_json::to_string(&hit).map_or(0, |s| s.len());
                    if !budget.admit(len + 1) {
                        more = true;
                        break;
                    }
                    hits.push(hit);
                    last = Some(after);
                }
                let next = if more {
                    last.map(Cursor::encode)
                } else {
                    page.resume.map(Cursor::encode)
                };
                encode_ok(rid, &SearchOk { hits, next })
            }
            .boxed(),
        ))
    }
}
