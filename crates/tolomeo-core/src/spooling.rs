//! The service's use of the disk spool: which batches go to disk, how they come back, and
//! when they are forgotten.
//!
//! Every poll's batch of records is appended to the spool (one entry, a compact JSON array
//! `[[name, value, t], ...]`) before it enters the in-memory buffer, and remembered with the
//! sequence number of its last record. When the broker confirms records up to a sequence
//! number, every entry up to it is acknowledged (at most every `ACK_INTERVAL`, and at
//! shutdown, to spare the flash). On start, entries not acknowledged are read back and go
//! through the same registry checks as fresh readings, ahead of them. So after a crash or a
//! power cut, records collected but not confirmed are delivered once the service is back;
//! those confirmed in the last `ACK_INTERVAL` before the crash may be delivered twice.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::buffer::Pending;
use crate::reading::{Reading, Value};
use crate::spool::{EntryId, FsyncPolicy, Recovery, Spool, SpoolConfig};

/// What the spool held at start: each entry not yet acknowledged, with its readings.
pub(crate) type Recovered = Vec<(EntryId, Vec<Reading>)>;

/// How often acknowledgements are written at most.
pub const ACK_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) struct Spooler {
    spool: Spool,
    /// (sequence number of the last record of a batch, the entry holding it), oldest first.
    marks: VecDeque<(u64, EntryId)>,
    pending_ack: Option<EntryId>,
    last_ack: Instant,
    dropped_seen: u64,
}

impl Spooler {
    /// Open the spool in `dir`; return it, the readings of each entry not yet acknowledged
    /// (oldest first), and what was skipped.
    pub(crate) fn open(
        dir: PathBuf,
        max_bytes: u64,
        fsync_batches: u32,
    ) -> std::io::Result<(Self, Recovered, Recovery)> {
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
        let spooler = Spooler {
            spool,
            marks: VecDeque::new(),
            pending_ack: None,
            last_ack: Instant::now(),
            dropped_seen: 0,
        };
        Ok((spooler, entries, recovery))
    }

    /// Remember that entry `id` holds records up to sequence number `last_seq`; `None`: it
    /// holds none that are still wanted, so it can be acknowledged with the next confirmation.
    pub(crate) fn mark(&mut self, last_seq: Option<u64>, id: EntryId) {
        self.marks.push_back((last_seq.unwrap_or(0), id));
    }

    /// Write one batch; remember it under `last_seq`. Errors are logged: the records stay in
    /// memory and are still delivered while the service runs.
    pub(crate) fn append(&mut self, records: &[Pending], last_seq: u64) {
        if records.is_empty() {
            return;
        }
        let bytes = encode(records);
        match self.spool.append(&[&bytes]) {
            Ok(ids) => {
                if let Some(id) = ids.last() {
                    self.marks.push_back((last_seq, *id));
                }
            }
            Err(e) => tracing::error!("cannot write {} records to the spool: {e}", records.len()),
        }
        let dropped = self.spool.dropped_entries();
        if dropped > self.dropped_seen {
            tracing::warn!(
                "the spool is full (service.spool_max_bytes): dropped its {} oldest batches",
                dropped - self.dropped_seen
            );
            self.dropped_seen = dropped;
        }
    }

    /// Records up to `seq` were confirmed by the broker.
    pub(crate) fn confirmed(&mut self, seq: u64) {
        while let Some(&(last, id)) = self.marks.front() {
            if last > seq {
                break;
            }
            self.pending_ack = Some(id);
            self.marks.pop_front();
        }
        if self.last_ack.elapsed() >= ACK_INTERVAL {
            self.flush_ack();
        }
    }

    /// Write the pending acknowledgement now (shutdown, or the interval has passed).
    pub(crate) fn flush_ack(&mut self) {
        if let Some(id) = self.pending_ack.take() {
            if let Err(e) = self.spool.ack(id) {
                tracing::error!("cannot acknowledge delivered records in the spool: {e}");
            }
            self.last_ack = Instant::now();
        }
    }

    /// Acknowledge what is pending and fsync; return how many entries stay on disk.
    pub(crate) fn close(&mut self) -> u64 {
        self.flush_ack();
        if let Err(e) = self.spool.sync() {
            tracing::error!("cannot sync the spool: {e}");
        }
        self.spool.pending_entries()
    }

    /// Bytes written since start (for the flash-wear estimate).
    pub(crate) fn bytes_written(&self) -> u64 {
        self.spool.bytes_written()
    }
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
