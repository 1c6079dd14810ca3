//! Readings: what a plugin pushes, and the bounded channel it pushes them into.
//!
//! A [`Reading`] is a timestamp and `metric -> value` pairs, the Rust form of the tuples
//! py-tolomeo puts on `_data_queue`. [`Readings`] is the sending half of the bounded channel
//! the service drains every poll period. Keys are metric names as declared (bare or
//! `<plugin_id>:<metric>`); the service checks them against the registry when it drains, so a
//! reading for an undeclared metric or with a non-finite number is counted and dropped there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

pub use tolomeo_proto::senml::Value;
pub use tolomeo_proto::unix_now;

/// Values read at one moment.
///
/// ```
/// use tolomeo_core::Reading;
/// let r = Reading::now().with("temperature", 21.5).with("pump", true);
/// assert_eq!(r.values().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    time: f64,
    values: Vec<(String, Value)>,
}

impl Reading {
    /// A reading taken now.
    pub fn now() -> Self {
        Self::at(unix_now())
    }
    /// A reading taken at `time` (Unix seconds), e.g. the timestamp of a CAN frame.
    pub fn at(time: f64) -> Self {
        Reading {
            time,
            values: Vec::new(),
        }
    }
    /// Add a value (builder form).
    pub fn with(mut self, metric: impl Into<String>, value: impl Into<Value>) -> Self {
        self.push(metric, value);
        self
    }
    /// Add a value.
    pub fn push(&mut self, metric: impl Into<String>, value: impl Into<Value>) {
        self.values.push((metric.into(), value.into()));
    }
    /// When it was read (Unix seconds).
    pub fn time(&self) -> f64 {
        self.time
    }
    /// The values.
    pub fn values(&self) -> &[(String, Value)] {
        &self.values
    }
    /// True when it holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub(crate) fn into_parts(self) -> (f64, Vec<(String, Value)>) {
        (self.time, self.values)
    }
}

/// The sending half of the bounded reading channel. Cheap to clone; one per reading task.
#[derive(Debug, Clone)]
pub struct Readings {
    tx: mpsc::Sender<Reading>,
    overflow: Arc<AtomicU64>,
}

/// The receiving half, owned by the service's poll loop.
#[derive(Debug)]
pub(crate) struct ReadingQueue {
    pub(crate) rx: mpsc::Receiver<Reading>,
    pub(crate) overflow: Arc<AtomicU64>,
}

/// A bounded channel of `capacity` readings.
pub(crate) fn channel(capacity: usize) -> (Readings, ReadingQueue) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(AtomicU64::new(0));
    (
        Readings {
            tx,
            overflow: overflow.clone(),
        },
        ReadingQueue { rx, overflow },
    )
}

impl Readings {
    /// Send a reading, waiting while the channel is full. Returns false once the service has
    /// stopped draining (shutting down): the reading task should end.
    pub async fn send(&self, reading: Reading) -> bool {
        if reading.is_empty() {
            return true;
        }
        self.tx.send(reading).await.is_ok()
    }

    /// Send a reading without waiting: when the channel is full the reading is dropped and its
    /// values are counted in `dropped_records`. For sources that cannot wait (a CAN socket).
    /// Returns false once the service has stopped draining.
    pub fn try_send(&self, reading: Reading) -> bool {
        if reading.is_empty() {
            return true;
        }
        match self.tx.try_send(reading) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(r)) => {
                self.overflow.fetch_add(r.values.len() as u64, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// True once the service has stopped draining.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn try_send_counts_what_does_not_fit() {
        let (tx, mut q) = channel(1);
        assert!(tx.try_send(Reading::at(1.0).with("a", 1.0)));
        assert!(tx.try_send(Reading::at(2.0).with("a", 2.0).with("b", 3.0)));
        assert_eq!(q.overflow.load(Ordering::Relaxed), 2);
        assert_eq!(q.rx.recv().await.unwrap().time(), 1.0);
        drop(q);
        assert!(!tx.try_send(Reading::at(3.0).with("a", 1.0)));
        assert!(tx.is_closed());
    }
}
