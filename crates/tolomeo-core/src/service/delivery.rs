//! Delivery: publish the buffer in order, remove records only once the broker confirmed them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ServiceHandle, lock};
use crate::buffer::{Buffer, Pending};
use crate::reading::unix_now;
use crate::senml::PackLimits;
use crate::spooling::Spooler;
use crate::transport::{DeliveryError, Link};
use crate::wire::DATA_SUBJECT;

/// Publishes the buffer in order; removes records only once confirmed.
pub(super) struct Delivery {
    pub(super) link: Arc<Link>,
    pub(super) buffer: Arc<Mutex<Buffer>>,
    pub(super) spooler: Arc<Mutex<Option<Spooler>>>,
    pub(super) new_data: Arc<Notify>,
    pub(super) handle: ServiceHandle,
    pub(super) limits: PackLimits,
    pub(super) compact: bool,
}

impl Delivery {
    /// Deliver until `finishing` fires and the buffer is empty.
    pub(super) async fn run(self, finishing: CancellationToken) {
        let Delivery {
            link,
            buffer,
            spooler,
            new_data,
            handle,
            limits,
            compact,
        } = self;
        let base_name = handle.base_name().to_string();
        let mut state = link.state();
        let batch_records = limits.max_records.saturating_mul(16);
        let mut failures = 0u32;
        loop {
            while link.is_connected() {
                let batch = lock(&buffer).peek(batch_records);
                let Some(last) = batch.last() else { break };
                let last_seq = last.seq;
                let outs: Vec<_> = batch.iter().map(Pending::out).collect();
                match link
                    .publish_records(DATA_SUBJECT, &base_name, compact, &outs, limits)
                    .await
                {
                    Ok(()) => {
                        failures = 0;
                        let mut buf = lock(&buffer);
                        let n = buf.confirm(last_seq);
                        handle.0.buffered.store(buf.len() as u64, Ordering::Relaxed);
                        drop(buf);
                        if let Some(sp) = lock(&spooler).as_mut() {
                            sp.confirmed(last_seq);
                        }
                        handle.0.published.fetch_add(n as u64, Ordering::Relaxed);
                        handle
                            .0
                            .last_publish_bits
                            .store(unix_now().to_bits(), Ordering::Relaxed);
                    }
                    Err(DeliveryError::TooLarge {
                        index,
                        records,
                        size,
                        max,
                    }) => {
                        // Nothing of the batch was sent. A pack over the broker's limit is one record
                        // larger than max_payload: it can never be delivered, so drop it.
                        let bad = batch.get(index..index + records).unwrap_or_default();
                        if let (Some(a), Some(b)) = (bad.first(), bad.last()) {
                            tracing::error!(
                                "dropping {records} record(s) starting with `{}`: their pack is {size} bytes, over the broker's max_payload of {max}",
                                a.name
                            );
                            let mut buf = lock(&buffer);
                            let removed = buf.remove(a.seq, b.seq);
                            handle.0.buffered.store(buf.len() as u64, Ordering::Relaxed);
                            drop(buf);
                            handle.count_dropped(removed as u64);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!("{} records not yet delivered: {e}; will retry", lock(&buffer).len());
                        }
                        break;
                    }
                }
            }
            if finishing.is_cancelled() && lock(&buffer).is_empty() {
                return;
            }
            let retry = if failures > 0 && link.is_connected() {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = new_data.notified() => {}
                _ = state.changed() => {}
                _ = finishing.cancelled(), if !finishing.is_cancelled() => {}
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }
}
