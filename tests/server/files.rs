//! Files over HTTP on chatd's port: upload, share with `send_file`,
//! download by members only, ranges, limits, quota and collection.

use crate::support::server::{HttpReply, http_exchange, stored_blobs, upload_temps};
use crate::support::{Peer, Server, seq_of};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that do not repeat in short cycles.
fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn upload(server: &Server, token: &str, data: &[u8]) -> HttpReply {
    let auth = format!("Bearer {token}");
    let digest = sha(data);
    http_exchange(
        server.addr(),
        "POST",
        "/files",
        &[("Authorization", &auth), ("X-Content-Sha256", &digest)],
        data,
    )
    .await
}

async fn download(server: &Server, token: &str, digest: &str, extra: &[(&str, &str)]) -> HttpReply {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    http_exchange(
        server.addr(),
        "GET",
        &format!("/files/{digest}"),
        &headers,
        b"",
    )
    .await
}

fn file_info(data: &[u8], name: &str) -> Value {
    json!({"digest": sha(data), "name": name, "size": data.len(), "media_type": "application/octet-stream"})
}

async fn share(p: &mut Peer, conv: &str, cmid: &str, file: Value) -> Value {
    p.request(json!({"type":"send_file","conversation_id":conv,"client_msg_id":cmid,"file":file}))
        .await
}

#[tokio::test]
async fn files_round_trip_through_a_conversation() {
    let server = Server::start();
    let [mut alice, mut bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    for (i, size) in [0usize, 1, 5 * 1024 * 1024].into_iter().enumerate() {
        let data = bytes(size, i as u8);
        let up = upload(&server, &alice.token, &data).await;
        assert_eq!(up.status, 201, "{size} bytes: {}", up.text());
        let answer: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(answer["digest"], sha(&data));
        assert_eq!(answer["size"], size);
        let r = share(&mut alice, &dm, &format!("f{i}"), file_info(&data, "x.bin")).await;
        assert_eq!(r["type"], "ok", "{r}");
        let seq = seq_of(&r);
        let ev = bob
            .expect_push(
                |v| v["type"] == "event" && v["kind"] == "file" && v["seq"] == seq,
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(ev["file"]["digest"], sha(&data));
        assert_eq!(ev["file"]["size"], size);
        let got = download(&server, &bob.token, &sha(&data), &[]).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.body.len(), size);
        assert_eq!(sha(&got.body), sha(&data), "{size} bytes come back intact");
        assert_eq!(got.header("accept-ranges"), Some("bytes"));
        assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    }
    // Shared twice, stored once.
    let data = bytes(1000, 9);
    assert_eq!(upload(&server, &alice.token, &data).await.status, 201);
    assert_eq!(upload(&server, &bob.token, &data).await.status, 201);
    let digest = sha(&data);
    let copies = stored_blobs(server.data_dir())
        .iter()
        .filter(|b| **b == digest)
        .count();
    assert_eq!(copies, 1);
}

#[tokio::test]
async fn only_members_of_a_sharing_conversation_may_download() {
    let server = Server::start();
    let [mut alice, _bob, mallory] = server.users(["alice", "bob", "mallory"]).await;
    let dm = alice.create_dm("bob").await;
    let data = bytes(4096, 1);
    let digest = sha(&data);
    assert_eq!(upload(&server, &alice.token, &data).await.status, 201);
    // Uploaded but not shared: only the uploader.
    assert_eq!(
        download(&server, &mallory.token, &digest, &[]).await.status,
        404
    );
    assert_eq!(
        download(&server, &alice.token, &digest, &[]).await.status,
        200
    );
    let r = share(&mut alice, &dm, "f1", file_info(&data, "a.bin")).await;
    assert_eq!(r["type"], "ok", "{r}");
    let seq = seq_of(&r);
    let refused = download(&server, &mallory.token, &digest, &[]).await;
    assert_eq!(refused.status, 404, "a non-member: {}", refused.text());
    assert!(refused.body.len() < 100, "no bytes leak");
    // Knowing the digest does not let mallory share it into her own room.
    let mut mallory = mallory;
    let own = mallory.create_group("mine", &[]).await;
    let r = share(&mut mallory, &own, "steal", file_info(&data, "a.bin")).await;
    assert_eq!(r["code"], "not_found", "{r}");
    // No token, a bad token.
    let none = http_exchange(server.addr(), "GET", &format!("/files/{digest}"), &[], b"").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        download(&server, "not-a-token", &digest, &[]).await.status,
        401
    );
    // Deleted, the file is no longer shared with bob.
    let r = alice
        .request(
            json!({"type":"delete","conversation_id":dm,"client_msg_id":"d1","target_seq":seq}),
        )
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let bob = server.login("bob").await;
    assert_eq!(
        download(&server, &bob.token, &digest, &[]).await.status,
        404
    );
}

#[tokio::test]
async fn send_file_checks_what_it_shares() {
    let server = Server::start();
    let [mut alice, _bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let data = bytes(100, 2);
    assert_eq!(upload(&server, &alice.token, &data).await.status, 201);
    let mut wrong_size = file_info(&data, "a.bin");
    wrong_size["size"] = json!(99);
    let r = share(&mut alice, &dm, "w1", wrong_size).await;
    assert_eq!(r["code"], "invalid_argument", "{r}");
    for (name, why) in [
        ("../etc/passwd", "directories"),
        ("a\u{1b}[2Jb", "control"),
        ("", "empty"),
    ] {
        let r = share(&mut alice, &dm, &format!("n-{why}"), file_info(&data, name)).await;
        assert_eq!(r["code"], "invalid_argument", "{why}: {r}");
    }
    let mut bad_type = file_info(&data, "a.bin");
    bad_type["media_type"] = json!("text/html; <script>");
    let r = share(&mut alice, &dm, "t1", bad_type).await;
    assert_eq!(r["code"], "invalid_argument", "{r}");
    let mut bad_preview = file_info(&data, "a.png");
    bad_preview["preview"] = json!("PHN2Zz48L3N2Zz4=");
    let r = share(&mut alice, &dm, "p1", bad_preview).await;
    assert_eq!(r["code"], "invalid_argument", "not a PNG or JPEG: {r}");
    // A good one, retried: one event.
    let r1 = share(&mut alice, &dm, "ok1", file_info(&data, "a.bin")).await;
    let r2 = share(&mut alice, &dm, "ok1", file_info(&data, "a.bin")).await;
    assert_eq!(seq_of(&r1), seq_of(&r2));
    // A file is not edited.
    let r = alice
        .request(json!({"type":"edit","conversation_id":dm,"client_msg_id":"e1","target_seq":seq_of(&r1),"body":"x"}))
        .await;
    assert_eq!(r["code"], "invalid_argument", "{r}");
    // It is reacted to and replied to like a message.
    let r = alice
        .request(json!({"type":"react","conversation_id":dm,"client_msg_id":"r1","target_seq":seq_of(&r1),"emoji":"👍"}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
    let r = alice
        .request(json!({"type":"send","conversation_id":dm,"client_msg_id":"s1","body":"see above","reply_to":seq_of(&r1)}))
        .await;
    assert_eq!(r["type"], "ok", "{r}");
}

#[tokio::test]
async fn ranges_resume_a_download() {
    let server = Server::start();
    let [alice] = server.users(["alice"]).await;
    let data = bytes(10_000, 3);
    let digest = sha(&data);
    assert_eq!(upload(&server, &alice.token, &data).await.status, 201);
    let part = download(
        &server,
        &alice.token,
        &digest,
        &[("Range", "bytes=100-199")],
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[100..200]);
    assert_eq!(part.header("content-range"), Some("bytes 100-199/10000"));
    let rest = download(&server, &alice.token, &digest, &[("Range", "bytes=4000-")]).await;
    assert_eq!(rest.status, 206);
    assert_eq!(rest.body, &data[4000..]);
    let past = download(&server, &alice.token, &digest, &[("Range", "bytes=10000-")]).await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */10000"));
    // A range of another version of the file is not applied.
    let other = download(
        &server,
        &alice.token,
        &digest,
        &[("Range", "bytes=0-9"), ("If-Range", "\"something-else\"")],
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.body.len(), 10_000);
    let head = http_exchange(
        server.addr(),
        "HEAD",
        &format!("/files/{digest}"),
        &[("Authorization", &format!("Bearer {}", alice.token))],
        b"",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("10000"));
}

#[tokio::test]
async fn limits_refuse_early_and_leave_nothing_behind() {
    let server = Server::start_with(|c| {
        c.files.max_upload_bytes = 64 * 1024;
        c.files.quota_bytes = 100 * 1024;
    });
    let [alice] = server.users(["alice"]).await;
    let auth = format!("Bearer {}", alice.token);
    // Over the size limit by Content-Length: refused from the head.
    let big = bytes(64 * 1024 + 1, 4);
    let r = upload(&server, &alice.token, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Chunked, with no length: refused as soon as it passes the limit.
    let mut chunked = Vec::new();
    for piece in big.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = http_exchange(
        server.addr(),
        "POST",
        "/files",
        &[("Authorization", &auth), ("Transfer-Encoding", "chunked")],
        &chunked,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    // Bytes that are not what was announced.
    let data = bytes(1000, 5);
    let wrong = sha(b"something else");
    let r = http_exchange(
        server.addr(),
        "POST",
        "/files",
        &[("Authorization", &auth), ("X-Content-Sha256", &wrong)],
        &data,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(stored_blobs(server.data_dir()).is_empty(), "nothing stored");
    assert_eq!(
        upload_temps(server.data_dir()).len(),
        0,
        "no temporary file left"
    );
    // The quota: 60 KiB fits, 60 KiB more does not, the same bytes again do.
    let first = bytes(60 * 1024, 6);
    assert_eq!(upload(&server, &alice.token, &first).await.status, 201);
    let second = bytes(60 * 1024, 7);
    let r = upload(&server, &alice.token, &second).await;
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(r.text().contains("quota"), "{}", r.text());
    assert_eq!(upload(&server, &alice.token, &first).await.status, 201);
    assert_eq!(stored_blobs(server.data_dir()), vec![sha(&first)]);
}

/// An upload that sends its head and a little of its body, then waits.
async fn stalled_upload(server: &Server, token: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[7u8; 1000]).await.unwrap();
    s
}

/// Whether the server answered (refused) a stalled upload.
async fn answered(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf))
        .await
        .is_ok()
}

#[tokio::test]
async fn uploads_in_progress_are_bounded_per_user() {
    let server = Server::start_with(|c| c.files.max_concurrent_uploads = 2);
    let [alice] = server.users(["alice"]).await;
    let mut open = vec![
        stalled_upload(&server, &alice.token).await,
        stalled_upload(&server, &alice.token).await,
    ];
    // A probe may overlap a stalled upload's arrival and push it out:
    // replace those until both hold their places and the probe is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = upload(&server, &alice.token, b"third").await;
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            break;
        }
        assert_eq!(r.status, 201);
        assert!(Instant::now() < deadline, "never refused");
        for s in open.iter_mut() {
            if answered(s).await {
                *s = stalled_upload(&server, &alice.token).await;
            }
        }
    }
    drop(open);
    // Once they are gone, uploads go through again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upload(&server, &alice.token, b"fourth").await.status != 201 {
        assert!(Instant::now() < deadline, "the places were never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreferenced_uploads_are_collected_after_the_grace_period() {
    let server = Server::start_with(|c| c.files.unreferenced_grace_secs = 1);
    let [mut alice, _bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let kept = bytes(2000, 8);
    let dropped = bytes(2000, 9);
    assert_eq!(upload(&server, &alice.token, &kept).await.status, 201);
    assert_eq!(upload(&server, &alice.token, &dropped).await.status, 201);
    let r = share(&mut alice, &dm, "k1", file_info(&kept, "k.bin")).await;
    assert_eq!(r["type"], "ok", "{r}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let blobs = stored_blobs(server.data_dir());
        if !blobs.contains(&sha(&dropped)) {
            assert!(blobs.contains(&sha(&kept)), "a shared file stays");
            break;
        }
        assert!(Instant::now() < deadline, "never collected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The collected upload no longer counts, and cannot be shared.
    let r = share(&mut alice, &dm, "d1", file_info(&dropped, "d.bin")).await;
    assert_eq!(r["code"], "not_found", "{r}");
    assert_eq!(
        download(&server, &alice.token, &sha(&kept), &[])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn plain_http_routes() {
    let server = Server::start();
    assert_eq!(server.http("GET", "/healthz").await.0, 200);
    assert_eq!(server.http("PUT", "/files").await.0, 405);
    assert_eq!(server.http("DELETE", "/files/abc").await.0, 405);
    assert_eq!(server.http("GET", "/files/abc").await.0, 401);
    // Two requests on one connection (keep-alive).
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    s.write_all(
        b"GET /files/abc HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1, "{text}");
}

#[tokio::test]
async fn retention_stops_sharing_old_files() {
    if crate::support::skip_on_postgres("ages events in chatd.db and sweeps that file") {
        return;
    }
    const DAY: i64 = 24 * 3600 * 1000;
    let server = Server::start_with(|c| c.retention.days = 30);
    let [mut alice, bob] = server.users(["alice", "bob"]).await;
    let dm = alice.create_dm("bob").await;
    let old = bytes(300, 10);
    let new = bytes(300, 11);
    for data in [&old, &new] {
        assert_eq!(upload(&server, &alice.token, data).await.status, 201);
    }
    let r = alice
        .request(json!({"type":"send_file","conversation_id":dm,"client_msg_id":"o1","file":file_info(&old, "old.bin"),"caption":"an old secret"}))
        .await;
    let old_seq = seq_of(&r);
    let db = rusqlite::Connection::open(server.data_dir().join("chatd.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "UPDATE events SET ts = ts - ?1 WHERE conversation_id = ?2",
        rusqlite::params![40 * DAY, dm],
    )
    .unwrap();
    let r = share(&mut alice, &dm, "n1", file_info(&new, "new.bin")).await;
    assert_eq!(r["type"], "ok", "{r}");
    assert_eq!(
        download(&server, &bob.token, &sha(&old), &[]).await.status,
        200
    );

    let cutoff = chat::proto::now_millis() - 30 * DAY;
    let dir = server.data_dir().to_path_buf();
    let cleared = tokio::task::spawn_blocking(move || {
        chat::store::log::retention::sweep(&dir, cutoff, || false).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(cleared, 1, "the old file event");
    assert_eq!(
        download(&server, &bob.token, &sha(&old), &[]).await.status,
        404
    );
    assert_eq!(
        download(&server, &bob.token, &sha(&new), &[]).await.status,
        200
    );
    assert_eq!(
        server.events_containing("an old secret"),
        0,
        "its caption is gone"
    );
    let events = alice.full_history(&dm).await;
    let ev = events.iter().find(|e| e["seq"] == old_seq).unwrap();
    assert_eq!(ev["kind"], "file");
    assert!(ev.get("caption").is_none(), "{ev}");
    // A second sweep finds nothing more to do.
    let dir = server.data_dir().to_path_buf();
    let again = tokio::task::spawn_blocking(move || {
        chat::store::log::retention::sweep(&dir, cutoff, || false).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn shared_files_are_found_by_name_and_caption() {
    let server = Server::start();
    let [mut alice, mut bob, mut mallory] = server.users(["alice", "bob", "mallory"]).await;
    let dm = alice.create_dm("bob").await;
    let data = bytes(500, 12);
    assert_eq!(upload(&server, &alice.token, &data).await.status, 201);
    let r = alice
        .request(json!({"type":"send_file","conversation_id":dm,"client_msg_id":"q1","file":file_info(&data, "quarterly-report.pdf"),"caption":"the numbers for Q3"}))
        .await;
    let seq = seq_of(&r);
    for q in ["quarterly", "numbers", "report from:alice"] {
        let found = bob.ok(json!({"type":"search","query":q})).await;
        let hits = found["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 1, "{q}: {found}");
        assert_eq!(hits[0]["seq"], seq);
    }
    let found = bob.ok(json!({"type":"search","query":"quarterly"})).await;
    assert_eq!(
        found["hits"][0]["snippet"],
        "quarterly-report.pdf — the numbers for Q3"
    );
    let found = mallory
        .ok(json!({"type":"search","query":"quarterly"}))
        .await;
    assert_eq!(found["hits"], json!([]), "not a member");
    alice
        .ok(json!({"type":"delete","conversation_id":dm,"client_msg_id":"qd","target_seq":seq}))
        .await;
    let found = bob.ok(json!({"type":"search","query":"quarterly"})).await;
    assert_eq!(found["hits"], json!([]), "deleted");
}
