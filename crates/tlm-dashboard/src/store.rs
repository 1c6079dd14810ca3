//! The embedded history: every point the dashboard receives, in one redb file, bounded by age
//! and by size.
//!
//! (Interface fixed; implementation in progress.)

use std::path::Path;
use std::time::Duration;

/// One time series: a metric of a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct SeriesKey {
    /// The device serial (from `bn`).
    pub device: String,
    /// The metric name (`n`).
    pub metric: String,
}

/// One reading's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// `v`.
    Number(f64),
    /// `vs`.
    Text(String),
    /// `vb`.
    Bool(bool),
}

/// One reading, to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Which series.
    pub key: SeriesKey,
    /// Unix time, seconds.
    pub t: f64,
    /// The value.
    pub value: Sample,
}

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Points older than this are dropped.
    pub max_age: Duration,
    /// When the file would grow past this, the oldest points are dropped first.
    pub max_bytes: u64,
}

/// What a query returns: at most about two points per pixel column.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Series {
    /// Times, Unix seconds, ascending.
    pub t: Vec<f64>,
    /// The values, one per time.
    pub values: Values,
    /// How many raw points the range held before reduction.
    pub raw_points: u64,
}

/// The values of a [`Series`], by data type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Values {
    /// Numbers (and booleans as 0/1).
    Numbers(Vec<f64>),
    /// Strings.
    Texts(Vec<String>),
}

/// Numbers as read, or as a rate per second (for incremental counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// As read.
    Raw,
    /// The difference to the previous point divided by the time between them; a counter that
    /// went backwards (restart, wrap) gives no point.
    RatePerSecond,
}

/// A store failure, with what was being done and on which file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The store. (Interim: in memory, until the redb store lands.)
pub struct Store {
    points: std::sync::Mutex<std::collections::BTreeMap<SeriesKey, Vec<(f64, Sample)>>>,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        let _ = (path, retention);
        Ok(Store {
            points: Default::default(),
        })
    }

    /// Adds points, in one transaction.
    pub fn append(&self, points: &[Point]) -> Result<(), StoreError> {
        let mut map = self.points.lock().map_err(|_| StoreError("poisoned".into()))?;
        for p in points {
            map.entry(p.key.clone()).or_default().push((p.t, p.value.clone()));
        }
        Ok(())
    }

    /// Every series with at least one point.
    pub fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        Ok(self
            .points
            .lock()
            .map_err(|_| StoreError("poisoned".into()))?
            .keys()
            .cloned()
            .collect())
    }

    /// The points of `key` with `from <= t <= to`, reduced to about `columns` pixel columns.
    pub fn query(
        &self,
        key: &SeriesKey,
        from: f64,
        to: f64,
        columns: usize,
        transform: Transform,
    ) -> Result<Series, StoreError> {
        let map = self.points.lock().map_err(|_| StoreError("poisoned".into()))?;
        let (t, v): (Vec<f64>, Vec<Sample>) = map
            .get(key)
            .map(|pts| pts.iter().filter(|(t, _)| *t >= from && *t <= to).cloned().unzip())
            .unwrap_or_default();
        Ok(reduce(t, v, from, to, columns, transform))
    }

    /// Drops what is older than the age bound at `now` or beyond the size bound.
    pub fn enforce_retention(&self, now: f64) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }
}

/// Reduces raw points (in time order) as [`Store::query`] does.
pub fn reduce(t: Vec<f64>, values: Vec<Sample>, from: f64, to: f64, columns: usize, transform: Transform) -> Series {
    let _ = (from, to, columns, transform);
    if let Some(Sample::Text(_)) = values.first() {
        let texts = values
            .into_iter()
            .map(|s| match s {
                Sample::Text(s) => s,
                _ => String::new(),
            })
            .collect();
        return Series {
            raw_points: t.len() as u64,
            t,
            values: Values::Texts(texts),
        };
    }
    let v = values
        .iter()
        .map(|s| match s {
            Sample::Number(x) => *x,
            Sample::Bool(b) => f64::from(u8::from(*b)),
            Sample::Text(_) => f64::NAN,
        })
        .collect();
    Series {
        raw_points: t.len() as u64,
        t,
        values: Values::Numbers(v),
    }
}
