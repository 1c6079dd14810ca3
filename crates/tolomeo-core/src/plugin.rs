//! The plugin side: the part of a service that talks to hardware.
//!
//! Implement [`SensorPlugin`] (py-tolomeo's `SensorPlugin` with its `Meta`): an id, the
//! declared metrics, the commands, `connect`/`disconnect`, a health report, and either
//! [`SensorPlugin::sample`] (called by the service once per poll period: the simple case) or
//! [`SensorPlugin::start`] (start long-running reading tasks through the [`TaskManager`],
//! which the service cancels on shutdown: the streaming case, e.g. a CAN bus).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::Command;
use crate::handle::ServiceHandle;
use crate::metric::Metric;
use crate::reading::{Reading, Readings};

/// What a plugin reports about its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The source is reachable and readable. Heartbeats are sent only while this is true.
    pub healthy: bool,
    /// A human explanation, shown by `GetStatus`.
    pub detail: String,
}

impl Health {
    /// Healthy, with a detail.
    pub fn healthy(detail: impl Into<String>) -> Self {
        Health {
            healthy: true,
            detail: detail.into(),
        }
    }
    /// Unhealthy, with the reason.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Health {
            healthy: false,
            detail: reason.into(),
        }
    }
}

/// An error from a plugin's hardware side.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PluginError(pub String);

impl PluginError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        PluginError(msg.into())
    }
}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError(e.to_string())
    }
}

/// A sensor plugin. See the crate documentation for a whole example.
#[async_trait]
pub trait SensorPlugin: Send + Sync + Sized + 'static {
    /// The plugin id: prefix of its bare metric names (`temp` makes `temp:temperature`).
    fn id(&self) -> &str;

    /// The metrics this plugin publishes (py-tolomeo `Meta.out_metrics`).
    fn metrics(&self) -> Vec<Metric>;

    /// The plugin's own commands (py-tolomeo `Meta.commands`); the built-ins are added by the service.
    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        Vec::new()
    }

    /// Open the source. An error is logged and retried with backoff; the service runs meanwhile.
    async fn connect(&self) -> Result<(), PluginError> {
        Ok(())
    }

    /// Close the source. Called once on shutdown, after the reading tasks have ended.
    async fn disconnect(&self) {}

    /// The source's health. Called before every heartbeat and by `GetStatus`; keep it cheap.
    fn health(&self) -> Health {
        Health::healthy("ok")
    }

    /// Read once. Called by the service at every poll period, just before it publishes, with a
    /// [`Reading`] stamped with the current time. Leave it empty to publish nothing.
    ///
    /// The service drains the reading channel after `sample` returns, so readings sent through
    /// [`PluginContext::readings`] from inside `sample` (per-poll aggregates of a streaming
    /// plugin, say) are published in the same poll.
    async fn sample(&self, _reading: &mut Reading) -> Result<(), PluginError> {
        Ok(())
    }

    /// Start long-running reading tasks with [`PluginContext::tasks`], pushing into
    /// [`PluginContext::readings`]. Called once after the first successful `connect`.
    fn start(self: &Arc<Self>, _ctx: &PluginContext) {}
}

/// What a plugin gets to run its reading tasks.
#[derive(Clone)]
pub struct PluginContext {
    /// Where readings go.
    pub readings: Readings,
    /// Starts tasks that end when the service shuts down.
    pub tasks: TaskManager,
    /// The current poll period; changes when `SetPollTime` runs.
    pub poll_time: watch::Receiver<Duration>,
    /// The service: counters, and [`ServiceHandle::set_metrics`] when the metric set changes.
    pub service: ServiceHandle,
}

/// Starts tasks that the service cancels on shutdown, and waits for them to finish.
#[derive(Debug, Clone)]
pub struct TaskManager {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl TaskManager {
    pub(crate) fn new(token: CancellationToken) -> Self {
        TaskManager {
            token,
            tracker: TaskTracker::new(),
        }
    }

    /// Run `fut` until it ends or the service shuts down, whichever comes first.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => tracing::debug!(task = name, "task cancelled"),
                _ = fut => tracing::debug!(task = name, "task ended"),
            }
        });
    }

    /// Run a task that ends by itself once `shutdown` (the token it is given) is cancelled,
    /// for a task that holds readings it must hand over before the service stops (an open
    /// aggregation window). The service waits for it before it drains the readings, so it
    /// must end promptly after the token is cancelled.
    pub fn spawn_finishing<F, Fut>(&self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let fut = task(self.token.clone());
        self.tracker.spawn(async move {
            fut.await;
            tracing::debug!(task = name, "task ended");
        });
    }

    /// The shutdown signal, for tasks that want to finish cleanly themselves.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Cancel every task and wait until all have ended.
    pub(crate) async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
