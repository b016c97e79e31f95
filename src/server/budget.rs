//! What one user may spend, across all their connections together: a token
//! bucket of requests (each request type costs what it makes the server
//! do) and the conversations they may create in an hour. A user's budget
//! outlives their connections for a while, so that reconnecting does not
//! refill it.

use crate::proto::{ErrorCode, Limits, ProtoError, Request};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::time::{Duration, Instant};

/// Budgets kept for users with no connection before the idle ones are
/// forgotten (a forgotten budget is a full one, which is what an idle user
/// would have anyway).
const KEEP: usize = 4096;

/// The window of `max_creates_per_hour`.
const HOUR: Duration = Duration::from_secs(3600);

/// One user's budget.
#[derive(Debug)]
pub struct UserBudget {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// When this user's recent `create`s were asked for.
    creates: VecDeque<Instant>,
    creates_per_hour: usize,
}

/// What a request costs, in requests of the simplest kind: replies that
/// read or copy much cost more.
pub fn cost(req: &Request) -> f64 {
    match req {
        Request::Sync { .. } => 10.0,
        Request::Conversations { .. } | Request::Channels { .. } | Request::Search { .. } => 5.0,
        Request::History { .. } | Request::Users { .. } | Request::Members { .. } => 2.0,
        Request::Create { .. } | Request::AddMembers { .. } | Request::RemoveMembers { .. } => 2.0,
        Request::AdminUsers { .. }
        | Request::InviteList { .. }
        | Request::Sessions {}
        | Request::Blocks {}
        | Request::AdminErase { .. } => 2.0,
        Request::KeysQuery { .. }
        | Request::KeysClaim { .. }
        | Request::ToDevice { .. }
        | Request::KeysShare { .. } => 5.0,
        Request::KeysUpload(_) | Request::Inbox { .. } => 2.0,
        _ => 1.0,
    }
}

impl UserBudget {
    fn new(limits: &Limits) -> UserBudget {
        let burst = f64::from(limits.request_burst.max(1));
        UserBudget {
            inner: Mutex::new(Inner {
                rate: f64::from(limits.requests_per_sec.max(1)),
                burst,
                tokens: burst,
                last: Instant::now(),
                creates: VecDeque::new(),
                creates_per_hour: limits.max_creates_per_hour,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spend what `req` costs, or refuse it with `rate_limited` and how
    /// long until it would pass.
    pub fn spend(&self, req: &Request) -> Result<(), ProtoError> {
        self.spend_units(cost(req), matches!(req, Request::Create { .. }))
    }

    /// Spend `units` requests' worth (an HTTP request on files costs what
    /// a request of the same weight on the WebSocket would).
    pub fn spend_units(&self, units: f64, create: bool) -> Result<(), ProtoError> {
        let mut b = self.lock();
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
        let cost = units.min(b.burst);
        if b.tokens < cost {
            let wait = ((cost - b.tokens) / b.rate * 1000.0).ceil() as u64;
            return Err(ProtoError::rate_limited(
                "too many requests from your account; slow down",
                wait.max(1),
            ));
        }
        if create {
            while b
                .creates
                .front()
                .is_some_and(|t| now.duration_since(*t) >= HOUR)
            {
                b.creates.pop_front();
            }
            if b.creates.len() >= b.creates_per_hour {
                let wait = b
                    .creates
                    .front()
                    .map_or(HOUR, |t| HOUR.saturating_sub(now.duration_since(*t)));
                return Err(ProtoError {
                    retry_after_ms: Some(wait.as_millis() as u64),
                    ..ProtoError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "max_creates_per_hour: you created {} conversations in the last hour",
                            b.creates.len()
                        ),
                    )
                });
            }
            b.creates.push_back(now);
        }
        b.tokens -= cost;
        Ok(())
    }

    /// Whether nothing is owed: a full bucket and no recent creates.
    fn idle(&self) -> bool {
        let b = self.lock();
        let refilled = b.tokens + Instant::now().duration_since(b.last).as_secs_f64() * b.rate;
        refilled >= b.burst && b.creates.is_empty()
    }
}

/// Every user's budget.
pub struct Budgets {
    limits: Limits,
    map: Mutex<HashMap<String, Arc<UserBudget>>>,
}

impl Budgets {
    pub fn new(limits: &Limits) -> Budgets {
        Budgets {
            limits: limits.clone(),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The budget of `user`, shared by all their connections.
    pub fn of(&self, user: &str) -> Arc<UserBudget> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(user) {
            return b.clone();
        }
        if map.len() >= KEEP {
            // Forget the budgets nobody holds and nothing is owed on.
            map.retain(|_, b| Arc::strong_count(b) > 1 || !b.idle());
        }
        let b = Arc::new(UserBudget::new(&self.limits));
        map.insert(user.to_string(), b.clone());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32, creates: usize) -> Limits {
        Limits {
            requests_per_sec: rate,
            request_burst: burst,
            max_creates_per_hour: creates,
            ..Limits::default()
        }
    }

    fn conversations() -> Request {
        Request::Conversations {
            after: None,
            limit: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn one_budget_for_all_of_a_users_connections() {
        let budgets = Budgets::new(&limits(10, 20, 100));
        let (a, b) = (budgets.of("alice"), budgets.of("alice"));
        // 20 tokens; a `conversations` costs 5.
        for _ in 0..2 {
            assert!(a.spend(&conversations()).is_ok());
            assert!(b.spend(&conversations()).is_ok());
        }
        let e = a.spend(&conversations()).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after_ms, Some(500));
        assert!(
            budgets.of("bob").spend(&conversations()).is_ok(),
            "bob's own"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.spend(&conversations()).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn creates_per_hour() {
        let budgets = Budgets::new(&limits(1000, 1000, 2));
        let a = budgets.of("alice");
        let create = Request::Create {
            kind: crate::proto::ConvKind::Channel,
            name: Some("x".into()),
            members: vec![],
            encrypted: false,
        };
        assert!(a.spend(&create).is_ok() && a.spend(&create).is_ok());
        let e = a.spend(&create).unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert!(e.message.contains("max_creates_per_hour"));
        tokio::time::advance(HOUR).await;
        assert!(a.spend(&create).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_outlives_the_connection_until_idle() {
        let budgets = Budgets::new(&limits(1, 5, 100));
        let a = budgets.of("alice");
        assert!(a.spend(&conversations()).is_ok());
        drop(a);
        // Reconnecting does not refill it.
        assert!(budgets.of("alice").spend(&conversations()).is_err());
    }
}
