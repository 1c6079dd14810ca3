//! The [`SensorPlugin`]: samples the collector once per poll, keeps the declared metric set in
//! step with what is read (re-announcing it when a mount, interface, sensor or swap comes or
//! goes), and answers `GetSnapshot`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{Map, Value as Json, json};
use tolomeo_core::{
    Command, CommandContext, CommandResult, Health, Metric, PluginContext, PluginError, Reading, SensorPlugin,
    ServiceHandle, async_trait, output, unix_now,
};

use crate::collect::{Collector, Entry};
use crate::config::CpuConfig;

/// The cpu-monitor plugin.
pub struct CpuMonitor {
    collector: Mutex<Collector>,
    /// The metric names declared to the service now, in order.
    declared: Mutex<Declared>,
    service: OnceLock<ServiceHandle>,
    /// `connect` has finished (the first CPU interval has passed).
    connected: AtomicBool,
}

struct Declared {
    names: Vec<String>,
    metrics: Vec<Metric>,
}

impl CpuMonitor {
    /// Build it and read once, so that the metrics declared at start are those present now.
    pub fn new(cfg: &CpuConfig) -> Self {
        let mut collector = Collector::new(cfg.clone());
        // With the CPU counters taken first, this read has CPU values too (over no time:
        // only their names are used here).
        collector.prime_cpu();
        let entries = collector.collect();
        CpuMonitor {
            collector: Mutex::new(collector),
            declared: Mutex::new(Declared {
                names: entries.iter().map(|e| e.name.clone()).collect(),
                metrics: entries.iter().map(Entry::metric).collect(),
            }),
            service: OnceLock::new(),
            connected: AtomicBool::new(false),
        }
    }

    fn collector(&self) -> MutexGuard<'_, Collector> {
        self.collector.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn declared(&self) -> MutexGuard<'_, Declared> {
        self.declared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read every enabled metric now: `name -> {value, unit}`.
    pub fn snapshot(&self) -> Map<String, Json> {
        let entries = self.collector().collect();
        entries
            .into_iter()
            .map(|e| (e.name, json!({ "value": e.value, "unit": e.unit })))
            .collect()
    }
}

#[async_trait]
impl SensorPlugin for CpuMonitor {
    fn id(&self) -> &str {
        "cpu"
    }

    fn metrics(&self) -> Vec<Metric> {
        self.declared().metrics.clone()
    }

    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        vec![Box::new(GetSnapshot)]
    }

    /// Checks that /proc is readable, then waits the minimum CPU interval after the counters
    /// `new` took, so that the first `cpu:*` value published is a real measurement.
    async fn connect(&self) -> Result<(), PluginError> {
        {
            let mut c = self.collector();
            c.collect();
            let health = c.health();
            if !health.healthy {
                return Err(PluginError::new(health.detail));
            }
        }
        tokio::time::sleep(crate::collect::MIN_CPU_INTERVAL).await;
        self.connected.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn health(&self) -> Health {
        if !self.connected.load(Ordering::Relaxed) {
            return Health::unhealthy("starting: checking /proc and taking the first CPU counters");
        }
        self.collector().health()
    }

    fn start(self: &Arc<Self>, ctx: &PluginContext) {
        let _ = self.service.set(ctx.service.clone());
    }

    async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
        let entries = self.collector().collect();
        let mut declared = self.declared();
        let same =
            declared.names.len() == entries.len() && declared.names.iter().zip(&entries).all(|(d, e)| *d == e.name);
        if same {
            for e in entries {
                reading.push(e.name, e.value);
            }
            return Ok(());
        }
        // The set changed. The service reads this poll against the set it had when the poll
        // began, so only metrics declared before are pushed now; new ones from the next poll.
        let before: HashSet<String> = declared.names.iter().cloned().collect();
        let metrics: Vec<Metric> = entries.iter().map(Entry::metric).collect();
        if let Some(service) = self.service.get() {
            match service.set_metrics(metrics.clone()) {
                Ok(()) => {
                    let now: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
                    let added: Vec<&str> = now.iter().filter(|n| !before.contains(**n)).copied().collect();
                    let removed: Vec<&String> = before.iter().filter(|n| !now.contains(n.as_str())).collect();
                    tracing::info!("metric set changed: added {added:?}, removed {removed:?}; announced");
                    declared.names = entries.iter().map(|e| e.name.clone()).collect();
                    declared.metrics = metrics;
                }
                Err(e) => tracing::warn!("cannot declare the new metric set: {e}"),
            }
        }
        for e in entries {
            if before.contains(&e.name) {
                reading.push(e.name, e.value);
            }
        }
        Ok(())
    }
}

/// `GetSnapshot`: every enabled metric's value, read now.
struct GetSnapshot;

#[async_trait]
impl Command<CpuMonitor> for GetSnapshot {
    fn name(&self) -> &str {
        "GetSnapshot"
    }
    fn description(&self) -> &str {
        "Every enabled metric's value, read now"
    }
    async fn execute(&self, ctx: CommandContext<'_, CpuMonitor>) -> CommandResult {
        let t = unix_now();
        let metrics = ctx.plugin.snapshot();
        Ok(output!({
            "message": format!("{} metrics read", metrics.len()),
            "t": t,
            "metrics": metrics,
        }))
    }
}
