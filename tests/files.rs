//! Files end to end against an in-process chatd: `chat upload` then `chat
//! download` (digests equal for 0 B, 1 B and 5 MiB), `chat tail` showing
//! file events, a non-member refused, an interrupted download resumed and
//! a corrupted partial file refused, and the engine's background transfers
//! as the TUI uses them.

mod support;

use chat::client::net::files::{FileClient, TransferError, partial_path};
use chat::client::update::{Fetch, TransferState};
use chat::client::view::MessageRow;
use chat::client::{Action, Update};
use chat::proto::{Event, EventBody, FileInfo};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use support::{CLIENT_WAIT, Home, World, wait_until};

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes that are not all alike, so that an offset error shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn file_events(home: &Home, target: &str) -> Vec<(u64, FileInfo, Option<String>)> {
    let r = home.ok(&["tail", target, "--json", "-n", "50"], None);
    r.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let ev: Event = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            match ev.body {
                EventBody::File { file, caption, .. } => Some((ev.seq, *file, caption)),
                _ => None,
            }
        })
        .collect()
}

/// The stored token of a `chat` home.
fn token_of(home: &Home, user: &str) -> String {
    let text = std::fs::read_to_string(home.credentials_file()).expect("credentials file");
    let map: std::collections::BTreeMap<String, String> = toml::from_str(&text).unwrap();
    map.get(&format!("{user}@{}", home.server))
        .cloned()
        .expect("a token")
}

/// alice shares `files` with bob (a DM); returns bob's view of them.
fn share(w: &World, files: &[(&str, Vec<u8>)]) -> (Home, Home, PathBuf) {
    let alice = w.home("alice");
    let bob = w.home("bob");
    alice.register("alice");
    bob.register("bob");
    let src = w.dir("alice").join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut args = vec!["upload".to_string(), "@bob".to_string()];
    for (name, bytes) in files {
        let p = src.join(name);
        std::fs::write(&p, bytes).unwrap();
        args.push(p.display().to_string());
    }
    args.extend(["--caption".into(), "the failing run".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = alice.ok(&args, None);
    assert!(r.stderr.contains("shared"), "{r:?}");
    (alice, bob, src)
}

#[test]
fn upload_then_download_keeps_every_byte() {
    let w = World::new();
    let files = [
        ("empty.bin", Vec::new()),
        ("one.bin", vec![0x42]),
        ("big.bin", pattern(5 * 1024 * 1024)),
    ];
    let (_alice, bob, _) = share(&w, &files);
    let shared = file_events(&bob, "@alice");
    assert_eq!(shared.len(), 3, "{shared:?}");
    // The caption goes with the first file only.
    assert_eq!(shared[0].2.as_deref(), Some("the failing run"));
    assert!(shared[1].2.is_none() && shared[2].2.is_none());
    let out = w.dir("bob").join("out");
    std::fs::create_dir_all(&out).unwrap();
    for ((seq, info, _), (name, bytes)) in shared.iter().zip(&files) {
        assert_eq!((info.name.as_str(), info.size), (*name, bytes.len() as u64));
        assert_eq!(info.digest, sha(bytes));
        assert_eq!(info.media_type, "application/octet-stream");
        let r = bob.ok(
            &[
                "download",
                "@alice",
                &seq.to_string(),
                "-o",
                &out.display().to_string(),
            ],
            None,
        );
        assert!(r.stderr.contains("saved"), "{r:?}");
        let got = std::fs::read(out.join(name)).unwrap();
        assert_eq!(sha(&got), sha(bytes), "{name}");
    }
    // Never over an existing file without --force.
    let seq = shared[1].0.to_string();
    let dest = out.join("one.bin").display().to_string();
    let r = bob.run(&["download", "@alice", &seq, "-o", &dest], None);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("already exists") && r.stderr.contains("--force"),
        "{r:?}"
    );
    bob.ok(&["download", "@alice", &seq, "-o", &dest, "--force"], None);
    // No partial file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The plain tail names the file, its size and its caption.
    let r = bob.ok(&["tail", "@alice", "-n", "5"], None);
    assert!(
        r.stdout
            .contains("alice: 📎 empty.bin (0 B) — the failing run"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("📎 big.bin (5.0 MiB)"), "{}", r.stdout);
    // A seq that is not a file says so.
    let r = bob.run(&["download", "@alice", "1"], None);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("not a file"), "{r:?}");
}

#[test]
fn images_carry_their_size_and_a_preview() {
    let w = World::new();
    let img = image::RgbImage::from_fn(200, 100, |x, y| image::Rgb([x as u8, y as u8, 90]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let (_alice, bob, _) = share(&w, &[("chart.png", png)]);
    let shared = file_events(&bob, "@alice");
    let info = &shared[0].1;
    assert_eq!(info.media_type, "image/png");
    assert_eq!((info.width, info.height), (Some(200), Some(100)));
    assert!(
        info.preview
            .as_ref()
            .is_some_and(|p| p.len() < 16 * 1024 * 4 / 3 + 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_cannot_download() {
    let w = World::new();
    let (_alice, bob, _) = share(&w, &[("secret.txt", b"top secret".to_vec())]);
    let carol = w.home("carol");
    carol.register("carol");
    let (seq, info, _) = file_events(&bob, "@alice").remove(0);
    // Through the command line she cannot even name the conversation.
    let r = carol.run(&["download", "@alice", &seq.to_string()], None);
    assert_eq!(r.code, 4, "{r:?}");
    // Knowing the digest is not enough either.
    let client = FileClient::new(&carol.server, token_of(&carol, "carol"), false, None).unwrap();
    let dest = w.dir("carol").join("secret.txt");
    let (progress, _) = tokio::sync::watch::channel(0);
    let err = client
        .download(&info.digest, info.size, &dest, false, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::NotFound), "{err:?}");
    assert!(
        err.to_string()
            .contains("not shared in a conversation you belong to"),
        "{err}"
    );
    assert!(!dest.exists() && !partial_path(&dest, &info.digest).exists());
    // A bad token is told as such.
    let bad = FileClient::new(&carol.server, "nonsense".into(), false, None).unwrap();
    let err = bad
        .download(&info.digest, info.size, &dest, false, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Unauthorized), "{err:?}");
    assert!(err.to_string().contains("log in again"), "{err}");
}

#[test]
fn an_interrupted_download_resumes_and_a_corrupt_one_is_refused() {
    let w = World::new();
    let bytes = pattern(5 * 1024 * 1024);
    let (_alice, bob, _) = share(&w, &[("big.bin", bytes.clone())]);
    let (seq, info, _) = file_events(&bob, "@alice").remove(0);
    let seq = seq.to_string();
    let out = w.dir("bob").join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("big.bin");
    let part = partial_path(&dest, &info.digest);

    // A download cut after 2 MiB left its partial file.
    std::fs::write(&part, &bytes[..2 * 1024 * 1024]).unwrap();
    let r = bob.ok(
        &[
            "download",
            "@alice",
            &seq,
            "-o",
            &dest.display().to_string(),
        ],
        None,
    );
    assert!(r.stderr.contains("resumed at 2.0 MiB"), "{r:?}");
    assert_eq!(sha(&std::fs::read(&dest).unwrap()), info.digest);
    assert!(!part.exists());

    // A partial file whose bytes are not the file's is caught by the
    // digest, removed, and the next try starts afresh.
    std::fs::remove_file(&dest).unwrap();
    let mut wrong = bytes[..1024 * 1024].to_vec();
    wrong[1000] ^= 0xff;
    std::fs::write(&part, &wrong).unwrap();
    let r = bob.run(
        &[
            "download",
            "@alice",
            &seq,
            "-o",
            &dest.display().to_string(),
        ],
        None,
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("do not match the file's digest"), "{r:?}");
    assert!(!dest.exists() && !part.exists());
    bob.ok(
        &[
            "download",
            "@alice",
            &seq,
            "-o",
            &dest.display().to_string(),
        ],
        None,
    );
    assert_eq!(sha(&std::fs::read(&dest).unwrap()), info.digest);
}

fn file_rows(rows: &[MessageRow]) -> Vec<(Option<u64>, FileInfo)> {
    rows.iter()
        .filter_map(|r| match r {
            MessageRow::Message(m) => Some((m.seq, *m.file.clone()?)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_uploads_and_downloads_in_the_background() {
    let w = World::new();
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    alice.act(Action::OpenDm { user: "bob".into() });
    alice
        .wait("the DM", |m| {
            m.conversations.iter().any(|c| c.title == "bob")
        })
        .await;
    let conv = alice.with(|m| m.conversations[0].id.clone());
    alice.act(Action::OpenConversation { conv: conv.clone() });
    let src = w.dir("alice").join("notes.txt");
    std::fs::write(&src, b"remember the milk\n").unwrap();
    alice.act(Action::Upload {
        conv: conv.clone(),
        path: src.clone(),
        caption: Some("list".into()),
    });
    alice
        .wait_rows(&conv, "the shared file", |rows| {
            file_rows(rows)
                .iter()
                .any(|(seq, f)| seq.is_some() && f.name == "notes.txt")
        })
        .await;
    assert!(alice.logged(
        |u| matches!(u, Update::Transfer(t) if t.upload && t.state == TransferState::Done)
    ));
    // A path that is gone fails with a sentence naming it.
    alice.act(Action::Upload {
        conv: conv.clone(),
        path: w.dir("alice").join("gone.txt"),
        caption: None,
    });
    let failed = wait_until(CLIENT_WAIT, || {
        alice.logged(|u| {
            matches!(u, Update::Transfer(t)
                if matches!(&t.state, TransferState::Failed(why) if why.contains("gone.txt")))
        })
    })
    .await;
    assert!(failed, "no failure reported");

    bob.wait("the DM", |m| !m.conversations.is_empty()).await;
    bob.act(Action::OpenConversation { conv: conv.clone() });
    bob.wait_rows(&conv, "the file row", |rows| !file_rows(rows).is_empty())
        .await;
    let (_, info) = bob.with(|m| file_rows(m.rows(&conv)).remove(0));
    // It arrived live, for notifications, as its one-line description.
    let notified = wait_until(CLIENT_WAIT, || {
        bob.logged(|u| {
            matches!(u, Update::Incoming(list)
                if list.iter().any(|i| i.body == "📎 notes.txt (18 B) — list"))
        })
    })
    .await;
    assert!(notified, "no notification of the file");
    assert_eq!(info.media_type, "text/plain");
    for purpose in [Fetch::Save, Fetch::Open] {
        bob.act(Action::Download {
            file: info.clone(),
            purpose,
        });
        let ok = wait_until(CLIENT_WAIT, || {
            bob.logged(|u| matches!(u, Update::FileReady { purpose: p, .. } if *p == purpose))
        })
        .await;
        assert!(ok, "no file ready for {purpose:?}");
    }
    let ready: Vec<PathBuf> = bob.with_log(|log| {
        log.iter()
            .filter_map(|u| match u {
                Update::FileReady { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect()
    });
    let downloads = w.dir("bob").join("downloads");
    assert_eq!(ready[0], downloads.join("notes.txt"), "saved where asked");
    assert!(
        ready[1].starts_with(w.dir("bob").join("files")),
        "{ready:?}"
    );
    for p in &ready {
        assert_eq!(std::fs::read(p).unwrap(), b"remember the milk\n");
    }
    // Saving again never replaces the first copy.
    bob.act(Action::Download {
        file: info.clone(),
        purpose: Fetch::Save,
    });
    let second = downloads.join("notes (2).txt");
    assert!(wait_until(CLIENT_WAIT, || second_exists(&second)).await);
    alice.stop().await;
    bob.stop().await;
}

fn second_exists(p: &Path) -> bool {
    p.is_file()
}

#[test]
fn an_upload_over_the_limit_is_refused_clearly() {
    let server = support::Server::start_with(|c| c.files.max_upload_bytes = 64 * 1024);
    let tmp = tempfile::tempdir().unwrap();
    let alice = Home::new(tmp.path().join("alice"), &server.url());
    let bob = Home::new(tmp.path().join("bob"), &server.url());
    alice.register("alice");
    bob.register("bob");
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, pattern(1024 * 1024)).unwrap();
    let r = alice.run(&["upload", "@bob", &big.display().to_string()], None);
    assert_eq!(r.code, 6, "{r:?}");
    assert!(
        r.stderr.contains("larger than this server accepts (413)"),
        "{r:?}"
    );
    assert!(file_events(&bob, "@alice").is_empty());
    let r = alice.run(&["upload", "@bob", "/no/such/file"], None);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("/no/such/file"), "{r:?}");
}
