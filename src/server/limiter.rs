//! Rate limiting: a token bucket (the server-wide handshake rate), and the
//! typing throttle.

use std::collections::HashMap;
use tokio::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f32,
    burst: f32,
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> TokenBucket {
        let burst = burst.max(1) as f32;
        TokenBucket {
            rate: rate.max(1) as f32,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Take one token, or learn how long until there is one.
    pub fn take_or_wait(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f32();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f32((1.0 - self.tokens) / self.rate))
        }
    }
}

/// At most one `typing: true` per conversation per interval. Holds
/// nothing (one pointer) until the connection first types.
#[derive(Debug, Default)]
pub struct TypingThrottle {
    // Boxed on purpose: one pointer in every connection's state, not a
    // map's 48 bytes, for the many connections that never type.
    #[allow(clippy::box_collection)]
    last: Option<Box<HashMap<String, Instant>>>,
}

impl TypingThrottle {
    /// Whether a start signal for `conv` may pass now. Stops always pass.
    pub fn allow(&mut self, conv: &str, active: bool, interval: Duration) -> bool {
        if !active {
            return true;
        }
        let now = Instant::now();
        let last = self.last.get_or_insert_default();
        if let Some(prev) = last.get(conv)
            && now.duration_since(*prev) < interval
        {
            return false;
        }
        if last.len() > 1024 {
            last.retain(|_, t| now.duration_since(*t) < interval);
        }
        last.insert(conv.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(10, 3);
        assert!(b.take_or_wait().is_ok() && b.take_or_wait().is_ok() && b.take_or_wait().is_ok());
        assert!(b.take_or_wait().is_err());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.take_or_wait().is_ok());
        assert!(b.take_or_wait().is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.take_or_wait().is_ok() && b.take_or_wait().is_ok() && b.take_or_wait().is_ok());
        assert!(b.take_or_wait().is_err(), "never more than the burst");
    }

    #[tokio::test(start_paused = true)]
    async fn typing_once_a_second_per_conversation() {
        let mut t = TypingThrottle::default();
        let sec = Duration::from_secs(1);
        assert!(t.allow("a", true, sec));
        assert!(!t.allow("a", true, sec));
        assert!(t.allow("b", true, sec), "another conversation");
        assert!(t.allow("a", false, sec), "stop always passes");
        assert!(
            !t.allow("a", true, sec),
            "a stop does not reset the throttle"
        );
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!t.allow("a", true, sec));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(t.allow("a", true, sec));
    }
}
