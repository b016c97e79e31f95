//! `chat` as a subprocess: a [`Home`] per user (XDG dirs and HOME in a temp
//! dir, no keyring), commands bounded by a timeout.

use super::PASSWORD;
use std::path::PathBuf;
use std::time::Duration;

/// A home for one user of the `chat` binary: XDG config/data dirs and HOME
/// in a temp dir, the keyring disabled.
pub struct Home {
    pub root: PathBuf,
    pub server: String,
}

/// What a `chat` subprocess did.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// How long one `chat` command may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

impl Home {
    pub fn new(root: PathBuf, server: &str) -> Home {
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        Home {
            root,
            server: server.to_string(),
        }
    }

    pub fn config_dir(&self) -> PathBuf {
        self.root.join("config")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The token file the client falls back to without a keyring.
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir().join("chat").join("credentials.toml")
    }

    /// The environment a `chat` process of this home runs with.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_CONFIG_HOME".into(),
                self.config_dir().display().to_string(),
            ),
            (
                "XDG_DATA_HOME".into(),
                self.data_dir().display().to_string(),
            ),
            ("HOME".into(), self.root.display().to_string()),
            ("CHAT_NO_KEYRING".into(), "1".into()),
            // No graphics query to the terminal under tests.
            ("CHAT_NO_TERMINAL_QUERY".into(), "1".into()),
        ]
    }

    /// A `chat` command for this home, not started.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chat"));
        cmd.arg("--server").arg(&self.server).args(args);
        cmd.env_remove("CHAT_SERVER")
            .env_remove("CHAT_USER")
            .env_remove("RUST_LOG")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR");
        for (k, v) in self.envs() {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run `chat --server S ARGS` with `stdin`, bounded by [`CLI_TIMEOUT`].
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            let _ = input.write_all(text.as_bytes());
        }
        drop(input);
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(CLI_TIMEOUT) {
            Ok(out) => out.expect("wait for chat"),
            Err(_) => {
                // SAFETY: kill(2) on the pid of our own child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
                panic!("chat {args:?} did not finish within {CLI_TIMEOUT:?}");
            }
        };
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and insist on exit code 0.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let r = self.run(args, stdin);
        assert_eq!(r.code, 0, "chat {args:?} failed: {r:?}");
        r
    }

    /// `register USER --password-stdin`.
    pub fn register(&self, user: &str) -> Ran {
        self.ok(
            &["register", user, "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        )
    }
}
