//! The delivery state, with one owner: the records between the poll loop and the broker.
//!
//! [`Outbox`] holds the bounded [`Buffer`], the spool's thread and the delivery counters.
//! The poll loop [`store`](Outbox::store)s batches; delivery takes the oldest records
//! ([`next_batch`](Outbox::next_batch)) and [`confirm`](Outbox::confirm)s them once the broker
//! has; `GetStatus` reads [`counts`](Outbox::counts). Nothing else touches the buffer or the
//! spool.
//!
//! Invariants: a record is in the buffer only once its batch is on disk (when there is a
//! spool; a batch the disk refused is kept in memory only, and logged); a spool entry is
//! acknowledged only once the broker confirmed every record of it and of the entries before
//! it; the lock on the buffer is never held across an await or any I/O.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::buffer::{Buffer, Pending};
use crate::reading::unix_now;
use crate::spooling::SpoolWriter;
use tolomeo_spool::{EntryId, Spool};

/// The delivery counters, as `GetStatus` reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Counts {
    pub(crate) published: u64,
    pub(crate) dropped: u64,
    pub(crate) buffered: u64,
    pub(crate) last_publish_t: Option<f64>,
}

/// Records on their way to the broker: the buffer, the spool and the counters.
pub(crate) struct Outbox {
    shelf: Arc<Shelf>,
    spool: Option<SpoolWriter>,
}

/// What the spool's thread shares with the service: the buffer and the counters.
struct Shelf {
    held: Mutex<Held>,
    new_data: Notify,
    published: AtomicU64,
    dropped: AtomicU64,
    last_publish_bits: AtomicU64,
}

struct Held {
    buffer: Buffer,
    /// (sequence number of the last record of a spool entry, the entry), oldest first.
    marks: VecDeque<(u64, EntryId)>,
    /// A batch could not be written to the spool: not everything held is on disk.
    unspooled: bool,
}

impl Outbox {
    /// An outbox of `capacity` records, in memory only.
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox {
            shelf: Arc::new(Shelf {
                held: Mutex::new(Held {
                    buffer: Buffer::new(capacity),
                    marks: VecDeque::new(),
                    unspooled: false,
                }),
                new_data: Notify::new(),
                published: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                last_publish_bits: AtomicU64::new(0),
            }),
            spool: None,
        }
    }

    /// An outbox of `capacity` records whose batches go to `spool` first (on its own thread).
    pub(crate) fn with_spool(capacity: usize, spool: Spool) -> std::io::Result<Self> {
        let mut outbox = Outbox::new(capacity);
        let shelf = outbox.shelf.clone();
        outbox.spool = Some(SpoolWriter::start(spool, move |records, id| {
            shelf.push(records, id, id.is_none());
        })?);
        Ok(outbox)
    }

    /// A batch of new records: to the spool, then the buffer. Waits (without blocking the
    /// runtime) only while the spool's queue is full.
    pub(crate) async fn store(&self, records: Vec<Pending>) {
        if records.is_empty() {
            return;
        }
        let records = match &self.spool {
            Some(spool) => match spool.append(records).await {
                Ok(()) => return,
                Err(records) => records,
            },
            None => records,
        };
        self.shelf.push(records, None, self.spool.is_some());
    }

    /// Records read back from spool entry `id` at start: to the buffer, not to the disk again.
    pub(crate) fn restore(&self, records: Vec<Pending>, id: EntryId) {
        self.shelf.push(records, Some(id), false);
    }

    /// Wait until every batch stored so far is in the buffer.
    pub(crate) async fn settle(&self) {
        if let Some(spool) = &self.spool {
            spool.settle().await;
        }
    }

    /// Wait for new records.
    pub(crate) async fn new_data(&self) {
        self.shelf.new_data.notified().await;
    }

    /// A copy of the oldest `max` records.
    pub(crate) fn next_batch(&self, max: usize) -> Vec<Pending> {
        self.shelf.lock().buffer.peek(max)
    }

    /// The broker confirmed every record up to `seq`: forget them, and the spool entries
    /// that hold nothing else.
    pub(crate) fn confirm(&self, seq: u64) {
        let (removed, ack) = {
            let mut held = self.shelf.lock();
            let removed = held.buffer.confirm(seq);
            let mut ack = None;
            while let Some(&(last, id)) = held.marks.front() {
                if last > seq {
                    break;
                }
                ack = Some(id);
                held.marks.pop_front();
            }
            (removed, ack)
        };
        self.shelf.published.fetch_add(removed as u64, Ordering::Relaxed);
        self.shelf
            .last_publish_bits
            .store(unix_now().to_bits(), Ordering::Relaxed);
        if let (Some(spool), Some(id)) = (&self.spool, ack) {
            spool.acknowledge(id);
        }
    }

    /// Drop the records with `first <= seq <= last` (they can never be delivered); count them.
    pub(crate) fn reject(&self, first: u64, last: u64) {
        let removed = self.shelf.lock().buffer.remove(first, last);
        self.count_dropped(removed as u64);
    }

    /// Count `n` readings dropped before they became records.
    pub(crate) fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.shelf.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records waiting for delivery.
    pub(crate) fn len(&self) -> usize {
        self.shelf.lock().buffer.len()
    }

    /// Nothing waits for delivery.
    pub(crate) fn is_empty(&self) -> bool {
        self.shelf.lock().buffer.is_empty()
    }

    /// Every record held is on disk too, and so is delivered by the next start.
    pub(crate) fn is_durable(&self) -> bool {
        self.spool.is_some() && !self.shelf.lock().unspooled
    }

    pub(crate) fn counts(&self) -> Counts {
        let bits = self.shelf.last_publish_bits.load(Ordering::Relaxed);
        Counts {
            published: self.shelf.published.load(Ordering::Relaxed),
            dropped: self.shelf.dropped.load(Ordering::Relaxed),
            buffered: self.len() as u64,
            last_publish_t: (bits != 0).then(|| f64::from_bits(bits)),
        }
    }

    /// At stop: write the pending acknowledgement, fsync, and say what stays on disk.
    pub(crate) async fn close(&self) {
        let Some(spool) = &self.spool else { return };
        if let Some(closed) = spool.close().await {
            if closed.left > 0 {
                tracing::info!(
                    "{} batches stay in the spool and are delivered at the next start",
                    closed.left
                );
            }
            tracing::info!("spool: {} bytes written since start", closed.bytes_written);
        }
    }
}

impl Shelf {
    fn lock(&self) -> MutexGuard<'_, Held> {
        match self.held.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records into the buffer; `entry`: the spool entry that holds them; `unspooled`: they
    /// should have been on disk and are not.
    fn push(&self, records: Vec<Pending>, entry: Option<EntryId>, unspooled: bool) {
        let dropped = {
            let mut held = self.lock();
            held.unspooled |= unspooled;
            let n = records.len() as u64;
            let dropped = if records.is_empty() {
                0
            } else {
                held.buffer.push(records)
            };
            if let Some(id) = entry {
                // An entry with no record still wanted is acknowledged with the next confirmation.
                let last = held.buffer.next_seq().checked_sub(1).filter(|_| n > 0).unwrap_or(0);
                held.marks.push_back((last, id));
            }
            dropped
        };
        if dropped > 0 {
            tracing::warn!(
                "dropped the {dropped} oldest records: the delivery buffer is full (service.buffer_records)"
            );
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        self.new_data.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::senml::Value;
    use tolomeo_spool::SpoolConfig;

    fn batch(times: std::ops::RangeInclusive<u32>) -> Vec<Pending> {
        times
            .map(|t| Pending {
                seq: 0,
                name: Arc::from("a:b"),
                unit: None,
                value: Value::Number(f64::from(t)),
                time: f64::from(t),
            })
            .collect()
    }

    fn times(records: &[Pending]) -> Vec<f64> {
        records.iter().map(|r| r.time).collect()
    }

    #[tokio::test]
    async fn a_batch_is_in_the_buffer_only_once_it_is_on_disk_and_acknowledged_once_confirmed() {
        let dir = tolomeo_testkit::temp_dir();
        let config = SpoolConfig::new(dir.path());
        let (spool, _) = Spool::open(config.clone()).unwrap();
        let outbox = Outbox::with_spool(100, spool).unwrap();
        outbox.store(batch(1..=3)).await;
        outbox.store(batch(4..=5)).await;
        outbox.settle().await;
        // Both batches are on disk: a second reader of the directory sees them.
        let (_, on_disk) = Spool::open(SpoolConfig::new(dir.path())).unwrap();
        assert_eq!(on_disk.entries.len(), 2);
        let held = outbox.next_batch(10);
        assert_eq!(times(&held), [1.0, 2.0, 3.0, 4.0, 5.0]);
        // The first three records are confirmed: the first entry only is acknowledged.
        outbox.confirm(held[2].seq);
        outbox.close().await;
        let (_, after) = Spool::open(config).unwrap();
        assert_eq!(after.entries.len(), 1);
        assert_eq!(outbox.counts().published, 3);
        assert_eq!(outbox.counts().buffered, 2);
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let outbox = Outbox::new(4);
        outbox.store(batch(1..=3)).await;
        outbox.store(batch(4..=6)).await;
        assert_eq!(times(&outbox.next_batch(10)), [3.0, 4.0, 5.0, 6.0]);
        assert_eq!(outbox.counts().dropped, 2);
        assert!(!outbox.is_durable());
    }
}
