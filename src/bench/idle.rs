//! `idle`: hold C authenticated idle connections and report chatd's RSS
//! before and after, and KiB per connection.

use super::report::Report;
use super::server::Server;
use super::wire;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// Authenticated connections to hold.
    #[arg(long, default_value_t = 5000)]
    pub connections: usize,
    /// Connections per user (users are registered first, then each
    /// connection authenticates with a token; 1 = one user per connection).
    #[arg(long, default_value_t = 1)]
    pub per_user: usize,
    /// Seconds to hold the connections before measuring again.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
    /// Connections opened at once.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Source addresses (127.0.0.1…) to spread connections over.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
}

pub async fn run(server: &Server, args: &IdleArgs) -> anyhow::Result<Report> {
    let tag = super::run_tag();
    let c = args.connections.max(1);
    let per = args.per_user.max(1);
    let users = c.div_ceil(per);
    let t_reg = Instant::now();
    let names: Vec<String> = (0..users).map(|i| format!("d{tag}_{i}")).collect();
    let registered = wire::register_many(&server.addr, names, 64, args.sources, false).await?;
    let register_s = t_reg.elapsed().as_secs_f64();
    let tokens: Vec<String> = (0..c)
        .map(|i| registered[i % users].1.token.clone())
        .collect();
    // Let the closed registration connections be torn down.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server.rss_kib().map(|r| r.0);
    let self_before = super::proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    let t0 = Instant::now();
    let clients = wire::auth_many(&server.addr, &tokens, args.concurrency, args.sources).await?;
    let connect_s = t0.elapsed().as_secs_f64();
    // Keep reading so pings are answered; hold.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|cl| {
            tokio::spawn(async move {
                let mut ws = cl.ws;
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss_kib().map(|r| r.0);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after_hold = server.rss_kib();
    let alive = readers.iter().filter(|r| !r.is_finished()).count();
    let self_after = super::proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    for r in &readers {
        r.abort();
    }
    let mut rep = Report::new("idle");
    rep.set("connections", c as u64)
        .set("users", users as u64)
        .set("register_s", register_s)
        .set("connect_s", connect_s)
        .set("connections_alive", alive as u64);
    if let (Some(b), Some(a), Some((h, hwm))) = (before, after, after_hold) {
        let worst = a.max(h);
        rep.set("chatd_rss_before_kib", b)
            .set("chatd_rss_after_kib", a)
            .set("chatd_rss_after_hold_kib", h)
            .set("chatd_peak_rss_kib", hwm)
            .set(
                "kib_per_connection",
                (worst.saturating_sub(b)) as f64 / c as f64,
            );
    }
    rep.set(
        "generator_kib_per_connection",
        self_after.saturating_sub(self_before) as f64 / c as f64,
    );
    Ok(rep)
}
