//! The service's use of the disk spool, on a thread of its own: which batches go to disk,
//! how they come back, and when they are forgotten.
//!
//! Every poll's batch of records is appended to the spool (one entry, a compact JSON array
//! `[[name, value, t], ...]`) before it enters the in-memory buffer: the poll loop hands the
//! batch to the spool's thread, which writes it (and fsyncs it, as `spool_fsync_batches`
//! says) and only then passes it on to the buffer, with the id of its entry. When the broker
//! confirms records, the newest entry that holds only confirmed records is acknowledged (at
//! most every `ACK_INTERVAL`, and at shutdown, to spare the flash). On start, entries not
//! acknowledged are read back and go through the same registry checks as fresh readings,
//! ahead of them. So after a crash or a power cut, records collected but not confirmed are
//! delivered once the service is back; those confirmed in the last `ACK_INTERVAL` before the
//! crash may be delivered twice.
//!
//! The thread is why the runtime never waits on the disk: an fsync that takes 200 ms on a
//! busy eMMC holds up the batches behind it, not the heartbeat or a command's reply. At most
//! [`QUEUE_BATCHES`] batches wait for the disk; beyond that the poll loop waits (the service's
//! other tasks go on), and the plugin's readings wait in their own bounded queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::buffer::Pending;
use crate::reading::{Reading, Value};
use tolomeo_spool::{EntryId, FsyncPolicy, Recovery, Spool, SpoolConfig};

/// What the spool held at start: each entry not yet acknowledged, with its readings.
pub(crate) type Recovered = Vec<(EntryId, Vec<Reading>)>;

/// How often acknowledgements are written at most.
pub(crate) const ACK_INTERVAL: Duration = Duration::from_secs(5);

/// Batches that may wait for the disk before the poll loop waits for the disk too.
pub(crate) const QUEUE_BATCHES: usize = 64;

/// Open the spool in `dir`; return it, the readings of each entry not yet acknowledged
/// (oldest first), and what was skipped.
pub(crate) fn open(dir: PathBuf, max_bytes: u64, fsync_batches: u32) -> std::io::Result<(Spool, Recovered, Recovery)> {
    let config = SpoolConfig {
        dir,
        max_bytes,
        segment_bytes: (max_bytes / 16).clamp(64 * 1024, 4 * 1024 * 1024),
        fsync: match fsync_batches {
            0 => FsyncPolicy::Never,
            1 => FsyncPolicy::Always,
            n => FsyncPolicy::EveryBatches(n),
        },
    };
    let (spool, mut recovery) = Spool::open(config)?;
    let mut entries = Vec::new();
    for (id, bytes) in std::mem::take(&mut recovery.entries) {
        match decode(&bytes) {
            Some(readings) => entries.push((id, readings)),
            None => {
                recovery.corrupt_entries += 1;
                entries.push((id, Vec::new()));
            }
        }
    }
    Ok((spool, entries, recovery))
}

/// What the spool's thread does, in the order it was asked.
enum Job {
    /// Write a batch, then hand it on. The permit is a place in the queue, freed when done.
    Append(Vec<Pending>, OwnedSemaphorePermit),
    /// Everything up to this entry was delivered.
    Ack(EntryId),
    /// Answer once every batch before this one was handed on.
    Barrier(oneshot::Sender<()>),
    /// Write the pending acknowledgement, fsync, answer and end.
    Close(oneshot::Sender<Closed>),
}

/// What the spool holds when the service stops.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closed {
    /// Entries not acknowledged: delivered at the next start.
    pub(crate) left: u64,
    /// Bytes written since start (for the flash-wear estimate).
    pub(crate) bytes_written: u64,
}

/// The handle on the spool's thread.
pub(crate) struct SpoolWriter {
    jobs: mpsc::Sender<Job>,
    slots: Arc<Semaphore>,
}

impl SpoolWriter {
    /// Start the thread. Each batch, once written, goes to `written` with its entry's id
    /// (`None`: it could not be written, and is kept in memory only).
    pub(crate) fn start(
        spool: Spool,
        written: impl FnMut(Vec<Pending>, Option<EntryId>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || work(spool, queue, written))?;
        Ok(SpoolWriter {
            jobs,
            slots: Arc::new(Semaphore::new(QUEUE_BATCHES)),
        })
    }

    /// Queue a batch for the disk; waits (without blocking the runtime) while the queue is
    /// full. `Err` gives the batch back: the thread is gone.
    pub(crate) async fn append(&self, records: Vec<Pending>) -> Result<(), Vec<Pending>> {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return Err(records);
        };
        self.jobs.send(Job::Append(records, slot)).map_err(|e| match e.0 {
            Job::Append(records, _) => records,
            _ => Vec::new(),
        })
    }

    /// Everything up to entry `id` was delivered.
    pub(crate) fn acknowledge(&self, id: EntryId) {
        let _ = self.jobs.send(Job::Ack(id));
    }

    /// Wait until every batch queued so far was written and handed on.
    pub(crate) async fn settle(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Write what is pending, fsync and end the thread. None: it had already ended.
    pub(crate) async fn close(&self) -> Option<Closed> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(Job::Close(tx)).ok()?;
        rx.await.ok()
    }
}

/// The spool's thread: jobs in order; an acknowledgement at most every `ACK_INTERVAL`.
fn work(mut spool: Spool, jobs: mpsc::Receiver<Job>, mut written: impl FnMut(Vec<Pending>, Option<EntryId>)) {
    let mut pending_ack: Option<EntryId> = None;
    let mut last_ack = Instant::now();
    let mut dropped_seen = 0;
    loop {
        let wait = match pending_ack {
            Some(_) => ACK_INTERVAL.saturating_sub(last_ack.elapsed()),
            None => Duration::from_secs(3600),
        };
        match jobs.recv_timeout(wait) {
            Ok(Job::Append(records, slot)) => {
                let id = append(&mut spool, &records, &mut dropped_seen);
                written(records, id);
                drop(slot);
            }
            Ok(Job::Ack(id)) => pending_ack = Some(id),
            Ok(Job::Barrier(done)) => {
                let _ = done.send(());
            }
            Ok(Job::Close(done)) => {
                flush_ack(&mut spool, &mut pending_ack, &mut last_ack);
                if let Err(e) = spool.sync() {
                    tracing::error!("cannot sync the spool: {e}");
                }
                let _ = done.send(Closed {
                    left: spool.pending_entries(),
                    bytes_written: spool.bytes_written(),
                });
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The service is gone without closing: what is on disk is delivered at the next start.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if pending_ack.is_some() && last_ack.elapsed() >= ACK_INTERVAL {
            flush_ack(&mut spool, &mut pending_ack, &mut last_ack);
        }
    }
}

/// Write the pending acknowledgement, if any.
fn flush_ack(spool: &mut Spool, pending: &mut Option<EntryId>, last: &mut Instant) {
    if let Some(id) = pending.take() {
        if let Err(e) = spool.ack(id) {
            tracing::error!("cannot acknowledge delivered records in the spool: {e}");
        }
        *last = Instant::now();
    }
}

/// Write one batch; its entry's id. Errors are logged: the records stay in memory and are
/// still delivered while the service runs.
fn append(spool: &mut Spool, records: &[Pending], dropped_seen: &mut u64) -> Option<EntryId> {
    let bytes = encode(records);
    let id = match spool.append(&[&bytes]) {
        Ok(ids) => ids.last().copied(),
        Err(e) => {
            tracing::error!("cannot write {} records to the spool: {e}", records.len());
            None
        }
    };
    let dropped = spool.dropped_entries();
    if dropped > *dropped_seen {
        tracing::warn!(
            "the spool is full (service.spool_max_bytes): dropped its {} oldest batches",
            dropped - *dropped_seen
        );
        *dropped_seen = dropped;
    }
    id
}

/// `[[name, value, t], ...]`.
fn encode(records: &[Pending]) -> Vec<u8> {
    let rows: Vec<Json> = records
        .iter()
        .map(|r| {
            let v = match &r.value {
                Value::Number(x) => Json::from(*x),
                Value::String(s) => Json::from(s.as_str()),
                Value::Bool(b) => Json::from(*b),
            };
            Json::Array(vec![Json::from(&*r.name), v, Json::from(r.time)])
        })
        .collect();
    serde_json::to_vec(&rows).unwrap_or_default()
}

/// One entry back into readings (one per record, each with its own time). None: not ours.
fn decode(bytes: &[u8]) -> Option<Vec<Reading>> {
    let rows: Vec<(String, Json, f64)> = serde_json::from_slice(bytes).ok()?;
    rows.into_iter()
        .map(|(name, v, t)| {
            let value = match v {
                Json::Number(n) => Value::Number(n.as_f64()?),
                Json::String(s) => Value::String(s),
                Json::Bool(b) => Value::Bool(b),
                _ => return None,
            };
            Some(Reading::at(t).with(name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pending(name: &str, value: Value, time: f64) -> Pending {
        Pending {
            seq: 0,
            name: Arc::from(name),
            unit: None,
            value,
            time,
        }
    }

    #[test]
    fn a_batch_comes_back_as_it_was_written() {
        let batch = [
            pending("temp:temperature", Value::Number(21.25), 1_700_000_000.5),
            pending("dev:name", Value::String("pump \"A\"".into()), 1_700_000_001.0),
            pending("dev:on", Value::Bool(true), 1_700_000_002.0),
        ];
        let back = decode(&encode(&batch)).unwrap();
        let expected = vec![
            Reading::at(1_700_000_000.5).with("temp:temperature", 21.25),
            Reading::at(1_700_000_001.0).with("dev:name", "pump \"A\""),
            Reading::at(1_700_000_002.0).with("dev:on", true),
        ];
        assert_eq!(back, expected);
        assert_eq!(decode(b"[[1,2,3]]"), None);
        assert_eq!(decode(b"garbage"), None);
    }

    /// The cost of spooling on the poll path: `cargo test --release -p tolomeo-core --lib
    /// spool_encode_rate -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn spool_encode_rate() {
        let batch: Vec<Pending> = (0..10_000)
            .map(|i| {
                pending(
                    "engine:rpm",
                    Value::Number(800.0 + f64::from(i) * 0.125),
                    1.7e9 + f64::from(i) * 0.01,
                )
            })
            .collect();
        let t0 = std::time::Instant::now();
        let mut bytes = 0;
        for _ in 0..50 {
            bytes += encode(std::hint::black_box(&batch)).len();
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "spool encode: {:.2} M records/s, {:.1} bytes/record",
            500_000.0 / secs / 1e6,
            bytes as f64 / 500_000.0
        );
    }
}
