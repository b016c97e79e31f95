//! Running the client figures: `client-start` (a child process per run,
//! timed from spawn to its first frame) and `client-events` (the UI loop
//! under a stream of incoming events).

use super::client::{self, WINDOW};
use super::proc::{self, CpuMeter};
use super::report::{Report, Samples};
use crate::client::cache::Cache;
use crate::client::credentials::TokenStore;
use crate::client::net::NetConfig;
use crate::client::paths::Paths;
use crate::client::spawn::CacheChoice;
use crate::client::{Action, ClientOptions, Update, spawn};
use crate::ui::{App, Model, UiEvent};
use anyhow::Context;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// The cache file (generated when missing) [default: a temp file].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Messages in a generated cache.
    #[arg(long, default_value_t = 100_000)]
    pub messages: usize,
    /// Conversations in a generated cache.
    #[arg(long, default_value_t = 50)]
    pub conversations: usize,
    /// Unread messages per conversation in a generated cache (my read
    /// pointer that far below the end); `all` reads nothing.
    #[arg(long, default_value = "10")]
    pub unread: String,
    /// Start-up runs (client-start).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Incoming events per second (client-events).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of incoming events (client-events).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
}

/// The cache to use: the given file, generated if missing.
fn ensure_cache(args: &ClientArgs) -> anyhow::Result<(PathBuf, Option<f64>, bool)> {
    let (path, temp) = match &args.cache {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("chatd-bench-client-{}.db", uuid::Uuid::new_v4())),
            true,
        ),
    };
    if path.exists() {
        return Ok((path, None, temp));
    }
    let t = Instant::now();
    let mut cache = Cache::open(&path)?;
    let unread = match args.unread.as_str() {
        "all" => None,
        n => Some(n.parse().context("--unread: a number or `all`")?),
    };
    client::fill_cache(&mut cache, args.conversations, args.messages, unread)?;
    drop(cache);
    Ok((path, Some(t.elapsed().as_secs_f64()), temp))
}

fn remove_cache(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// The child: `chat`'s start-up path on a 200×60 `TestBackend`: a client
/// started through [`crate::client::spawn`] on the cache (no server), its
/// first batch of updates applied to a fresh App and drawn, then the App's
/// request for the first conversation's window answered by the engine and
/// drawn. Prints one line at the first frame and one at the first full
/// frame (times in ms since this function was entered, RSS in KiB).
pub async fn child(cache: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    let me = Cache::open(cache)?.me()?.unwrap_or_default();
    let server = "127.0.0.1:7878";
    let dir = std::env::temp_dir().join(format!("chatd-bench-start-{}", uuid::Uuid::new_v4()));
    let mut opts = ClientOptions::interactive(
        NetConfig::new(server, "bench"),
        Some(me.clone()),
        None,
        TokenStore::file_only(dir.join("credentials.toml")),
        Paths::new(dir.clone()),
    );
    opts.cache = CacheChoice::At(cache.to_path_buf());
    let mut c = spawn(opts);
    let t_open = Instant::now();
    let model = Model {
        me,
        server: server.into(),
        ..Model::default()
    };
    let mut app = App::new(model, Instant::now());
    app.size = (200, 60);
    let mut term = client::terminal(200, 60);
    let first = c.updates.recv().await.context("no first update")?;
    let t_list = Instant::now();
    let mut actions = app.handle_event(UiEvent::Engine(first), Instant::now());
    client::draw(&mut term, &app);
    let t_first = Instant::now();
    let rss_first = proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    let mut out = std::io::stdout().lock();
    writeln!(out, "first {:.3} {rss_first}", ms(t_first))?;
    out.flush()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for a in actions.drain(..) {
            let _ = c.actions.send(a);
        }
        let shown = app
            .focused
            .as_deref()
            .is_some_and(|f| !app.model.rows(f).is_empty());
        if shown {
            break;
        }
        let Ok(Some(batch)) = tokio::time::timeout_at(deadline, c.updates.recv()).await else {
            anyhow::bail!("the first conversation's window never came");
        };
        actions = app.handle_event(UiEvent::Engine(batch), Instant::now());
    }
    client::draw(&mut term, &app);
    let t_full = Instant::now();
    let rss_full = proc::rss_kib(None).map(|r| r.0).unwrap_or(0);
    writeln!(
        out,
        "full {:.3} {rss_full} {:.3} {:.3} {}",
        ms(t_full),
        ms(t_open),
        ms(t_list),
        app.model.conversations.len()
    )?;
    out.flush()?;
    let _ = c.actions.send(Action::Quit);
    let _ = tokio::time::timeout(Duration::from_secs(2), c.task).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `client-start`: spawn the child `runs` times; report the wall time from
/// spawn to each line.
pub fn start(args: &ClientArgs) -> anyhow::Result<Report> {
    let (path, fill_s, temp) = ensure_cache(args)?;
    let exe = std::env::current_exe()?;
    let (mut first, mut full) = (Samples::default(), Samples::default());
    let (mut rss_first, mut rss_full, mut open_ms, mut list_ms, mut convs) = (0, 0, 0.0, 0.0, 0);
    for _ in 0..args.runs.clamp(1, 100) {
        let t = Instant::now();
        let mut child = Command::new(&exe)
            .arg("client-start-child")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        for line in BufReader::new(stdout).lines().take(2) {
            let line = line?;
            let elapsed = t.elapsed().as_micros() as u64;
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.first().copied() {
                Some("first") => {
                    first.push(elapsed);
                    rss_first = rss_first.max(f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0));
                }
                Some("full") => {
                    full.push(elapsed);
                    rss_full = rss_full.max(f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0));
                    open_ms = f.get(3).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                    list_ms = f.get(4).and_then(|v| v.parse().ok()).unwrap_or(0.0);
                    convs = f.get(5).and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                _ => {}
            }
        }
        let _ = child.wait();
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if temp {
        remove_cache(&path);
    }
    let mut r = Report::new("client-start");
    r.set("messages", args.messages as u64)
        .set("unread_per_conversation", args.unread.as_str())
        .set("conversations", convs)
        .set("cache_bytes", size)
        .set(
            "fill_s",
            fill_s.map(serde_json::Value::from).unwrap_or_default(),
        )
        .set("runs", first.len() as u64)
        .set("first_frame", first.summary().to_json())
        .set("full_frame", full.summary().to_json())
        .set("last_run_open_ms", open_ms)
        .set("last_run_list_ms", list_ms)
        .set("rss_first_frame_kib", rss_first)
        .set("rss_full_frame_kib", rss_full);
    Ok(r)
}

/// `client-events`: incoming events at `rate`/s applied to the cache the way
/// the engine applies pushes (store, the conversation's row for
/// notifications, then at most every 30 ms one update with the list and the
/// focused window), while the UI loop draws at 200×60. The UI
/// latency is from an event's arrival to the end of the frame that shows it.
pub async fn events(args: &ClientArgs) -> anyhow::Result<Report> {
    let (path, _, temp) = ensure_cache(args)?;
    let work = std::env::temp_dir().join(format!("chatd-bench-events-{}.db", uuid::Uuid::new_v4()));
    std::fs::copy(&path, &work)?;
    let result = events_on(&work, args).await;
    remove_cache(&work);
    if temp {
        remove_cache(&path);
    }
    result
}

/// The engine's publish interval.
const PUBLISH_EVERY: Duration = Duration::from_millis(30);

async fn events_on(path: &Path, args: &ClientArgs) -> anyhow::Result<Report> {
    let mut cache = Cache::open(path)?;
    let mut app = client::app_from_cache(&cache, (200, 60))?;
    let focused = client::open_first(&mut app, &cache)?.context("no conversation")?;
    let mut term = client::terminal(200, 60);
    // Each batch travels with the arrival times of the events it shows.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(UiEvent, Vec<Instant>)>(1024);
    let shown: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let cpu = CpuMeter::start(None);
    let rate = args.rate.max(1.0);
    let duration = Duration::from_secs_f64(args.duration);
    let convs = args.conversations.max(1);
    let engine = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, Samples)> {
        let mut seqs = std::collections::HashMap::new();
        for c in cache.conversations()? {
            seqs.insert(c.id.clone(), c.last_seq);
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        let t0 = Instant::now();
        let mut work = Samples::default();
        let mut n = 0u64;
        let mut pending: Vec<Instant> = Vec::new();
        let mut focused_dirty = false;
        let mut last_publish = Instant::now();
        while t0.elapsed() < duration && n < 10_000_000 {
            let at = t0 + period.mul_f64(n as f64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let arrived = Instant::now();
            // Half the traffic in the focused conversation.
            let conv = if n.is_multiple_of(2) {
                focused.clone()
            } else {
                client::conv_id((n as usize / 2) % convs)
            };
            let seq = seqs.entry(conv.clone()).or_insert(0);
            *seq += 1;
            cache.apply_events(&[client::message(&conv, *seq, n)])?;
            // after_events (live): this conversation's row for notifications.
            let _conv = cache.conversation(&conv)?;
            let _muted = cache.is_muted(&conv)?;
            pending.push(arrived);
            focused_dirty |= conv == focused;
            work.push(arrived.elapsed().as_micros() as u64);
            // publish: at most every PUBLISH_EVERY, the list and (when the
            // focused conversation changed) its window, as one update.
            if last_publish.elapsed() >= PUBLISH_EVERY {
                let list = cache.conversations()?;
                let rows = focused_dirty
                    .then(|| cache.messages(&focused, None, WINDOW))
                    .transpose()?;
                focused_dirty = false;
                last_publish = Instant::now();
                let arrivals = std::mem::take(&mut pending);
                let mut batch = vec![Update::Conversations(list)];
                if let Some(rows) = rows {
                    batch.push(Update::Messages {
                        conv: focused.clone(),
                        rows,
                    });
                }
                if tx
                    .blocking_send((UiEvent::Engine(batch), arrivals))
                    .is_err()
                {
                    break;
                }
            }
            n += 1;
        }
        Ok((n, work))
    });
    // The UI loop of `ui::run`: draw, wait, apply up to 64 queued events.
    let mut ui_lat = Samples::default();
    let mut frame = Samples::default();
    let mut frames = 0u64;
    let end = tokio::time::Instant::now() + duration + Duration::from_secs(5);
    loop {
        let t = Instant::now();
        client::draw(&mut term, &app);
        let done = Instant::now();
        frame.push(done.duration_since(t).as_micros() as u64);
        frames += 1;
        for arrived in shown
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
        {
            ui_lat.push(done.duration_since(arrived).as_micros() as u64);
        }
        let Ok(Some(first)) = tokio::time::timeout_at(end, rx.recv()).await else {
            break;
        };
        let mut next = Some(first);
        let mut handled = 0;
        while let Some((ev, arrivals)) = next.take() {
            let _ = app.handle_event(ev, Instant::now());
            if let Ok(mut s) = shown.lock() {
                s.extend(arrivals);
            }
            handled += 1;
            if handled < 64 {
                next = rx.try_recv().ok();
            }
        }
    }
    let (n, mut work) = engine.await??;
    let mut r = Report::new("client-events");
    r.set("rate_target", rate)
        .set("events", n)
        .set("rate_achieved", n as f64 / args.duration.max(1e-9))
        .set("frames", frames)
        .set("ui_latency", ui_lat.summary().to_json())
        .set("frame_render", frame.summary().to_json())
        .set("engine_work_per_event", work.summary().to_json())
        .set("process_cpu_pct", cpu.percent());
    Ok(r)
}
