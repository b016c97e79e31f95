//! `files`: one large file up and down over chatd's HTTP side on loopback —
//! throughput each way, and chatd's memory while the bytes move (sampled
//! every 50 ms), which must stay flat whatever the size.
//!
//! The bytes are generated as they are sent and checked as they arrive, so
//! the generator holds no more of the file than the server should.

use super::report::{Report, r3};
use super::server::Server;
use super::wire;
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct FilesArgs {
    /// Size of the file, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub mib: u64,
    /// Bytes per body frame the generator sends.
    #[arg(long, default_value_t = 256 * 1024)]
    pub chunk: usize,
}

/// Deterministic, incompressible-enough bytes: chunk `i` of the file.
fn chunk_bytes(i: u64, len: usize) -> Bytes {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// chatd's RSS sampled until `stop`: (first, peak) in KiB.
fn sample_rss(server: &Server, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let pid = server.pid();
    tokio::spawn(async move {
        let read = || super::proc::rss_kib(pid).map(|r| r.0).unwrap_or(0);
        let first = read();
        let mut peak = first;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(read());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (first, peak.max(read()))
    })
}

async fn connect(
    addr: &str,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<StreamBody<ChunkStream>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

type ChunkStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send>,
>;

pub async fn run(server: &Server, args: &FilesArgs) -> anyhow::Result<Report> {
    let tag = super::run_tag();
    let (_conn, user) =
        wire::register(&server.addr, wire::source(0, 1), &format!("f{tag}")).await?;
    let size = args.mib * 1024 * 1024;
    let chunk = args.chunk.max(4096);
    let chunks = size.div_ceil(chunk as u64);
    let len_of = move |i: u64| (size - i * chunk as u64).min(chunk as u64) as usize;
    // The digest, computed once beforehand (not timed).
    let mut hasher = Sha256::new();
    for i in 0..chunks {
        hasher.update(chunk_bytes(i, len_of(i)));
    }
    let digest = hex::encode(hasher.finalize());

    // Upload.
    let stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(server, stop.clone());
    let mut send = connect(&server.addr).await?;
    let body: ChunkStream = Box::pin(futures_util::stream::iter(
        (0..chunks).map(move |i| Ok(Frame::data(chunk_bytes(i, len_of(i))))),
    ));
    let req = http::Request::post("/files")
        .header("host", &server.addr)
        .header("authorization", format!("Bearer {}", user.token))
        .header("content-length", size)
        .header("x-content-sha256", &digest)
        .body(StreamBody::new(body))?;
    let t0 = Instant::now();
    let resp = send.send_request(req).await.context("upload")?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    let up_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (up_base, up_peak) = rss.await?;
    if status.as_u16() != 201 {
        bail!(
            "upload refused: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }

    // Download, checked as it arrives.
    let stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(server, stop.clone());
    let stream = tokio::net::TcpStream::connect(&server.addr).await?;
    let (mut get, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::get(format!("/files/{digest}"))
        .header("host", &server.addr)
        .header("authorization", format!("Bearer {}", user.token))
        .body(http_body_util::Empty::new())?;
    let t0 = Instant::now();
    let resp = get.send_request(req).await.context("download")?;
    if resp.status().as_u16() != 200 {
        bail!("download refused: {}", resp.status());
    }
    let mut body = resp.into_body();
    let received = AtomicU64::new(0);
    let mut hasher = Sha256::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received.fetch_add(data.len() as u64, Ordering::Relaxed);
            hasher.update(&data);
        }
    }
    let down_s = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (down_base, down_peak) = rss.await?;
    if received.load(Ordering::Relaxed) != size || hex::encode(hasher.finalize()) != digest {
        bail!("the download differs from the upload");
    }

    let mib = size as f64 / (1024.0 * 1024.0);
    let mut r = Report::new("files");
    r.set("size_mib", args.mib)
        .set("upload_mib_s", r3(mib / up_s))
        .set("download_mib_s", r3(mib / down_s))
        .set("upload_s", r3(up_s))
        .set("download_s", r3(down_s))
        .set(
            "rss_kib",
            json!({
                "before_upload": up_base,
                "peak_upload": up_peak,
                "before_download": down_base,
                "peak_download": down_peak,
            }),
        )
        .set(
            "rss_growth_kib",
            up_peak
                .saturating_sub(up_base)
                .max(down_peak.saturating_sub(down_base)),
        );
    Ok(r)
}
