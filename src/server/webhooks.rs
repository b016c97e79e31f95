//! Incoming webhooks: `POST /hooks/{id}/{secret}` appends a message to the
//! webhook's conversation as its bot account, through the same append path
//! as a `send` (fan-out, search index, retention).
//!
//! The body is JSON, `{"text":"…"}`, whatever the content type says among
//! `application/json`, none, and `application/x-www-form-urlencoded` (what
//! `curl -d` sends); a form whose body is `payload=…` (Slack's way) holds
//! the JSON in that field. Answers: `200 {"ok":true,"seq":N}`; `400` bad
//! JSON or empty text; `413` over `max_body_bytes`; `415` another content
//! type; `404` an unknown, revoked or disabled webhook or a wrong secret
//! (one answer for all, the secret compared in constant time against its
//! stored SHA-256; a wrong one counts as a failed attempt from the
//! address); `429` with `Retry-After` over the webhook's rate
//! (`webhook_posts_per_sec`, `webhook_burst`) or while the address is
//! throttled.
//!
//! The last use is written at most once a minute per webhook.

use super::Shared;
use super::limiter::TokenBucket;
use crate::proto::{ErrorCode, EventBody};
use crate::store::log::{AccountOp, Append, BotOp, StoreError};
use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

use super::http::Body;

/// Bytes of a request body beyond `max_body_bytes` allowed for the JSON
/// around the text and its escapes.
const BODY_SLACK: usize = 4096;

/// How often a webhook's last use is written.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Webhooks tracked before idle ones are forgotten.
const TRACKED: usize = 10_000;

/// What chatd keeps in memory about a webhook that posted: its rate and
/// when its last use was written. Only webhooks whose secret was right get
/// an entry, so the table grows with the webhooks that exist.
struct HookState {
    bucket: TokenBucket,
    written: Option<Instant>,
    seen: Instant,
}

/// The webhooks of one server that posted lately (see [`HookState`]).
#[derive(Default)]
pub struct Hooks(Mutex<HashMap<String, HookState>>);

/// Answer `POST /hooks/{rest}`.
pub async fn post(
    req: Request<Incoming>,
    addr: IpAddr,
    shared: &Shared,
    rest: &str,
) -> Response<Body> {
    if let Some(wait) = shared.throttle.address_wait(addr) {
        return too_many("too many failed attempts from your address; wait", wait);
    }
    let Some((id, secret)) = rest.split_once('/') else {
        shared.throttle.fail(addr, None);
        return unknown();
    };
    let hook = match shared.store.readers().webhook(id).await {
        Ok(h) => h,
        Err(e) => return store_error(&e),
    };
    let Some(hook) = hook.filter(|h| !h.disabled && secret_matches(&h.secret_sha256, secret))
    else {
        shared.throttle.fail(addr, None);
        return unknown();
    };
    let touch = match admit(&shared.webhooks, id, &shared.limits) {
        Ok(touch) => touch,
        Err(wait) => return too_many("this webhook posts too often; wait", wait),
    };
    let text = match read_text(req, shared).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let max_key = shared.limits.max_client_msg_id_bytes;
    let client_msg_id = match idempotency_key(text.1.as_deref(), max_key) {
        Ok(k) => k,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let op = Append::Event {
        user: hook.info.name.clone(),
        conversation_id: hook.info.conversation_id.clone(),
        client_msg_id,
        body: EventBody::Message {
            body: text.0,
            reply_to: None,
            encrypted: None,
        },
    };
    let appended = shared.store.append(op).await;
    if touch {
        let store = shared.store.clone();
        let op = AccountOp::Bot(BotOp::Used {
            id: id.to_string(),
            at: crate::proto::now_millis(),
        });
        tokio::spawn(async move {
            if let Err(e) = store.account(op).await {
                tracing::debug!("recording a webhook's use: {e}");
            }
        });
    }
    match appended {
        Ok(done) => match done.seq {
            Some((seq, _)) => json(StatusCode::OK, &serde_json::json!({"ok": true, "seq": seq})),
            None => internal(),
        },
        // Taken out of its conversation: the webhook no longer posts.
        Err(StoreError::Rejected(p))
            if matches!(p.code, ErrorCode::Forbidden | ErrorCode::NotFound) =>
        {
            unknown()
        }
        Err(StoreError::Rejected(p)) if p.code == ErrorCode::Conflict => refuse(
            StatusCode::CONFLICT,
            "that Idempotency-Key was used for another message",
        ),
        Err(e) => store_error(&e),
    }
}

/// Whether `secret` hashes to `stored` (hex SHA-256), comparing the
/// digests in constant time.
fn secret_matches(stored: &str, secret: &str) -> bool {
    let Ok(stored) = hex::decode(stored) else {
        return false;
    };
    let given = super::auth::token_digest(secret);
    if stored.len() != given.len() {
        return false;
    }
    let diff = stored
        .iter()
        .zip(given.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// Take a token of webhook `id`'s bucket; `Ok(true)` when its last use is
/// due to be written, `Err` with the wait when it is over its rate.
fn admit(hooks: &Hooks, id: &str, limits: &crate::proto::Limits) -> Result<bool, Duration> {
    let mut hooks = hooks.0.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    if hooks.len() >= TRACKED && !hooks.contains_key(id) {
        hooks.retain(|_, h| now.duration_since(h.seen) < TOUCH_EVERY);
    }
    let state = hooks.entry(id.to_string()).or_insert_with(|| HookState {
        bucket: TokenBucket::new(limits.webhook_posts_per_sec, limits.webhook_burst),
        written: None,
        seen: now,
    });
    state.seen = now;
    state.bucket.take_or_wait()?;
    let due = state
        .written
        .is_none_or(|w| now.duration_since(w) >= TOUCH_EVERY);
    if due {
        state.written = Some(now);
    }
    Ok(due)
}

/// The text of the request and its `Idempotency-Key` header, if any.
async fn read_text(
    req: Request<Incoming>,
    shared: &Shared,
) -> Result<(String, Option<String>), Response<Body>> {
    let max_body = shared.limits.max_body_bytes;
    let cap = max_body + BODY_SLACK;
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let form = match kind.as_deref() {
        None | Some("") | Some("application/json") | Some("text/plain") => false,
        Some("application/x-www-form-urlencoded") => true,
        Some(_) => {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send JSON: {\"text\":\"...\"}",
            ));
        }
    };
    let key = req
        .headers()
        .get("idempotency-key")
        .map(|v| v.to_str().map(str::to_string));
    let key = match key {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key is not text",
            ));
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large(max_body));
    }
    let idle = Duration::from_secs(shared.limits.auth_timeout_secs.max(1));
    let mut body = req.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(refuse(StatusCode::REQUEST_TIMEOUT, "the request stalled")),
            Ok(None) => break,
            Ok(Some(Err(_))) => {
                return Err(refuse(StatusCode::BAD_REQUEST, "the request was cut off"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > cap {
                return Err(too_large(max_body));
            }
            buf.extend_from_slice(&data);
        }
    }
    let text = parse_body(&buf, form).map_err(|why| refuse(StatusCode::BAD_REQUEST, why))?;
    if text.len() > max_body {
        return Err(too_large(max_body));
    }
    if text.trim().is_empty() {
        return Err(refuse(StatusCode::BAD_REQUEST, "the text is empty"));
    }
    Ok((text, key))
}

/// The `text` of a body: JSON, or a form whose `payload` field is JSON.
fn parse_body(buf: &[u8], form: bool) -> Result<String, &'static str> {
    let payload;
    let json: &[u8] = match buf.strip_prefix(b"payload=") {
        Some(rest) if form => {
            payload = percent_decode(rest).ok_or("the payload field is not UTF-8")?;
            payload.as_bytes()
        }
        _ => buf,
    };
    #[derive(serde::Deserialize)]
    struct Post {
        text: String,
    }
    serde_json::from_slice::<Post>(json)
        .map(|p| p.text)
        .map_err(|_| "send JSON with a string field text: {\"text\":\"...\"}")
}

/// A form field's value: `+` is a space, `%XX` a byte.
fn percent_decode(s: &[u8]) -> Option<String> {
    let end = s.iter().position(|&b| b == b'&').unwrap_or(s.len());
    let mut out = Vec::with_capacity(end);
    let mut i = 0;
    while i < end {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .filter(|h| i + 3 <= end && h.iter().all(u8::is_ascii_hexdigit))?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The client_msg_id of a post: its `Idempotency-Key` (the webhook's
/// account sends nothing else, so the keys are its own), or a new one.
fn idempotency_key(key: Option<&str>, max: usize) -> Result<String, &'static str> {
    match key.map(str::trim) {
        Some(k) if k.is_empty() || k.len() > max => {
            Err("Idempotency-Key is 1 to max_client_msg_id_bytes bytes")
        }
        Some(k) => Ok(k.to_string()),
        None => Ok(uuid::Uuid::now_v7().to_string()),
    }
}

fn unknown() -> Response<Body> {
    refuse(StatusCode::NOT_FOUND, "no such webhook")
}

fn too_large(max: usize) -> Response<Body> {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the text is limited to {max} bytes"),
    )
}

fn too_many(why: &str, wait: Duration) -> Response<Body> {
    let mut r = refuse(StatusCode::TOO_MANY_REQUESTS, why);
    super::http::retry_after(&mut r, wait);
    r
}

fn store_error(e: &StoreError) -> Response<Body> {
    match e {
        StoreError::Rejected(p) => refuse(StatusCode::BAD_REQUEST, &p.message),
        _ => {
            tracing::warn!("store: {e}");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server cannot answer now; try again",
            )
        }
    }
}

fn internal() -> Response<Body> {
    refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// `{"ok":false,"error":why}` with `status`.
fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    json(status, &serde_json::json!({"ok": false, "error": why}))
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    super::http::json(status, v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_body(br#"{"text":"hi"}"#, false).unwrap(), "hi");
        assert_eq!(parse_body(br#"{"text":"hi"}"#, true).unwrap(), "hi");
        assert_eq!(
            parse_body(b"payload=%7B%22text%22%3A%22a+b%22%7D", true).unwrap(),
            "a b"
        );
        assert!(parse_body(b"payload=%7B", true).is_err());
        assert!(parse_body(b"{}", false).is_err());
        assert!(parse_body(br#"{"text":3}"#, false).is_err());
        assert!(parse_body(b"text=hi", true).is_err());
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode(b"a%20b+c&x=1").unwrap(), "a b c");
        assert_eq!(percent_decode(b"%").as_deref(), None);
        assert_eq!(percent_decode(b"%4").as_deref(), None);
        assert_eq!(percent_decode(b"%zz").as_deref(), None);
    }

    #[test]
    fn secrets() {
        let stored = hex::encode(crate::server::auth::token_digest("s3cret"));
        assert!(secret_matches(&stored, "s3cret"));
        assert!(!secret_matches(&stored, "s3cres"));
        assert!(!secret_matches("zz", "s3cret"));
    }
}
