//! A tmux server of a test's own (its own socket), for driving terminal
//! programs as a person does: start them in sessions, type, read the
//! screen. Every tmux call is bounded; the server is killed on drop.

use super::Home;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one tmux command may take.
const CALL: Duration = Duration::from_secs(10);

/// Whether tmux is installed (tests skip, with a notice, when not).
pub fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub struct TmuxServer {
    pub socket: String,
}

impl TmuxServer {
    /// A server on a fresh socket named after `prefix`.
    pub fn new(prefix: &str) -> TmuxServer {
        TmuxServer {
            socket: format!("{prefix}-{}-{}", std::process::id(), super::unique()),
        }
    }

    /// Run `tmux ARGS` on this server; a call that hangs fails the test.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let child = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tmux");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(CALL) {
            Ok(out) => out.expect("tmux output"),
            Err(_) => {
                // SAFETY: kill(2) on our own child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                panic!("tmux {args:?} hung");
            }
        }
    }

    /// Run `command` (a shell line) in a new detached session `name` of
    /// `cols`×`rows`.
    pub fn launch(&self, name: &str, cols: u16, rows: u16, command: &str) {
        let (cols, rows) = (cols.to_string(), rows.to_string());
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &cols,
            "-y",
            &rows,
            command,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
    }

    /// Type `keys` (tmux key names) into session `target`.
    pub fn keys(&self, target: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", target];
        args.extend_from_slice(keys);
        let out = self.cmd(&args);
        assert!(out.status.success(), "send-keys {keys:?}: {out:?}");
    }

    /// The visible screen of `target` (wrapped lines joined when `join`).
    pub fn screen(&self, target: &str, join: bool) -> String {
        let mut args = vec!["capture-pane", "-p"];
        if join {
            args.push("-J");
        }
        args.extend(["-t", target]);
        let out = self.cmd(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll `target`'s screen until `cond` holds, at most `timeout`; the
    /// last screen.
    pub fn wait(
        &self,
        target: &str,
        join: bool,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen(target, join);
            if cond(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!("timed out waiting for {what} on {target}'s screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(["kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `env -u …` and the variables of `home`, to start a `chat` of it with:
/// the variables the test run may have set are left out.
pub fn home_env(home: &Home) -> String {
    let mut env =
        String::from("env -u CHAT_SERVER -u CHAT_USER -u RUST_LOG -u DBUS_SESSION_BUS_ADDRESS ");
    for (k, v) in home.envs() {
        env.push_str(&format!("{k}='{v}' "));
    }
    env
}
