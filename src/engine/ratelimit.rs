//! Upload and download rate limits: token buckets that can be changed while
//! transfers run. One bucket per direction is shared by every peer task.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Bytes a bucket may save up, as a share of one second's rate: enough to
/// keep a pipeline busy, small enough to keep the limit honest.
const BURST_SECONDS: f64 = 0.25;
/// The smallest burst, so one block can always pass.
const MIN_BURST: f64 = 64.0 * 1024.0;

#[derive(Debug)]
pub struct RateLimiter {
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: u64) -> RateLimiter {
        RateLimiter {
            bucket: Mutex::new(Bucket {
                rate,
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn rate(&self) -> u64 {
        self.lock().rate
    }

    pub fn set_rate(&self, rate: u64) {
        let mut b = self.lock();
        b.refill();
        b.rate = rate;
        b.tokens = b.tokens.min(b.burst());
    }

    /// Waits until `bytes` may pass. Takes the tokens at once (going into
    /// debt if need be) and sleeps off the debt, so large transfers are
    /// paced rather than starved.
    pub async fn acquire(&self, bytes: usize) {
        let wait = {
            let mut b = self.lock();
            if b.rate == 0 {
                return;
            }
            b.refill();
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-b.tokens / b.rate as f64)
        };
        tokio::time::sleep(wait).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Bucket {
    fn burst(&self) -> f64 {
        (self.rate as f64 * BURST_SECONDS).max(MIN_BURST)
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_transfers_to_the_rate() {
        let limiter = RateLimiter::new(256 * 1024);
        let start = Instant::now();
        for _ in 0..64 {
            limiter.acquire(16 * 1024).await; // 1 MiB in all
        }
        let took = start.elapsed().as_secs_f64();
        assert!(
            (3.5..=4.1).contains(&took),
            "1 MiB at 256 KiB/s took {took} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits_and_the_rate_can_change() {
        let limiter = RateLimiter::new(0);
        let start = Instant::now();
        limiter.acquire(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.set_rate(1024 * 1024);
        let start = Instant::now();
        for _ in 0..128 {
            limiter.acquire(16 * 1024).await; // 2 MiB
        }
        let took = start.elapsed().as_secs_f64();
        assert!(
            (1.8..=2.1).contains(&took),
            "2 MiB at 1 MiB/s took {took} s"
        );
        limiter.set_rate(0);
        let start = Instant::now();
        limiter.acquire(1 << 20).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
