//! `chat tail`: the last events of a conversation, and with `--follow` the
//! new ones as they arrive — in seq order, gaps filled, across reconnects.

use super::commands::{Session, resolve, session};
use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::proto::{Event, EventBody, HistoryOk, Request, ServerFrame};
use std::collections::BTreeMap;
use std::time::Duration;

/// One event as a line of text.
pub fn format_event(ev: &Event) -> String {
    let time = crate::ui::clock::TimeZone::Local.hhmm(ev.ts);
    let who = &ev.sender;
    match &ev.body {
        EventBody::Message { body, reply_to } => {
            let reply = reply_to
                .map(|r| format!(" (reply to #{r})"))
                .unwrap_or_default();
            let mut lines = body.lines();
            let first = lines.next().unwrap_or("");
            let mut out = format!("#{} [{time}] {who}{reply}: {first}", ev.seq);
            for l in lines {
                out.push_str("\n    ");
                out.push_str(l);
            }
            out
        }
        EventBody::Edit { target_seq, body } => {
            format!("#{} [{time}] {who} edited #{target_seq}: {body}", ev.seq)
        }
        EventBody::Delete { target_seq } => {
            format!("#{} [{time}] {who} deleted #{target_seq}", ev.seq)
        }
        EventBody::Reaction {
            target_seq,
            emoji,
            remove,
        } => format!(
            "#{} [{time}] {who} {} {emoji} on #{target_seq}",
            ev.seq,
            if *remove { "took back" } else { "reacted" }
        ),
        EventBody::Join { members } => {
            if members.len() == 1 && &members[0] == who {
                format!("#{} [{time}] {who} joined", ev.seq)
            } else {
                format!("#{} [{time}] {who} added {}", ev.seq, members.join(", "))
            }
        }
        EventBody::Leave { .. } => format!("#{} [{time}] {who} left", ev.seq),
        EventBody::Rename { name } => format!("#{} [{time}] {who} renamed this to {name}", ev.seq),
        EventBody::Create { name, members } => format!(
            "#{} [{time}] {who} created {} with {}",
            ev.seq,
            name.clone().unwrap_or_else(|| "this conversation".into()),
            members.join(", ")
        ),
    }
}

fn print(ev: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(ev).unwrap_or_default());
    } else {
        println!("{}", format_event(ev));
    }
}

async fn history(
    s: &mut Session,
    conv: &str,
    after: Option<u64>,
    before: Option<u64>,
    limit: u32,
) -> Result<HistoryOk, Failure> {
    s.ask(&Request::History {
        conversation_id: conv.to_string(),
        after,
        before,
        limit: Some(limit),
    })
    .await
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
    let h = history(&mut s, &conv.id, None, Some(u64::MAX / 2), n.clamp(1, 500)).await?;
    let mut printed = h.last_seq.min(conv.last_seq.max(h.last_seq));
    for ev in &h.events {
        print(ev, json);
    }
    if let Some(last) = h.events.last() {
        printed = last.seq;
    }
    if !follow {
        s.conn.close().await;
        return Ok(());
    }
    // Follow: print in seq order; hold early arrivals until the gap is filled.
    let mut held: BTreeMap<u64, Event> = BTreeMap::new();
    loop {
        let frame = match s.conn.next_push().await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("chat: {e}; reconnecting");
                s = reconnect(loaded).await?;
                // Catch up on what happened meanwhile.
                fill(&mut s, &conv.id, &mut printed, json).await?;
                continue;
            }
        };
        let ServerFrame::Event(ev) = frame else {
            continue;
        };
        if ev.conversation_id != conv.id || ev.seq <= printed {
            continue;
        }
        if ev.seq == printed + 1 {
            print(&ev, json);
            printed = ev.seq;
            while let Some(next) = held.remove(&(printed + 1)) {
                print(&next, json);
                printed = next.seq;
            }
        } else {
            held.insert(ev.seq, ev);
            if held.len() > 10_000 {
                held.clear();
            }
            fill(&mut s, &conv.id, &mut printed, json).await?;
            held.retain(|seq, _| *seq > printed);
        }
    }
}

/// Print everything after `printed` from history.
async fn fill(s: &mut Session, conv: &str, printed: &mut u64, json: bool) -> Result<(), Failure> {
    for _ in 0..1000 {
        let h = history(s, conv, Some(*printed), None, 500).await?;
        for ev in &h.events {
            if ev.seq == *printed + 1 {
                print(ev, json);
                *printed = ev.seq;
            }
        }
        if h.events.is_empty() || *printed >= h.last_seq {
            break;
        }
    }
    Ok(())
}

async fn reconnect(loaded: &Loaded) -> Result<Session, Failure> {
    let mut wait = Duration::from_millis(500);
    for _ in 0..30 {
        tokio::time::sleep(wait).await;
        match session(loaded).await {
            Ok(s) => return Ok(s),
            Err(f) if f.code == Exit::Auth => return Err(f),
            Err(_) => wait = (wait * 2).min(Duration::from_secs(10)),
        }
    }
    Err(Failure::new(
        Exit::Unreachable,
        "the server did not come back",
    ))
}
