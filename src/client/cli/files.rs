//! `chat upload` and `chat download`: files over HTTP with the stored
//! session, a progress bar on standard error when it is a terminal (plain
//! lines otherwise), and one `send_file` per uploaded path.

use super::commands::{SignedIn, resolve, session};
use super::{Exit, Failure};
use crate::client::attach::{self, human_size};
use crate::client::config::Loaded;
use crate::client::engine::actions::new_client_msg_id;
use crate::client::net::files::{FileClient, TransferError};
use crate::proto::{AppendOk, EventBody, FileInfo, HistoryOk, Request};
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
    let files = file_client(loaded, &token)?;
    let mut caption = caption.filter(|c| !c.trim().is_empty());
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
    let result = files
        .download(&file.digest, file.size, &dest, force, &bar.progress)
        .await;
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
