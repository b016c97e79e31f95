//! `chat verify`: verify a device by comparing seven emoji on both
//! screens. One side starts (`chat verify USER [DEVICE]`), the other waits
//! for it (`chat verify --incoming`); each user says whether the emoji
//! match, and the devices check each other's keys. The engine does the
//! protocol; this command follows one verification through its updates
//! ([`Tracker`]) and asks the question on the terminal.

use super::live::Live;
use super::secret::{bare, start};
use super::{Exit, Failure};
use crate::client::config::Loaded;
use crate::client::text::clean;
use crate::client::update::VerificationView;
use crate::client::{Action, Update};
use std::io::BufRead;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// After this side verified, how long to wait for the other side to say
/// it did too (which also tells that our last step reached it).
const SETTLE: Duration = Duration::from_secs(5);

/// After refusing, how long the engine keeps running so that the other
/// device hears of it.
const LINGER: Duration = Duration::from_secs(1);

/// Which verification the command follows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// One this device starts with `user`'s device (`device`, or their
    /// only other one).
    Start {
        user: String,
        device: Option<String>,
    },
    /// The first one another device starts with this one.
    Incoming,
}

/// What an update means for the verification followed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// The verification began, with this device of this user.
    Began { user: String, device_id: String },
    /// The emoji to compare.
    Compare(Vec<String>),
    /// This side checked the other device: it is verified.
    Verified { user: String, device_id: String },
    /// The other side verified this one too.
    Settled,
    /// It ended without verifying, for this reason.
    Cancelled(String),
    /// A notice that ends the command.
    Failed(String),
    /// A notice to show.
    Note(String),
}

/// Follows one verification through the engine's updates.
#[derive(Debug)]
struct Tracker {
    want: Want,
    /// A sync came: `Action::Verify` was sent (or the wait for an incoming
    /// one was said).
    asked_engine: bool,
    txn: Option<String>,
    compared: bool,
    verified: bool,
}

impl Tracker {
    fn new(want: Want) -> Tracker {
        Tracker {
            want,
            asked_engine: false,
            txn: None,
            compared: false,
            verified: false,
        }
    }

    /// Whether `v` is the verification to follow, before one is.
    fn fits(&self, v: &VerificationView) -> bool {
        match &self.want {
            Want::Start { user, device } => {
                self.asked_engine
                    && v.state == "started"
                    && v.user == *user
                    && device.as_ref().is_none_or(|d| *d == v.device_id)
            }
            Want::Incoming => v.state != "started" && !v.done && !ended(v),
        }
    }

    fn on_verification(&mut self, v: &VerificationView) -> Vec<Step> {
        let mut steps = Vec::new();
        match &self.txn {
            Some(txn) if *txn != v.transaction_id => return steps,
            Some(_) => {}
            None if !self.fits(v) => return steps,
            None => {
                self.txn = Some(v.transaction_id.clone());
                steps.push(Step::Began {
                    user: v.user.clone(),
                    device_id: v.device_id.clone(),
                });
            }
        }
        if ended(v) {
            let why = v.cancelled.clone().unwrap_or_else(|| "cancelled".into());
            steps.push(Step::Cancelled(why));
        } else if v.done && !self.verified {
            self.verified = true;
            steps.push(Step::Verified {
                user: v.user.clone(),
                device_id: v.device_id.clone(),
            });
        } else if self.verified && v.state == "verified" {
            steps.push(Step::Settled);
        } else if !v.emoji.is_empty() && !self.compared {
            self.compared = true;
            steps.push(Step::Compare(v.emoji.clone()));
        }
        steps
    }

    /// The engine says a verification failed: whether it is ours.
    fn on_failed(&self, txn: Option<&str>, why: &str) -> Step {
        let ours = match (&self.want, &self.txn, txn) {
            // The engine could not start it: no such device, several to
            // choose from, no keys.
            (Want::Start { .. }, None, None) => self.asked_engine,
            (_, Some(mine), Some(t)) => mine == t,
            _ => false,
        };
        if ours {
            Step::Failed(why.to_string())
        } else {
            Step::Note(why.to_string())
        }
    }

    fn on_update(&mut self, u: &Update) -> Vec<Step> {
        match u {
            Update::Verification(v) => self.on_verification(v),
            Update::VerificationFailed {
                transaction_id,
                why,
                ..
            } => vec![self.on_failed(transaction_id.as_deref(), why)],
            Update::Notice(said) => vec![Step::Note(said.to_string())],
            _ => Vec::new(),
        }
    }
}

/// Cancelled, by either side.
fn ended(v: &VerificationView) -> bool {
    v.cancelled.is_some() || v.state == "cancelled"
}

/// Why a verification was cancelled, for the reader: the engine's
/// "code: reason" without the code (the other device wrote the reason).
fn reason(cancelled: &str) -> String {
    let text = match cancelled.split_once(": ") {
        Some((code, why)) if !code.contains(' ') && !why.trim().is_empty() => why,
        _ => cancelled,
    };
    clean(text.trim())
}

/// The emoji on one line, each with its name.
fn emoji_line(emoji: &[String]) -> String {
    emoji
        .iter()
        .map(|e| clean(e))
        .collect::<Vec<_>>()
        .join("   ")
}

/// The answer to "do they match": yes only when said so.
fn says_yes(line: &str) -> bool {
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

/// A device for the reader: "bob's device X", "your device X".
fn device_of(user: &str, device_id: &str, me: &str) -> String {
    if user == me {
        format!("your device {}", clean(device_id))
    } else {
        format!("{}'s device {}", clean(user), clean(device_id))
    }
}

/// The question, naming who compares on the other side.
fn question(user: &str, me: &str) -> String {
    if user == me {
        "Do they match what your other device shows? [y/N] ".to_string()
    } else {
        format!(
            "Do they match what {} sees on their device? [y/N] ",
            clean(user)
        )
    }
}

/// One line of standard input (a terminal or a pipe), read aside; `None`
/// at its end.
fn read_answer() -> oneshot::Receiver<Option<String>> {
    let (tx, rx) = oneshot::channel();
    // A thread of its own: a blocked read must not hold the runtime when
    // the command ends without an answer.
    std::thread::spawn(move || {
        let mut line = String::new();
        let got = match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        };
        let _ = tx.send(got);
    });
    rx
}

/// Where the conversation with the user stands, for the last words.
#[derive(Debug, Default)]
struct Said {
    /// The other device, once known ("bob's device X").
    other: Option<String>,
    /// The question is on the screen, unanswered.
    asking: bool,
    /// This side refused: its cancel is on its way.
    refused: bool,
}

/// `chat verify [USER [DEVICE]]`: without USER, wait for an incoming one.
pub(super) async fn verify(
    loaded: &Loaded,
    user: Option<String>,
    device: Option<String>,
    wait: Duration,
) -> Result<(), Failure> {
    let want = match user {
        Some(u) => Want::Start {
            user: bare(&u),
            device,
        },
        None => Want::Incoming,
    };
    let (mut live, me) = start(loaded).await?;
    let mut tracker = Tracker::new(want);
    let mut said = Said::default();
    let deadline = Instant::now() + wait;
    let work = follow(&mut live, &mut tracker, &mut said, &me);
    let result = match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        Err(_) => {
            // The other side hears that this one gave up.
            if let Some(txn) = tracker.txn.clone()
                && !tracker.verified
            {
                live.act(Action::CancelVerification {
                    transaction_id: txn,
                });
                said.refused = true;
            }
            Err(too_late(&tracker, &said, wait))
        }
    };
    if said.asking {
        eprintln!();
    }
    match &result {
        Ok(()) => settle(&mut live, &mut tracker, SETTLE).await,
        Err(_) if said.refused => settle(&mut live, &mut tracker, LINGER).await,
        Err(_) => {}
    }
    live.stop().await;
    result
}

/// Why the command gave up at its deadline.
fn too_late(t: &Tracker, said: &Said, wait: Duration) -> Failure {
    let secs = wait.as_secs();
    let message = match (&t.want, &said.other) {
        (_, Some(_)) if said.asking => format!("no answer within {secs}s"),
        (_, Some(other)) => format!("{other} did not finish the verification within {secs}s"),
        (Want::Incoming, None) => {
            format!("no device started a verification with this one within {secs}s")
        }
        (Want::Start { .. }, None) => format!("the verification did not start within {secs}s"),
    };
    Failure::new(Exit::Unreachable, message)
}

/// Keep the engine running for up to `wait` (its last steps go out), until
/// the other side says it verified this one too.
async fn settle(live: &mut Live, t: &mut Tracker, wait: Duration) {
    let drain = async {
        loop {
            let Ok(u) = live.next().await else { return };
            if t.on_update(&u).contains(&Step::Settled) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(wait, drain).await;
}

/// Follow the verification until this side verified the other device
/// (`Ok`) or it ended otherwise.
async fn follow(
    live: &mut Live,
    t: &mut Tracker,
    said: &mut Said,
    me: &str,
) -> Result<(), Failure> {
    let mut answer: Option<oneshot::Receiver<Option<String>>> = None;
    let mut other_user = String::new();
    loop {
        let steps = tokio::select! {
            u = live.next() => {
                let u = u?;
                if matches!(u, Update::Synced) && t.txn.is_none() {
                    begin(live, t);
                }
                t.on_update(&u)
            }
            got = async {
                match answer.as_mut() {
                    Some(rx) => rx.await.ok().flatten(),
                    None => std::future::pending().await,
                }
            }, if answer.is_some() => {
                answer = None;
                said.asking = false;
                let ok = got.as_deref().is_some_and(says_yes);
                if let Some(txn) = t.txn.clone() {
                    live.act(Action::ConfirmVerification { transaction_id: txn, ok });
                }
                if !ok {
                    said.refused = true;
                    return Err(Failure::new(
                        Exit::Failure,
                        "the emoji do not match: not verified (the other device is told)",
                    ));
                }
                if let Some(other) = &said.other {
                    eprintln!("Waiting for {other} to confirm…");
                }
                Vec::new()
            }
        };
        for step in steps {
            match step {
                Step::Began { user, device_id } => {
                    let other = device_of(&user, &device_id, me);
                    match &t.want {
                        Want::Incoming => println!("{other} wants to verify this device"),
                        Want::Start { .. } => eprintln!("Waiting for {other} to answer…"),
                    }
                    said.other = Some(other);
                    other_user = user;
                }
                Step::Compare(emoji) => {
                    println!("Compare: {}", emoji_line(&emoji));
                    eprint!("{}", question(&other_user, me));
                    said.asking = true;
                    answer = Some(read_answer());
                }
                Step::Verified { user, device_id } => {
                    if said.asking {
                        // Cannot happen before our own confirmation; kept
                        // tidy all the same.
                        said.asking = false;
                        eprintln!();
                    }
                    println!(
                        "{} is verified",
                        capitalized(&device_of(&user, &device_id, me))
                    );
                    return Ok(());
                }
                Step::Cancelled(why) => {
                    return Err(Failure::new(
                        Exit::Failure,
                        format!(
                            "the verification was cancelled: {}; not verified",
                            reason(&why)
                        ),
                    ));
                }
                Step::Failed(why) => return Err(Failure::new(Exit::Failure, clean(&why))),
                Step::Note(n) => eprintln!("chat: {}", clean(&n)),
                Step::Settled => {}
            }
        }
    }
}

/// A sync is in and nothing has begun: start the verification, or say we
/// wait for one. A start is asked for again after a reconnect (the engine
/// forgets starts still waiting for keys when its connection drops; one
/// that began would have been seen before the sync).
fn begin(live: &Live, t: &mut Tracker) {
    match &t.want {
        Want::Start { user, device } => {
            live.act(Action::Verify {
                user: user.clone(),
                device_id: device.clone(),
            });
        }
        Want::Incoming if !t.asked_engine => {
            eprintln!("Waiting for another device to start a verification with this one…");
        }
        Want::Incoming => {}
    }
    t.asked_engine = true;
}

/// "your device X" at the start of a sentence.
fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) if s.starts_with("your ") => first.to_uppercase().chain(c).collect(),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(txn: &str, user: &str, dev: &str, state: &str) -> VerificationView {
        VerificationView {
            transaction_id: txn.into(),
            user: user.into(),
            device_id: dev.into(),
            state: state.into(),
            emoji: Vec::new(),
            done: false,
            cancelled: None,
        }
    }

    fn seven() -> Vec<String> {
        [
            "🐶 Dog",
            "🐱 Cat",
            "🦁 Lion",
            "🐎 Horse",
            "🦄 Unicorn",
            "🐷 Pig",
            "🐘 Elephant",
        ]
        .map(String::from)
        .to_vec()
    }

    fn start(user: &str, device: Option<&str>) -> Tracker {
        let mut t = Tracker::new(Want::Start {
            user: user.into(),
            device: device.map(String::from),
        });
        t.asked_engine = true;
        t
    }

    #[test]
    fn only_yes_confirms() {
        for yes in ["y", "Y", "yes", " YES\n", "y\r\n"] {
            assert!(says_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yeah", "y y", "ja"] {
            assert!(!says_yes(no), "{no:?}");
        }
    }

    #[test]
    fn a_cancel_reason_drops_its_code() {
        assert_eq!(
            reason("mismatched_sas: the emoji did not match"),
            "the emoji did not match"
        );
        assert_eq!(reason("cancelled"), "cancelled");
        assert_eq!(reason("user: "), "user:");
        assert_eq!(reason("a b: c"), "a b: c");
        assert_eq!(reason("x: evil\u{1b}[2J"), "evil\u{fffd}[2J");
    }

    #[test]
    fn the_emoji_go_on_one_line_cleaned() {
        let mut e = seven();
        e[1] = "🐱 C\u{1b}[2Jat".into();
        let line = emoji_line(&e);
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line:?}");
        assert!(line.starts_with("🐶 Dog   🐱 C"), "{line:?}");
        assert!(line.ends_with("🐘 Elephant"), "{line:?}");
    }

    #[test]
    fn names_are_cleaned_and_own_devices_said_so() {
        assert_eq!(device_of("bob", "DEV1", "alice"), "bob's device DEV1");
        assert_eq!(device_of("alice", "DEV2", "alice"), "your device DEV2");
        assert_eq!(
            capitalized(&device_of("alice", "DEV2", "alice")),
            "Your device DEV2"
        );
        assert!(!device_of("b\u{1b}ob", "D\u{202e}1", "alice").contains(['\u{1b}', '\u{202e}']));
        assert!(question("bob", "alice").contains("what bob sees"));
        assert!(question("alice", "alice").contains("your other device"));
    }

    #[test]
    fn a_start_follows_its_own_verification_to_the_end() {
        let mut t = start("bob", None);
        // Someone else's incoming one is not ours.
        assert!(
            t.on_verification(&view("x", "carol", "C", "answered"))
                .is_empty()
        );
        assert_eq!(
            t.on_verification(&view("t1", "bob", "B", "started")),
            vec![Step::Began {
                user: "bob".into(),
                device_id: "B".into()
            }]
        );
        // Another verification's emoji are not asked about.
        let mut other = view("x", "carol", "C", "compare emoji");
        other.emoji = seven();
        assert!(t.on_verification(&other).is_empty());
        let mut v = view("t1", "bob", "B", "compare emoji");
        v.emoji = seven();
        assert_eq!(t.on_verification(&v), vec![Step::Compare(seven())]);
        // Asked once only.
        assert!(t.on_verification(&v).is_empty());
        let mut done = view("t1", "bob", "B", "verified");
        done.done = true;
        assert_eq!(
            t.on_verification(&done),
            vec![Step::Verified {
                user: "bob".into(),
                device_id: "B".into()
            }]
        );
        assert_eq!(
            t.on_verification(&view("t1", "bob", "B", "verified")),
            vec![Step::Settled]
        );
    }

    #[test]
    fn a_start_waits_for_the_engine_and_the_named_device() {
        let mut t = Tracker::new(Want::Start {
            user: "bob".into(),
            device: Some("B2".into()),
        });
        // Not asked yet: nothing is ours.
        assert!(
            t.on_verification(&view("t0", "bob", "B2", "started"))
                .is_empty()
        );
        t.asked_engine = true;
        assert!(
            t.on_verification(&view("t1", "bob", "B1", "started"))
                .is_empty()
        );
        assert!(
            t.on_verification(&view("t2", "eve", "B2", "started"))
                .is_empty()
        );
        assert_eq!(
            t.on_verification(&view("t3", "bob", "B2", "started")).len(),
            1
        );
        assert_eq!(t.txn.as_deref(), Some("t3"));
    }

    #[test]
    fn an_incoming_one_is_the_first_another_device_starts() {
        let mut t = Tracker::new(Want::Incoming);
        let mut gone = view("t0", "alice", "A", "cancelled");
        gone.cancelled = Some("user: cancelled by the user".into());
        assert!(t.on_verification(&gone).is_empty());
        assert_eq!(
            t.on_verification(&view("t1", "alice", "A", "answered")),
            vec![Step::Began {
                user: "alice".into(),
                device_id: "A".into()
            }]
        );
        assert!(
            t.on_verification(&view("t2", "carol", "C", "answered"))
                .is_empty()
        );
        let mut v = view("t1", "alice", "A", "compare emoji");
        v.emoji = seven();
        assert_eq!(t.on_verification(&v), vec![Step::Compare(seven())]);
    }

    #[test]
    fn a_cancel_ends_it_with_the_reason() {
        let mut t = start("bob", None);
        t.on_verification(&view("t1", "bob", "B", "started"));
        let mut v = view("t1", "bob", "B", "cancelled");
        v.cancelled = Some("mismatched_sas: the emoji did not match".into());
        assert_eq!(
            t.on_verification(&v),
            vec![Step::Cancelled(
                "mismatched_sas: the emoji did not match".into()
            )]
        );
        // A state that says cancelled without a reason ends it too.
        let mut t = start("bob", None);
        t.on_verification(&view("t1", "bob", "B", "started"));
        assert_eq!(
            t.on_verification(&view("t1", "bob", "B", "cancelled")),
            vec![Step::Cancelled("cancelled".into())]
        );
    }

    #[test]
    fn failures_end_it_only_when_they_are_its_own() {
        let t = Tracker::new(Want::Start {
            user: "bob".into(),
            device: None,
        });
        // Before the engine is asked, a failure is only shown.
        assert!(matches!(
            t.on_failed(None, "cannot verify: x"),
            Step::Note(_)
        ));
        let mut t = start("bob", None);
        for fatal in [
            "cannot verify: bob has no other device with keys for secret conversations",
            "bob has 2 devices: name one to verify (A, B)",
        ] {
            assert_eq!(t.on_failed(None, fatal), Step::Failed(fatal.into()));
        }
        // Other news is shown and changes nothing.
        assert_eq!(
            t.on_update(&Update::Notice("local cache error: disk".into())),
            vec![Step::Note("local cache error: disk".into())]
        );
        t.on_verification(&view("t1", "bob", "B", "started"));
        assert!(matches!(
            t.on_failed(None, "cannot verify: late"),
            Step::Note(_)
        ));
        assert!(matches!(
            t.on_failed(Some("t2"), "verification failed: another"),
            Step::Note(_)
        ));
        assert!(matches!(
            t.on_failed(Some("t1"), "verification failed: bad mac"),
            Step::Failed(_)
        ));
        let t = Tracker::new(Want::Incoming);
        assert!(matches!(
            t.on_failed(None, "cannot verify: x"),
            Step::Note(_)
        ));
    }
}
