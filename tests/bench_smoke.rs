//! Each `chatd-bench` scenario once at a tiny size against the debug chatd:
//! it runs and reports sane numbers. No timing is asserted.

use chat::bench::catchup::CatchupArgs;
use chat::bench::cli::{Scenario, run};
use chat::bench::client_run::ClientArgs;
use chat::bench::fanout::{FanoutArgs, MembersRead};
use chat::bench::idle::IdleArgs;
use chat::bench::ingest::IngestArgs;
use chat::bench::search::SearchArgs;
use chat::bench::storm::StormArgs;
use chat::bench::{Report, ServerOpts};

fn opts() -> ServerOpts {
    ServerOpts {
        chatd: Some(env!("CARGO_BIN_EXE_chatd").into()),
        ..ServerOpts::default()
    }
}

async fn go(s: Scenario) -> Report {
    let r = run(&opts(), &s).await.expect("scenario runs");
    // Every report prints both ways.
    assert!(r.to_json().is_object());
    assert!(!r.to_text().is_empty());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_to_every_member_in_every_reading_mode() {
    for mode in [MembersRead::Client, MembersRead::Frames, MembersRead::Raw] {
        let r = go(Scenario::Fanout(FanoutArgs {
            members: 3,
            senders: 2,
            rate: 20.0,
            duration: 1.0,
            find_max: false,
            p99_limit_ms: 50.0,
            body_bytes: 32,
            sources: 2,
            members_read: mode,
        }))
        .await;
        let text = r.to_text();
        assert_eq!(r.get("members_read").unwrap(), mode.as_str(), "{text}");
        assert!(r.num("sent") > 0.0);
        assert_eq!(r.num("expected"), r.num("sent") * 3.0);
        assert_eq!(r.num("received"), r.num("expected"), "{text}");
        assert_eq!(r.num("acked"), r.num("sent"), "{text}");
        assert_eq!(r.num("send_errors"), 0.0, "{text}");
        assert_eq!(r.num("disconnected"), 0.0, "{text}");
        let lat = r.get("latency").unwrap();
        let (p50, p99) = (
            lat["p50_ms"].as_f64().unwrap(),
            lat["p99_ms"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 < 10_000.0, "{text}");
        if mode != MembersRead::Raw {
            assert_eq!(r.num("unreadable_frames"), 0.0, "{text}");
            assert!(r.get("ack_latency").unwrap()["p99_ms"].as_f64().unwrap() > 0.0);
        }
        assert!(r.get("chatd").unwrap()["rss_kib"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_find_max_reports_a_rate_in_both_reading_modes() {
    for mode in [MembersRead::Client, MembersRead::Raw] {
        let r = go(Scenario::Fanout(FanoutArgs {
            members: 3,
            senders: 1,
            rate: 10.0,
            duration: 0.3,
            find_max: true,
            // Low enough that the search stops after a few steps.
            p99_limit_ms: 50.0,
            body_bytes: 32,
            sources: 1,
            members_read: mode,
        }))
        .await;
        assert_eq!(r.get("members_read").unwrap(), mode.as_str());
        assert!(!r.get("steps").unwrap().as_array().unwrap().is_empty());
        assert!(r.num("max_passing_rate") >= 10.0, "{}", r.to_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_closed_and_open_loop() {
    let closed = go(Scenario::Ingest(IngestArgs {
        senders: 2,
        duration: 1.0,
        rate: None,
        body_bytes: 16,
        sources: 1,
    }))
    .await;
    assert!(closed.num("acked") > 0.0);
    assert_eq!(closed.num("errors"), 0.0);
    let open = go(Scenario::Ingest(IngestArgs {
        senders: 2,
        duration: 1.0,
        rate: Some(20.0),
        body_bytes: 16,
        sources: 1,
    }))
    .await;
    assert!(open.num("acked") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_held() {
    let r = go(Scenario::Idle(IdleArgs {
        connections: 10,
        per_user: 2,
        hold: 0.2,
        concurrency: 10,
        sources: 2,
        room_size: 0,
        procs: 1,
        restart: false,
        part: false,
    }))
    .await;
    assert_eq!(r.num("connections_alive"), 10.0);
    assert!(r.num("chatd_rss_after_kib") > 0.0);
    assert!(r.get("rooms").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_users_are_held_in_rooms() {
    let r = go(Scenario::Idle(IdleArgs {
        connections: 10,
        per_user: 1,
        hold: 0.2,
        concurrency: 10,
        sources: 2,
        room_size: 4,
        procs: 1,
        restart: true,
        part: false,
    }))
    .await;
    let text = r.to_text();
    // Restarted on the same data, the same users connect with their tokens.
    assert_eq!(r.num("restarted_connections_alive"), 10.0, "{text}");
    assert!(r.num("restarted_rss_after_hold_kib") > 0.0, "{text}");
    assert!(r.num("burst_kept_pct").is_finite(), "{text}");
    assert_eq!(r.num("users"), 10.0, "{text}");
    assert_eq!(r.num("rooms"), 3.0, "{text}");
    assert_eq!(r.num("connections_alive"), 10.0, "{text}");
    // Every added member hears of its room.
    assert!(r.num("frames_received") >= 7.0, "{text}");
    let (before, after) = (r.num("chatd_rss_before_kib"), r.num("chatd_rss_after_kib"));
    assert!(before > 0.0 && after > 0.0, "{text}");
    let per_user = r.num("kib_per_user");
    assert!(per_user.is_finite() && per_user >= 0.0, "{text}");
    // Two connections per user: the second ones authenticate with tokens.
    let r = go(Scenario::Idle(IdleArgs {
        connections: 6,
        per_user: 2,
        hold: 0.2,
        concurrency: 6,
        sources: 2,
        room_size: 2,
        procs: 1,
        restart: false,
        part: false,
    }))
    .await;
    assert_eq!(r.num("users"), 3.0, "{}", r.to_text());
    assert_eq!(r.num("rooms"), 2.0, "{}", r.to_text());
    assert_eq!(r.num("connections_alive"), 6.0, "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_users_spread_over_generator_processes() {
    let r = go(Scenario::Idle(IdleArgs {
        connections: 12,
        per_user: 1,
        hold: 0.2,
        concurrency: 6,
        sources: 2,
        room_size: 3,
        procs: 2,
        restart: false,
        part: false,
    }))
    .await;
    let text = r.to_text();
    assert_eq!(r.num("generator_processes"), 2.0, "{text}");
    assert_eq!(r.num("users"), 12.0, "{text}");
    assert_eq!(r.num("rooms"), 4.0, "{text}");
    assert_eq!(r.num("generators_exited_early"), 0.0, "{text}");
    let per_user = r.num("kib_per_user");
    assert!(per_user.is_finite() && per_user >= 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_fetches_everything_missed() {
    let r = go(Scenario::Catchup(CatchupArgs {
        missed: 50,
        conversations: 3,
        body_bytes: 16,
    }))
    .await;
    assert_eq!(r.num("events_fetched"), 50.0, "{}", r.to_text());
    assert_eq!(r.num("conversations_still_behind"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_clients_all_catch_up() {
    let r = go(Scenario::Storm(StormArgs {
        clients: 5,
        conversations: 2,
        messages: 2,
        timeout: 20.0,
        sources: 2,
    }))
    .await;
    assert_eq!(r.num("caught_up"), 5.0, "{}", r.to_text());
    assert_eq!(r.num("failed"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_events_reach_the_screen() {
    let r = go(Scenario::ClientEvents(ClientArgs {
        cache: None,
        messages: 500,
        conversations: 5,
        unread: "10".into(),
        runs: 1,
        rate: 50.0,
        duration: 0.5,
    }))
    .await;
    assert!(r.num("events") > 0.0);
    assert!(r.num("frames") > 0.0);
}

#[test]
fn client_start_draws_a_first_frame() {
    // The measured child process is chatd-bench itself.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatd-bench"))
        .args(["client-start", "--json", "--runs", "1", "--messages", "300"])
        .arg("--conversations")
        .arg("3")
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"], 1);
    assert_eq!(v["conversations"], 3);
    assert!(v["rss_first_frame_kib"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_measures_latency_quiet_and_under_syncs() {
    let r = go(Scenario::Noisy(chat::bench::noisy::NoisyArgs {
        groups: 3,
        group_size: 5,
        syncers: 2,
        rate: 20.0,
        duration: 0.5,
    }))
    .await;
    assert_eq!(r.num("quiet_delivered"), 10.0, "{}", r.to_text());
    assert_eq!(r.num("noisy_delivered"), 10.0, "{}", r.to_text());
    assert!(r.num("sync_runs") >= 1.0, "{}", r.to_text());
    assert_eq!(r.num("sync_errors"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_moves_a_file_both_ways_and_reports_memory() {
    let r = go(Scenario::Files(chat::bench::files::FilesArgs {
        mib: 3,
        chunk: 64 * 1024,
    }))
    .await;
    assert_eq!(r.num("size_mib"), 3.0, "{}", r.to_text());
    assert!(r.num("upload_mib_s") > 0.0, "{}", r.to_text());
    assert!(r.num("download_mib_s") > 0.0, "{}", r.to_text());
    let rss = r.get("rss_kib").expect("rss figures");
    assert!(rss["peak_upload"].as_u64().unwrap() > 0, "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_fills_a_store_and_a_cache_and_times_queries() {
    let r = go(Scenario::Search(SearchArgs {
        messages: 3000,
        conversations: 8,
        users: 8,
        cache_messages: 2000,
        rounds: 2,
    }))
    .await;
    let text = r.to_text();
    assert_eq!(r.num("errors"), 0.0, "{text}");
    assert_eq!(r.num("queries"), 18.0, "{text}");
    assert!(r.num("hits") > 0.0, "{text}");
    assert!(r.num("offline_hits") > 0.0, "{text}");
    assert_eq!(r.num("offline_queries"), 18.0, "{text}");
    let p99 = r.get("latency").unwrap()["p99_ms"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 10_000.0, "{text}");
}
