//! `chatd migrate`: bring a PostgreSQL database to this chatd's schema, or
//! move an embedded server's data into one (`--from DATA_DIR`).

use super::config::Config;
use crate::store::{Kind, kind_of, pg, redact};
use std::path::PathBuf;

/// Run `chatd migrate`; returns the exit code.
pub async fn run(config: &Config, from: Option<PathBuf>, to: Option<String>) -> i32 {
    match run_inner(config, from, to).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("chatd migrate: {e}");
            1
        }
    }
}

async fn run_inner(
    config: &Config,
    from: Option<PathBuf>,
    to: Option<String>,
) -> Result<(), String> {
    let url = to.or_else(|| config.store.url.clone()).ok_or(
        "name the PostgreSQL database: --to postgres://USER@HOST/DB (or --store, or [store] url)",
    )?;
    if kind_of(Some(&url)).map_err(|e| e.to_string())? != Kind::Postgres {
        return Err("the target must be a postgres:// URL".into());
    }
    let shown = redact(&url);
    match from {
        None => {
            let version = pg::migrate(&url).await.map_err(|e| e.to_string())?;
            println!("{shown}: schema at version {version}");
        }
        Some(dir) => {
            println!("copying {} into {shown} …", dir.display());
            let copied = pg::copy::from_sqlite(&dir, &url)
                .await
                .map_err(|e| e.to_string())?;
            println!("{copied}");
            println!("done: start chatd with --store {shown}");
        }
    }
    Ok(())
}
