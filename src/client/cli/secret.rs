//! `chat devices` and `chat safety`: what this device knows of a user's
//! devices and identity key, asked of the engine (which holds the keys).

use super::commands::session;
use super::live::Live;
use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::client::text::clean;
use crate::client::update::DevicesView;
use crate::client::{Action, Update};
use std::time::Duration;

/// How long the answer may take (connecting, the first sync, the query).
const WAIT: Duration = Duration::from_secs(30);

/// The devices of `user` (the signed-in user when `None`).
async fn ask(loaded: &Loaded, user: Option<String>) -> Result<DevicesView, Failure> {
    let s = session(loaded).await?;
    let (me, token) = (s.user.clone(), s.token.clone());
    s.conn.close().await;
    let user = user
        .map(|u| u.trim_start_matches('@').to_string())
        .unwrap_or_else(|| me.clone());
    let mut live = Live::start(loaded, &me, token);
    let answer = async {
        live.synced(WAIT).await?;
        live.act(Action::Devices { user: user.clone() });
        loop {
            if let Update::Devices(v) = live.next().await?
                && v.user == user
            {
                return Ok(v);
            }
        }
    };
    let result = match tokio::time::timeout(WAIT, answer).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            Exit::Unreachable,
            format!("no answer from the server within {}s", WAIT.as_secs()),
        )),
    };
    live.stop().await;
    let view = result?;
    match &view.error {
        Some(e) => Err(Failure::new(Exit::Refused, clean(e))),
        None => Ok(view),
    }
}

pub(super) async fn devices(
    loaded: &Loaded,
    user: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let v = ask(loaded, user).await?;
    if json {
        let devices: Vec<serde_json::Value> = v
            .devices
            .iter()
            .map(|d| {
                serde_json::json!({
                    "device_id": d.device_id,
                    "name": d.name,
                    "fingerprint": d.fingerprint,
                    "certified": d.certified,
                    "verified": d.verified,
                    "this_device": d.this_device,
                })
            })
            .collect();
        let out = serde_json::json!({
            "user": v.user,
            "identity_key": v.identity_key,
            "trust": v.trust,
            "safety_number": v.safety_number,
            "devices": devices,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{}: identity key {} ({})",
        clean(&v.user),
        v.identity_key.as_deref().unwrap_or("none"),
        v.trust
    );
    if v.devices.is_empty() {
        println!("  no devices with keys");
    }
    for d in &v.devices {
        let mut marks = Vec::new();
        marks.push(if d.certified {
            "certified"
        } else {
            "NOT certified"
        });
        if d.verified {
            marks.push("verified");
        }
        if d.this_device {
            marks.push("this device");
        }
        println!(
            "  {}  {}  {}  {}",
            d.device_id,
            if d.name.is_empty() {
                "-".to_string()
            } else {
                clean(&d.name)
            },
            d.fingerprint,
            marks.join(", ")
        );
    }
    Ok(())
}

pub(super) async fn safety(loaded: &Loaded, user: &str) -> Result<(), Failure> {
    let v = ask(loaded, Some(user.to_string())).await?;
    match &v.safety_number {
        Some(n) => {
            println!("{n}");
            Ok(())
        }
        None => Err(Failure::new(
            Exit::NotFound,
            format!(
                "no safety number with {}: {}",
                clean(&v.user),
                if v.identity_key.is_none() {
                    "they have no identity key yet (they have not used secret conversations)"
                } else {
                    "this device does not hold your identity key yet"
                }
            ),
        )),
    }
}
