//! Delivery: publish the outbox in order; records leave it only once the broker confirmed them.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::buffer::Pending;
use crate::outbox::Outbox;
use crate::senml::PackLimits;
use crate::transport::{DeliveryError, Link};
use crate::wire::DATA_SUBJECT;

/// Publishes the outbox in order; records leave it only once confirmed.
pub(super) struct Delivery {
    pub(super) link: Arc<Link>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) base_name: String,
    pub(super) limits: PackLimits,
    pub(super) compact: bool,
}

impl Delivery {
    /// Deliver until `finishing` fires and the outbox is empty, or, when the broker is away,
    /// everything it holds is on disk (the next start delivers it).
    pub(super) async fn run(self, finishing: CancellationToken) {
        let Delivery {
            link,
            outbox,
            base_name,
            limits,
            compact,
        } = self;
        let mut state = link.state();
        let batch_records = limits.max_records.saturating_mul(16);
        let mut failures = 0u32;
        loop {
            while link.is_connected() {
                let batch = outbox.next_batch(batch_records);
                let Some(last) = batch.last() else { break };
                let last_seq = last.seq;
                let outs: Vec<_> = batch.iter().map(Pending::out).collect();
                match link
                    .publish_records(DATA_SUBJECT, &base_name, compact, &outs, limits)
                    .await
                {
                    Ok(()) => {
                        failures = 0;
                        outbox.confirm(last_seq);
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
                            outbox.reject(a.seq, b.seq);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures.is_power_of_two() {
                            tracing::warn!("{} records not yet delivered: {e}; will retry", outbox.len());
                        }
                        break;
                    }
                }
            }
            if finishing.is_cancelled() && (outbox.is_empty() || (!link.is_connected() && outbox.is_durable())) {
                return;
            }
            let retry = if failures > 0 && link.is_connected() {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = outbox.new_data() => {}
                _ = state.changed() => {}
                _ = finishing.cancelled(), if !finishing.is_cancelled() => {}
                _ = tokio::time::sleep(retry) => {}
            }
        }
    }
}
