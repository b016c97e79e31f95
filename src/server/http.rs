//! chatd's plain HTTP side, served by hyper on the same port as the
//! WebSocket: `GET /healthz` and `/readyz`, files (`POST /files`, `GET`/`HEAD
//! /files/{digest}`), incoming webhooks (`POST /hooks/{id}/{secret}`, see
//! `webhooks`), and the session over HTTP for clients whose network
//! refuses the WebSocket (`/stream` and `/rpc`, see [`stream`]).
//!
//! Files are authorized by the session token (`Authorization: Bearer`), the
//! same one the WebSocket's `auth` takes, and streamed both ways a chunk at a
//! time: an upload goes through a bounded buffer into the blob store on
//! blocking threads, a download is read from disk as the socket takes it.
//! Memory per transfer stays constant whatever the size.

use super::Shared;
use super::files::{Blobs, Digest, FileError, FsUpload, Stored, Upload};
use super::session::stream;
use crate::proto::ErrorCode;
use crate::store::log::{AccountOp, AccountReply, SessionUse, StoreError};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io::SeekFrom;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite};

/// The body of chatd's HTTP responses.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Bytes gathered from an upload's body before they are written out.
const WRITE_CHUNK: usize = 256 * 1024;

/// Bytes read from disk per frame of a download.
const READ_CHUNK: usize = 64 * 1024;

/// Largest buffer hyper keeps for one connection's reads.
const MAX_HTTP_BUF: usize = 64 * 1024;

/// Serve HTTP requests on one connection until it closes, idles out, or
/// chatd shuts down (requests under way then get the grace period).
pub async fn serve<S>(io: S, addr: IpAddr, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let head_timeout = Duration::from_secs(shared.limits.auth_timeout_secs.max(1));
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        async move { Ok::<_, Infallible>(route(req, addr, &shared).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_buf_size(MAX_HTTP_BUF);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%addr, "http connection: {e}");
            }
        }
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(shared.grace, conn).await;
        }
    }
}

/// `/healthz` (liveness: `200` while the process answers; the embedded
/// node says `ok`, a node with a store to probe or a bus a JSON report of
/// them) or `/readyz` (readiness: the report, `200` only while the store
/// and the bus are reachable and chatd is not shutting down, else `503`).
async fn health(path: &str, shared: &Arc<Shared>) -> Response<Body> {
    let mut r = if path == "/readyz" {
        let report = shared.health.check().await;
        let ready = report.ok() && !shared.shutdown.is_cancelled();
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json(status, report.to_json())
    } else if shared.health.detailed() {
        json(StatusCode::OK, shared.health.check().await.to_json())
    } else {
        text(StatusCode::OK, "ok")
    };
    // Probes rarely reuse a connection: close it at once.
    set(&mut r, header::CONNECTION, "close");
    r
}

async fn route(req: Request<Incoming>, addr: IpAddr, shared: &Arc<Shared>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let head = method == Method::HEAD;
    if matches!(path.as_str(), "/stream" | "/rpc")
        && !crate::net::transport::origin_allowed(
            req.headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok()),
            &shared.allowed_origins,
        )
    {
        // A browser page may not drive a session for its visitor (as it may
        // not open the WebSocket).
        return text(
            StatusCode::FORBIDDEN,
            "this origin may not open a session (see [net] allowed_origins)\n",
        );
    }
    match path.as_str() {
        "/healthz" | "/readyz" => match method {
            Method::GET | Method::HEAD => health(&path, shared).await,
            _ => not_allowed("GET, HEAD"),
        },
        "/files" | "/files/" => match method {
            Method::POST => match authorize(&req, addr, shared, 1.0).await {
                Ok(user) => upload(req, user, shared).await,
                Err(r) => r,
            },
            _ => not_allowed("POST"),
        },
        p if p.starts_with("/files/") => match method {
            Method::GET | Method::HEAD => match authorize(&req, addr, shared, 1.0).await {
                Ok(user) => download(&req, &user, &p["/files/".len()..], head, shared).await,
                Err(r) => r,
            },
            _ => not_allowed("GET, HEAD"),
        },
        "/stream" => match method {
            Method::POST => {
                // A handshake frame is small.
                match read_body(req, shared.limits.max_frame_bytes).await {
                    Ok(body) => stream::open(body, addr, shared.clone()).await,
                    Err(r) => r,
                }
            }
            Method::GET => match address_wait(addr, shared) {
                Some(r) => r,
                None => stream::resume(req.headers(), addr, shared.clone()),
            },
            Method::DELETE => match address_wait(addr, shared) {
                Some(r) => r,
                None => stream::close(req.headers(), addr, shared.clone()).await,
            },
            _ => not_allowed("GET, POST, DELETE"),
        },
        "/rpc" => match method {
            Method::POST => match address_wait(addr, shared) {
                Some(r) => r,
                None => {
                    let headers = req.headers().clone();
                    match read_body(req, shared.limits.hard_frame_bytes).await {
                        Ok(body) => stream::rpc(&headers, body, addr, shared.clone()).await,
                        Err(r) => r,
                    }
                }
            },
            _ => not_allowed("POST"),
        },
        p if p.starts_with("/hooks/") => match method {
            Method::POST => super::webhooks::post(req, addr, shared, &p["/hooks/".len()..]).await,
            _ => not_allowed("POST"),
        },
        "/ws" => text(
            StatusCode::BAD_REQUEST,
            "open a new connection for the WebSocket upgrade\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The refusal of a request from an address that failed too often.
fn address_wait(addr: IpAddr, shared: &Shared) -> Option<Response<Body>> {
    let wait = shared.throttle.address_wait(addr)?;
    Some(too_many(
        "too many failed attempts from your address; wait",
        wait,
    ))
}

/// A request's whole body, refused past `max` bytes.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Response<Body>> {
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is limited to {max} bytes\n"),
        ));
    }
    match http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is limited to {max} bytes\n"),
        )),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "the body was cut short\n")),
    }
}

/// The user a request's bearer token belongs to, or the answer refusing it.
/// A bad token counts as a failed attempt from the address, which is then
/// throttled like failed logins.
async fn authorize(
    req: &Request<Incoming>,
    addr: IpAddr,
    shared: &Shared,
    cost: f64,
) -> Result<String, Response<Body>> {
    if let Some(wait) = shared.throttle.address_wait(addr) {
        return Err(too_many(
            "too many failed attempts from your address; wait",
            wait,
        ));
    }
    let Some(token) = bearer(req.headers()) else {
        return Err(unauthorized(
            "an Authorization: Bearer TOKEN header is needed",
        ));
    };
    let reply = shared
        .store
        .account(AccountOp::UseSession {
            token_hash: hex::encode(super::auth::token_digest(token)),
            address: Some(addr.to_string()),
            life: shared.accounts.life,
        })
        .await;
    let user = match reply {
        Ok(AccountReply::Used(SessionUse::Live { username, .. })) => username,
        Ok(AccountReply::Used(SessionUse::Disabled)) => {
            return Err(text(
                StatusCode::FORBIDDEN,
                "this account is deactivated; ask an admin\n",
            ));
        }
        Ok(AccountReply::Used(SessionUse::Expired)) => {
            shared.throttle.fail(addr, None);
            return Err(unauthorized("session expired; log in again"));
        }
        Ok(_) => {
            shared.throttle.fail(addr, None);
            return Err(unauthorized("unknown or revoked token"));
        }
        Err(e) => return Err(store_error(&e)),
    };
    if let Err(e) = shared.budgets.of(&user).spend_units(cost, false) {
        let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(1000));
        return Err(too_many(&e.message, wait));
    }
    Ok(user)
}

/// `POST /files`: stream the body into the blob store, refused as early
/// as its declared size allows; record it against the user's quota.
async fn upload(req: Request<Incoming>, user: String, shared: &Shared) -> Response<Body> {
    let files = &shared.files;
    let Some(_slot) = files.slot(&user) else {
        return too_many(
            &format!(
                "you have {} uploads in progress already",
                files.config.max_concurrent_uploads
            ),
            Duration::from_secs(1),
        );
    };
    let expected = match req.headers().get("x-content-sha256") {
        None => None,
        Some(v) => match v.to_str().ok().map(|s| s.trim().to_ascii_lowercase()) {
            Some(s) => match s.parse::<Digest>() {
                Ok(d) => Some(d),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "X-Content-Sha256 is 64 hex digits\n",
                    );
                }
            },
            None => return text(StatusCode::BAD_REQUEST, "X-Content-Sha256 is not text\n"),
        },
    };
    let max = files.config.max_upload_bytes;
    let quota = files.config.quota_bytes;
    let usage = shared
        .store
        .readers()
        .upload_usage(&user, expected.map(|d| d.to_string()))
        .await;
    let (used, held) = match usage {
        Ok(u) => u,
        Err(e) => return store_error(&e),
    };
    // The same bytes again take no more room.
    let room = if held {
        max
    } else {
        quota.saturating_sub(used)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > max {
            return too_large(max);
        }
        if len > room {
            return over_quota(used, quota);
        }
    }
    let limit = max.min(room);
    let blobs = files.blobs.clone();
    let begun = tokio::task::spawn_blocking(move || blobs.begin(limit)).await;
    let mut up = match begun {
        Ok(Ok(up)) => up,
        Ok(Err(e)) => return file_error(&e, max, used, quota),
        Err(_) => return internal(),
    };
    let idle = Duration::from_secs(shared.limits.idle_timeout_secs.max(1));
    let mut body = req.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload stalled; try again\n",
                );
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(user = %user, "upload cut off: {e}");
                return text(StatusCode::BAD_REQUEST, "the upload was cut off\n");
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() >= WRITE_CHUNK {
            match write_out(up, buf).await {
                Ok((u, b)) => (up, buf) = (u, b),
                Err(e) => return file_error(&e, max, used, quota),
            }
        }
    }
    if !buf.is_empty() {
        match write_out(up, buf).await {
            Ok((u, _)) => up = u,
            Err(e) => return file_error(&e, max, used, quota),
        }
    }
    // Stored and recorded under the lock, so that collection cannot take
    // the bytes between the two.
    let _held = files.store_lock.lock().await;
    let blobs = files.blobs.clone();
    let stored: Stored = match tokio::task::spawn_blocking(move || blobs.finish(up, expected)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return file_error(&e, max, used, quota),
        Err(_) => return internal(),
    };
    let digest = stored.digest.to_string();
    let recorded = shared
        .store
        .account(AccountOp::RecordUpload {
            username: user.clone(),
            digest: digest.clone(),
            size: stored.size,
            quota,
        })
        .await;
    if let Err(e) = recorded {
        // Bytes nobody holds now go at once (collection would later).
        if !stored.existed
            && matches!(
                shared.store.readers().file_referenced(&digest).await,
                Ok(false)
            )
        {
            let _ = files.blobs.remove(&stored.digest);
        }
        return match &e {
            StoreError::Rejected(p) if p.code == ErrorCode::LimitExceeded => text(
                StatusCode::INSUFFICIENT_STORAGE,
                &format!("{}\n", p.message),
            ),
            _ => store_error(&e),
        };
    }
    tracing::info!(user = %user, digest = %digest, size = stored.size, "file uploaded");
    let body = serde_json::json!({ "digest": digest, "size": stored.size }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::CREATED;
    set(&mut r, header::CONTENT_TYPE, "application/json");
    r
}

/// Write a chunk on a blocking thread; the buffer comes back emptied.
async fn write_out(mut up: FsUpload, mut buf: Vec<u8>) -> Result<(FsUpload, Vec<u8>), FileError> {
    tokio::task::spawn_blocking(move || {
        up.write(&buf)?;
        buf.clear();
        Ok((up, buf))
    })
    .await
    .map_err(|_| FileError::Io(std::io::Error::other("upload task failed")))?
}

/// `GET`/`HEAD /files/{digest}`: the bytes, whole or one range, for a
/// member of a conversation that shares them.
async fn download(
    req: &Request<Incoming>,
    user: &str,
    digest: &str,
    head: bool,
    shared: &Shared,
) -> Response<Body> {
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            "no such file, or not shared with you\n",
        )
    };
    let Ok(parsed) = digest.parse::<Digest>() else {
        return not_found();
    };
    match shared.store.readers().may_read_file(user, digest).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return store_error(&e),
    }
    let blobs = shared.files.blobs.clone();
    let (file, size) = match tokio::task::spawn_blocking(move || blobs.open(&parsed)).await {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            tracing::warn!(digest = %digest, "a shared file's bytes are missing");
            return not_found();
        }
        Ok(Err(e)) => {
            tracing::warn!("opening a file: {e}");
            return internal();
        }
        Err(_) => return internal(),
    };
    let etag = format!("\"{digest}\"");
    let header_str = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        set(&mut r, header::ETAG, &etag);
        return r;
    }
    // A range applies only to this very file (`If-Range` names it).
    let range_ok = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header_str(header::RANGE).filter(|_| range_ok) {
        None => None,
        Some(spec) => match parse_range(&spec, size) {
            RangeAnswer::Whole => None,
            RangeAnswer::Part(start, end) => Some((start, end)),
            RangeAnswer::Unsatisfiable => {
                let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
                set(&mut r, header::CONTENT_RANGE, &format!("bytes */{size}"));
                return r;
            }
        },
    };
    let (start, len, status) = match range {
        Some((s, e)) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        None => (0, size, StatusCode::OK),
    };
    let body = if head || len == 0 {
        empty()
    } else {
        let mut f = tokio::fs::File::from_std(file);
        if start > 0
            && let Err(e) = f.seek(SeekFrom::Start(start)).await
        {
            tracing::warn!("seeking in a file: {e}");
            return internal();
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), READ_CHUNK)
            .map_ok(Frame::data);
        BoxBody::new(StreamBody::new(stream))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "application/octet-stream");
    set(&mut r, header::CONTENT_LENGTH, &len.to_string());
    set(&mut r, header::ACCEPT_RANGES, "bytes");
    set(&mut r, header::ETAG, &etag);
    set(
        &mut r,
        header::CACHE_CONTROL,
        "private, max-age=31536000, immutable",
    );
    set(&mut r, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            header::CONTENT_RANGE,
            &format!("bytes {}-{}/{size}", start, start + len - 1),
        );
    }
    r
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Ignore it and send everything (not bytes, several ranges, garbage).
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    Unsatisfiable,
}

/// One byte range: `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`.
fn parse_range(spec: &str, size: u64) -> RangeAnswer {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if set.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (num(a), num(b)) {
        (Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return RangeAnswer::Whole;
            }
            if start >= size {
                return RangeAnswer::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            RangeAnswer::Part(start, end)
        }
        (None, Some(suffix)) if a.is_empty() => {
            if suffix == 0 || size == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Part(size.saturating_sub(suffix), size - 1)
        }
        _ => RangeAnswer::Whole,
    }
}

fn file_error(e: &FileError, max: u64, used: u64, quota: u64) -> Response<Body> {
    match e {
        FileError::TooLarge { limit } if *limit >= max => too_large(max),
        FileError::TooLarge { .. } => over_quota(used, quota),
        FileError::DigestMismatch => text(
            StatusCode::BAD_REQUEST,
            "the bytes received do not match X-Content-Sha256\n",
        ),
        FileError::BadDigest => text(StatusCode::BAD_REQUEST, "bad digest\n"),
        FileError::Io(err) => {
            tracing::warn!("file storage: {err}");
            text(
                StatusCode::INSUFFICIENT_STORAGE,
                "the server could not store the file\n",
            )
        }
    }
}

fn too_large(max: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("files are limited to {max} bytes\n"),
    )
}

fn over_quota(used: u64, quota: u64) -> Response<Body> {
    text(
        StatusCode::INSUFFICIENT_STORAGE,
        &format!("over your storage quota: {used} of {quota} bytes are used by your uploads\n"),
    )
}

fn store_error(e: &StoreError) -> Response<Body> {
    match e {
        StoreError::Rejected(p) => text(StatusCode::BAD_REQUEST, &format!("{}\n", p.message)),
        _ => {
            tracing::warn!("store: {e}");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server cannot answer now; try again\n",
            )
        }
    }
}

fn internal() -> Response<Body> {
    text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
}

/// The token of an `Authorization: Bearer` header, if one of a sane size.
pub(super) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512)
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, &format!("{why}\n"));
    set(&mut r, header::WWW_AUTHENTICATE, "Bearer");
    r
}

fn too_many(why: &str, wait: Duration) -> Response<Body> {
    let mut r = text(StatusCode::TOO_MANY_REQUESTS, &format!("{why}\n"));
    retry_after(&mut r, wait);
    r
}

/// `Retry-After` in whole seconds (at least one), rounded up.
pub(super) fn retry_after(r: &mut Response<Body>, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    set(r, header::RETRY_AFTER, &secs.max(1).to_string());
}

/// A JSON answer.
pub(super) fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "application/json");
    r
}

fn not_allowed(allow: &str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    set(&mut r, header::ALLOW, allow);
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    set(&mut r, header::CONTENT_TYPE, "text/plain; charset=utf-8");
    r
}

fn set(r: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

pub(super) fn full(b: impl Into<Bytes>) -> Body {
    BoxBody::new(Full::new(b.into()).map_err(|never: Infallible| match never {}))
}

pub(super) fn empty() -> Body {
    BoxBody::new(Empty::new().map_err(|never: Infallible| match never {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part(0, 99));
        assert_eq!(parse_range("bytes=500-", 1000), Part(500, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Part(0, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), Part(900, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Whole);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse_range("items=0-1", 1000), Whole);
        assert_eq!(parse_range("bytes=x-1", 1000), Whole);
        assert_eq!(parse_range("bytes=+1-2", 1000), Whole);
        assert_eq!(parse_range("bytes=-", 1000), Whole);
        assert_eq!(parse_range("bytes= 10 - 20 ", 1000), Part(10, 20));
    }
}
