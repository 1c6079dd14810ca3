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
//! (bounded by `shutdown_timeout_ms`; at once when the broker is away and everything held is
//! in the spool), write the spool's acknowledgement, disconnect the plugin, close the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, NatsConfig, ServiceConfig};
use crate::handle::{Parts, ServiceHandle};
use crate::health::Notifier;
use crate::metric::{MetricError, Registry};
use crate::outbox::Outbox;
use crate::plugin::{PluginContext, SensorPlugin, TaskManager};
use crate::reading::{self};
use crate::senml::PackLimits;
use crate::spooling::{self, Recovered};
use crate::transport::{Link, LinkError};
use crate::wire::{DeviceSerial, ServiceName};

mod delivery;
mod poll;
mod router;
mod tasks;

use delivery::Delivery;
use poll::{DropReport, Poller};
use router::Router;
use tasks::{announce, connect_plugin, heartbeat, serve_commands, stop_when_refused};

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
    /// The broker refused something the service needs (a subject's permission, a
    /// subscription): it stopped, and a restart may help once the broker is fixed.
    #[error("{0}")]
    Refused(String),
}

impl From<LinkError> for ServiceError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Config(e) => ServiceError::Config(e),
            LinkError::Refused(why) => ServiceError::Refused(why),
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
        // Cancelled by the caller, or by the service itself when the broker refuses it.
        let shutdown = shutdown.child_token();
        let cfg = &settings.service;
        let base_name = settings.serial.base_name();
        let registry = Registry::new(plugin.id(), &base_name, plugin.metrics())?;
        let router = Router::new(plugin.commands(), Duration::from_millis(cfg.command_timeout_ms))
            .map_err(ServiceError::Commands)?;
        let link = Arc::new(Link::connect(&settings.nats, settings.name.as_str()).await?);
        let (outbox, recovered) = open_outbox(cfg).await?;
        let outbox = Arc::new(outbox);
        let (poll_tx, poll_rx) = watch::channel(settings.poll_time());
        let handle = ServiceHandle::new(Parts {
            name: settings.name.clone(),
            version: settings.version.clone(),
            plugin_id: plugin.id().to_string(),
            base_name: base_name.clone(),
            poll_time: poll_tx,
            registry,
            outbox: outbox.clone(),
            link: link.clone(),
        });
        let (readings, queue) = reading::channel(cfg.reading_queue);
        let plugin_ready = Arc::new(AtomicBool::new(false));
        let notifier = Notifier::from_env();
        let mut poller = Poller {
            plugin: plugin.clone(),
            plugin_ready: plugin_ready.clone(),
            queue,
            outbox: outbox.clone(),
            handle: handle.clone(),
            drops: DropReport::default(),
        };
        poller.replay(recovered);

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
        tracker.spawn(stop_when_refused(link.clone(), shutdown.clone(), internal.clone()));
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
        let delivery = tokio::spawn(
            Delivery {
                link: link.clone(),
                outbox: outbox.clone(),
                base_name: base_name.clone(),
                limits: PackLimits {
                    max_records: cfg.max_pack_records,
                    max_bytes: cfg.max_pack_bytes,
                },
                compact: cfg.compact,
            }
            .run(finishing.clone()),
        );

        notifier.notify("READY=1");
        tracing::info!(
            service = %settings.name,
            serial = %settings.serial,
            broker = %settings.nats.url,
            poll_ms = settings.poll_time().as_millis() as u64,
            "started"
        );

        poller.run(poll_rx, &notifier, &shutdown).await;

        // Shutdown: plugin tasks first, then what they left in the channel.
        notifier.notify("STOPPING=1");
        tracing::info!("stopping: ending the plugin's tasks");
        plugin_tasks.shutdown().await;
        poller.collect(false).await;
        outbox.settle().await;
        let held = outbox.len();
        finishing.cancel();
        let deadline = Duration::from_millis(cfg.shutdown_timeout_ms);
        let delivered = tokio::time::timeout(deadline, delivery).await.is_ok();
        match outbox.len() {
            0 => tracing::info!("delivered what was held ({held} records at stop)"),
            left if outbox.is_durable() => tracing::info!(
                "{left} records not delivered (the broker {}); they are in the spool",
                if delivered {
                    "is not connected"
                } else {
                    "did not confirm them in time"
                }
            ),
            left => tracing::warn!(
                "{left} records could not be delivered within {} ms and are lost",
                deadline.as_millis()
            ),
        }
        outbox.close().await;
        internal.cancel();
        tracker.close();
        tracker.wait().await;
        if plugin_ready.load(Ordering::Relaxed) {
            plugin.disconnect().await;
        }
        link.close().await;
        tracing::info!("stopped");
        match link.refusal().borrow().clone() {
            Some(why) => Err(ServiceError::Refused(why)),
            None => Ok(()),
        }
    }
}

/// The outbox, with the spool if configured (or given by systemd's `StateDirectory=`), and
/// what the spool held.
async fn open_outbox(cfg: &ServiceConfig) -> Result<(Outbox, Recovered), ServiceError> {
    let memory = || Ok((Outbox::new(cfg.buffer_records), Vec::new()));
    let Some((dir, explicit)) = cfg.spool_dir() else {
        return memory();
    };
    // Reading the spool back is disk I/O too: off the runtime's thread.
    let (max_bytes, fsync) = (cfg.spool_max_bytes, cfg.spool_fsync_batches);
    let opening = dir.clone();
    let opened = tokio::task::spawn_blocking(move || spooling::open(opening, max_bytes, fsync))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .and_then(|(spool, entries, recovery)| Ok((Outbox::with_spool(cfg.buffer_records, spool)?, entries, recovery)));
    match opened {
        Ok((outbox, entries, recovery)) => {
            let records: usize = entries.iter().map(|(_, r)| r.len()).sum();
            if records > 0 || recovery.corrupt_entries > 0 || recovery.skipped_bytes > 0 {
                tracing::info!(
                    "spool {}: replaying {records} records; skipped {} damaged entries ({} bytes)",
                    dir.display(),
                    recovery.corrupt_entries,
                    recovery.skipped_bytes
                );
            }
            Ok((outbox, entries))
        }
        Err(e) if explicit => Err(ServiceError::Config(ConfigError::one(
            "configuration",
            "service.spool_dir",
            format!("cannot use {} as the spool: {e}", dir.display()),
        ))),
        Err(e) => {
            tracing::error!(
                "cannot use {} as the spool ({e}); records are kept in memory only",
                dir.display()
            );
            memory()
        }
    }
}
