//! The bounded delivery buffer: records collected but not yet confirmed by the broker.
//!
//! Records enter in poll order and leave only when a batch holding them is confirmed
//! ([`Buffer::confirm`]). When the buffer is full the oldest records are dropped and counted.
//! Each record has a sequence number, so a confirmation that races with a drop removes
//! exactly what was delivered.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::senml::{OutRecord, Value};

/// A record waiting for delivery. Names and units are shared with the registry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub(crate) seq: u64,
    pub(crate) name: Arc<str>,
    pub(crate) unit: Option<Arc<str>>,
    pub(crate) value: Value,
    pub(crate) time: f64,
}

impl Pending {
    pub(crate) fn out(&self) -> OutRecord<'_> {
        OutRecord {
            name: &self.name,
            unit: self.unit.as_deref(),
            value: &self.value,
            time: self.time,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Buffer {
    queue: VecDeque<Pending>,
    capacity: usize,
    next_seq: u64,
}

impl Buffer {
    pub(crate) fn new(capacity: usize) -> Self {
        Buffer {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    /// Append records (their `seq` is assigned here). Returns how many old records were dropped.
    pub(crate) fn push(&mut self, records: impl IntoIterator<Item = Pending>) -> usize {
        for mut r in records {
            r.seq = self.next_seq;
            self.next_seq += 1;
            self.queue.push_back(r);
        }
        let excess = self.queue.len().saturating_sub(self.capacity);
        self.queue.drain(..excess);
        excess
    }

    /// A copy of the oldest `max` records.
    pub(crate) fn peek(&self, max: usize) -> Vec<Pending> {
        self.queue.iter().take(max).cloned().collect()
    }

    /// Remove every record up to and including `seq`. Returns how many were removed.
    pub(crate) fn confirm(&mut self, seq: u64) -> usize {
        let n = self.queue.iter().take_while(|r| r.seq <= seq).count();
        self.queue.drain(..n);
        n
    }

    /// Remove the records with `first <= seq <= last`. Returns how many were removed.
    pub(crate) fn remove(&mut self, first: u64, last: u64) -> usize {
        let before = self.queue.len();
        self.queue.retain(|r| r.seq < first || r.seq > last);
        before - self.queue.len()
    }

    /// The sequence number the next pushed record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: f64) -> Pending {
        Pending {
            seq: 0,
            name: Arc::from("a:b"),
            unit: None,
            value: Value::Number(t),
            time: t,
        }
    }

    #[test]
    fn full_buffer_drops_the_oldest() {
        let mut b = Buffer::new(3);
        assert_eq!(b.push((1..=5).map(|i| rec(i as f64))), 2);
        let times: Vec<f64> = b.peek(10).iter().map(|r| r.time).collect();
        assert_eq!(times, [3.0, 4.0, 5.0]);
    }

    #[test]
    fn confirm_removes_exactly_what_was_sent_even_after_drops() {
        let mut b = Buffer::new(4);
        b.push((1..=4).map(|i| rec(i as f64)));
        let batch = b.peek(2); // records 1 and 2 (seq 0 and 1) in flight
        b.push([rec(5.0)]); // drops record 1 meanwhile
        assert_eq!(b.confirm(batch.last().unwrap().seq), 1);
        let times: Vec<f64> = b.peek(10).iter().map(|r| r.time).collect();
        assert_eq!(times, [3.0, 4.0, 5.0]);
    }
}
