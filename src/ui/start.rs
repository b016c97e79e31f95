//! Starting the full-screen client: find (or start) a server, start a client
//! through [`crate::client::spawn`] (which draws from the cache before the
//! network connects), then run the UI beside it until the user quits.

use crate::client::config::{DEFAULT_SERVER, Loaded, TerminalNotify};
use crate::client::credentials::TokenStore;
use crate::client::engine::Privacy;
use crate::client::net::healthy;
use crate::client::net::{Credentials, NetConfig};
use crate::client::paths::Paths;
use crate::client::{ClientOptions, spawn};
use crate::ui::{self, App, Model, UiEvent};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Start a local chatd in the background (a detached `chat server`) with
/// its data and log in `data`. Returns a line to show the user.
pub async fn start_local_server(data: Option<PathBuf>) -> Result<String, String> {
    let data = data.ok_or("no data directory for a local server")?;
    crate::private::dir(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let log_path = data.join("chatd.log");
    crate::private::file(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    // A server of one's own on loopback: anyone on this machine may register.
    cmd.args([
        "server",
        "--registration",
        "open",
        "--listen",
        DEFAULT_SERVER,
        "--data",
    ])
    .arg(&data)
    .stdin(std::process::Stdio::null())
    .stdout(log)
    .stderr(err_log);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group: Ctrl-C in this terminal does not stop it.
        cmd.process_group(0);
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start a local server: {e}"))?;
    for _ in 0..100 {
        if healthy(DEFAULT_SERVER).await {
            return Ok(format!(
                "started a local chatd on {DEFAULT_SERVER} (data in {}, log in {})",
                data.display(),
                log_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "the local server did not start; see {}",
        log_path.display()
    ))
}

/// Run the TUI until the user quits. `local_data` is where a local server
/// started on the user's behalf keeps its data.
pub async fn run(loaded: Loaded, local_data: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = loaded.config.clone();
    let server = cfg.server.clone();
    let mut notice = None;
    if !loaded.server_chosen() && cfg.autostart_server && !healthy(&server).await {
        match start_local_server(local_data).await {
            Ok(line) => notice = Some(line),
            Err(e) => notice = Some(e),
        }
    }

    // Cache first: the screen is rebuilt from the cache of the last account
    // before the network connects.
    let tokens = TokenStore::new(TokenStore::default_file());
    let paths = Paths::default();
    let user = Some(cfg.user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| paths.last_user(&server));
    let token = user
        .as_ref()
        .and_then(|u| tokens.load(u, &server))
        .map(|(t, _)| t);
    let model = Model {
        server: server.clone(),
        needs_login: token.is_none(),
        me: user.clone().filter(|_| token.is_some()).unwrap_or_default(),
        notice,
        ..Model::default()
    };
    let mut net = NetConfig::new(&server, &cfg.device);
    net.insecure = cfg.insecure;
    net.ca_file = cfg.ca_file.clone();
    net.transport = cfg.transport;
    let mut opts = ClientOptions::interactive(
        net,
        user.filter(|_| token.is_some()),
        token.map(Credentials::Token),
        tokens,
        paths,
    );
    opts.privacy = Privacy {
        typing: cfg.privacy.send_typing,
        read_receipts: cfg.privacy.send_read_receipts,
    };
    let client = spawn(opts);
    let (ui_tx, mut ui_rx) = tokio::sync::mpsc::channel::<UiEvent>(1024);
    let action_tx = client.actions.clone();
    forward_updates(client.updates, ui_tx.clone());

    let mut app = App::new(model, Instant::now());
    app.markup.hyperlinks = cfg.ui.hyperlinks;
    if let Ok(theme) = theme_of(&cfg.ui.theme) {
        app.theme = theme;
    }
    if !cfg.keys.is_empty() {
        match ui::keys::KeyMap::from_table(&cfg.keys) {
            Ok(k) => app.keymap = k,
            Err(e) => app.model.notice = Some(format!("key bindings: {e}")),
        }
    }
    let n = &cfg.notifications;
    let any_channel = n.desktop || n.bell || n.terminal != TerminalNotify::Off;
    app.notifier = ui::notify::Notifier::new(any_channel);
    app.notifier.mentions_only = cfg.notifications.mentions_only;
    let sink = ui::notify_sink::NotifySink::new(
        ui::notify_sink::SinkConfig {
            desktop: cfg.notifications.desktop,
            bell: cfg.notifications.bell,
            terminal: cfg.notifications.terminal,
        },
        Some(ui_tx.clone()),
    );

    let mut guard = ui::terminal::setup()?;
    // Before anything reads the terminal's input: the graphics query reads
    // its answer there (bounded by a short timeout).
    let wanted = cfg.ui.images == crate::client::config::ImagesSetting::Auto;
    if let Some(picker) = ui::images::detect(wanted) {
        app.images = ui::images::Images::with_picker(picker);
    }
    spawn_signal_restore();
    let _input = ui::run::spawn_input(ui_tx, Duration::from_millis(250));
    let result = ui::run::run(
        &mut guard.terminal,
        &mut app,
        &mut ui_rx,
        &action_tx,
        Some(&sink),
    )
    .await;
    drop(guard);
    ui::terminal::restore();
    let _ = action_tx.send(ui::Action::Quit);
    let _ = tokio::time::timeout(Duration::from_secs(2), client.task).await;
    result.map_err(Into::into)
}

/// Hand the engine's batches to the UI loop's channel.
fn forward_updates(
    mut updates: tokio::sync::mpsc::Receiver<Vec<crate::client::Update>>,
    ui: tokio::sync::mpsc::Sender<UiEvent>,
) {
    tokio::spawn(async move {
        while let Some(batch) = updates.recv().await {
            if ui.send(UiEvent::Engine(batch)).await.is_err() {
                return;
            }
        }
    });
}

fn theme_of(name: &str) -> Result<ui::theme::Theme, String> {
    match ui::theme::Theme::builtin(name) {
        Ok(t) => Ok(t),
        Err(_) => {
            let text = std::fs::read_to_string(name).map_err(|e| e.to_string())?;
            ui::theme::Theme::builtin("dark")
                .map_err(|e| e.to_string())?
                .overridden(&text)
                .map_err(|e| e.to_string())
        }
    }
}

/// Restore the terminal and exit on SIGTERM or SIGHUP.
fn spawn_signal_restore() {
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        ui::terminal::restore();
        std::process::exit(143);
    });
}
