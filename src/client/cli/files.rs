//! `chat upload` and `chat download`: files over HTTP with the stored
//! session, a progress bar on standard error when it is a terminal (plain
//! lines otherwise), and one `send_file` per uploaded path.

use super::commands::{SignedIn, resolve, session};
use super::live::Live;
use super::{Exit, Failure};
use crate::client::Action;
use crate::client::attach::{self, human_size};
use crate::client::config::Loaded;
use crate::client::e2e::files::{open_file, sealed_path};
use crate::client::engine::actions::new_client_msg_id;
use crate::client::net::files::{FileClient, TransferError};
use crate::client::update::{TransferState, Update};
use crate::proto::{AppendOk, Event, EventBody, FileInfo, HistoryOk, Request};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::watch;

impl From<TransferError> for Failure {
    fn from(e: TransferError) -> Failure {
        let code = match &e {
            TransferError::Unauthorized => Exit::Auth,
            TransferError::NotFound => Exit::NotFound,
            TransferError::Forbidden
            | TransferError::TooLarge
            | TransferError::Quota
            | TransferError::Busy
            | TransferError::Refused { .. } => Exit::Refused,
            TransferError::Connect { .. }
            | TransferError::Tls { .. }
            | TransferError::Lost(_)
            | TransferError::Timeout(_) => Exit::Unreachable,
            _ => Exit::Failure,
        };
        Failure::new(code, e.to_string())
    }
}

fn file_client(loaded: &Loaded, token: &str) -> Result<FileClient, Failure> {
    FileClient::new(
        &loaded.config.server,
        token.to_string(),
        loaded.config.insecure,
        loaded.config.ca_file.as_deref(),
    )
    .map_err(Failure::from)
}

/// `chat upload TARGET PATH… [--caption TEXT]`: each path is uploaded and
/// then shared as its own `file` event; the caption goes with the first.
pub(super) async fn upload(
    loaded: &Loaded,
    target: &str,
    paths: &[PathBuf],
    caption: Option<String>,
) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let conv = resolve(&mut s, target, true).await?;
    let token = s.token.clone();
    s.conn.close().await;
    let mut caption = caption.filter(|c| !c.trim().is_empty());
    if conv.encrypted {
        return upload_secret(loaded, &s.user, token, &conv.id, paths, caption).await;
    }
    let files = file_client(loaded, &token)?;
    for path in paths {
        let described = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || attach::describe(&path)).await
        };
        let file = match described {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                return Err(Failure::new(
                    Exit::Failure,
                    format!("{}: {e}", path.display()),
                ));
            }
            Err(e) => return Err(Failure::new(Exit::Failure, e.to_string())),
        };
        let bar = Bar::start(&file.name, file.size, "up");
        let result = files
            .upload(path, &file.digest, file.size, &bar.progress)
            .await;
        bar.finish(result.is_ok()).await;
        result?;
        // A fresh connection: the upload may have outlasted the server's
        // patience with an idle one.
        let mut s = session(loaded).await?;
        let seq = share(&mut s, &conv.id, file, caption.take()).await?;
        s.conn.close().await;
        eprintln!("chat: shared {} as #{seq}", path.display());
    }
    Ok(())
}

/// How long a secret conversation's command waits for the engine (its
/// first sync, the keys, the answer) beyond the transfer itself.
const SECRET_WAIT: Duration = Duration::from_secs(60);
/// Events a secret conversation's download reads back to find its file.
const SECRET_LOOKBACK: u64 = 5_000;

/// `chat upload` into a secret conversation: the engine, which holds this
/// device's keys, encrypts each file before it leaves and shares it with
/// its key inside the message.
async fn upload_secret(
    loaded: &Loaded,
    user: &str,
    token: String,
    conv: &str,
    paths: &[PathBuf],
    mut caption: Option<String>,
) -> Result<(), Failure> {
    let mut live = Live::start(loaded, user, token);
    let result = async {
        live.synced(SECRET_WAIT).await?;
        for path in paths {
            live.act(Action::Upload {
                conv: conv.to_string(),
                path: path.clone(),
                caption: caption.take(),
            });
            let mut bar: Option<Bar> = None;
            let mut uploaded = false;
            let seq = loop {
                // Progress comes every quarter second while bytes move.
                let wait = SECRET_WAIT;
                let update = tokio::time::timeout(wait, live.next())
                    .await
                    .map_err(|_| {
                        Failure::new(
                            Exit::Unreachable,
                            format!("{}: no progress within {}s", path.display(), wait.as_secs()),
                        )
                    })??;
                match update {
                    Update::Transfer(t) if t.upload => {
                        // The size is known once the file is read.
                        if bar.is_none() && t.total > 0 {
                            bar = Some(Bar::start(&t.name, t.total, "up"));
                        }
                        if let Some(b) = &bar {
                            b.progress.send_replace(t.done);
                        }
                        match t.state {
                            TransferState::Done => uploaded = true,
                            TransferState::Failed(why) => {
                                if let Some(b) = bar.take() {
                                    b.finish(false).await;
                                }
                                return Err(Failure::new(Exit::Failure, why));
                            }
                            _ => {}
                        }
                    }
                    Update::Acked { conv: c, seq, .. } if uploaded && c == conv => break seq,
                    Update::Refused { conv: c, error, .. } if c == conv => {
                        return Err(Failure::new(
                            Exit::Refused,
                            crate::client::text::clean(&error.message),
                        ));
                    }
                    _ => {}
                }
            };
            if let Some(b) = bar.take() {
                b.finish(true).await;
            }
            eprintln!("chat: shared {} as #{seq} (encrypted)", path.display());
        }
        Ok(())
    }
    .await;
    live.stop().await;
    result
}

/// Event `seq` of secret conversation `conv` as this device decrypts it.
async fn decrypted_event(
    loaded: &Loaded,
    user: &str,
    token: String,
    conv: &str,
    last_seq: u64,
    seq: u64,
) -> Result<Event, Failure> {
    let back = last_seq.saturating_sub(seq) + 1;
    if back > SECRET_LOOKBACK {
        return Err(Failure::new(
            Exit::Failure,
            format!(
                "#{seq} is more than {SECRET_LOOKBACK} events back: open it in `chat` to download it"
            ),
        ));
    }
    let mut live = Live::start(loaded, user, token);
    let found = async {
        live.synced(SECRET_WAIT).await?;
        live.act(Action::Follow {
            conv: conv.to_string(),
            last: back,
        });
        loop {
            if let Update::Events { conv: c, events } = live.next().await?
                && c == conv
                && let Some(ev) = events.into_iter().find(|e| e.seq == seq)
            {
                return Ok(ev);
            }
        }
    };
    let result = match tokio::time::timeout(SECRET_WAIT, found).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            Exit::Unreachable,
            format!("#{seq} did not arrive within {}s", SECRET_WAIT.as_secs()),
        )),
    };
    live.stop().await;
    let ev = result?;
    if let EventBody::File { file, caption, .. } = &ev.body
        && file.key.is_none()
    {
        let why = caption.clone().unwrap_or_default();
        return Err(Failure::new(
            Exit::Refused,
            format!(
                "#{seq} cannot be decrypted on this device: {}",
                crate::client::text::clean(&why)
            ),
        ));
    }
    Ok(ev)
}

async fn share(
    s: &mut SignedIn,
    conv: &str,
    file: FileInfo,
    caption: Option<String>,
) -> Result<u64, Failure> {
    let req = Request::SendFile {
        conversation_id: conv.to_string(),
        client_msg_id: new_client_msg_id(),
        file,
        caption,
        reply_to: None,
        encrypted: None,
        shares: Vec::new(),
    };
    let ok: AppendOk = s.ask(&req).await?;
    Ok(ok.seq)
}

/// `chat download TARGET SEQ [-o PATH] [--force]`.
pub(super) async fn download(
    loaded: &Loaded,
    target: &str,
    seq: u64,
    output: Option<PathBuf>,
    force: bool,
) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let conv = resolve(&mut s, target, false).await?;
    let h: HistoryOk = s
        .ask(&Request::History {
            conversation_id: conv.id.clone(),
            after: Some(seq.saturating_sub(1)),
            before: None,
            limit: Some(1),
        })
        .await?;
    let token = s.token.clone();
    s.conn.close().await;
    let ev = h
        .events
        .into_iter()
        .find(|e| e.seq == seq)
        .ok_or_else(|| Failure::new(Exit::NotFound, format!("no event #{seq} in {target}")))?;
    let ev = if conv.encrypted {
        decrypted_event(loaded, &s.user, token.clone(), &conv.id, conv.last_seq, seq).await?
    } else {
        ev
    };
    let EventBody::File { file, .. } = ev.body else {
        return Err(Failure::new(
            Exit::NotFound,
            format!("#{seq} in {target} is not a file"),
        ));
    };
    let dest = output.unwrap_or_else(|| PathBuf::from(attach::safe_name(&file.name)));
    let dest = if dest.is_dir() {
        dest.join(attach::safe_name(&file.name))
    } else {
        dest
    };
    if !force && std::fs::symlink_metadata(&dest).is_ok() {
        return Err(Failure::new(
            Exit::Failure,
            format!(
                "{} already exists: pass --force to replace it, or -o PATH",
                dest.display()
            ),
        ));
    }
    let files = file_client(loaded, &token)?;
    let bar = Bar::start(&file.name, file.size, "down");
    let result = match &file.key {
        None => {
            files
                .download(&file.digest, file.size, &dest, force, &bar.progress)
                .await
        }
        Some(key) => {
            // The ciphertext beside the destination, then the bytes.
            let sealed = sealed_path(&dest, &file.digest);
            let got = files
                .download(&file.digest, file.size, &sealed, true, &bar.progress)
                .await;
            got.and_then(|_| {
                let out = open_file(&sealed, key, &dest, force);
                let _ = std::fs::remove_file(&sealed);
                out.map(|path| crate::client::net::files::Downloaded {
                    path,
                    resumed_from: 0,
                })
                .map_err(TransferError::BadReply)
            })
        }
    };
    bar.finish(result.is_ok()).await;
    let done = result?;
    if done.resumed_from > 0 {
        eprintln!(
            "chat: resumed at {} of {}",
            human_size(done.resumed_from),
            human_size(file.size)
        );
    }
    eprintln!("chat: saved {}", done.path.display());
    Ok(())
}

/// The progress of one transfer on standard error: a bar redrawn in place
/// on a terminal, a line every few seconds otherwise.
struct Bar {
    progress: watch::Sender<u64>,
    drawer: tokio::task::JoinHandle<()>,
}

impl Bar {
    fn start(name: &str, total: u64, way: &'static str) -> Bar {
        let (progress, rx) = watch::channel(0);
        let tty = std::io::stderr().is_terminal();
        let name = crate::client::text::clean(name);
        let drawer = tokio::spawn(draw(rx, name, total, way, tty));
        Bar { progress, drawer }
    }

    async fn finish(self, ok: bool) {
        let Bar { progress, drawer } = self;
        drop(progress);
        let _ = drawer.await;
        if !ok && std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
}

async fn draw(
    mut rx: watch::Receiver<u64>,
    name: String,
    total: u64,
    way: &'static str,
    tty: bool,
) {
    let started = Instant::now();
    let every = if tty {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(5)
    };
    let mut last_line = started;
    let mut done = 0;
    loop {
        let changed = tokio::time::timeout(every, rx.changed()).await;
        if let Ok(Err(_)) = changed {
            break;
        }
        done = *rx.borrow_and_update();
        let now = Instant::now();
        if tty {
            eprint!(
                "\r{}",
                progress_line(&name, done, total, started.elapsed(), way)
            );
            let _ = std::io::stderr().flush();
        } else if now.duration_since(last_line) >= every {
            eprintln!(
                "{}",
                progress_line(&name, done, total, started.elapsed(), way)
            );
            last_line = now;
        }
    }
    let line = progress_line(&name, done, total, started.elapsed(), way);
    if tty {
        eprintln!("\r{line}");
    } else if done == total {
        eprintln!("{line}");
    }
}

/// `deploy.log  [#########-----------]  47%  22 KiB of 47 KiB  1.2 MiB/s`.
pub fn progress_line(name: &str, done: u64, total: u64, elapsed: Duration, way: &str) -> String {
    const WIDTH: u64 = 20;
    let pct = (done * 100).checked_div(total).unwrap_or(100);
    let filled = (pct * WIDTH / 100) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled)
    );
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = human_size((done as f64 / secs) as u64);
    let name: String = name.chars().take(32).collect();
    format!(
        "{way} {name}  [{bar}] {pct:>3}%  {} of {}  {rate}/s",
        human_size(done),
        human_size(total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_says_size_percent_and_rate() {
        let line = progress_line(
            "a.bin",
            512 * 1024,
            1024 * 1024,
            Duration::from_secs(1),
            "up",
        );
        assert_eq!(
            line,
            "up a.bin  [##########----------]  50%  512 KiB of 1.0 MiB  512 KiB/s"
        );
        let empty = progress_line("e", 0, 0, Duration::from_secs(1), "down");
        assert!(empty.contains("100%"), "{empty}");
    }
}
