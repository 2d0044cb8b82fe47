//! A token bucket, for the rate limits of chat clients and of the HTTP API.

use std::time::Instant;

/// A token bucket: `rate` per second sustained, `burst` at once.
#[derive(Debug)]
pub(crate) struct RateLimit {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            rate: f64::from(rate),
            burst,
            last: Instant::now(),
        }
    }

    /// One token every `secs` seconds, `burst` at once.
    pub(crate) fn every(secs: f64, burst: u32) -> Self {
        let mut limit = Self::new(0, burst);
        limit.rate = 1.0 / secs.max(f64::MIN_POSITIVE);
        limit
    }

    /// Whether the bucket has filled up again (nothing was taken for a while).
    pub(crate) fn is_full(&mut self) -> bool {
        self.refill();
        self.tokens >= self.burst
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a token is there, without taking it.
    pub(crate) fn has_one(&mut self) -> bool {
        self.refill();
        self.tokens >= 1.0
    }

    /// Takes a token if there is one.
    pub(crate) fn allow(&mut self) -> bool {
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limit_allows_the_burst_then_the_rate() {
        let mut rate = RateLimit::new(20, 40);
        assert_eq!((0..100).filter(|_| rate.allow()).count(), 40);
        rate.last -= Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| rate.allow()).count(), 10);
    }
}
