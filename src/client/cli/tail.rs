//! `chat tail`: the last events of a conversation, and with `--follow` every
//! new one as it arrives. Following runs on the engine, so it rides through
//! lost connections and server restarts and prints each event exactly once,
//! in seq order (the engine's cache fills every gap before it publishes).

use super::commands::{SignedIn, resolve, session};
use super::live::Live;
use super::{Exit, Failure};
use crate::client::clock::TimeZone;
use crate::client::config::Loaded;
use crate::client::text::event_line;
use crate::client::{Action, Update};
use crate::proto::{Event, HistoryOk, Request};
use std::io::Write;
use std::time::Duration;

/// How long the first sync may take before `tail --follow` gives up.
const FIRST_SYNC: Duration = Duration::from_secs(30);

/// Print one event; `false` once standard output is gone (a closed pipe).
fn print(out: &mut impl Write, ev: &Event, json: bool) -> bool {
    let line = if json {
        serde_json::to_string(ev).unwrap_or_default()
    } else {
        event_line(ev, TimeZone::Local)
    };
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

pub(super) async fn tail(
    loaded: &Loaded,
    target: &str,
    follow: bool,
    json: bool,
    n: u32,
) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let conv = resolve(&mut s, target, false).await?;
    if follow || conv.encrypted {
        // A secret conversation's events are decrypted by the engine,
        // which holds this device's keys; without --follow it stops at
        // the last event the server had.
        let (user, token) = (s.user.clone(), s.token.clone());
        s.conn.close().await;
        let until = (!follow).then_some(conv.last_seq);
        if until == Some(0) {
            return Ok(());
        }
        let run = follow_on_engine(loaded, &user, token, &conv.id, u64::from(n), json, until);
        if until.is_none() {
            return run.await;
        }
        return match tokio::time::timeout(FIRST_SYNC * 2, run).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Exit::Unreachable,
                "the conversation's events did not arrive in time",
            )),
        };
    }
    let h = last_events(&mut s, &conv.id, n.clamp(1, 500)).await?;
    s.conn.close().await;
    let mut out = std::io::stdout();
    for ev in &h.events {
        if !print(&mut out, ev, json) {
            break;
        }
    }
    Ok(())
}

async fn last_events(s: &mut SignedIn, conv: &str, limit: u32) -> Result<HistoryOk, Failure> {
    s.ask(&Request::History {
        conversation_id: conv.to_string(),
        after: None,
        before: Some(u64::MAX / 2),
        limit: Some(limit),
    })
    .await
}

/// Follow `conv` until interrupted, standard output closes, or the server
/// refuses the session.
async fn follow_on_engine(
    loaded: &Loaded,
    user: &str,
    token: String,
    conv: &str,
    last: u64,
    json: bool,
    until: Option<u64>,
) -> Result<(), Failure> {
    let mut live = Live::start(loaded, user, token);
    let result = async {
        live.synced(FIRST_SYNC).await?;
        live.act(Action::Follow {
            conv: conv.to_string(),
            last,
        });
        let mut out = std::io::stdout();
        loop {
            let update = tokio::select! {
                u = live.next() => u?,
                _ = tokio::signal::ctrl_c() => {
                    return Err(Failure::new(Exit::Interrupted, "interrupted"));
                }
            };
            match update {
                Update::Events { conv: c, events } if c == conv => {
                    for ev in &events {
                        if !print(&mut out, ev, json) {
                            return Ok(());
                        }
                        if until.is_some_and(|u| ev.seq >= u) {
                            return Ok(());
                        }
                    }
                }
                Update::Conversations(list) if !list.iter().any(|c| c.id == conv) => {
                    return Err(Failure::new(
                        Exit::NotFound,
                        "you are no longer a member of this conversation",
                    ));
                }
                _ => {}
            }
        }
    }
    .await;
    live.stop().await;
    result
}
