//! Where a chart's range is read from: the embedded store (the default), or a JetStream stream
//! on `events.data` (`--stream NAME`), where the devices' brokers, joined to a central cluster
//! as leaf nodes, keep the history for every dashboard.
//!
//! A stream is read from the message at the start of the range on, with an ordered consumer
//! filtered to `events.data`, until the stream's last message or a message published well
//! after the range's end. Messages are found by the time the broker stored them, records are
//! kept by their own `t`: packs that a service held back while the broker was away arrive late,
//! so the read starts [`LATE_MARGIN`] before the range.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::StreamExt;
use tolomeo_proto::senml::{self, ResolvedValue};
use tolomeo_proto::unix_now;
use tolomeo_proto::wire::DATA_SUBJECT;

use crate::Error;
use crate::ingest::split_name;
use crate::store::{Sample, Series, SeriesKey, Store, Transform};

/// How much earlier than a range a stream is read, for packs delivered late.
pub const LATE_MARGIN: f64 = 300.0;
/// A stream read that gets nothing for this long ends.
const STREAM_IDLE: Duration = Duration::from_secs(5);

/// The source of ranges.
pub enum History {
    /// The embedded store, written by the ingest.
    Store(Arc<Store>),
    /// A JetStream stream, written by the broker.
    Stream {
        /// The JetStream context (boxed: it is large, the store's handle is a pointer).
        js: Box<jetstream::Context>,
        /// The stream's name.
        name: String,
        /// The last range read, for every metric of its device: a page asks for each chart
        /// of one range at once, and one read of the stream serves them all.
        last: tokio::sync::Mutex<Option<Read>>,
    },
}

/// One read of a stream: every metric of `device` in `from..=to`.
pub struct Read {
    device: String,
    from: f64,
    to: f64,
    at: std::time::Instant,
    series: Arc<ByMetric>,
}

/// Raw points by metric: times and values, in time order.
type ByMetric = HashMap<String, (Vec<f64>, Vec<Sample>)>;

/// How long a read of the stream serves further charts of the same range.
const READ_REUSE: Duration = Duration::from_secs(10);

impl History {
    /// Finds the stream `name` (creating it, with `max_age`, when `create`).
    pub async fn open_stream(
        client: &async_nats::Client,
        name: &str,
        create: bool,
        max_age: Duration,
    ) -> Result<History, Error> {
        let js = jetstream::new(client.clone());
        if create {
            let config = jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![DATA_SUBJECT.to_string()],
                max_age,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            };
            js.get_or_create_stream(config).await.map_err(|e| {
                Error::Io(format!(
                    "--stream {name} --create-stream: the broker refused: {e}: is JetStream enabled (nats-server -js)?"
                ))
            })?;
        } else {
            js.get_stream(name).await.map_err(|e| {
                Error::Usage(format!(
                    "--stream {name}: {e}: expected a JetStream stream on {DATA_SUBJECT}; add --create-stream to make one, or `nats stream add {name} --subjects {DATA_SUBJECT}`"
                ))
            })?;
        }
        Ok(History::Stream {
            js: Box::new(js),
            name: name.to_string(),
            last: tokio::sync::Mutex::new(None),
        })
    }

    /// "store" or "stream:NAME", for the page.
    pub fn describe(&self) -> String {
        match self {
            History::Store(_) => "store".into(),
            History::Stream { name, .. } => format!("stream:{name}"),
        }
    }

    /// The points of `key` in `from..=to`, reduced to about `columns` columns.
    pub async fn query(
        &self,
        key: SeriesKey,
        from: f64,
        to: f64,
        columns: usize,
        transform: Transform,
    ) -> Result<Series, String> {
        match self {
            History::Store(store) => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.query(&key, from, to, columns, transform))
                    .await
                    .map_err(|e| format!("the query stopped: {e}"))?
                    .map_err(|e| e.to_string())
            }
            History::Stream { js, name, last } => {
                // Held while reading: the other charts of the range wait for this read.
                let mut last = last.lock().await;
                let fresh = last.as_ref().is_some_and(|r| {
                    r.device == key.device && r.from == from && r.to == to && r.at.elapsed() < READ_REUSE
                });
                if !fresh {
                    let series = read_stream(js, name, &key.device, from, to).await?;
                    *last = Some(Read {
                        device: key.device.clone(),
                        from,
                        to,
                        at: std::time::Instant::now(),
                        series: Arc::new(series),
                    });
                }
                let (t, values) = last
                    .as_ref()
                    .and_then(|r| r.series.get(&key.metric).cloned())
                    .unwrap_or_default();
                drop(last);
                Ok(crate::store::reduce(t, values, from, to, columns, transform))
            }
        }
    }
}

/// The raw points of every metric of `device` in `from..=to` from the stream, in time order.
async fn read_stream(
    js: &jetstream::Context,
    name: &str,
    device: &str,
    from: f64,
    to: f64,
) -> Result<ByMetric, String> {
    let mut stream = js.get_stream(name).await.map_err(|e| format!("stream {name}: {e}"))?;
    let last = stream
        .info()
        .await
        .map_err(|e| format!("stream {name}: {e}"))?
        .state
        .last_sequence;
    let mut points: HashMap<String, Vec<(f64, Sample)>> = HashMap::new();
    if last == 0 {
        return Ok(HashMap::new());
    }
    let start = ((from - LATE_MARGIN).max(0.0) * 1e9) as i128;
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(start).map_err(|e| format!("from {from}: {e}"))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: DATA_SUBJECT.to_string(),
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(|e| format!("stream {name}: cannot read it: {e}"))?;
    let mut messages = consumer.messages().await.map_err(|e| format!("stream {name}: {e}"))?;
    let prefix = format!("urn:cpt:device:sn:{device}:");
    let now = unix_now();
    loop {
        let next = match tokio::time::timeout(STREAM_IDLE, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(format!("stream {name}: {e}")),
            Ok(None) | Err(_) => break,
        };
        let (seq, published) = match next.info() {
            Ok(info) => (info.stream_sequence, info.published.unix_timestamp_nanos() as f64 / 1e9),
            Err(e) => return Err(format!("stream {name}: a message without JetStream metadata: {e}")),
        };
        if let Ok(pack) = senml::decode_pack(&next.payload)
            && let Ok(records) = senml::resolve(&pack, now)
        {
            {
                for r in records {
                    if r.time < from || r.time > to || !r.name.starts_with(&prefix) {
                        continue;
                    }
                    let Some((_, metric)) = split_name(&r.name) else {
                        continue;
                    };
                    let sample = match r.value {
                        Some(ResolvedValue::Number(x)) if x.is_finite() => Sample::Number(x),
                        Some(ResolvedValue::String(s)) => Sample::Text(s),
                        Some(ResolvedValue::Bool(b)) => Sample::Bool(b),
                        _ => continue,
                    };
                    points.entry(metric.to_string()).or_default().push((r.time, sample));
                }
            }
        }
        if seq >= last || published > to + LATE_MARGIN {
            break;
        }
    }
    Ok(points
        .into_iter()
        .map(|(metric, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (metric, pts.into_iter().unzip())
        })
        .collect())
}
