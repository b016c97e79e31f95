//! Which store and bus the test servers run on. By default each server has
//! the embedded SQLite database in its data dir. With `CHATD_TEST_PG` set to
//! a PostgreSQL URL (`postgres://USER:PASSWORD@HOST:PORT/DB`, a role that
//! may create databases), each data dir gets a fresh database of its own
//! (`chatd_t_<pid>_<random>`): a server started again on the same data dir
//! comes back on the same database. With `CHATD_TEST_REDIS` set as well
//! (`redis://HOST:PORT`), the servers share events through that Redis.
//!
//! Databases are dropped when the server that made them (or its [`World`])
//! is dropped; those of data dirs a test handed in are dropped once their
//! directory is gone, or by the next test process on this machine.
//!
//! [`World`]: super::World

use chat::server::Config;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The PostgreSQL server to make test databases on.
pub const PG_VAR: &str = "CHATD_TEST_PG";
/// The Redis the test servers use as their bus.
pub const REDIS_VAR: &str = "CHATD_TEST_REDIS";

/// How long one administrative statement (create, drop) may take.
const ADMIN_WAIT: Duration = Duration::from_secs(60);

/// The prefix of every database the tests make.
const PREFIX: &str = "chatd_t_";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `CHATD_TEST_PG`, when set.
pub fn pg_base() -> Option<String> {
    var(PG_VAR)
}

/// `CHATD_TEST_REDIS`, when set.
pub fn redis_url() -> Option<String> {
    var(REDIS_VAR)
}

/// Whether test servers keep their data in PostgreSQL.
pub fn on_postgres() -> bool {
    pg_base().is_some()
}

/// For a test that can only mean something on SQLite: true (after saying
/// why on stderr) when the servers run on PostgreSQL, so the test returns.
pub fn skip_on_postgres(why: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {why}");
        return true;
    }
    false
}

/// Point `config` at the store and bus of `dir`: its own PostgreSQL
/// database (and the test Redis) when `CHATD_TEST_PG` is set; otherwise
/// nothing changes and the server uses SQLite in `dir`.
pub fn apply(dir: &Path, config: &mut Config) {
    if let Some(url) = store_url_for(dir) {
        config.store.url = Some(url);
        config.bus.url = redis_url();
    }
}

/// The command-line flags that do what [`apply`] does, for a `chatd` child.
pub fn chatd_args(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(url) = store_url_for(dir) {
        args.extend(["--store".to_string(), url]);
        if let Some(bus) = redis_url() {
            args.extend(["--bus".to_string(), bus]);
        }
    }
    args
}

/// Data dirs and the databases made for them, in this process.
static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());

/// Whether this process has swept the leftovers of earlier ones.
static SWEPT: Mutex<bool> = Mutex::new(false);

/// The database URL of `dir`, made on first use; `None` without
/// `CHATD_TEST_PG`.
pub fn store_url_for(dir: &Path) -> Option<String> {
    let base = pg_base()?;
    let mut dbs = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, name)) = dbs.iter().find(|(d, _)| d == dir) {
        return Some(database_url(&base, name));
    }
    sweep_leftovers(&base);
    // The databases of data dirs that are gone belong to finished tests. A
    // data dir the server has yet to make is not gone: its parent (the
    // test's temp dir) must be gone too.
    let gone = |d: &Path| !d.exists() && !d.parent().is_some_and(Path::exists);
    let (gone, kept): (Vec<_>, Vec<_>) = dbs.drain(..).partition(|(d, _)| gone(d));
    *dbs = kept;
    for (_, name) in gone {
        drop_database(&name);
    }
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    create_database(&name);
    dbs.push((dir.to_path_buf(), name.clone()));
    Some(database_url(&base, &name))
}

/// A database of its own for a test that sets up its servers itself (the
/// nodes of a cluster share it). Dropped with the returned guard.
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    /// `None` without `CHATD_TEST_PG`.
    pub fn create() -> Option<Database> {
        let base = pg_base()?;
        sweep_leftovers(&base);
        let name = format!(
            "{PREFIX}{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        create_database(&name);
        let url = database_url(&base, &name);
        Some(Database { name, url })
    }

    /// Run `sql` (one statement) on this database; the first column of
    /// each row it returns, as text.
    pub fn query(&self, sql: &str) -> Vec<Option<String>> {
        run_sql(&self.url, vec![sql.to_string()])
            .unwrap_or_else(|e| panic!("{e}"))
            .remove(0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        drop_database(&self.name);
    }
}

/// Drop the database made for `dir`, if any (best-effort).
pub fn release(dir: &Path) {
    let name = {
        let mut dbs = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = dbs.iter().position(|(d, _)| d == dir) else {
            return;
        };
        dbs.remove(at).1
    };
    drop_database(&name);
}

/// `base` with its database name replaced by `name` (user, password, host,
/// port and parameters kept).
pub fn database_url(base: &str, name: &str) -> String {
    let Some(scheme_end) = base.find("://").map(|i| i + 3) else {
        panic!("{PG_VAR} must be a URL (postgres://USER:PASSWORD@HOST:PORT/DB), not {base:?}");
    };
    let rest = &base[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let params = rest.find('?').map(|i| &rest[i..]).unwrap_or("");
    format!(
        "{}{}/{name}{params}",
        &base[..scheme_end],
        &rest[..authority_end]
    )
}

fn create_database(name: &str) {
    let base = pg_base().expect("CHATD_TEST_PG");
    // Two CREATE DATABASEs at once may find the template busy: try again.
    let mut last = String::new();
    for attempt in 0..5 {
        match run_sql(&base, vec![format!("CREATE DATABASE {name}")]) {
            Ok(_) => return,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200 * (attempt + 1)));
    }
    panic!("cannot create the test database {name} on {PG_VAR}: {last}");
}

/// Drop `name`, ending its connections (best-effort: a failure is reported,
/// not fatal).
fn drop_database(name: &str) {
    let Some(base) = pg_base() else { return };
    if let Err(e) = run_sql(
        &base,
        vec![format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
    ) {
        eprintln!("could not drop the test database {name}: {e}");
    }
}

/// Once per process: drop the test databases of processes on this machine
/// that have ended (a test that panicked, or data dirs handed in by tests).
/// Only where the server is on this machine, whose process ids we can see.
fn sweep_leftovers(base: &str) {
    let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
    if *swept {
        return;
    }
    *swept = true;
    if !is_local(base) {
        return;
    }
    let sql = format!("SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'");
    let Ok(mut names) = run_sql(base, vec![sql]) else {
        return;
    };
    for name in names.remove(0).into_iter().flatten() {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            drop_database(&name);
        }
    }
}

/// Whether `url`'s PostgreSQL runs on this machine.
fn is_local(url: &str) -> bool {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(h) => {
            matches!(h.as_str(), "127.0.0.1" | "localhost" | "::1" | "[::1]")
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    })
}

/// Run `statements` in order on `url`, on a thread and runtime of their own
/// (callers may be inside a test's runtime, or in none); for each, the
/// first column of the rows it returned.
pub fn run_sql(url: &str, statements: Vec<String>) -> Result<Vec<Vec<Option<String>>>, String> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let work = async {
                let (client, conn) = tokio_postgres::connect(&url, NoTls)
                    .await
                    .map_err(|e| format!("cannot connect to {url}: {e}"))?;
                let conn = tokio::spawn(conn);
                let mut out = Vec::new();
                for sql in &statements {
                    let messages = client
                        .simple_query(sql)
                        .await
                        .map_err(|e| format!("{sql}: {e}"))?;
                    out.push(
                        messages
                            .iter()
                            .filter_map(|m| match m {
                                SimpleQueryMessage::Row(row) => Some(row.get(0).map(String::from)),
                                _ => None,
                            })
                            .collect(),
                    );
                }
                drop(client);
                conn.abort();
                Ok(out)
            };
            tokio::time::timeout(ADMIN_WAIT, work)
                .await
                .map_err(|_| format!("no answer from {url} within {ADMIN_WAIT:?}"))?
        })
    })
    .join()
    .map_err(|_| "the SQL thread panicked".to_string())?
}
