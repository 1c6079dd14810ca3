//! The grid the service's periodic loops share (the poll loop, the heartbeat): their deadlines
//! fall on multiples of their periods since the process started, so a heartbeat every 5 s
//! falls on every fifth poll at 1 s, and both are handled in one wake-up (and one `writev`).
//!
//! The loops sleep with tokio's timer. (Earlier versions slept on a timerfd each, which saved
//! tokio's timer wheel its second wake-up per deadline: 0.008 % of one core at a 1 s poll,
//! 0.0492 % to 0.0413 %, and a tenth of that at the default 10 s poll, for five `unsafe`
//! blocks; the watchdog's and the sample's tokio timers were armed at every poll anyway.)

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The first point after `t` of the grid of `period` that every loop of the process shares
/// (multiples of `period` since the process first asked). Loops whose periods divide one
/// another then wake together: a heartbeat every 5 s falls on every fifth poll at 1 s, and
/// both are handled in one wake-up.
pub(crate) fn next_tick(t: Instant, period: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let period_ns = period.as_nanos().max(1);
    // Beyond u64 nanoseconds (584 years) there is no grid to keep.
    let nanos = |n: u128| u64::try_from(n).ok().map(Duration::from_nanos);
    let tick = if t >= epoch {
        let ticks = (t - epoch).as_nanos() / period_ns + 1;
        nanos(ticks.saturating_mul(period_ns)).map(|d| epoch + d)
    } else {
        // Before the epoch (a time taken just before the first call): the grid runs back too.
        let back = (epoch - t).as_nanos();
        let ticks = back.div_ceil(period_ns) - 1;
        nanos(ticks * period_ns).map(|d| epoch - d)
    };
    tick.unwrap_or(t + period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_of_periods_that_divide_one_another_coincide() {
        let t = Instant::now();
        let (poll, beat) = (Duration::from_millis(1000), Duration::from_millis(5000));
        let b = next_tick(t, beat);
        assert!(b > t && b <= t + beat, "{:?}", b - t);
        // The poll tick just before the beat's, and the one after it, is the beat's.
        assert_eq!(next_tick(b - Duration::from_millis(1), poll), b);
        // Strictly after: a tick handed back in gives the next one.
        assert_eq!(next_tick(b, poll), b + poll);
        assert_eq!(next_tick(b, beat), b + beat);
        // 200 ms ticks land on the 1 s ones too.
        let p = next_tick(b + Duration::from_millis(900), Duration::from_millis(200));
        assert_eq!(p, b + poll);
        // Before the epoch the grid runs back: still the first tick after `t`.
        if let Some(early) = b.checked_sub(Duration::from_millis(10_300)) {
            assert_eq!(next_tick(early, poll), b - Duration::from_secs(10));
        }
    }
}
