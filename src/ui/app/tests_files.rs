//! Files in the App: `o` and `s` on the selected file, `/upload`, the offer
//! to upload a pasted path, progress in the status line, and the full image
//! asked for once its row is drawn.

use super::{Mode, TerminalRequest};
use crate::client::update::{Fetch, TransferState, TransferView};
use crate::client::view::MessageRow;
use crate::client::{Action, Update};
use crate::proto::FileInfo;
use crate::ui::UiEvent;
use crate::ui::fixtures::*;
use crossterm::event::{Event, KeyCode};
use std::time::Instant;

fn info(name: &str) -> FileInfo {
    FileInfo {
        digest: "ab".repeat(32),
        name: name.into(),
        size: 2048,
        media_type: "text/plain".into(),
        width: None,
        height: None,
        preview: None,
        key: None,
    }
}

/// #general with a file from alice as its newest row (seq 8).
fn with_file(t: Instant) -> crate::ui::app::App {
    let mut m = base_model();
    let mut f = msg(8, "alice", T0 + 9 * MIN, "the log");
    f.file = Some(Box::new(info("deploy.log")));
    m.messages
        .get_mut("c-general")
        .unwrap()
        .push(MessageRow::Message(f));
    app(m, 100, 24, t)
}

#[test]
fn o_s_and_shift_s_fetch_the_selected_file() {
    let t = Instant::now();
    let mut a = with_file(t);
    a.handle_event(key(KeyCode::Up), t);
    assert_eq!(a.selected, Some(8));
    let out = a.handle_event(ch('o'), t);
    assert_eq!(
        out,
        vec![Action::Download {
            file: info("deploy.log"),
            purpose: Fetch::Open,
        }]
    );
    let out = a.handle_event(ch('s'), t);
    assert!(matches!(
        &out[..],
        [Action::Download {
            purpose: Fetch::Save,
            ..
        }]
    ));
    // On a message without a file, `S` says what to do and `s` searches.
    a.handle_event(key(KeyCode::Up), t);
    let out = a.handle_event(ch('S'), t);
    assert!(out.is_empty());
    assert!(a.status.as_deref().unwrap_or("").contains("Select a file"));
    a.handle_event(ch('s'), t);
    assert_eq!(a.mode, Mode::Search);
}

#[test]
fn a_ready_file_is_opened_or_said_where_it_was_saved() {
    let t = Instant::now();
    let mut a = with_file(t);
    let ready = |purpose, path: &str| {
        UiEvent::Engine(vec![Update::FileReady {
            digest: "ab".repeat(32),
            path: path.into(),
            purpose,
        }])
    };
    a.handle_event(ready(Fetch::Open, "/cache/files/ab/deploy.log"), t);
    assert_eq!(
        a.terminal_requests,
        vec![TerminalRequest::Open("/cache/files/ab/deploy.log".into())]
    );
    a.handle_event(ready(Fetch::Save, "/home/dana/Downloads/deploy.log"), t);
    assert_eq!(
        a.status.as_deref(),
        Some("saved to /home/dana/Downloads/deploy.log")
    );
    a.handle_event(UiEvent::Opened(Err("xdg-open: not found".into())), t);
    assert_eq!(
        a.status.as_deref(),
        Some("cannot open the file: xdg-open: not found")
    );
}

#[test]
fn progress_shows_in_the_status_line() {
    let t = Instant::now();
    let mut a = with_file(t);
    let mut view = TransferView {
        id: 1,
        name: "big.iso".into(),
        done: 512 * 1024,
        total: 2 * 1024 * 1024,
        upload: true,
        state: TransferState::Running,
    };
    a.handle_event(UiEvent::Engine(vec![Update::Transfer(view.clone())]), t);
    assert_eq!(
        a.status.as_deref(),
        Some("uploading big.iso: 512 KiB of 2.0 MiB (25%)")
    );
    view.state = TransferState::Failed("over your storage quota".into());
    a.handle_event(UiEvent::Engine(vec![Update::Transfer(view)]), t);
    assert_eq!(
        a.status.as_deref(),
        Some("upload of big.iso failed: over your storage quota")
    );
}

#[test]
fn upload_command_and_pasted_path() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot one.png");
    std::fs::write(&path, b"x").unwrap();
    let mut a = with_file(t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, &format!("/upload {}", path.display()), t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert_eq!(
        out,
        vec![Action::Upload {
            conv: "c-general".into(),
            path: path.clone(),
            caption: None,
        }]
    );
    type_str(&mut a, "/upload /no/such/file", t);
    let out = a.handle_event(key(KeyCode::Enter), t);
    assert!(out.is_empty());
    assert_eq!(a.status.as_deref(), Some("No such file: /no/such/file"));

    // A dropped file arrives as a paste of its (quoted) path.
    a.composer.take();
    let pasted = format!("'{}'", path.display());
    a.handle_event(UiEvent::Term(Event::Paste(pasted.clone())), t);
    assert!(matches!(a.mode, Mode::ConfirmUpload { .. }));
    assert!(draw(&a).contains("Upload shot one.png here? (y/n)"));
    let out = a.handle_event(ch('y'), t);
    assert!(matches!(&out[..], [Action::Upload { path: p, .. }] if *p == path));
    // n pastes the text as it came.
    a.handle_event(UiEvent::Term(Event::Paste(pasted.clone())), t);
    let out = a.handle_event(ch('n'), t);
    assert!(out.is_empty());
    assert_eq!(a.mode, Mode::Insert);
    assert_eq!(a.composer.text(), pasted);
    // Text that is not a file pastes as usual.
    a.composer.take();
    a.handle_event(UiEvent::Term(Event::Paste("hello there".into())), t);
    assert_eq!(a.composer.text(), "hello there");
}

#[test]
fn upload_paths_complete_with_tab() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("report.txt"), b"x").unwrap();
    let mut a = with_file(t);
    a.handle_event(ch('i'), t);
    type_str(&mut a, &format!("/upload {}/rep", dir.path().display()), t);
    a.handle_event(key(KeyCode::Tab), t);
    assert_eq!(
        a.composer.text(),
        format!("/upload {}/report.txt ", dir.path().display())
    );
}

#[test]
fn an_image_on_screen_is_fetched_once() {
    let t = Instant::now();
    let mut a = with_file(t);
    a.images = crate::ui::images::Images::with_picker(ratatui_image::picker::Picker::halfblocks());
    let digest = "ab".repeat(32);
    let first = a.fetch_visible_images(std::slice::from_ref(&digest));
    assert_eq!(
        first,
        vec![Action::Download {
            file: info("deploy.log"),
            purpose: Fetch::Show,
        }]
    );
    assert!(a.fetch_visible_images(&[digest]).is_empty());
    // An image too large to draw is not fetched.
    let mut b = with_file(t);
    b.images = crate::ui::images::Images::with_picker(ratatui_image::picker::Picker::halfblocks());
    if let Some(MessageRow::Message(m)) = b.model.messages.get_mut("c-general").unwrap().last_mut()
    {
        m.file.as_mut().unwrap().size = 1 << 30;
    }
    assert!(b.fetch_visible_images(&["ab".repeat(32)]).is_empty());
}
