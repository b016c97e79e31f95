//! `chat devices`, `chat safety` and `chat accept`: what this device knows
//! of a user's devices and identity key, and the trust put in it, asked of
//! the engine (which holds the keys).

use super::commands::session;
use super::live::Live;
use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::client::text::clean;
use crate::client::update::{DevicesView, IdentityNote};
use crate::client::{Action, Update};
use std::future::Future;
use std::time::Duration;

/// How long the answer may take (connecting, the first sync, the query).
const WAIT: Duration = Duration::from_secs(30);

/// An engine signed in as this account (not yet synced), and who that is.
pub(super) async fn start(loaded: &Loaded) -> Result<(Live, String), Failure> {
    let s = session(loaded).await?;
    let (me, token) = (s.user.clone(), s.token.clone());
    s.conn.close().await;
    Ok((Live::start(loaded, &me, token), me))
}

/// `work`, given at most `wait`.
pub(super) async fn bounded<T>(
    wait: Duration,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(wait, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            Exit::Unreachable,
            format!("no answer from the server within {}s", wait.as_secs()),
        )),
    }
}

/// A user name as typed: `@bob` or `bob`.
pub(super) fn bare(user: &str) -> String {
    user.trim_start_matches('@').to_string()
}

/// The devices of `user`, asked of a synced engine.
async fn devices_of(live: &mut Live, user: &str) -> Result<DevicesView, Failure> {
    live.act(Action::Devices {
        user: user.to_string(),
    });
    let view = loop {
        if let Update::Devices(v) = live.next().await?
            && v.user == user
        {
            break v;
        }
    };
    match &view.error {
        Some(e) => Err(Failure::new(Exit::Refused, clean(e))),
        None => Ok(view),
    }
}

/// The devices of `user` (the signed-in user when `None`).
async fn ask(loaded: &Loaded, user: Option<String>) -> Result<DevicesView, Failure> {
    let (mut live, me) = start(loaded).await?;
    let user = user.map(|u| bare(&u)).unwrap_or(me);
    let result = bounded(WAIT, async {
        live.synced(WAIT).await?;
        devices_of(&mut live, &user).await
    })
    .await;
    live.stop().await;
    result
}

/// Ask the engine to change the trust in `user`'s identity key with
/// `action`: its answer (a notice naming them) is the result, a success
/// when the identity update `note` comes with it.
async fn change_trust(
    live: &mut Live,
    user: &str,
    action: Action,
    note: IdentityNote,
) -> Result<String, Failure> {
    live.act(action);
    let name = clean(user);
    loop {
        let Update::Notice(said) = live.next().await? else {
            continue;
        };
        if !said.contains(&name) && !said.contains("not available") {
            eprintln!("chat: {}", clean(&said));
            continue;
        }
        // The engine publishes the notice and the update in one batch.
        let done = live
            .queued()
            .any(|x| matches!(x, Update::Identity { user: u, note: n } if u == user && *n == note));
        return if done {
            Ok(clean(&said))
        } else {
            Err(Failure::new(Exit::Failure, clean(&said)))
        };
    }
}

/// `chat accept USER`: accept their changed identity key.
pub(super) async fn accept(loaded: &Loaded, user: &str) -> Result<(), Failure> {
    let user = bare(user);
    let (mut live, _) = start(loaded).await?;
    let result = bounded(WAIT, async {
        live.synced(WAIT).await?;
        let action = Action::AcceptIdentity { user: user.clone() };
        change_trust(&mut live, &user, action, IdentityNote::Accepted).await
    })
    .await;
    live.stop().await;
    println!("{}", result?);
    Ok(())
}

/// `chat reset-identity --yes`: a new identity key for this account.
pub(super) async fn reset_identity(loaded: &Loaded, yes: bool) -> Result<(), Failure> {
    if !yes {
        return Err(Failure::new(
            Exit::Failure,
            "this replaces your identity key for good: your other devices must be verified again and your contacts see the change; run again with --yes to go ahead",
        ));
    }
    let (mut live, me) = start(loaded).await?;
    let result = bounded(WAIT, async {
        live.synced(WAIT).await?;
        live.act(Action::ResetIdentity);
        loop {
            match live.next().await? {
                Update::Identity {
                    user,
                    note: IdentityNote::Verified,
                } if user == me => {
                    return Ok(());
                }
                Update::Notice(said) if said.starts_with("no new identity key") => {
                    return Err(Failure::new(Exit::Refused, clean(&said)));
                }
                Update::Notice(said) => eprintln!("chat: {}", clean(&said)),
                _ => {}
            }
        }
    })
    .await;
    live.stop().await;
    result?;
    println!(
        "A new identity key is in place. Verify your other devices again (`chat verify --incoming` on each, `chat verify {} DEVICE` here) and ask your contacts to compare safety numbers.",
        clean(&me)
    );
    Ok(())
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

pub(super) async fn safety(loaded: &Loaded, user: &str, verified: bool) -> Result<(), Failure> {
    let user = bare(user);
    let (mut live, _) = start(loaded).await?;
    let result = bounded(WAIT, async {
        live.synced(WAIT).await?;
        let v = devices_of(&mut live, &user).await?;
        let Some(number) = &v.safety_number else {
            return Err(no_number(&v));
        };
        println!("{number}");
        if !verified {
            return Ok(None);
        }
        let action = Action::MarkVerified { user: user.clone() };
        change_trust(&mut live, &user, action, IdentityNote::Verified)
            .await
            .map(Some)
    })
    .await;
    live.stop().await;
    if let Some(said) = result? {
        println!("{said}");
    }
    Ok(())
}

fn no_number(v: &DevicesView) -> Failure {
    Failure::new(
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
    )
}
