//! Helpers for secret conversations with headless clients: create one,
//! send, and wait until a client shows a body.

use super::{CLIENT_WAIT, Client, Home, World, wait_until};
use chat::client::Update;
use chat::client::view::MessageRow;
use chat::ui::Action;

/// The bodies of the message rows of `conv` as `c` shows them.
pub fn bodies(c: &Client, conv: &str) -> Vec<String> {
    c.with(|m| {
        m.rows(conv)
            .iter()
            .filter_map(|r| match r {
                MessageRow::Message(v) => Some(v.body.clone()),
                _ => None,
            })
            .collect()
    })
}

/// Open `conv` on `c` and wait until its bodies satisfy `cond`.
pub async fn wait_body(c: &Client, conv: &str, what: &str, cond: impl Fn(&[String]) -> bool) {
    c.act(Action::OpenConversation { conv: conv.into() });
    let ok = wait_until(CLIENT_WAIT, || cond(&bodies(c, conv))).await;
    assert!(
        ok,
        "{what}: rows of {conv} are {:?}; notice {:?}",
        bodies(c, conv),
        c.with(|m| m.notice.clone())
    );
}

/// Open `conv` on `c` and wait until it shows a message reading `text`.
pub async fn wait_text(c: &Client, conv: &str, what: &str, text: &str) {
    wait_body(c, conv, what, |b| b.iter().any(|b| b == text)).await;
}

/// How many focus requests `c` has had.
pub fn focus_count(c: &Client) -> usize {
    c.with_log(|log| log.iter().filter(|u| matches!(u, Update::Focus(_))).count())
}

/// The conversation of the first focus request after the first `seen`
/// (a create answers so).
pub async fn focused_after(c: &Client, seen: usize) -> String {
    let mut conv = None;
    let ok = wait_until(CLIENT_WAIT, || {
        conv = c.with_log(|log| {
            log.iter()
                .filter_map(|u| match u {
                    Update::Focus(id) => Some(id.clone()),
                    _ => None,
                })
                .nth(seen)
        });
        conv.is_some()
    })
    .await;
    assert!(ok, "no conversation was created");
    conv.unwrap()
}

/// `c` creates a secret conversation (a DM without a name and with one
/// other user) and waits until its list shows it.
pub async fn secret_with(c: &Client, name: Option<&str>, users: &[&str]) -> String {
    let seen = focus_count(c);
    c.act(Action::CreateSecret {
        name: name.map(str::to_string),
        users: users.iter().map(|u| u.to_string()).collect(),
    });
    let conv = focused_after(c, seen).await;
    c.wait("the secret conversation in the list", |m| {
        m.conversation(&conv).is_some_and(|s| s.encrypted)
    })
    .await;
    conv
}

pub fn send(c: &Client, conv: &str, body: &str) {
    c.act(Action::Send {
        conv: conv.into(),
        body: body.into(),
        reply_to: None,
    });
}

/// Whether `hay` holds `needle` anywhere.
pub fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// alice and bob registered as `chat` homes of `w`, bob's device with its
/// keys published, and a secret DM alice created with him: its id.
pub fn cli_secret_dm(w: &World) -> (Home, Home, String) {
    let (alice, bob) = (w.home("alice"), w.home("bob"));
    alice.register("alice");
    bob.register("bob");
    // Bob's device publishes its keys on its first command.
    let r = bob.ok(&["devices"], None);
    assert!(r.stdout.contains("this device"), "{r:?}");
    let r = alice.ok(&["create", "dm", "bob", "--secret"], None);
    assert!(r.stdout.contains("(secret)"), "{r:?}");
    let id = r.stdout.split_whitespace().next().unwrap().to_string();
    (alice, bob, id)
}
