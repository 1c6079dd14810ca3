//! What the dashboard knows now: the devices seen on `events.data`, the services heard on
//! their heartbeats with their last `GetStatus` and `GetMetrics`, the metrics each device
//! declared on `events.params`, and the ingest counters.
//!
//! A heartbeat's subject names the service but not the device; a command response's `bn`
//! names the device. So a service is placed under its device once it has answered
//! `GetStatus`, and under "unknown device" until then.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tolomeo_proto::unix_now;

use crate::history::History;

/// A declared metric (an `events.params` entry), with the service that answered it in
/// `GetMetrics`, when one did.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    /// The entry as announced: id, name, unit, type, dataType, label...
    pub entry: serde_json::Map<String, Value>,
    /// The service whose `GetMetrics` listed it.
    pub service: Option<String>,
}

/// One service.
#[derive(Debug, Clone, Default)]
pub struct ServiceState {
    /// Unix time of the last heartbeat.
    pub last_heartbeat: Option<f64>,
    /// The device serial from its responses' `bn`.
    pub device: Option<String>,
    /// The last `GetStatus` result.
    pub status: Option<Value>,
    /// The metric ids of its last `GetMetrics`.
    pub metrics: Option<Vec<String>>,
    /// [`Registry::params_version`] when it was last asked `GetMetrics`.
    pub metrics_asked_at: Option<u64>,
}

/// One device.
#[derive(Debug, Clone, Default)]
pub struct DeviceState {
    /// Unix time of its last pack on `events.data`.
    pub last_seen: Option<f64>,
    /// Its declared metrics, by id.
    pub metrics: BTreeMap<String, Declared>,
}

/// Devices and services.
#[derive(Debug, Default)]
pub struct Registry {
    /// By serial.
    pub devices: BTreeMap<String, DeviceState>,
    /// By name.
    pub services: BTreeMap<String, ServiceState>,
    /// Bumped on every change the page should redraw for.
    pub version: u64,
    /// Bumped on every announcement on `events.params`.
    pub params_version: u64,
}

impl Registry {
    /// A pack from `serial` arrived at `now`.
    pub fn saw_device(&mut self, serial: &str, now: f64) {
        let device = self.devices.entry(serial.to_string()).or_default();
        if device.last_seen.is_none() {
            self.version += 1;
        }
        device.last_seen = Some(now);
    }

    /// Declares (or updates) metrics of `serial`, as announced on `events.params` or answered
    /// by `service`'s `GetMetrics`.
    pub fn declare(&mut self, serial: &str, entries: &[Value], service: Option<&str>) {
        let device = self.devices.entry(serial.to_string()).or_default();
        for entry in entries {
            let Some(obj) = entry.as_object() else { continue };
            let Some(id) = obj.get("id").and_then(Value::as_str) else {
                continue;
            };
            let old = device.metrics.get(id);
            let new = Declared {
                entry: obj.clone(),
                service: service
                    .map(str::to_string)
                    .or_else(|| old.and_then(|d| d.service.clone())),
            };
            if old != Some(&new) {
                device.metrics.insert(id.to_string(), new);
                self.version += 1;
            }
        }
    }

    /// A heartbeat of `service` at `now`. Returns true when the service was not alive before.
    pub fn heartbeat(&mut self, service: &str, now: f64, expire: Duration) -> bool {
        let s = self.services.entry(service.to_string()).or_default();
        let was_alive = s.last_heartbeat.is_some_and(|t| now - t <= expire.as_secs_f64());
        s.last_heartbeat = Some(now);
        if !was_alive {
            self.version += 1;
        }
        !was_alive
    }

    /// `service`'s answers to `GetStatus` and `GetMetrics`, from `serial`.
    pub fn answered(
        &mut self,
        service: &str,
        serial: Option<&str>,
        status: Option<Value>,
        metrics: Option<Vec<Value>>,
    ) {
        if let (Some(serial), Some(entries)) = (serial, &metrics) {
            self.declare(serial, entries, Some(service));
        }
        let s = self.services.entry(service.to_string()).or_default();
        if let Some(serial) = serial {
            s.device = Some(serial.to_string());
        }
        if status.is_some() {
            s.status = status;
        }
        if let Some(entries) = metrics {
            s.metrics = Some(
                entries
                    .iter()
                    .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
                    .collect(),
            );
        }
        self.version += 1;
    }

    /// Whether `service`'s metrics were asked after the announcement `params_version`.
    pub fn metrics_known(&self, service: &str, params_version: u64) -> bool {
        self.services
            .get(service)
            .is_some_and(|s| s.metrics.is_some() && s.metrics_asked_at == Some(params_version))
    }

    /// `service` was asked `GetMetrics` when the announcements stood at `params_version`.
    pub fn metrics_asked(&mut self, service: &str, params_version: u64) {
        self.services.entry(service.to_string()).or_default().metrics_asked_at = Some(params_version);
    }

    /// The names of the services alive at `now`.
    pub fn alive(&self, now: f64, expire: Duration) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, s)| s.last_heartbeat.is_some_and(|t| now - t <= expire.as_secs_f64()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The page's view: `GET /api/state` and the `state` event.
    pub fn to_json(&self, now: f64, expire: Duration) -> Vec<Value> {
        let mut devices: BTreeMap<&str, Value> = BTreeMap::new();
        for (serial, d) in &self.devices {
            let metrics: Vec<Value> = d
                .metrics
                .values()
                .map(|m| {
                    let mut o = m.entry.clone();
                    o.insert("service".into(), json!(m.service));
                    Value::Object(o)
                })
                .collect();
            devices.insert(
                serial,
                json!({"serial": serial, "last_seen": d.last_seen, "services": [], "metrics": metrics}),
            );
        }
        for (name, s) in &self.services {
            let alive = s.last_heartbeat.is_some_and(|t| now - t <= expire.as_secs_f64());
            let entry = json!({
                "name": name,
                "alive": alive,
                "last_heartbeat": s.last_heartbeat,
                "status": s.status,
                "metrics": s.metrics,
            });
            let serial = s.device.as_deref().unwrap_or("");
            let device = devices
                .entry(serial)
                .or_insert_with(|| json!({"serial": serial, "last_seen": null, "services": [], "metrics": []}));
            if let Some(list) = device.get_mut("services").and_then(Value::as_array_mut) {
                list.push(entry);
            }
        }
        devices.into_values().collect()
    }
}

/// The ingest's counters, shown in `GET /api/state` under `ingest`.
#[derive(Debug, Default)]
pub struct Counters {
    packs: AtomicU64,
    records: AtomicU64,
    malformed_packs: AtomicU64,
    foreign_records: AtomicU64,
    slow_consumer: AtomicU64,
    store_errors: AtomicU64,
}

impl Counters {
    /// A pack arrived on `events.data` with `records` records stored.
    pub fn add_pack(&self, records: u64) {
        self.packs.fetch_add(1, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
    }
    /// A pack that is not valid SenML or breaks the contract: ignored.
    pub fn add_malformed(&self) {
        self.malformed_packs.fetch_add(1, Ordering::Relaxed);
    }
    /// Records whose name is not `urn:cpt:device:sn:<serial>:<metric>`, or whose value is not a
    /// number, string or boolean: ignored.
    pub fn add_foreign(&self, n: u64) {
        self.foreign_records.fetch_add(n, Ordering::Relaxed);
    }
    /// The broker client dropped messages because the dashboard did not keep up.
    pub fn add_slow_consumer(&self) {
        self.slow_consumer.fetch_add(1, Ordering::Relaxed);
    }
    /// The store refused a batch.
    pub fn add_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }
    /// As JSON.
    pub fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "packs": get(&self.packs),
            "records": get(&self.records),
            "malformed_packs": get(&self.malformed_packs),
            "foreign_records": get(&self.foreign_records),
            "slow_consumer_events": get(&self.slow_consumer),
            "store_errors": get(&self.store_errors),
        })
    }
}

/// Everything the tasks and the request handlers share.
pub struct Shared {
    /// The broker.
    pub client: async_nats::Client,
    /// Where ranges are read from.
    pub history: History,
    /// The ingest counters.
    pub counters: Arc<Counters>,
    /// The command token, when commands are enabled.
    pub token: Option<String>,
    /// A service is offline after this long without a heartbeat.
    pub expire: Duration,
    /// New points, as the JSON of a `points` event, for the live updates.
    pub live: broadcast::Sender<Arc<str>>,
    registry: Mutex<Registry>,
    /// When a page last asked for the state (Unix seconds, as bits of an f64).
    page_seen: AtomicU64,
}

impl Shared {
    /// Puts it together.
    pub fn new(
        client: async_nats::Client,
        history: History,
        counters: Arc<Counters>,
        token: Option<String>,
        expire: Duration,
    ) -> Shared {
        Shared {
            client,
            history,
            counters,
            token,
            expire,
            live: broadcast::channel(256).0,
            registry: Mutex::new(Registry::default()),
            page_seen: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// A page is looking: it asked for the state, or holds the live stream.
    pub fn page_is_open(&self) {
        self.page_seen.store(unix_now().to_bits(), Ordering::Relaxed);
    }

    /// Whether a page looked in the last 30 s.
    pub fn page_open(&self) -> bool {
        unix_now() - f64::from_bits(self.page_seen.load(Ordering::Relaxed)) < 30.0
    }

    /// The registry, locked. A handler that panicked while holding it left it consistent
    /// enough to show (every change is one assignment), so a poisoned lock is taken as is.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `GET /api/state`.
    pub fn state_json(&self) -> Value {
        self.page_is_open();
        let now = unix_now();
        let devices = self.registry().to_json(now, self.expire);
        json!({
            "now": now,
            "commands_enabled": self.token.is_some(),
            "history": self.history.describe(),
            "devices": devices,
            "ingest": self.counters.to_json(),
        })
    }
}
