//! The handle on a running service that commands and plugins get ([`ServiceHandle`]), and
//! the delivery counters `GetStatus` reports ([`Status`]). It reads the outbox and the link
//! and owns the poll period and the metric registry; it knows nothing of commands, plugins or
//! the service's tasks, so that those can all depend on it.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::metric::{Announcement, Metric, MetricError, Registry};
use crate::outbox::Outbox;
use crate::transport::Link;
use crate::wire::ServiceName;

/// Counters reported by `GetStatus`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    /// Records confirmed by the broker since start.
    pub published_records: u64,
    /// Records dropped: undeclared metric, wrong type, not finite, queue or buffer full.
    pub dropped_records: u64,
    /// Records waiting for delivery.
    pub buffered_records: u64,
    /// When the last confirmed publish happened (Unix seconds).
    pub last_publish_t: Option<f64>,
    /// Connected to the broker now.
    pub broker_connected: bool,
}

/// A handle on a running service, given to commands and plugins.
#[derive(Clone)]
pub struct ServiceHandle(Arc<Shared>);

struct Shared {
    name: ServiceName,
    version: String,
    plugin_id: String,
    base_name: String,
    started: Instant,
    poll_time: watch::Sender<Duration>,
    registry: RwLock<Arc<Registry>>,
    metrics_changed: Notify,
    outbox: Arc<Outbox>,
    link: Arc<Link>,
}

/// What a service hands to [`ServiceHandle::new`].
pub(crate) struct Parts {
    pub(crate) name: ServiceName,
    pub(crate) version: String,
    pub(crate) plugin_id: String,
    pub(crate) base_name: String,
    pub(crate) poll_time: watch::Sender<Duration>,
    pub(crate) registry: Registry,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) link: Arc<Link>,
}

impl ServiceHandle {
    pub(crate) fn new(p: Parts) -> Self {
        ServiceHandle(Arc::new(Shared {
            name: p.name,
            version: p.version,
            plugin_id: p.plugin_id,
            base_name: p.base_name,
            started: Instant::now(),
            poll_time: p.poll_time,
            registry: RwLock::new(Arc::new(p.registry)),
            metrics_changed: Notify::new(),
            outbox: p.outbox,
            link: p.link,
        }))
    }

    /// Wait until [`set_metrics`](Self::set_metrics) changed the metric set.
    pub(crate) async fn metrics_changed(&self) {
        self.0.metrics_changed.notified().await;
    }

    /// The service name.
    pub fn name(&self) -> &str {
        self.0.name.as_str()
    }
    /// The version.
    pub fn version(&self) -> &str {
        &self.0.version
    }
    /// The SenML base name of this device.
    pub fn base_name(&self) -> &str {
        &self.0.base_name
    }
    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.0.started.elapsed()
    }
    /// The poll period now.
    pub fn poll_time(&self) -> Duration {
        *self.0.poll_time.borrow()
    }
    /// Change the poll period; the poll loop follows at once.
    pub fn set_poll_time(&self, period: Duration) {
        self.0.poll_time.send_replace(period);
        tracing::info!("poll time set to {} ms", period.as_millis());
    }
    /// Delivery counters.
    pub fn status(&self) -> Status {
        let counts = self.0.outbox.counts();
        Status {
            published_records: counts.published,
            dropped_records: counts.dropped,
            buffered_records: counts.buffered,
            last_publish_t: counts.last_publish_t,
            broker_connected: self.0.link.is_connected(),
        }
    }
    /// The entries announced on `events.params`.
    pub fn announcements(&self) -> Vec<Announcement> {
        self.registry().announcements()
    }
    /// Replace the set of published metrics (e.g. a network interface appeared). Announced at once.
    pub fn set_metrics(&self, metrics: Vec<Metric>) -> Result<(), MetricError> {
        let reg = Registry::new(&self.0.plugin_id, &self.0.base_name, metrics)?;
        if let Ok(mut slot) = self.0.registry.write() {
            *slot = Arc::new(reg);
        }
        self.0.metrics_changed.notify_one();
        Ok(())
    }
    pub(crate) fn registry(&self) -> Arc<Registry> {
        match self.0.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
