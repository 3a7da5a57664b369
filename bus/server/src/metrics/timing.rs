//! Sampled request timing for `ipcbus_request_duration_seconds`: a session
//! times one request in [`SAMPLE_EVERY`] with an id, one at a time, so that
//! the other requests pay only a counter increment.

use prometheus_client::metrics::histogram::Histogram;
use std::time::Instant;

/// One request in this many (with an id) is timed, per session; the first is.
pub(crate) const SAMPLE_EVERY: u32 = 16;

/// A session's timer: the request being timed, if any.
#[derive(Debug, Default)]
pub(crate) struct RequestTimer {
    /// Requests with an id seen so far (wrapping).
    seen: u32,
    /// The id being timed and when it was decoded.
    pending: Option<(u64, Instant)>,
}

impl RequestTimer {
    /// A request was decoded.
    pub(crate) fn started(&mut self, id: Option<u64>) {
        let Some(id) = id else { return };
        let turn = self.seen.is_multiple_of(SAMPLE_EVERY);
        self.seen = self.seen.wrapping_add(1);
        if turn && self.pending.is_none() {
            self.pending = Some((id, Instant::now()));
        }
    }

    /// The reply to `id` was written.
    pub(crate) fn replied(&mut self, id: u64, histogram: &Histogram) {
        if let Some((timed, at)) = self.pending {
            if timed == id {
                histogram.observe(at.elapsed().as_secs_f64());
                self.pending = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::exponential_buckets;

    #[test]
    fn one_request_in_sample_every_is_timed() {
        let histogram = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        let mut timer = RequestTimer::default();
        let mut timed = 0;
        for id in 0..u64::from(SAMPLE_EVERY) * 3 {
            timer.started(Some(id));
            timer.started(None);
            if timer.pending.is_some() {
                timed += 1;
            }
            timer.replied(id, &histogram);
            assert!(timer.pending.is_none());
        }
        assert_eq!(timed, 3);
    }

    #[test]
    fn a_reply_to_another_id_leaves_the_timing_running() {
        let histogram = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        let mut timer = RequestTimer::default();
        timer.started(Some(7));
        timer.replied(8, &histogram);
        assert!(timer.pending.is_some());
        timer.replied(7, &histogram);
        assert!(timer.pending.is_none());
    }
}
