//! One member against the server: whatever they send is bounded by their
//! own budget. Measured on a `chatd` child process, so that the memory
//! figures are the server's alone.

use crate::support::chatd::{Chatd, write_config};
use crate::support::*;
use serde_json::json;

/// A flood of typing signals naming conversations that do not exist (ids as
/// long as a frame allows) keeps nothing: membership is checked before the
/// throttle stores anything.
#[tokio::test]
async fn typing_for_unknown_conversations_keeps_no_memory() {
    const SIGNALS: usize = 1500;
    let temp = tempfile::tempdir().unwrap();
    let config = write_config(temp.path());
    let data = temp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let chatd = Chatd::start(&data, &config).await;
    let mut p = Peer::connect(&chatd.url()).await;
    p.register("mallory").await;
    p.ok(json!({"type":"conversations"})).await;
    let before = chatd.rss_kib();
    let filler = "x".repeat(60 * 1024);
    for i in 0..SIGNALS {
        let r = p
            .request(
                json!({"type":"typing","conversation_id":format!("{i}{filler}"),"active":true}),
            )
            .await;
        assert_eq!(r["code"], "not_found", "{r}");
    }
    let after = chatd.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("typing flood: {SIGNALS} × 60 KiB ids, RSS {before} → {after} KiB (+{grown})");
    // Kept, they would be 88 MiB.
    assert!(grown < 16 * 1024, "chatd grew by {grown} KiB");
}
