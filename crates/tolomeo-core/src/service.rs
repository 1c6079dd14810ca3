//! The service: owns the plugin's lifecycle and everything between it and the broker.
//!
//! [`Service::run`] starts these tasks and returns when the shutdown token fires and
//! everything has stopped:
//!
//! - the poll loop: every poll period, ask the plugin for a sample, drain the reading
//!   channel, check each value against the registry and put the records into the buffer;
//!   pets the systemd watchdog;
//! - delivery: publishes the buffer on `events.data` in packs and removes records only
//!   once the broker has confirmed them;
//! - the heartbeat, sent only while connected and the plugin is healthy;
//! - the `events.params` announcement, after each (re)connect, on change and periodically;
//! - the command router on `commands.<service>.req`, one command at a time;
//! - the plugin connector, which retries `connect` with backoff and then starts the
//!   plugin's reading tasks.
//!
//! Shutdown order: stop the plugin's tasks, drain what they queued, deliver the buffer
//! (bounded by `shutdown_timeout_ms`), disconnect the plugin, close the connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffer::{Buffer, Pending};
use crate::command::{Router, parse_request};
use crate::config::{ConfigError, NatsConfig, ServiceConfig};
use crate::health::Notifier;
use crate::metric::{Announcement, Metric, MetricError, Registry};
use crate::plugin::{PluginContext, SensorPlugin, TaskManager};
use crate::reading::{self, Reading, ReadingQueue, Value, unix_now};
use crate::senml::{self, PackLimits};
use crate::transport::{DeliveryError, Link};
use crate::wire::{DATA_SUBJECT, DeviceSerial, PARAMS_SUBJECT, ServiceName};

/// Everything a service needs besides its plugin.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service name (subject token).
    pub name: ServiceName,
    /// Version reported by `Ping`.
    pub version: String,
    /// The device serial (base name `urn:cpt:device:sn:<serial>:`).
    pub serial: DeviceSerial,
    /// Poll period used when `service.poll_time_ms` is not set.
    pub default_poll_time: Duration,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[nats]`.
    pub nats: NatsConfig,
}

impl Settings {
    /// Settings with every default, for a service `name` on device `serial`.
    pub fn new(name: ServiceName, serial: DeviceSerial) -> Self {
        Settings {
            name,
            version: String::from("0.0.0"),
            serial,
            default_poll_time: Duration::from_secs(10),
            service: ServiceConfig::default(),
            nats: NatsConfig::default(),
        }
    }

    /// The poll period in force at start.
    pub fn poll_time(&self) -> Duration {
        self.service
            .poll_time_ms
            .map(Duration::from_millis)
            .unwrap_or(self.default_poll_time)
    }
}

/// Why a service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The plugin declared an invalid metric.
    #[error("invalid metric declaration: {0}")]
    Metric(#[from] MetricError),
    /// The plugin's command list is invalid.
    #[error("invalid command list: {0}")]
    Commands(String),
    /// A configuration problem found while starting (e.g. an unreadable credentials file).
    #[error("{0}")]
    Config(#[from] ConfigError),
}

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
    published: AtomicU64,
    dropped: AtomicU64,
    buffered: AtomicU64,
    last_publish_bits: AtomicU64,
    connected: AtomicBool,
}

impl ServiceHandle {
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
        let bits = self.0.last_publish_bits.load(Ordering::Relaxed);
        Status {
            published_records: self.0.published.load(Ordering::Relaxed),
            dropped_records: self.0.dropped.load(Ordering::Relaxed),
            buffered_records: self.0.buffered.load(Ordering::Relaxed),
            last_publish_t: (bits != 0).then(|| f64::from_bits(bits)),
            broker_connected: self.0.connected.load(Ordering::Relaxed),
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
    fn registry(&self) -> Arc<Registry> {
        match self.0.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    fn count_dropped(&self, n: u64) {
        if n > 0 {
            self.0.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A service built from settings and a plugin. See the crate docs for a whole example.
pub struct Service<P: SensorPlugin> {
    settings: Settings,
    plugin: Arc<P>,
}

impl<P: SensorPlugin> Service<P> {
    /// A service running `plugin`.
    pub fn new(settings: Settings, plugin: P) -> Self {
        Service {
            settings,
            plugin: Arc::new(plugin),
        }
    }

    /// Run until `shutdown` is cancelled; then stop the plugin, deliver what is held (within
    /// `shutdown_timeout_ms`), disconnect. Errors only for what prevents starting at all.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServiceError> {
        let Service { settings, plugin } = self;
        let cfg = &settings.service;
        let base_name = settings.serial.base_name();
        let registry = Registry::new(plugin.id(), &base_name, plugin.metrics())?;
        let router = Router::new(plugin.commands(), Duration::from_millis(cfg.command_timeout_ms))
            .map_err(ServiceError::Commands)?;
        let link = Arc::new(Link::connect(&settings.nats, settings.name.as_str()).await?);
        let (poll_tx, poll_rx) = watch::channel(settings.poll_time());
        let handle = ServiceHandle(Arc::new(Shared {
            name: settings.name.clone(),
            version: settings.version.clone(),
            plugin_id: plugin.id().to_string(),
            base_name: base_name.clone(),
            started: Instant::now(),
            poll_time: poll_tx,
            registry: RwLock::new(Arc::new(registry)),
            metrics_changed: Notify::new(),
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            buffered: AtomicU64::new(0),
            last_publish_bits: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }));
        let (readings, queue) = reading::channel(cfg.reading_queue);
        let buffer = Arc::new(Mutex::new(Buffer::new(cfg.buffer_records)));
        let new_data = Arc::new(Notify::new());
        let plugin_ready = Arc::new(AtomicBool::new(false));
        let notifier = Notifier::from_env();

        // Two shutdown stages: the plugin's tasks stop first, the service's own tasks last.
        let plugin_tasks = TaskManager::new(shutdown.child_token());
        let internal = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = PluginContext {
            readings,
            tasks: plugin_tasks.clone(),
            poll_time: poll_rx.clone(),
            service: handle.clone(),
        };
        tracker.spawn(connect_plugin(
            plugin.clone(),
            ctx,
            plugin_ready.clone(),
            internal.clone(),
        ));
        tracker.spawn(follow_link(link.clone(), handle.clone(), internal.clone()));
        tracker.spawn(heartbeat(
            link.clone(),
            plugin.clone(),
            plugin_ready.clone(),
            settings.name.heartbeat_subject(),
            Duration::from_millis(cfg.heartbeat_interval_ms),
            shutdown.clone(),
        ));
        tracker.spawn(announce(
            link.clone(),
            handle.clone(),
            Duration::from_secs(cfg.params_interval_s),
            internal.clone(),
        ));
        tracker.spawn(serve_commands(
            link.clone(),
            router,
            plugin.clone(),
            handle.clone(),
            settings.name.clone(),
            internal.clone(),
        ));
        let finishing = CancellationToken::new();
        let delivery = tokio::spawn(deliver(
            link.clone(),
            buffer.clone(),
            new_data.clone(),
            handle.clone(),
            PackLimits {
                max_records: cfg.max_pack_records,
                max_bytes: cfg.max_pack_bytes,
            },
            cfg.compact,
            finishing.clone(),
        ));

        notifier.notify("READY=1");
        tracing::info!(
            service = %settings.name,
            serial = %settings.serial,
            broker = %settings.nats.url,
            poll_ms = settings.poll_time().as_millis() as u64,
            "started"
        );

        let mut poller = Poller {
            plugin: plugin.clone(),
            plugin_ready: plugin_ready.clone(),
            queue,
            buffer: buffer.clone(),
            new_data: new_data.clone(),
            handle: handle.clone(),
            drops: DropReport::default(),
        };
        poller.run(poll_rx, &notifier, &shutdown).await;

        // Shutdown: plugin tasks first, then what they left in the channel.
        notifier.notify("STOPPING=1");
        tracing::info!("stopping: ending the plugin's tasks");
        plugin_tasks.shutdown().await;
        poller.collect(false).await;
        let held = lock(&buffer).len();
        finishing.cancel();
        let deadline = Duration::from_millis(cfg.shutdown_timeout_ms);
        match tokio::time::timeout(deadline, delivery).await {
            Ok(_) => tracing::info!("delivered what was held ({held} records at stop)"),
            Err(_) => tracing::warn!(
                "{} records could not be delivered within {} ms and are lost",
                lock(&buffer).len(),
                deadline.as_millis()
            ),
        }
        internal.cancel();
        tracker.close();
        tracker.wait().await;
        if plugin_ready.load(Ordering::Relaxed) {
            plugin.disconnect().await;
        }
        link.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn lock(buffer: &Mutex<Buffer>) -> std::sync::MutexGuard<'_, Buffer> {
    match buffer.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The poll loop and the conversion of readings into records.
struct Poller<P> {
    plugin: Arc<P>,
    plugin_ready: Arc<AtomicBool>,
    queue: ReadingQueue,
    buffer: Arc<Mutex<Buffer>>,
    new_data: Arc<Notify>,
    handle: ServiceHandle,
    drops: DropReport,
}

impl<P: SensorPlugin> Poller<P> {
    async fn run(&mut self, mut poll_rx: watch::Receiver<Duration>, notifier: &Notifier, shutdown: &CancellationToken) {
        let mut period = *poll_rx.borrow_and_update();
        let mut last = tokio::time::Instant::now();
        let mut next = last + period;
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
                        next = (last + period).max(tokio::time::Instant::now());
                    }
                    continue;
                }
                _ = pet => {
                    notifier.notify("WATCHDOG=1");
                    continue;
                }
            }
            last = tokio::time::Instant::now();
            next = last + period;
            self.collect(true).await;
            notifier.notify("WATCHDOG=1");
        }
    }

    /// One poll: the plugin's sample (when `sample`), then everything queued, into the buffer.
    async fn collect(&mut self, sample: bool) {
        let registry = self.handle.registry();
        let mut records = Vec::new();
        if sample && self.plugin_ready.load(Ordering::Relaxed) {
            let mut reading = Reading::now();
            let limit = self.handle.poll_time();
            match tokio::time::timeout(limit, self.plugin.sample(&mut reading)).await {
                Ok(Ok(())) => self.absorb(reading, &registry, &mut records),
                Ok(Err(e)) => self.drops.sample_error(e.to_string()),
                Err(_) => self
                    .drops
                    .sample_error(format!("no sample within the poll period ({} ms)", limit.as_millis())),
            }
        }
        while let Ok(reading) = self.queue.rx.try_recv() {
            self.absorb(reading, &registry, &mut records);
        }
        let overflow = self.queue.overflow.swap(0, Ordering::Relaxed);
        self.drops.queue_full += overflow;
        records.sort_by(|a, b| a.time.total_cmp(&b.time));
        let dropped_old = if records.is_empty() {
            0
        } else {
            let mut buf = lock(&self.buffer);
            let dropped = buf.push(records);
            self.handle.0.buffered.store(buf.len() as u64, Ordering::Relaxed);
            dropped
        };
        if dropped_old > 0 {
            self.drops.buffer_full += dropped_old as u64;
        }
        self.handle.count_dropped(self.drops.flush());
        self.new_data.notify_one();
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
struct DropReport {
    undeclared: BTreeMap<String, u64>,
    wrong_type: BTreeMap<String, u64>,
    not_finite: BTreeMap<String, u64>,
    queue_full: u64,
    buffer_full: u64,
    last_sample_error: Option<String>,
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
        let total =
            sum(&self.undeclared) + sum(&self.wrong_type) + sum(&self.not_finite) + self.queue_full + self.buffer_full;
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
        if self.buffer_full > 0 {
            tracing::warn!(
                "dropped the {} oldest records: the delivery buffer is full (service.buffer_records)",
                self.buffer_full
            );
        }
        self.undeclared.clear();
        self.wrong_type.clear();
        self.not_finite.clear();
        self.queue_full = 0;
        self.buffer_full = 0;
        total
    }
}

/// Publish the buffer in order; remove records only once confirmed.
async fn deliver(
    link: Arc<Link>,
    buffer: Arc<Mutex<Buffer>>,
    new_data: Arc<Notify>,
    handle: ServiceHandle,
    limits: PackLimits,
    compact: bool,
    finishing: CancellationToken,
) {
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

/// Keep `broker_connected` in step with the link.
async fn follow_link(link: Arc<Link>, handle: ServiceHandle, stop: CancellationToken) {
    let mut state = link.state();
    loop {
        let connected = state.borrow_and_update().connected;
        handle.0.connected.store(connected, Ordering::Relaxed);
        tokio::select! {
            _ = stop.cancelled() => return,
            r = state.changed() => if r.is_err() { return },
        }
    }
}

/// Retry `connect` with backoff (capped at 30 s), then start the plugin's tasks.
async fn connect_plugin<P: SensorPlugin>(
    plugin: Arc<P>,
    ctx: PluginContext,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        match plugin.connect().await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(
                    "plugin `{}` cannot connect: {e}; retrying in {} s",
                    plugin.id(),
                    delay.as_secs_f32()
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
    ready.store(true, Ordering::Relaxed);
    plugin.start(&ctx);
}

/// `heartbeat.<service>.service`, empty, while connected, running and healthy.
async fn heartbeat<P: SensorPlugin>(
    link: Arc<Link>,
    plugin: Arc<P>,
    ready: Arc<AtomicBool>,
    subject: String,
    period: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_healthy = true;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let health = plugin.health();
        let healthy = ready.load(Ordering::Relaxed) && health.healthy;
        if healthy != was_healthy {
            if healthy {
                tracing::info!("healthy again: {}; heartbeat resumes", health.detail);
            } else {
                tracing::warn!("unhealthy: {}; heartbeat stops until it recovers", health.detail);
            }
            was_healthy = healthy;
        }
        if healthy {
            link.publish_now(subject.clone(), Bytes::new()).await;
        }
    }
}

/// `events.params`: after each (re)connect, when the metrics change, and periodically.
async fn announce(link: Arc<Link>, handle: ServiceHandle, period: Duration, stop: CancellationToken) {
    let mut state = link.state();
    let mut seen_epoch = 0;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            _ = handle.0.metrics_changed.notified() => {}
            r = state.changed() => {
                if r.is_err() { return }
                let s = *state.borrow_and_update();
                if !s.connected || s.epoch == seen_epoch { continue }
                seen_epoch = s.epoch;
            }
        }
        let entries = match serde_json::to_string(&handle.announcements()) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!("cannot encode the metric announcement: {e}");
                continue;
            }
        };
        let pack = senml::encode_string_record(handle.base_name(), "metrics", &entries);
        link.publish_now(PARAMS_SUBJECT.to_string(), Bytes::from(pack)).await;
    }
}

/// The command router: one request at a time, in arrival order.
async fn serve_commands<P: SensorPlugin>(
    link: Arc<Link>,
    router: Router<P>,
    plugin: Arc<P>,
    handle: ServiceHandle,
    name: ServiceName,
    stop: CancellationToken,
) {
    let mut sub = match link.client().subscribe(name.request_subject()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "cannot subscribe to {}: {e}; commands are not served",
                name.request_subject()
            );
            return;
        }
    };
    let res_subject = name.response_subject();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return,
            m = sub.next() => match m { Some(m) => m, None => return },
        };
        let calls = parse_request(&msg.payload);
        let mut answers = Vec::with_capacity(calls.len());
        for call in &calls {
            let out = router.run(call, &plugin, &handle).await;
            let vs = serde_json::Value::Object(out).to_string();
            answers.push((call.name.as_str(), unix_now(), vs));
        }
        let records: Vec<(&str, f64, &str)> = answers.iter().map(|(n, t, vs)| (*n, *t, vs.as_str())).collect();
        let payload = Bytes::from(senml::encode_response(handle.base_name(), &records));
        if let Some(reply) = msg.reply {
            link.publish_now(reply.to_string(), payload.clone()).await;
        }
        link.publish_now(res_subject.clone(), payload).await;
    }
}
