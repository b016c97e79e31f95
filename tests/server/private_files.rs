//! Files that hold secrets are readable by their owner only: chatd's data
//! dir and database (password hashes, token digests, every message), the
//! client's cache (the user's history).

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn chatd_makes_its_data_dir_and_database_private() {
    if crate::support::skip_on_postgres("checks the modes of chatd.db and its WAL") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("chatd-data");
    let server = Server::start_in(&data);
    let mut a = server.user("alice").await;
    a.ok(serde_json::json!({"type":"conversations"})).await;
    assert_eq!(mode(&data), 0o700, "data dir");
    for f in ["chatd.db", "chatd.db-wal", "chatd.db-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
}

#[tokio::test]
async fn an_existing_database_is_made_private_at_start() {
    if crate::support::skip_on_postgres("checks the mode of chatd.db") {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("d");
    {
        let mut server = Server::start_in(&data);
        server.user("alice").await;
        server.stop().await;
    }
    std::fs::set_permissions(
        data.join("chatd.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let server = Server::start_in(&data);
    server.user("bob").await;
    assert_eq!(mode(&data.join("chatd.db")), 0o600);
}

#[test]
fn the_client_cache_is_private() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("cache/alice.db");
    let _cache = chat::client::cache::Cache::open(&path).unwrap();
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
}
