//! Sleeping until a deadline with one wake-up, for the loops that run for a service's whole
//! life (the poll loop, the heartbeat).
//!
//! tokio's timer wheel keeps a deadline more than 64 ms away in a coarser slot and wakes the
//! runtime at the start of that slot to move it to a finer one: a 1 s sleep costs two
//! wake-ups, a 5 s sleep three. An [`Alarm`] is a timerfd of its own, which epoll reports once,
//! at the deadline. A wake-up is most of what an idle service costs: measured on the
//! development machine, a process that sleeps and wakes once a second uses about 50 µs of
//! CPU per wake-up, while cpu-monitor's whole budget at a 1 s poll is 500 µs a second.
//! (BENCHMARKS.md, "Wake-ups".)
//!
//! Where a timerfd cannot be had (a seccomp filter that forbids it, say), the alarm falls
//! back to tokio's sleep.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

/// The first point after `t` of the grid of `period` that every loop of the process shares
/// (multiples of `period` since the process first asked). Loops whose periods divide one
/// another then wake together: a heartbeat every 5 s falls on every fifth poll at 1 s, and
/// both are handled in one wake-up.
pub fn next_tick(t: Instant, period: Duration) -> Instant {
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

/// A one-shot timer on a timerfd (tokio's sleep where there is none). One per loop.
#[derive(Debug)]
pub struct Alarm {
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Alarm {
    /// A new alarm; inside a tokio runtime with I/O enabled.
    pub fn new() -> Self {
        let fd = timerfd().and_then(|fd| {
            // SAFETY: an OwnedFd stays open, and is the same descriptor, for as long as the
            // AsyncFd owns it.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
        });
        if let Err(e) = &fd {
            tracing::debug!("no timerfd ({e}); sleeping with tokio's timer");
        }
        Alarm { fd: fd.ok() }
    }

    /// Whether it sleeps on a timerfd (false: tokio's timer).
    pub fn is_timerfd(&self) -> bool {
        self.fd.is_some()
    }

    /// Return at `deadline` (at once if it has passed). Cancel-safe: dropping the future
    /// leaves the alarm set, and the next call sets it again.
    pub async fn sleep_until(&self, deadline: Instant) {
        let Some(fd) = &self.fd else {
            return tokio::time::sleep_until(deadline).await;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if let Err(e) = arm(fd.get_ref(), left) {
            tracing::debug!("timerfd_settime failed ({e}); sleeping with tokio's timer");
            return tokio::time::sleep_until(deadline).await;
        }
        loop {
            let mut ready = match fd.readable().await {
                Ok(r) => r,
                Err(_) => return tokio::time::sleep_until(deadline).await,
            };
            // The expiration count. WouldBlock (readiness left from an earlier arming, which
            // setting the timer again cleared): try_io clears the readiness, wait again.
            match ready.try_io(|fd| read_expirations(fd.get_ref())) {
                Ok(Ok(_)) => {
                    // Read, so not readable until it expires again: saves the next sleep a
                    // read that would only find nothing.
                    ready.clear_ready();
                    return;
                }
                Ok(Err(_)) => return tokio::time::sleep_until(deadline).await,
                Err(_would_block) => {}
            }
        }
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Self::new()
    }
}

fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call; a non-negative result is a new descriptor we own.
    let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Set the timer to expire once, `after` from now (CLOCK_MONOTONIC, as tokio's Instant).
/// Setting it again replaces the previous setting and clears a pending expiration.
fn arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
        it_value: libc::timespec {
            tv_sec: after.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            // Below 1e9: fits every target's c_long.
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not asked for (null).
    let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn read_expirations(fd: &OwnedFd) -> io::Result<u64> {
    let mut n = [0u8; 8];
    // SAFETY: reads at most 8 bytes into an 8-byte buffer.
    let got = unsafe { libc::read(fd.as_raw_fd(), n.as_mut_ptr().cast(), n.len()) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(n))
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

    #[tokio::test]
    async fn it_wakes_at_the_deadline_and_not_before() {
        let alarm = Alarm::new();
        assert!(alarm.is_timerfd(), "this machine's kernel has timerfd");
        for ms in [30u64, 120, 5] {
            let t0 = Instant::now();
            alarm.sleep_until(t0 + Duration::from_millis(ms)).await;
            let slept = t0.elapsed();
            assert!(slept >= Duration::from_millis(ms), "{slept:?} < {ms} ms");
        }
        // A deadline in the past returns at once, without arming.
        let t0 = Instant::now();
        alarm.sleep_until(t0 - Duration::from_millis(1)).await;
        alarm.sleep_until(t0).await;
    }

    /// The thread blocks once for the whole sleep: one voluntary context switch (tokio's
    /// `sleep` of the same length takes two here: the slot, then the deadline).
    #[tokio::test]
    async fn a_sleep_is_one_wake_up() {
        fn switches() -> u64 {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        }
        let alarm = Alarm::new();
        // Registers the descriptor with the runtime first.
        alarm.sleep_until(Instant::now() + Duration::from_millis(1)).await;
        let before = switches();
        alarm.sleep_until(Instant::now() + Duration::from_millis(300)).await;
        assert_eq!(switches() - before, 1);
    }

    /// A sleep dropped before its deadline (a `select!` that took another branch) leaves the
    /// timer armed; the next sleep re-arms it and is not woken by the old expiry early.
    #[tokio::test]
    async fn a_cancelled_sleep_does_not_cut_the_next_one_short() {
        let alarm = Alarm::new();
        let t0 = Instant::now();
        let cancelled = tokio::time::timeout(
            Duration::from_millis(10),
            alarm.sleep_until(t0 + Duration::from_millis(40)),
        )
        .await;
        assert!(cancelled.is_err());
        // Past the cancelled deadline, and then a fresh sleep of 100 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t1 = Instant::now();
        alarm.sleep_until(t1 + Duration::from_millis(100)).await;
        assert!(t1.elapsed() >= Duration::from_millis(100), "{:?}", t1.elapsed());
    }
}
