//! Bots and webhooks on the command line: `chat admin bot create|list|token`
//! (server admins) and `chat webhook create|list|revoke` (a group's or
//! channel's admins). A bot's token and a webhook's URL are printed once,
//! alone on standard output, so that a script can capture them.

use super::account::refused;
use super::commands::{resolve, session};
use super::{BotWhat, Failure, WebhookWhat};
use crate::client::accounts::ago;
use crate::client::config::Loaded;
use crate::client::net::hook_url;
use crate::client::text::clean;
use crate::proto::{AccountsOk, BotOk, Request, WebhookOk, WebhooksOk, now_millis};

pub(super) async fn bot(loaded: &Loaded, what: BotWhat) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let only = "only an admin may manage bots";
    match what {
        BotWhat::Create { name } => {
            let reply: BotOk = s
                .conn
                .request(&Request::AdminCreateBot { username: name })
                .await
                .map_err(|e| refused(e, only))?
                .parse()
                .map_err(|e| Failure::new(super::Exit::Failure, e.to_string()))?;
            eprintln!(
                "Created the bot {}; its token (shown once; pass it as CHAT_TOKEN):",
                clean(&reply.user.username)
            );
            println!("{}", reply.token);
        }
        BotWhat::Token { name } => {
            let reply: BotOk = s
                .conn
                .request(&Request::AdminBotToken { username: name })
                .await
                .map_err(|e| refused(e, only))?
                .parse()
                .map_err(|e| Failure::new(super::Exit::Failure, e.to_string()))?;
            eprintln!(
                "{} has a new token; the old one no longer works:",
                clean(&reply.user.username)
            );
            println!("{}", reply.token);
        }
        BotWhat::List { json } => {
            let bots = s
                .all_pages(
                    Some(only),
                    |after| Request::AdminBots { after },
                    |p: AccountsOk| (p.users, p.next),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&bots).unwrap_or_default());
            } else {
                let now = now_millis();
                for b in &bots {
                    let seen = b.last_seen.map_or("never".into(), |t| ago(now, t));
                    let state = if b.active { "active" } else { "deactivated" };
                    println!("{}  {state}  last seen {seen}", clean(&b.username));
                }
            }
        }
    }
    s.conn.close().await;
    Ok(())
}

pub(super) async fn webhook(loaded: &Loaded, what: WebhookWhat) -> Result<(), Failure> {
    let mut s = session(loaded).await?;
    let only = "only an admin of that conversation may manage its webhooks";
    match what {
        WebhookWhat::Create { target, name } => {
            let conv = resolve(&mut s, &target, false).await?;
            let reply: WebhookOk = s
                .ask_or(
                    &Request::WebhookCreate {
                        conversation_id: conv.id,
                        name,
                    },
                    Some(only),
                )
                .await?;
            eprintln!(
                "Webhook {} posts as {} in {target}; its URL (shown once):",
                reply.webhook.id,
                clean(&reply.webhook.name)
            );
            println!("{}", hook_url(&loaded.config.server, &reply.path));
        }
        WebhookWhat::List { target, json } => {
            let conv = resolve(&mut s, &target, false).await?;
            let reply: WebhooksOk = s
                .ask_or(
                    &Request::WebhookList {
                        conversation_id: conv.id,
                    },
                    Some(only),
                )
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&reply.webhooks).unwrap_or_default()
                );
            } else {
                let now = now_millis();
                for w in &reply.webhooks {
                    let used = w.last_used.map_or("never".into(), |t| ago(now, t));
                    println!(
                        "{}  {}  by {}  created {}  last used {used}",
                        w.id,
                        clean(&w.name),
                        clean(&w.created_by),
                        ago(now, w.created_at)
                    );
                }
            }
        }
        WebhookWhat::Revoke { id } => {
            let _: serde_json::Value = s
                .ask_or(
                    &Request::WebhookRevoke {
                        webhook_id: id.clone(),
                    },
                    Some(only),
                )
                .await?;
            eprintln!("Revoked webhook {id}");
        }
    }
    s.conn.close().await;
    Ok(())
}
