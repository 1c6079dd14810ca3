//! From the broker into the dashboard: `events.data` into the store and the live updates,
//! `events.params` and heartbeats into the registry, and every few seconds `GetStatus` and
//! `GetMetrics` to each live service.
//!
//! The store is written by one thread of its own: the ingest hands it batches through a bounded
//! channel, and it writes everything queued in one transaction. When it falls behind, the
//! channel fills, the ingest waits, and the broker client's bounded subscription buffer
//! ([`SUBSCRIPTION_CAPACITY`] messages) drops what does not fit, counted as slow-consumer
//! events: memory stays bounded under a flood.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tolomeo_proto::senml::{self, ResolvedValue};
use tolomeo_proto::unix_now;
use tolomeo_proto::wire::{DATA_SUBJECT, PARAMS_SUBJECT};

use crate::Error;
use crate::history::History;
use crate::live::Shared;
use crate::store::{Point, Sample, SeriesKey, Store};

/// Messages the broker client holds per subscription before it drops (PROTOCOL.md caps a pack
/// at 512 KiB; the services' packs are a few KiB).
pub const SUBSCRIPTION_CAPACITY: usize = 1024;
/// Batches waiting for the store writer.
const WRITER_QUEUE: usize = 64;
/// The writer takes at most this many points into one transaction.
const MAX_TRANSACTION_POINTS: usize = 100_000;
/// How often the store's bounds are enforced.
const RETENTION_EVERY: Duration = Duration::from_secs(10);
/// How often live services are asked `GetStatus` and `GetMetrics`.
const POLL_EVERY: Duration = Duration::from_secs(5);
/// How long a service has to answer them.
const POLL_TIMEOUT: Duration = Duration::from_secs(3);

/// The prefix of every record's name (PROTOCOL.md section 0).
const BASE_PREFIX: &str = "urn:cpt:device:sn:";

/// The store writer, to stop at the end.
pub struct Writer {
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Splits a resolved name into device serial and metric.
pub fn split_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(BASE_PREFIX)?;
    let (serial, metric) = rest.split_once(':')?;
    (!serial.is_empty() && !metric.is_empty()).then_some((serial, metric))
}

/// Subscribes and starts the tasks; the store writer too, when the history is the store.
pub async fn start(shared: Arc<Shared>) -> Result<Writer, Error> {
    let client = &shared.client;
    let sub_err =
        |subject: &str, e: async_nats::SubscribeError| Error::Io(format!("cannot subscribe to {subject}: {e}"));
    let data = client
        .subscribe(DATA_SUBJECT)
        .await
        .map_err(|e| sub_err(DATA_SUBJECT, e))?;
    let params = client
        .subscribe(PARAMS_SUBJECT)
        .await
        .map_err(|e| sub_err(PARAMS_SUBJECT, e))?;
    let beats = client
        .subscribe("heartbeat.*.service")
        .await
        .map_err(|e| sub_err("heartbeat.*.service", e))?;
    // The subscriptions are registered with the server before the page is offered.
    client
        .flush()
        .await
        .map_err(|e| Error::Io(format!("the broker did not confirm the subscriptions: {e}")))?;

    let mut writer = Writer {
        stop: None,
        thread: None,
    };
    if let History::Store(store) = &shared.history {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let store = store.clone();
        let counters = shared.counters.clone();
        let handle = tokio::runtime::Handle::current();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(&store, rx, stopped, &handle, &counters))
            .map_err(|e| Error::Io(format!("cannot start the store writer thread: {e}")))?;
        writer = Writer {
            stop: Some(stop),
            thread: Some(thread),
        };
        tokio::spawn(ingest_data(shared.clone(), data, Some(tx)));
    } else {
        tokio::spawn(ingest_data(shared.clone(), data, None));
    }
    tokio::spawn(ingest_params(shared.clone(), params));
    let (poke, poked) = mpsc::channel(16);
    tokio::spawn(ingest_heartbeats(shared.clone(), beats, poke));
    tokio::spawn(poll_services(shared.clone(), poked));
    Ok(writer)
}

/// Stops the writer after it has written what it was given.
pub async fn stop(mut writer: Writer) {
    if let Some(stop) = writer.stop.take() {
        let _ = stop.send(true);
    }
    if let Some(thread) = writer.thread.take() {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn write_loop(
    store: &Store,
    mut rx: mpsc::Receiver<Vec<Point>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    handle: &tokio::runtime::Handle,
    counters: &crate::live::Counters,
) {
    let mut last_retention = Instant::now();
    let mut stopping = false;
    while !stopping {
        let first = handle.block_on(async {
            tokio::select! {
                batch = rx.recv() => batch,
                _ = stopped.wait_for(|stop| *stop) => None,
                _ = tokio::time::sleep(RETENTION_EVERY) => Some(Vec::new()),
            }
        });
        // At the stop, what is queued is still written.
        let mut batch = first.unwrap_or_else(|| {
            stopping = true;
            Vec::new()
        });
        while batch.len() < MAX_TRANSACTION_POINTS {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        if !batch.is_empty()
            && let Err(e) = store.append(&batch)
        {
            counters.add_store_error();
            tracing::error!("{} points not stored: {e}", batch.len());
        }
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = Instant::now();
            match store.enforce_retention(unix_now()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!("retention dropped {n} points"),
                Err(e) => tracing::error!("retention: {e}"),
            }
        }
    }
    if let Err(e) = store.enforce_retention(unix_now()) {
        tracing::error!("retention: {e}");
    }
}

/// At most one warning per this period for bad packs; the rest are only counted.
const WARN_EVERY: Duration = Duration::from_secs(10);

async fn ingest_data(shared: Arc<Shared>, mut sub: async_nats::Subscriber, tx: Option<mpsc::Sender<Vec<Point>>>) {
    let mut last_warning: Option<Instant> = None;
    while let Some(msg) = sub.next().await {
        let now = unix_now();
        let resolved = senml::decode_pack(&msg.payload)
            .map_err(|e| e.to_string())
            .and_then(|pack| {
                senml::resolve(&pack, now)
                    .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
            });
        let records = match resolved {
            Ok(r) => r,
            Err(why) => {
                shared.counters.add_malformed();
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    tracing::warn!("a pack on events.data was ignored: {why}");
                }
                continue;
            }
        };
        // The live JSON is built only while a page listens.
        let want_live = shared.live.receiver_count() > 0;
        let mut devices: Vec<String> = Vec::new();
        let mut points = Vec::with_capacity(records.len());
        let mut live: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        let mut foreign = 0u64;
        for r in records {
            let Some((serial, metric)) = split_name(&r.name) else {
                foreign += 1;
                continue;
            };
            let sample = match r.value {
                Some(ResolvedValue::Number(x)) if x.is_finite() => Sample::Number(x),
                Some(ResolvedValue::String(s)) => Sample::Text(s),
                Some(ResolvedValue::Bool(b)) => Sample::Bool(b),
                _ => {
                    foreign += 1;
                    continue;
                }
            };
            if !devices.iter().any(|d| d == serial) {
                devices.push(serial.to_string());
            }
            if want_live {
                let v = match &sample {
                    Sample::Number(x) => json!(x),
                    Sample::Text(s) => json!(s),
                    Sample::Bool(b) => json!(b),
                };
                live.entry(serial.to_string())
                    .or_default()
                    .push(json!({"metric": metric, "t": r.time, "v": v}));
            }
            points.push(Point {
                key: SeriesKey {
                    device: serial.to_string(),
                    metric: metric.to_string(),
                },
                t: r.time,
                value: sample,
            });
        }
        if foreign > 0 {
            shared.counters.add_foreign(foreign);
        }
        shared.counters.add_pack(points.len() as u64);
        {
            let mut registry = shared.registry();
            for serial in &devices {
                registry.saw_device(serial, now);
            }
        }
        for (device, pts) in live {
            // Nobody listening is fine.
            let _ = shared
                .live
                .send(Arc::from(json!({"device": device, "points": pts}).to_string()));
        }
        if let Some(tx) = &tx
            && !points.is_empty()
            && tx.send(points).await.is_err()
        {
            break;
        }
    }
}

async fn ingest_params(shared: Arc<Shared>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let Ok(pack) = senml::decode_pack(&msg.payload) else {
            shared.counters.add_malformed();
            continue;
        };
        for record in &pack {
            let serial = record
                .bn
                .as_deref()
                .and_then(|bn| bn.strip_prefix(BASE_PREFIX))
                .map(|s| s.trim_end_matches(':'));
            let entries = record
                .vs
                .as_deref()
                .and_then(|vs| serde_json::from_str::<Vec<Value>>(vs).ok());
            match (serial, entries) {
                (Some(serial), Some(entries)) if !serial.is_empty() && record.n.as_deref() == Some("metrics") => {
                    let mut registry = shared.registry();
                    registry.declare(serial, &entries, None);
                    registry.params_version += 1;
                }
                _ => shared.counters.add_malformed(),
            }
        }
    }
}

async fn ingest_heartbeats(shared: Arc<Shared>, mut sub: async_nats::Subscriber, poke: mpsc::Sender<String>) {
    while let Some(msg) = sub.next().await {
        let mut tokens = msg.subject.split('.');
        let Some(service) = tokens.nth(1) else { continue };
        let new = shared.registry().heartbeat(service, unix_now(), shared.expire);
        if new {
            // Ask it at once rather than at the next round; a full queue means a round is due.
            let _ = poke.try_send(service.to_string());
        }
    }
}

/// Every [`POLL_EVERY`] while a page is open, and at once for a service heard for the first
/// time (to learn its device): each service's response is also published on
/// `commands.<service>.res`, which the ToloMEO agent may carry to the cloud, so nobody is asked
/// anything while nobody looks.
async fn poll_services(shared: Arc<Shared>, mut poked: mpsc::Receiver<String>) {
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let services = tokio::select! {
            _ = tick.tick() => {
                if !shared.page_open() {
                    continue;
                }
                shared.registry().alive(unix_now(), shared.expire)
            }
            Some(one) = poked.recv() => vec![one],
            else => break,
        };
        let asks = services.into_iter().map(|name| {
            let shared = shared.clone();
            async move { ask_service(&shared, &name).await }
        });
        futures_util::future::join_all(asks).await;
    }
}

/// Asks `service` `GetStatus`, and `GetMetrics` when its metrics are not known or a device
/// announced a change since, in one request; records the answers.
async fn ask_service(shared: &Shared, service: &str) {
    let subject = format!("commands.{service}.req");
    let params_seen = shared.registry().params_version;
    let request = if shared.registry().metrics_known(service, params_seen) {
        r#"[{"n":"GetStatus"}]"#
    } else {
        r#"[{"n":"GetStatus"},{"n":"GetMetrics"}]"#
    };
    let reply = tokio::time::timeout(POLL_TIMEOUT, shared.client.request(subject, request.into())).await;
    let Ok(Ok(msg)) = reply else {
        return;
    };
    let Ok(pack) = senml::decode_pack(&msg.payload) else {
        return;
    };
    let serial = pack
        .first()
        .and_then(|r| r.bn.as_deref())
        .and_then(|bn| bn.strip_prefix(BASE_PREFIX))
        .map(|s| s.trim_end_matches(':').to_string());
    let result = |i: usize| -> Option<Value> {
        let vs = pack.get(i)?.vs.as_deref()?;
        let v: Value = serde_json::from_str(vs).ok()?;
        (v.get("error").is_none()).then_some(v)
    };
    let status = result(0);
    let metrics = result(1).and_then(|v| v.get("metrics").and_then(Value::as_array).cloned());
    let mut registry = shared.registry();
    if metrics.is_some() {
        registry.metrics_asked(service, params_seen);
    }
    registry.answered(service, serial.as_deref(), status, metrics);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_serial_and_metric() {
        assert_eq!(
            split_name("urn:cpt:device:sn:SN1:cpu:total"),
            Some(("SN1", "cpu:total"))
        );
        assert_eq!(
            split_name("urn:cpt:device:sn:SN1:engine:rpm"),
            Some(("SN1", "engine:rpm"))
        );
        assert_eq!(split_name("urn:cpt:device:sn::cpu"), None);
        assert_eq!(split_name("urn:cpt:device:sn:SN1:"), None);
        assert_eq!(split_name("urn:dev:mac:0024befffe804ff1:temp"), None);
    }
}
