//! Transfers against a fake server: a server that vanishes, a silent
//! one, nothing listening; and the pure parts (resume plans, ranges,
//! addresses, refusals).

use super::*;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

#[test]
fn resume_plans_from_the_partial_size() {
    assert_eq!(Resume::plan(0, 100), Resume::Fresh);
    assert_eq!(Resume::plan(40, 100), Resume::From(40));
    assert_eq!(Resume::plan(100, 100), Resume::Complete);
    // Longer than the file: not a prefix of it.
    assert_eq!(Resume::plan(140, 100), Resume::Fresh);
    assert_eq!(Resume::plan(0, 0), Resume::Fresh);
    assert_eq!(range_header(40), "bytes=40-");
}

#[test]
fn content_range_gives_the_first_byte() {
    assert_eq!(content_range_start("bytes 40-99/100"), Some(40));
    assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
    assert_eq!(content_range_start("bytes */100"), None);
    assert_eq!(content_range_start("items 1-2/3"), None);
}

#[test]
fn the_partial_file_sits_beside_the_target_hidden() {
    let p = partial_path(Path::new("/tmp/x/deploy.log"), &"ab".repeat(32));
    assert_eq!(p, Path::new("/tmp/x/.deploy.log.abababababababab.part"));
}

#[test]
fn the_address_follows_the_websocket_url() {
    let c = FileClient::new("127.0.0.1:7878", "t".into(), false, None).unwrap();
    assert_eq!(
        (c.addr.as_str(), c.tls.is_some()),
        ("127.0.0.1:7878", false)
    );
    let c = FileClient::new("wss://[::1]:9000", "t".into(), false, None).unwrap();
    assert_eq!((c.addr.as_str(), c.tls.is_some()), ("[::1]:9000", true));
    let c = FileClient::new("chat.example.org", "t".into(), false, None).unwrap();
    assert_eq!(c.addr, "chat.example.org:443");
    assert!(c.tls.is_some());
    let e = FileClient::new("ws://chat.example.org:80", "t".into(), false, None).unwrap_err();
    assert!(matches!(e, TransferError::Insecure(_)), "{e}");
}

/// A one-shot HTTP server on loopback that answers the first request
/// with `head` and `body`, then either closes or stays silent.
async fn fake_server(head: String, body: Vec<u8>, stall: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        // The whole request head, so that closing sends no reset.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
        let _ = sock.flush().await;
        if stall {
            tokio::time::sleep(Duration::from_secs(30)).await;
        } else {
            let _ = sock.shutdown().await;
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_vanishes_leaves_a_partial_file_to_resume() {
    let bytes: Vec<u8> = (0..100u8).collect();
    let digest = hex::encode(Sha256::digest(&bytes));
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_string();
    let addr = fake_server(head, bytes[..40].to_vec(), false).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let (progress, _) = watch::channel(0);
    let client = FileClient::new(&addr, "t".into(), false, None).unwrap();
    let err = client
        .download(&digest, 100, &dest, false, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Lost(_)), "{err:?}");
    assert!(err.to_string().contains("run it again to resume"), "{err}");
    let part = partial_path(&dest, &digest);
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 40);

    // The next try asks for the rest and checks the whole.
    let head = "HTTP/1.1 206 Partial Content\r\ncontent-length: 60\r\ncontent-range: bytes 40-99/100\r\n\r\n".to_string();
    let addr = fake_server(head, bytes[40..].to_vec(), false).await;
    let client = FileClient::new(&addr, "t".into(), false, None).unwrap();
    let done = client
        .download(&digest, 100, &dest, false, &progress)
        .await
        .unwrap();
    assert_eq!(done.resumed_from, 40);
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert!(!part.exists());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n".to_string();
    let addr = fake_server(head, vec![1; 10], true).await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let (progress, _) = watch::channel(0);
    let client = FileClient::new(&addr, "t".into(), false, None)
        .unwrap()
        .with_idle(Duration::from_millis(200));
    let err = client
        .download(&"00".repeat(32), 100, &dest, false, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Timeout(_)), "{err:?}");
    assert!(err.to_string().starts_with("timed out"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let client = FileClient::new(&addr, "t".into(), false, None).unwrap();
    let (progress, _) = watch::channel(0);
    let dir = tempfile::tempdir().unwrap();
    let err = client
        .download(&"00".repeat(32), 1, &dir.path().join("x"), false, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[test]
fn refusals_read_as_sentences() {
    for (status, words) in [
        (401, "log in again"),
        (403, "deactivated"),
        (404, "not shared"),
        (413, "larger"),
        (507, "quota"),
        (429, "wait"),
        (500, "boom"),
    ] {
        let e = refusal(StatusCode::from_u16(status).unwrap(), b"boom\n");
        assert!(e.to_string().contains(words), "{status}: {e}");
    }
}
