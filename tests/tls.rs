//! chatd serving TLS itself, and the client over `wss://`: self-signed
//! certificates made here with rcgen, a full chat with the real client, the
//! health check, refusals (an untrusted certificate, cleartext on the TLS
//! port, a silent peer), bad files at start, and reloading the certificate
//! (in process and with SIGHUP to a `chatd` process) under live connections.

mod support;

use chat::client::net::{ClientError, Conn, Credentials};
use chat::client::view::ConnState;
use chat::net::tls::{ServerTls, TlsError};
use chat::proto::Request;
use chat::ui::Action;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::client::net_config;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A self-signed certificate for `localhost` and 127.0.0.1, written as
/// `<name>.pem` (the certificate, also the client's CA file) and
/// `<name>.key`.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

impl Cert {
    fn new(dir: &Path, name: &str) -> Cert {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("a self-signed certificate");
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        Cert {
            cert,
            key,
            der: made.cert.der().to_vec(),
        }
    }

    /// Put this certificate and key where `other`'s files are.
    fn install_over(&self, other: &Cert) {
        std::fs::copy(&self.cert, &other.cert).unwrap();
        std::fs::copy(&self.key, &other.key).unwrap();
    }
}

fn tls_server(cert: &Cert) -> (Server, ServerTls) {
    let tls = ServerTls::load(&cert.cert, &cert.key).expect("the certificate loads");
    (Server::start_tls(tls.clone(), |_| {}), tls)
}

fn wss(server: &Server) -> String {
    format!("wss://localhost:{}", server.addr().port())
}

/// A connection with the real client code, trusting `ca` (if any).
async fn connect(server: &Server, ca: Option<&Path>) -> Result<Conn, ClientError> {
    Conn::connect_with_ca(&wss(server), WAIT, false, ca).await
}

fn register(name: &str) -> Credentials {
    Credentials::Register {
        username: name.into(),
        password: PASSWORD.into(),
        invite: None,
    }
}

/// The certificate a server presents, from a TLS handshake that trusts
/// `ca`.
async fn presented(server: &Server, ca: &Cert) -> Vec<u8> {
    let stream = tls_stream(server, ca).await;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().expect("a certificate")[0].to_vec()
}

async fn tls_stream(server: &Server, ca: &Cert) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = chat::client::net::tls::client_config(Some(&ca.cert)).expect("CA file");
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_chat_over_wss_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "chatd");
    let (server, _tls) = tls_server(&cert);
    let client = |name: &str, creds: Credentials| {
        let mut net = net_config(&wss(&server));
        net.ca_file = Some(cert.cert.clone());
        Client::start_net(net, &dir.path().join(name), Some(creds))
    };
    let alice = client("alice", register("alice"));
    alice.wait_connected().await;
    let bob = client("bob", register("bob"));
    bob.wait_connected().await;

    alice.act(Action::OpenDm { user: "bob".into() });
    alice
        .wait("a DM with bob", |m| m.dm_with("bob").is_some())
        .await;
    let conv = alice.with(|m| m.dm_with("bob").unwrap().id.clone());
    alice.act(Action::OpenConversation { conv: conv.clone() });
    alice.act(Action::Send {
        conv: conv.clone(),
        body: "hi bob, over TLS".into(),
        reply_to: None,
    });
    bob.wait("the DM from alice", |m| m.dm_with("alice").is_some())
        .await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait_rows(&conv, "alice's message", |rows| {
        row_bodies(rows) == ["hi bob, over TLS"]
    })
    .await;
    bob.act(Action::Send {
        conv: conv.clone(),
        body: "hi alice".into(),
        reply_to: None,
    });
    alice
        .wait_rows(&conv, "bob's answer", |rows| {
            row_bodies(rows) == ["hi bob, over TLS", "hi alice"]
        })
        .await;

    // Another device of bob's, empty, fetches the history.
    let login = Credentials::Login {
        username: "bob".into(),
        password: PASSWORD.into(),
    };
    let phone = client("bob-phone", login);
    phone.wait_connected().await;
    phone.act(Action::OpenConversation { conv: conv.clone() });
    phone
        .wait_rows(&conv, "the history", |rows| {
            row_bodies(rows) == ["hi bob, over TLS", "hi alice"]
        })
        .await;
    for c in [alice, bob, phone] {
        c.stop().await;
    }
}

#[tokio::test]
async fn healthz_answers_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "chatd");
    let (server, _tls) = tls_server(&cert);
    let mut stream = tls_stream(&server, &cert).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    // chatd closes without a TLS close_notify; what was read is the answer.
    let _ = read.expect("an answer in time");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_ca_file_refuses_a_self_signed_server() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "chatd");
    let (server, _tls) = tls_server(&cert);

    let e = connect(&server, None).await.err().expect("refused");
    let line = e.to_string();
    assert!(matches!(e, ClientError::Tls { .. }), "{line}");
    assert!(
        line.contains(&format!("localhost:{}", server.addr().port())),
        "{line}"
    );
    assert!(line.contains("--ca-file") && !line.contains('\n'), "{line}");

    // Another server's certificate is no better.
    let other = Cert::new(dir.path(), "other");
    let e = connect(&server, Some(&other.cert))
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, ClientError::Tls { .. }), "{e}");

    // The connection task says why and stops trying.
    let c = Client::start_net(
        net_config(&wss(&server)),
        &dir.path().join("alice"),
        Some(register("alice")),
    );
    c.wait(
        "offline with a certificate error",
        |m| matches!(&m.conn, ConnState::Offline { reason } if reason.contains("certificate")),
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_new_connections_the_new_certificate_and_keeps_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let live = Cert::new(dir.path(), "live");
    let first = Cert::new(dir.path(), "first");
    let second = Cert::new(dir.path(), "second");
    first.install_over(&live);
    let (server, tls) = tls_server(&live);

    let mut old = connect(&server, Some(&first.cert)).await.expect("connects");
    old.handshake(&register("alice"), "test")
        .await
        .expect("registers");
    assert_eq!(presented(&server, &first).await, first.der);

    second.install_over(&live);
    tls.reload().expect("reloads");
    assert_eq!(presented(&server, &second).await, second.der);
    let e = connect(&server, Some(&first.cert))
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, ClientError::Tls { .. }), "{e}");
    let mut new = connect(&server, Some(&second.cert))
        .await
        .expect("connects");
    new.handshake(&register("bob"), "test")
        .await
        .expect("registers");

    // The connection made before the reload goes on.
    old.request(&Request::Conversations {
        after: None,
        limit: None,
    })
    .await
    .expect("the old connection still works");

    // A reload from broken files keeps the certificate.
    std::fs::write(&live.key, "not a key\n").unwrap();
    let e = tls.reload().expect_err("a broken key does not load");
    assert!(e.to_string().contains("live.key"), "{e}");
    assert_eq!(presented(&server, &second).await, second.der);
    old.request(&Request::Conversations {
        after: None,
        limit: None,
    })
    .await
    .expect("still");
    new.request(&Request::Conversations {
        after: None,
        limit: None,
    })
    .await
    .expect("still");
}

#[tokio::test]
async fn cleartext_to_the_tls_port_and_tls_to_a_plain_port_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "chatd");
    let (server, _tls) = tls_server(&cert);

    // The plain client gets an HTTP answer saying why, at once.
    let ws = format!("ws://127.0.0.1:{}", server.addr().port());
    let e = Conn::connect(&ws, WAIT, false)
        .await
        .err()
        .expect("refused");
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    let (status, body) = server.http("GET", "/healthz").await;
    assert_eq!(status, 400);
    assert!(body.contains("TLS"), "{body}");

    // A wss:// client to a plain chatd is told it does not speak TLS.
    let plain = Server::start();
    let url = format!("wss://localhost:{}", plain.addr().port());
    let e = Conn::connect_with_ca(&url, WAIT, false, Some(&cert.cert))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, ClientError::Tls { reason, .. } if reason.contains("does not speak TLS")),
        "{e}"
    );
}

#[tokio::test]
async fn a_silent_peer_cannot_hold_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "chatd");
    let tls = ServerTls::load(&cert.cert, &cert.key).unwrap();
    let server = Server::start_tls(tls, |c| c.limits.auth_timeout_secs = 1);
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed by the server within the head timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[test]
fn bad_certificate_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cert::new(dir.path(), "a");
    let b = Cert::new(dir.path(), "b");
    let err = |cert: Option<&Path>, key: Option<&Path>| match ServerTls::configured(cert, key) {
        Ok(_) => panic!("loaded {cert:?} {key:?}"),
        Err(e) => e,
    };
    assert!(matches!(err(Some(&a.cert), None), TlsError::Incomplete));
    assert!(matches!(err(None, Some(&a.key)), TlsError::Incomplete));
    assert!(ServerTls::configured(None, None).unwrap().is_none());
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        err(Some(&missing), Some(&a.key)),
        TlsError::Read { .. }
    ));
    let e = err(Some(&a.cert), Some(&b.key));
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    // The key where the certificate should be, and the other way round.
    let e = err(Some(&a.key), Some(&a.key));
    assert!(e.to_string().contains("no certificate"), "{e}");
    let e = err(Some(&a.cert), Some(&a.cert));
    assert!(e.to_string().contains("no private key"), "{e}");
}

/// A `chatd` process, killed if the test ends before it exits.
struct Chatd(std::process::Child);

impl Chatd {
    /// `chatd --config config`, logging at info to a pipe.
    fn spawn(config: &Path) -> Chatd {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chatd starts");
        Chatd(child)
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, sig) };
    }

    /// Its exit status, waiting at most `CLIENT_WAIT`.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + CLIENT_WAIT;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for chatd") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "chatd did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn write_config(dir: &Path, cert: &Path, key: &Path) -> PathBuf {
    let path = dir.join("chatd.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata = {:?}\n[auth]\nargon2_memory_kib = 64\nargon2_iterations = 1\n[net]\ntls_cert = {:?}\ntls_key = {:?}\n",
        dir.join("data"),
        cert,
        key
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn chatd_refuses_to_start_with_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cert::new(dir.path(), "a");
    let b = Cert::new(dir.path(), "b");
    let mut chatd = Chatd::spawn(&write_config(dir.path(), &a.cert, &b.key));
    let status = chatd.exit_status();
    assert!(!status.success(), "{status:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut chatd.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}

/// Lines chatd logs, as they come.
fn log_lines(chatd: &mut Chatd) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let stderr = chatd.0.stderr.take().expect("piped stderr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next logged line that contains `what`.
async fn logged(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, what: &str) -> String {
    let found = tokio::time::timeout(CLIENT_WAIT, async {
        while let Some(line) = lines.recv().await {
            if line.contains(what) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("chatd exited before logging {what:?}"),
        Err(_) => panic!("chatd never logged {what:?}"),
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_of_a_running_chatd() {
    let dir = tempfile::tempdir().unwrap();
    let live = Cert::new(dir.path(), "live");
    let first = Cert::new(dir.path(), "first");
    let second = Cert::new(dir.path(), "second");
    first.install_over(&live);
    let mut chatd = Chatd::spawn(&write_config(dir.path(), &live.cert, &live.key));
    let mut lines = log_lines(&mut chatd);
    let listening = logged(&mut lines, "chatd listening").await;
    let port: u16 = listening
        .split("127.0.0.1:")
        .nth(1)
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening:?}"));
    let url = format!("wss://localhost:{port}");

    let mut old = Conn::connect_with_ca(&url, WAIT, false, Some(&first.cert))
        .await
        .expect("connects with the first certificate");
    old.handshake(&register("alice"), "test")
        .await
        .expect("registers");

    second.install_over(&live);
    chatd.signal(libc::SIGHUP);
    logged(&mut lines, "reloaded the TLS certificate").await;
    Conn::connect_with_ca(&url, WAIT, false, Some(&second.cert))
        .await
        .expect("new connections get the second certificate");
    old.request(&Request::Conversations {
        after: None,
        limit: None,
    })
    .await
    .expect("the old connection still works");

    // A broken file: logged, and the second certificate stays.
    std::fs::write(&live.cert, "garbage\n").unwrap();
    chatd.signal(libc::SIGHUP);
    logged(&mut lines, "keeping the current certificate").await;
    Conn::connect_with_ca(&url, WAIT, false, Some(&second.cert))
        .await
        .expect("still the second certificate");

    old.close().await;
    chatd.signal(libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || chatd.exit_status())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_travel_over_tls_with_the_websockets_trust() {
    use chat::client::net::files::{FileClient, TransferError};
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(dir.path(), "server");
    let (server, _tls) = tls_server(&cert);
    let mut conn = connect(&server, Some(&cert.cert)).await.expect("trusted");
    let token = conn
        .handshake(&register("alice"), "test")
        .await
        .unwrap()
        .token
        .unwrap();
    let bytes = b"over tls".to_vec();
    let src = dir.path().join("a.txt");
    std::fs::write(&src, &bytes).unwrap();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let (progress, _) = tokio::sync::watch::channel(0);

    // Without the CA file the upload is refused as the WebSocket is.
    let untrusted = FileClient::new(&wss(&server), token.clone(), false, None).unwrap();
    let err = untrusted
        .upload(&src, &digest, bytes.len() as u64, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("--ca-file"), "{err}");

    let trusted = FileClient::new(&wss(&server), token, false, Some(&cert.cert)).unwrap();
    let up = trusted
        .upload(&src, &digest, bytes.len() as u64, &progress)
        .await
        .expect("uploaded over TLS");
    assert_eq!(up.digest, digest);
    // Shared, so that it can be downloaded.
    let dm = conn
        .request(&Request::Create {
            kind: chat::proto::ConvKind::Group,
            name: Some("files".into()),
            members: vec![],
            encrypted: false,
        })
        .await
        .unwrap()
        .parse::<chat::proto::ConversationOk>()
        .unwrap()
        .conversation
        .id;
    conn.request(&Request::SendFile {
        conversation_id: dm,
        client_msg_id: "f1".into(),
        file: chat::proto::FileInfo {
            digest: digest.clone(),
            name: "a.txt".into(),
            size: bytes.len() as u64,
            media_type: "text/plain".into(),
            width: None,
            height: None,
            preview: None,
            key: None,
        },
        caption: None,
        reply_to: None,
        encrypted: None,
        shares: Vec::new(),
    })
    .await
    .expect("shared");
    let dest = dir.path().join("back.txt");
    trusted
        .download(&digest, bytes.len() as u64, &dest, false, &progress)
        .await
        .expect("downloaded over TLS");
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
}
