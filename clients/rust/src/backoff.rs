//! The delay between connection attempts: 0.1 s, doubling to 5 s (the
//! reconnect contract in docs/clients.md; the same in every client).

use std::time::Duration;

/// The first delay.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest delay: a bus that comes back is found within this.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut b = Backoff::new();
        let ms: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
