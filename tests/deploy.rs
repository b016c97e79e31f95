//! The example deployment in `assets/deploy/` (docs/SCALING.md) holds
//! together: chatd reads the node's configuration; HAProxy and nginx accept
//! theirs (when installed: `haproxy -c`, `nginx -t`); and both balancers
//! send traffic to the port the nodes listen on, check the health path,
//! pass the WebSocket upgrade, and keep the HTTP fallback's streams on
//! their nodes.

mod support;

use chat::server::Config;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The health check the balancers use.
const READY_PATH: &str = "/readyz";

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/deploy")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn node_config() -> Config {
    Config::from_file(&deploy("chatd-node.toml")).unwrap_or_else(|e| panic!("{e}"))
}

/// Lines without comments, trimmed, empty ones dropped.
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// HAProxy's backends: name → server addresses.
fn haproxy_backends(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in lines(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["backend", name, ..] => out.push((name.to_string(), Vec::new())),
            ["frontend" | "defaults" | "global" | "listen", ..] => {}
            ["server", _, addr, ..] => out
                .last_mut()
                .expect("servers are inside a backend")
                .1
                .push(addr.to_string()),
            _ => {}
        }
    }
    out
}

/// The lines of the HAProxy section `backend NAME`.
fn haproxy_section(text: &str, name: &str) -> Vec<String> {
    let all = lines(text);
    let start = all
        .iter()
        .position(|l| *l == format!("backend {name}"))
        .unwrap_or_else(|| panic!("no backend {name}"));
    all[start + 1..]
        .iter()
        .take_while(|l| {
            !["backend ", "frontend ", "defaults", "global", "listen "]
                .iter()
                .any(|s| l.starts_with(s))
        })
        .cloned()
        .collect()
}

/// nginx's upstreams: name → (their lines, server addresses).
fn nginx_upstreams(text: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let all = lines(text);
    let mut i = 0;
    while i < all.len() {
        if let Some(name) = all[i]
            .strip_prefix("upstream ")
            .and_then(|r| r.strip_suffix('{'))
        {
            let mut body = Vec::new();
            let mut servers = Vec::new();
            i += 1;
            while i < all.len() && all[i] != "}" {
                if let Some(rest) = all[i].strip_prefix("server ") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    servers.push(addr.trim_end_matches(';').to_string());
                }
                body.push(all[i].clone());
                i += 1;
            }
            out.push((name.trim().to_string(), body, servers));
        }
        i += 1;
    }
    out
}

/// The nodes as the example configures them: `10.0.0.11..=13` on the port
/// of chatd-node.toml's `listen`.
fn nodes() -> BTreeSet<String> {
    let port = node_config().listen.port();
    (11..=13).map(|n| format!("10.0.0.{n}:{port}")).collect()
}

#[test]
fn the_node_configuration_is_chatds_and_names_postgres_and_redis() {
    let c = node_config();
    let store = c.store.url.as_deref().expect("[store] url");
    assert!(store.starts_with("postgres://"), "{store}");
    let bus = c.bus.url.as_deref().expect("[bus] url");
    assert!(bus.starts_with("redis://"), "{bus}");
    assert_eq!(c.data.as_deref(), Some(Path::new("/var/lib/chatd")));
    assert!(
        nodes().contains(&c.listen.to_string()),
        "the node listens where the balancers send: {}",
        c.listen
    );
    assert!(
        !c.net.trusted_proxies.is_empty(),
        "the balancer is a trusted proxy"
    );
    assert!(c.bus.presence_ttl_secs > 0);
    c.check().unwrap_or_else(|e| panic!("{e}"));
}

/// A configuration that parses but cannot work stops chatd before it
/// serves, with the key to change; the same file made right is shown.
#[test]
fn chatd_refuses_a_configuration_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatd.toml");
    let show = |text: &str| {
        std::fs::write(&file, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("--config")
            .arg(&file)
            .arg("--data")
            .arg(dir.path())
            .arg("--print-config")
            .output()
            .unwrap()
    };
    let out = show("[limits]\nping_interval_secs = 60\nidle_timeout_secs = 60\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("chatd: [limits] idle_timeout_secs: 60 must be at least twice"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = show("[limits]\nping_interval_secs = 60\nidle_timeout_secs = 120\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("idle_timeout_secs = 120"));
}

#[test]
fn haproxy_sends_every_backend_to_the_nodes_and_checks_readiness() {
    let text = read("haproxy.cfg");
    let backends = haproxy_backends(&text);
    let names: Vec<&str> = backends.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["chatd", "chatd_fallback"]);
    for (name, servers) in &backends {
        let set: BTreeSet<String> = servers.iter().cloned().collect();
        assert_eq!(set, nodes(), "backend {name}");
        let section = haproxy_section(&text, name);
        assert!(
            section
                .iter()
                .any(|l| l.starts_with("http-check send meth GET uri ")
                    && l.contains(&format!(" uri {READY_PATH} "))),
            "backend {name} checks {READY_PATH}: {section:?}"
        );
        assert!(
            section.iter().any(|l| l == "http-check expect status 200"),
            "{name}"
        );
        assert!(
            section
                .iter()
                .any(|l| l.starts_with("default-server") && l.contains("check")),
            "{name}: every server checked"
        );
        assert!(
            !section.iter().any(|l| l.starts_with("cookie")),
            "{name}: no sticky cookie"
        );
    }
    let fallback = haproxy_section(&text, "chatd_fallback");
    for want in [
        "stick on req.hdr(X-Chat-Stream)",
        "stick store-response res.hdr(X-Chat-Stream)",
    ] {
        assert!(fallback.iter().any(|l| l == want), "{want}");
    }
    let all = lines(&text);
    assert!(all.iter().any(|l| l.starts_with("timeout tunnel")));
    assert!(all.iter().any(|l| l == "option forwardfor"));
    assert!(
        all.iter()
            .any(|l| l.starts_with("use_backend chatd_fallback")
                && l.contains("/stream")
                && l.contains("/rpc"))
    );
}

#[test]
fn nginx_sends_every_upstream_to_the_nodes_and_passes_the_upgrade() {
    let text = read("nginx.conf");
    let upstreams = nginx_upstreams(&text);
    let names: Vec<&str> = upstreams.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["chatd", "chatd_fallback"]);
    for (name, body, servers) in &upstreams {
        let set: BTreeSet<String> = servers.iter().cloned().collect();
        assert_eq!(set, nodes(), "upstream {name}");
        assert!(!body.iter().any(|l| l.starts_with("sticky")), "{name}");
    }
    assert!(
        upstreams[1]
            .1
            .iter()
            .any(|l| l == "hash $remote_addr consistent;")
    );
    let all = lines(&text);
    for want in [
        "location = /ws {",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_http_version 1.1;",
        "proxy_buffering off;",
        "location ~ ^/(healthz|readyz)$ {",
        "proxy_pass http://chatd_fallback;",
    ] {
        assert!(all.iter().any(|l| l == want), "nginx.conf lacks {want:?}");
    }
    // Uploads as large as the nodes take pass the proxy.
    let body_max = all
        .iter()
        .find_map(|l| l.strip_prefix("client_max_body_size "))
        .and_then(|v| v.trim_end_matches(';').strip_suffix('m'))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("client_max_body_size in MiB");
    assert!(body_max * 1024 * 1024 >= node_config().files.max_upload_bytes);
}

#[test]
fn the_unit_starts_chatd_on_the_node_configuration_after_the_shared_mount() {
    let unit = lines(&read("chatd-node.service"));
    let exec = unit
        .iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains("chatd --config /etc/chatd/chatd.toml"),
        "{exec}"
    );
    let data = node_config().data.expect("data");
    assert!(
        unit.iter()
            .any(|l| *l == format!("RequiresMountsFor={}/files", data.display())),
        "the unit waits for the shared files mount"
    );
    assert!(
        unit.iter()
            .any(|l| *l == format!("ReadWritePaths={}", data.display()))
    );
}

#[test]
fn scaling_md_shows_every_deployment_file() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/SCALING.md"))
            .expect("docs/SCALING.md");
    for entry in std::fs::read_dir(deploy("")).expect("assets/deploy") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        assert!(
            doc.contains(&format!("assets/deploy/{name}")),
            "docs/SCALING.md does not show {name}"
        );
    }
    assert!(doc.contains(READY_PATH));
}

/// `name` on the PATH or in the system directories.
fn binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A self-signed certificate and key for `chat.example.org` in `dir`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["chat.example.org".to_string()])
        .expect("a certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
    (cert, key)
}

/// Run `cmd`, at most 30 s; its success and its output.
fn run(mut cmd: Command) -> (bool, String) {
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn haproxy_accepts_its_configuration() {
    let Some(haproxy) = binary("haproxy") else {
        eprintln!("skipped: no haproxy here; the structural checks stand");
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(temp.path());
    // HAProxy takes certificate and key in one file.
    let both = temp.path().join("chat.example.org.pem");
    let pem = std::fs::read_to_string(&cert).expect("cert")
        + &std::fs::read_to_string(&key).expect("key");
    std::fs::write(&both, pem).expect("write");
    let text = read("haproxy.cfg").replace(
        "/etc/haproxy/certs/chat.example.org.pem",
        &both.display().to_string(),
    );
    let cfg = temp.path().join("haproxy.cfg");
    std::fs::write(&cfg, text).expect("write");
    let mut cmd = Command::new(haproxy);
    cmd.arg("-c").arg("-f").arg(&cfg);
    let (ok, out) = run(cmd);
    assert!(ok, "haproxy -c refuses assets/deploy/haproxy.cfg:\n{out}");
}

#[test]
fn nginx_accepts_its_configuration() {
    let Some(nginx) = binary("nginx") else {
        eprintln!("skipped: no nginx here; the structural checks stand");
        return;
    };
    let temp = tempfile::tempdir().expect("temp dir");
    let (cert, key) = certificate(temp.path());
    let dir = temp.path().display().to_string();
    let mut text = read("nginx.conf")
        .replace(
            "/etc/letsencrypt/live/chat.example.org/fullchain.pem",
            &cert.display().to_string(),
        )
        .replace(
            "/etc/letsencrypt/live/chat.example.org/privkey.pem",
            &key.display().to_string(),
        )
        .replace("/var/log/nginx/", &format!("{dir}/"));
    // Not as root, nginx cannot use its system temp dirs: give it some.
    let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {dir}/{t};\n"))
        .collect();
    text = text.replacen("http {\n", &format!("http {{\n{temps}"), 1);
    let cfg = temp.path().join("nginx.conf");
    std::fs::write(&cfg, text).expect("write");
    let mut cmd = Command::new(nginx);
    cmd.arg("-t")
        .arg("-c")
        .arg(&cfg)
        .arg("-p")
        .arg(temp.path())
        .arg("-e")
        .arg("stderr")
        .arg("-g")
        .arg(format!("pid {dir}/nginx.pid;"));
    let (ok, out) = run(cmd);
    assert!(ok, "nginx -t refuses assets/deploy/nginx.conf:\n{out}");
}

/// The balancers' health check is served.
#[tokio::test]
async fn a_node_answers_the_balancers_health_check() {
    let server = support::Server::start();
    // On PostgreSQL and Redis, ready once both answer (moments after start).
    let deadline = std::time::Instant::now() + support::CLIENT_WAIT;
    loop {
        let (status, body) = server.http("GET", READY_PATH).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
