//! The poll loop: sample, drain the reading channel, check every value, store the records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::buffer::Pending;
use crate::handle::ServiceHandle;
use crate::health::Notifier;
use crate::metric::Registry;
use crate::outbox::Outbox;
use crate::plugin::SensorPlugin;
use crate::reading::{Reading, ReadingQueue, Value};
use crate::spooling::Recovered;

/// The poll loop and the conversion of readings into records.
pub(super) struct Poller<P> {
    pub(super) plugin: Arc<P>,
    pub(super) plugin_ready: Arc<AtomicBool>,
    pub(super) queue: ReadingQueue,
    pub(super) outbox: Arc<Outbox>,
    pub(super) handle: ServiceHandle,
    pub(super) drops: DropReport,
}

impl<P: SensorPlugin> Poller<P> {
    pub(super) async fn run(
        &mut self,
        mut poll_rx: watch::Receiver<Duration>,
        notifier: &Notifier,
        shutdown: &CancellationToken,
    ) {
        let mut period = *poll_rx.borrow_and_update();
        let mut last = tokio::time::Instant::now();
        // Polls fall on the process's grid (see tick::next_tick), where the heartbeat's fall
        // too. A new period applies at least one new period after the last poll.
        let mut next = crate::tick::next_tick(last, period);
        let watchdog = notifier.watchdog_period();
        loop {
            let pet = async {
                match watchdog {
                    Some(p) => tokio::time::sleep(p).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
                changed = poll_rx.changed() => {
                    if changed.is_ok() {
                        period = *poll_rx.borrow_and_update();
                        let earliest = (last + period).max(tokio::time::Instant::now());
                        next = crate::tick::next_tick(earliest - Duration::from_nanos(1), period);
                    }
                    continue;
                }
                _ = pet => {
                    notifier.notify("WATCHDOG=1");
                    continue;
                }
            }
            last = tokio::time::Instant::now();
            // The next tick after this one; after a poll that overran, the first one to come.
            next = crate::tick::next_tick(last, period);
            self.collect(true).await;
            notifier.notify("WATCHDOG=1");
        }
    }

    /// One poll: the plugin's sample (when `sample`), then everything queued, into the buffer.
    pub(super) async fn collect(&mut self, sample: bool) {
        let mut records = Vec::new();
        let mut sampled = None;
        if sample && self.plugin_ready.load(Ordering::Relaxed) {
            let mut reading = Reading::now();
            let limit = self.handle.poll_time();
            match tokio::time::timeout(limit, self.plugin.sample(&mut reading)).await {
                Ok(Ok(())) => sampled = Some(reading),
                Ok(Err(e)) => self.drops.sample_error(e.to_string()),
                Err(_) => self
                    .drops
                    .sample_error(format!("no sample within the poll period ({} ms)", limit.as_millis())),
            }
        }
        // The metric set is taken after `sample`, so metrics it declared are published at once.
        let registry = self.handle.registry();
        if let Some(reading) = sampled {
            self.absorb(reading, &registry, &mut records);
        }
        while let Ok(reading) = self.queue.rx.try_recv() {
            self.absorb(reading, &registry, &mut records);
        }
        let overflow = self.queue.overflow.swap(0, Ordering::Relaxed);
        self.drops.queue_full += overflow;
        records.sort_by(|a, b| a.time.total_cmp(&b.time));
        self.outbox.count_dropped(self.drops.flush());
        // To the spool's thread (which waits for the disk) and then the buffer.
        self.outbox.store(records).await;
    }

    /// Put what the spool held back into the buffer, ahead of anything new.
    pub(super) fn replay(&mut self, recovered: Recovered) {
        let registry = self.handle.registry();
        for (id, readings) in recovered {
            let mut records = Vec::new();
            for r in readings {
                self.absorb(r, &registry, &mut records);
            }
            self.outbox.restore(records, id);
        }
        self.outbox.count_dropped(self.drops.flush());
    }

    fn absorb(&mut self, reading: Reading, registry: &Registry, out: &mut Vec<Pending>) {
        let (time, values) = reading.into_parts();
        for (key, value) in values {
            let Some(reg) = registry.get(&key) else {
                self.drops.undeclared(key);
                continue;
            };
            if !reg.metric.data_type().accepts(&value) {
                self.drops.wrong_type(&reg.id);
                continue;
            }
            if matches!(value, Value::Number(x) if !x.is_finite()) || !time.is_finite() || time <= 0.0 {
                self.drops.not_finite(&reg.id);
                continue;
            }
            out.push(Pending {
                seq: 0,
                name: reg.id.clone(),
                unit: reg.unit.clone(),
                value,
                time,
            });
        }
    }
}

/// Dropped readings of one poll, logged as one line and counted.
#[derive(Default)]
pub(super) struct DropReport {
    pub(super) undeclared: BTreeMap<String, u64>,
    pub(super) wrong_type: BTreeMap<String, u64>,
    pub(super) not_finite: BTreeMap<String, u64>,
    pub(super) queue_full: u64,
    pub(super) last_sample_error: Option<String>,
}

impl DropReport {
    fn undeclared(&mut self, key: String) {
        *self.undeclared.entry(key).or_default() += 1;
    }
    fn wrong_type(&mut self, key: &str) {
        *self.wrong_type.entry(key.to_string()).or_default() += 1;
    }
    fn not_finite(&mut self, key: &str) {
        *self.not_finite.entry(key.to_string()).or_default() += 1;
    }
    fn sample_error(&mut self, e: String) {
        if self.last_sample_error.as_ref() != Some(&e) {
            tracing::warn!("the plugin could not take a sample: {e}");
            self.last_sample_error = Some(e);
        }
    }
    /// Log what was dropped this poll and return how many records that was.
    fn flush(&mut self) -> u64 {
        let sum = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let total = sum(&self.undeclared) + sum(&self.wrong_type) + sum(&self.not_finite) + self.queue_full;
        if total == 0 {
            return 0;
        }
        let names = |m: &BTreeMap<String, u64>| m.keys().take(5).cloned().collect::<Vec<_>>().join(", ");
        if !self.undeclared.is_empty() {
            tracing::warn!(
                "dropped {} readings of undeclared metrics: {}",
                sum(&self.undeclared),
                names(&self.undeclared)
            );
        }
        if !self.wrong_type.is_empty() {
            tracing::warn!(
                "dropped {} readings whose value does not match the metric's data type: {}",
                sum(&self.wrong_type),
                names(&self.wrong_type)
            );
        }
        if !self.not_finite.is_empty() {
            tracing::warn!(
                "dropped {} readings with NaN, an infinite value or an invalid time: {}",
                sum(&self.not_finite),
                names(&self.not_finite)
            );
        }
        if self.queue_full > 0 {
            tracing::warn!(
                "dropped {} readings: the reading queue was full (service.reading_queue)",
                self.queue_full
            );
        }
        self.undeclared.clear();
        self.wrong_type.clear();
        self.not_finite.clear();
        self.queue_full = 0;
        total
    }
}
