//! `chat export`: what the server holds that this account may read, as one
//! JSON document on standard output — the account (sessions, blocks), and
//! every conversation it belongs to with its whole log. The format is in
//! `docs/EXPORT.md`. Written as it is fetched, a page of history at a time,
//! so memory stays flat however long the history.

use super::commands::{SignedIn, list, session};
use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::proto::{BlocksOk, HistoryOk, Request, SessionsOk, now_millis};
use std::io::Write;

/// The version of the export format.
pub const EXPORT_VERSION: u32 = 1;

/// Events asked for per `history` request (the server caps pages too).
const PAGE: u32 = 500;

pub(super) async fn export(loaded: &Loaded) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = write_export(&mut s, &loaded.config.server, &mut out).await;
    s.conn.close().await;
    result?;
    out.flush().map_err(write_failed)
}

fn write_failed(e: std::io::Error) -> Failure {
    Failure::new(Exit::Failure, format!("cannot write the export: {e}"))
}

async fn write_export(s: &mut SignedIn, server: &str, out: &mut impl Write) -> Result<(), Failure> {
    let sessions: SessionsOk = s.ask(&Request::Sessions {}).await?;
    let blocks: BlocksOk = s.ask(&Request::Blocks {}).await?;
    let convs = list(s).await?;
    let head = serde_json::json!({
        "format": "chat-export",
        "version": EXPORT_VERSION,
        "exported_at": now_millis(),
        "server": server,
        "account": {
            "username": s.user,
            "sessions": sessions.sessions,
            "blocks": blocks.users,
        },
    });
    // The head object without its closing brace, then the conversations.
    let head = head.to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    write!(out, "{head},\"conversations\":[").map_err(write_failed)?;
    for (i, conv) in convs.iter().enumerate() {
        if i > 0 {
            out.write_all(b",").map_err(write_failed)?;
        }
        write!(
            out,
            "{{\"conversation\":{},\"events\":[",
            serde_json::to_string(conv).unwrap_or_default()
        )
        .map_err(write_failed)?;
        let mut after = 0u64;
        let mut first = true;
        // Each page moves `after` forward; a log has at most `last_seq`
        // events, so this ends.
        for _ in 0..=conv.last_seq {
            let page: HistoryOk = s
                .ask(&Request::History {
                    conversation_id: conv.id.clone(),
                    after: Some(after),
                    before: None,
                    limit: Some(PAGE),
                })
                .await?;
            let Some(last) = page.events.last().map(|e| e.seq) else {
                break;
            };
            for ev in &page.events {
                if !first {
                    out.write_all(b",").map_err(write_failed)?;
                }
                first = false;
                serde_json::to_writer(&mut *out, ev)
                    .map_err(|e| write_failed(std::io::Error::other(e)))?;
            }
            if last <= after {
                break;
            }
            after = last;
        }
        out.write_all(b"]}").map_err(write_failed)?;
    }
    out.write_all(b"]}\n").map_err(write_failed)
}
