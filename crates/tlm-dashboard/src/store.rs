//! The embedded history: every point the dashboard receives, in one redb file, bounded by age
//! and by size.
//!
//! # Why redb
//!
//! redb is pure Rust, so the aarch64 Yocto build cross-compiles it like the rest of the
//! workspace, with no C library (SQLite, RocksDB, LMDB) to build and link. It keeps everything in
//! one file, with ACID transactions and copy-on-write B-trees that survive a power loss at any
//! point (checksummed commit slots); it is actively maintained.
//!
//! # Layout
//!
//! - `series`: series id (`u32`) → (device, metric, kind). Loaded into memory at open.
//! - `chunks`: (series id, time of the chunk's first point) → up to [`CHUNK_POINTS`] points of a
//!   number or boolean series, 16 bytes each (time in µs as `i64`, value as `f64`, little
//!   endian), in time order. One series over a day is one contiguous range scan over ~350
//!   entries, and a full chunk (4,000 bytes) fills a 4 KiB page. One B-tree entry per point
//!   would cost 40 bytes a point (appends into the middle of a B-tree leave half-full leaves)
//!   and, at `opt-level = "z"`, 17 ms to scan a day of one series and 40,000 records/s of ingest
//!   (measured with redb 5, 4.32 M points): neither met the targets.
//! - `texts`: (series id, time in µs) → the string, one entry per point: states change rarely.
//! - `meta`: the format version and the point and byte counts that the size bound uses.
//!
//! Times are kept as whole microseconds: `t` round-trips to the microsecond. A point at a time
//! that a series already holds replaces it.
//!
//! # Writes and the crash window
//!
//! [`Store::append`] adds points to an in-memory buffer. The buffer is written in one durable
//! transaction (fsync) when it holds [`FLUSH_POINTS`] points, when its oldest point is
//! [`StoreOptions::sync_interval`] old (checked at each append), at
//! [`Store::enforce_retention`], at [`Store::flush`] and when the store is dropped. A commit per
//! pack (10–1000 points) would rewrite the last chunk of every series it touches and fsync each
//! time; one commit a second does that once. Queries see buffered points too.
//!
//! What a crash can lose: the points appended since the last commit. While points arrive that is
//! at most `sync_interval` (1 s by default) of data, or [`FLUSH_POINTS`] points; when they stop
//! arriving, what came after the last commit stays buffered until the next append, retention
//! pass or flush (the dashboard runs retention every few seconds). What is committed survives
//! a power loss; the file is never left half-written.
//!
//! # Bounds
//!
//! [`Store::enforce_retention`] drops the points older than [`Retention::max_age`]. The size
//! bound is kept at every commit as well as there, so a flood between two retention passes
//! cannot outgrow it: when the estimated size of what is stored exceeds [`HIGH_WATER`] of the
//! size budget, the oldest points across all series are dropped (one time cut for all series)
//! until it is under [`LOW_WATER`]. The estimate is the committed point count times the bytes a
//! point takes in a full chunk, plus the strings and an allowance per series for its partly
//! filled last chunk and the pages a commit copies (see [`StoreStats::estimated_bytes`]).
//!
//! redb files do not shrink when entries are deleted (freed pages are reused), and a redb file
//! that runs out of pages doubles (up to 4 GiB). So the budget is half of `max_bytes` until the
//! file has reached the largest size of its doubling sequence under `max_bytes`, and that size
//! afterwards ([`Store::size_budget`]): the file settles between half of `max_bytes` and all of
//! it, and the data at about 80–90 % of the file. A file larger than `max_bytes` at open (a
//! smaller bound than before) is trimmed and compacted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{CompactionMode, Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction};

use crate::downsample;

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

/// Tuning of a [`Store`]; [`Store::open`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreOptions {
    /// How long an appended point may wait in memory before it is committed (the crash window
    /// while points arrive). Default 1 s. Zero commits at every append.
    pub sync_interval: Duration,
    /// redb's page cache. Default 16 MiB; the kernel's page cache holds the file as well.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            sync_interval: Duration::from_secs(1),
            cache_bytes: 16 << 20,
        }
    }
}

/// Counts for tests, benchmarks and the dashboard's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Series with at least one point.
    pub series: usize,
    /// Points stored, committed or buffered.
    pub points: u64,
    /// Of those, points still in the memory buffer.
    pub buffered: u64,
    /// What the size bound is compared with: committed points × [`NUMBER_POINT_BYTES`] (numbers)
    /// or [`TEXT_POINT_BYTES`] plus twice the string's length (texts), plus
    /// [`SERIES_BYTES`] per series and [`BASE_BYTES`].
    pub estimated_bytes: u64,
    /// The file's size on disk.
    pub file_bytes: u64,
    /// Points refused since open: a value or time that is NaN or infinite, a time outside
    /// ±285 years of 1970, a text for a series of numbers or the reverse.
    pub skipped: u64,
}

/// Points per chunk: 250 × 16 bytes fill a 4 KiB redb page with its entry's overhead.
pub const CHUNK_POINTS: usize = 250;
/// The buffer is committed when it holds this many points.
pub const FLUSH_POINTS: usize = 50_000;
/// Appends wait for the commit in progress beyond this many buffered points.
const MAX_BUFFERED: usize = 4 * FLUSH_POINTS;
/// Estimated bytes of a number point: a full chunk's page divided by its points, plus 2.5 % for
/// the B-tree's branch pages.
pub const NUMBER_POINT_BYTES: u64 = 17;
/// Estimated bytes of a text point besides its string: key, offset, and leaves half full.
pub const TEXT_POINT_BYTES: u64 = 40;
/// Estimated bytes of a series besides its points: its last, partly filled chunk, and the pages
/// a commit or a retention pass copies for it (its chunk and its share of the branch pages: the
/// pages they replace are reused only two commits later). Measured: a retention pass over 50
/// series allocated 148 pages before its commit.
pub const SERIES_BYTES: u64 = 16 << 10;
/// Estimated bytes of an empty store: redb's header, allocator state and table roots.
pub const BASE_BYTES: u64 = 256 << 10;
/// The smallest size bound [`Store::open`] accepts.
pub const MIN_BYTES: u64 = 1 << 20;
/// Retention drops the oldest points when the estimate exceeds this share of the size budget
/// (see [`Store::size_budget`])...
pub const HIGH_WATER: f64 = 0.9;
/// ... and then drops down to this share.
pub const LOW_WATER: f64 = 0.8;

const SERIES: TableDefinition<u32, (&str, &str, u8)> = TableDefinition::new("series");
const CHUNKS: TableDefinition<(u32, i64), &[u8]> = TableDefinition::new("chunks");
const TEXTS: TableDefinition<(u32, i64), &str> = TableDefinition::new("texts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const FORMAT: u64 = 1;
const RECORD: usize = 16;
/// ±2^53 µs (±285 years around 1970): beyond, f64 seconds no longer hold every microsecond.
const MAX_MICROS: i64 = 1 << 53;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number = 0,
    Bool = 1,
    Text = 2,
}

impl Kind {
    fn of(s: &Sample) -> Kind {
        match s {
            Sample::Number(_) => Kind::Number,
            Sample::Bool(_) => Kind::Bool,
            Sample::Text(_) => Kind::Text,
        }
    }

    fn from_u8(k: u8) -> Option<Kind> {
        match k {
            0 => Some(Kind::Number),
            1 => Some(Kind::Bool),
            2 => Some(Kind::Text),
            _ => None,
        }
    }

    fn is_text(self) -> bool {
        self == Kind::Text
    }
}

#[derive(Debug, Clone, Copy)]
struct SeriesInfo {
    id: u32,
    kind: Kind,
}

/// Points appended but not yet committed, by series id.
#[derive(Default)]
struct Buffer {
    numbers: HashMap<u32, Vec<(i64, f64)>>,
    texts: HashMap<u32, Vec<(i64, String)>>,
    /// Series created since the last commit: their records go with it.
    new_series: Vec<(u32, SeriesKey, Kind)>,
    points: usize,
    since: Option<Instant>,
}

struct Pending {
    current: Buffer,
    /// The buffer being committed: still visible to queries until the commit is done.
    committing: Option<Arc<Buffer>>,
    next_id: u32,
    skipped: u64,
}

/// The counts kept in `meta`, updated in every write transaction.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    numbers: u64,
    texts: u64,
    text_bytes: u64,
}

/// The store. `Send + Sync`: share it in an `Arc`; queries run beside appends.
pub struct Store {
    db: Database,
    path: PathBuf,
    retention: Retention,
    options: StoreOptions,
    /// Every series with a point, committed or buffered.
    index: RwLock<HashMap<SeriesKey, SeriesInfo>>,
    pending: Mutex<Pending>,
    /// Held by whoever writes to the file (a commit of the buffer, retention).
    writer: Mutex<()>,
}

/// Reduces a number series (raw points in time order) as [`Store::query`] does: the rate
/// first when asked, then min and max per column of `from..=to` (an infinite bound is the
/// data's own end).
pub fn reduce_numbers(t: Vec<f64>, v: Vec<f64>, from: f64, to: f64, columns: usize, transform: Transform) -> Series {
    let raw_points = t.len() as u64;
    let (t, v) = match transform {
        Transform::RatePerSecond => downsample::rate_per_second(&t, &v),
        Transform::Raw => (t, v),
    };
    let (Some(&t0), Some(&t1)) = (t.first(), t.last()) else {
        return Series {
            t,
            values: Values::Numbers(v),
            raw_points,
        };
    };
    let from = if from.is_finite() { from } else { t0 };
    let to = if to.is_finite() { to } else { t1 };
    let (t, v) = downsample::min_max(&t, &v, from, to, columns);
    Series {
        t,
        values: Values::Numbers(v),
        raw_points,
    }
}

/// Reduces a text series (raw points in time order) to its first point and every change.
pub fn reduce_texts(t: Vec<f64>, v: Vec<String>) -> Series {
    let keep = downsample::changes(&v);
    Series {
        raw_points: t.len() as u64,
        t: keep.iter().filter_map(|&i| t.get(i).copied()).collect(),
        values: Values::Texts(keep.iter().filter_map(|&i| v.get(i).cloned()).collect()),
    }
}

/// Reduces raw samples of one series from elsewhere (a JetStream stream) as [`Store::query`]
/// does, by the kind of the first sample: texts as texts, numbers and booleans (0/1) as
/// numbers; a sample of the other kind is left out, as the store leaves it out.
pub fn reduce(t: Vec<f64>, values: Vec<Sample>, from: f64, to: f64, columns: usize, transform: Transform) -> Series {
    if let Some(Sample::Text(_)) = values.first() {
        let (t, v) = t
            .into_iter()
            .zip(values)
            .filter_map(|(t, s)| match s {
                Sample::Text(s) => Some((t, s)),
                _ => None,
            })
            .unzip();
        return reduce_texts(t, v);
    }
    let (t, v) = t
        .into_iter()
        .zip(values)
        .filter_map(|(t, s)| match s {
            Sample::Number(x) => Some((t, x)),
            Sample::Bool(b) => Some((t, f64::from(u8::from(b)))),
            Sample::Text(_) => None,
        })
        .unzip();
    reduce_numbers(t, v, from, to, columns, transform)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn to_micros(t: f64) -> Option<i64> {
    let m = (t * 1e6).round();
    // NaN fails the comparison.
    (m.abs() <= MAX_MICROS as f64).then_some(m as i64)
}

/// A query bound in µs: clamped (infinities are the ends of time).
fn bound_micros(t: f64) -> i64 {
    ((t * 1e6).round() as i64).clamp(-MAX_MICROS, MAX_MICROS)
}

fn to_secs(m: i64) -> f64 {
    m as f64 / 1e6
}

fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * RECORD);
    for (t, v) in points {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Appends the points of a chunk to `out`; `None` if its length is not a whole number of points.
fn decode(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Option<()> {
    if !bytes.len().is_multiple_of(RECORD) {
        return None;
    }
    out.reserve(bytes.len() / RECORD);
    for r in bytes.chunks_exact(RECORD) {
        let (t, v) = r.split_at(8);
        out.push((
            i64::from_le_bytes(t.try_into().ok()?),
            f64::from_le_bytes(v.try_into().ok()?),
        ));
    }
    Some(())
}

/// The time of a chunk's last point.
fn last_time(bytes: &[u8]) -> Option<i64> {
    let start = bytes.len().checked_sub(RECORD)?;
    Some(i64::from_le_bytes(bytes.get(start..start + 8)?.try_into().ok()?))
}

/// Sorts by time, keeping the last appended of equal times.
fn sort_dedup<T>(mut v: Vec<(i64, T)>) -> Vec<(i64, T)> {
    v.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, T)> = Vec::with_capacity(v.len());
    for p in v {
        match out.last_mut() {
            Some(last) if last.0 == p.0 => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Two time-ordered lists as one; of equal times, `newer`'s point.
fn merge<T: Clone>(older: &[(i64, T)], newer: &[(i64, T)]) -> Vec<(i64, T)> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        if older[i].0 < newer[j].0 {
            out.push(older[i].clone());
            i += 1;
        } else {
            if older[i].0 == newer[j].0 {
                i += 1;
            }
            out.push(newer[j].clone());
            j += 1;
        }
    }
    out.extend_from_slice(&older[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

impl Counts {
    fn estimated_bytes(&self, series: usize) -> u64 {
        BASE_BYTES
            + self.numbers * NUMBER_POINT_BYTES
            + self.texts * TEXT_POINT_BYTES
            + self.text_bytes * 2
            + series as u64 * SERIES_BYTES
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, with the default [`StoreOptions`].
    pub fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        Store::open_with(path, retention, StoreOptions::default())
    }

    /// Opens (or creates) the store at `path`.
    ///
    /// The whole file is verified (redb's checksums) before it is trusted, so that a damaged
    /// file is an error here rather than a failure later. A file larger than
    /// `retention.max_bytes` is trimmed to the size bound and compacted.
    pub fn open_with(path: &Path, retention: Retention, options: StoreOptions) -> Result<Store, StoreError> {
        if retention.max_bytes < MIN_BYTES {
            return Err(StoreError(format!(
                "history store {}: the size bound is {} bytes, expected at least {MIN_BYTES} (1 MiB): \
                 below that redb's own pages and one chunk per series leave no room for history",
                path.display(),
                retention.max_bytes
            )));
        }
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| open_error(path, e))?;
        let (index, next_id) = load(&db, path)?;
        let file_bytes = file_size(path)?;
        let mut store = Store::new(db, path, retention, options, index, next_id);
        if file_bytes > retention.max_bytes {
            // A smaller bound than the one the file grew under: trim, then give the space back.
            store.enforce_size()?;
            store.db.compact(CompactionMode::Balanced).map_err(|e| {
                StoreError(format!(
                    "cannot compact the history store {} down to its size bound of {} bytes: {e}",
                    path.display(),
                    retention.max_bytes
                ))
            })?;
        }
        Ok(store)
    }

    fn new(
        db: Database,
        path: &Path,
        retention: Retention,
        options: StoreOptions,
        index: HashMap<SeriesKey, SeriesInfo>,
        next_id: u32,
    ) -> Store {
        Store {
            db,
            path: path.to_path_buf(),
            retention,
            options,
            index: RwLock::new(index),
            pending: Mutex::new(Pending {
                current: Buffer::default(),
                committing: None,
                next_id,
                skipped: 0,
            }),
            writer: Mutex::new(()),
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, doing: &str, e: impl Display) -> StoreError {
        StoreError(format!("history store {}: cannot {doing}: {e}", self.path.display()))
    }

    /// Adds points. They are buffered and committed with the next flush (see the module's
    /// documentation for when that happens and what a crash can lose); a query sees them at
    /// once.
    ///
    /// A point is skipped (and counted in [`StoreStats::skipped`]) if its value or time is NaN
    /// or infinite, or if it is a text for a series of numbers or booleans, or the reverse (a
    /// series keeps the kind of its first point until retention has dropped all of its points).
    /// A number in a boolean series, or the reverse, is kept. An error means a commit failed.
    ///
    /// When the buffer is due, the append that finds it so commits it, on the caller's thread:
    /// a few milliseconds once a second (an fsync; longer on a slow flash), and a retention
    /// pass when the size bound is reached. From async code, call it from `spawn_blocking` or a
    /// thread of its own if that stall matters.
    pub fn append(&self, points: &[Point]) -> Result<(), StoreError> {
        if points.is_empty() {
            return Ok(());
        }
        let due = {
            let mut p = lock(&self.pending);
            let mut skipped = 0;
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            let mut created: Vec<(SeriesKey, SeriesInfo)> = Vec::new();
            for point in points {
                let Some(t) = to_micros(point.t) else {
                    skipped += 1;
                    continue;
                };
                let kind = Kind::of(&point.value);
                if let Sample::Number(v) = point.value
                    && !v.is_finite()
                {
                    skipped += 1;
                    continue;
                }
                let info = match index.get(&point.key) {
                    Some(info) => *info,
                    None => match created.iter().find(|(k, _)| *k == point.key) {
                        Some((_, info)) => *info,
                        None => {
                            let id = p.next_id;
                            if id == u32::MAX {
                                // Four billion series created: nothing sensible to do.
                                skipped += 1;
                                continue;
                            }
                            p.next_id = id + 1;
                            let info = SeriesInfo { id, kind };
                            p.current.new_series.push((id, point.key.clone(), kind));
                            created.push((point.key.clone(), info));
                            info
                        }
                    },
                };
                let b = &mut p.current;
                match (&point.value, info.kind.is_text()) {
                    (Sample::Text(s), true) => b.texts.entry(info.id).or_default().push((t, s.clone())),
                    (Sample::Number(v), false) => b.numbers.entry(info.id).or_default().push((t, *v)),
                    (Sample::Bool(x), false) => {
                        b.numbers.entry(info.id).or_default().push((t, f64::from(u8::from(*x))))
                    }
                    _ => {
                        skipped += 1;
                        continue;
                    }
                }
                b.points += 1;
                b.since.get_or_insert_with(Instant::now);
            }
            drop(index);
            if !created.is_empty() {
                let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
                index.extend(created);
            }
            if skipped > 0 {
                p.skipped += skipped;
                tracing::debug!(
                    skipped,
                    "history store {}: points skipped (NaN, infinite, or of another kind than their series)",
                    self.path.display()
                );
            }
            let b = &p.current;
            if b.points >= MAX_BUFFERED {
                Due::Wait
            } else if b.points >= FLUSH_POINTS || b.since.is_some_and(|s| s.elapsed() >= self.options.sync_interval) {
                Due::IfFree
            } else {
                Due::No
            }
        };
        match due {
            Due::No => Ok(()),
            Due::IfFree => match self.writer.try_lock() {
                Ok(guard) => self.commit_buffer(&guard),
                // Someone is writing: the buffer goes with the next commit.
                Err(_) => Ok(()),
            },
            Due::Wait => {
                let guard = lock(&self.writer);
                self.commit_buffer(&guard)
            }
        }
    }

    /// Commits the buffered points (durably: on disk when this returns).
    pub fn flush(&self) -> Result<(), StoreError> {
        let guard = lock(&self.writer);
        self.commit_buffer(&guard)
    }

    fn commit_buffer(&self, _writer: &MutexGuard<'_, ()>) -> Result<(), StoreError> {
        let frozen = {
            let mut p = lock(&self.pending);
            if p.current.points == 0 && p.current.new_series.is_empty() {
                return Ok(());
            }
            let b = Arc::new(std::mem::take(&mut p.current));
            p.committing = Some(b.clone());
            b
        };
        let result = self.write_buffer(&frozen);
        let mut p = lock(&self.pending);
        p.committing = None;
        let counts = match result {
            Ok(counts) => counts,
            Err(e) => {
                // The series records go with the next commit, or their series' later points
                // would be stored under an id the file does not know.
                let lost = frozen.new_series.clone();
                p.current.new_series.splice(0..0, lost);
                return Err(e);
            }
        };
        drop(p);
        // The size bound holds whenever the caller runs retention: a flood between two runs
        // trims as it goes.
        let series = self.index.read().unwrap_or_else(PoisonError::into_inner).len();
        if counts.estimated_bytes(series) as f64 > self.size_budget()? as f64 * HIGH_WATER {
            self.enforce_size_locked()?;
        }
        Ok(())
    }

    fn write_buffer(&self, b: &Buffer) -> Result<Counts, StoreError> {
        let doing = || format!("commit {} buffered points", b.points);
        let txn = self.db.begin_write().map_err(|e| self.err(&doing(), e))?;
        {
            let mut series = txn.open_table(SERIES).map_err(|e| self.err(&doing(), e))?;
            for (id, key, kind) in &b.new_series {
                series
                    .insert(*id, (key.device.as_str(), key.metric.as_str(), *kind as u8))
                    .map_err(|e| self.err(&doing(), e))?;
            }
        }
        let mut counts = self.read_counts(&txn)?;
        {
            let mut chunks = txn.open_table(CHUNKS).map_err(|e| self.err(&doing(), e))?;
            for (&id, points) in &b.numbers {
                let points = sort_dedup(points.clone());
                let added = self.merge_into_chunks(&mut chunks, id, &points)?;
                counts.numbers = counts.numbers.saturating_add_signed(added);
            }
        }
        {
            let mut texts = txn.open_table(TEXTS).map_err(|e| self.err(&doing(), e))?;
            for (&id, points) in &b.texts {
                for (t, s) in points {
                    let old = texts.insert((id, *t), s.as_str()).map_err(|e| self.err(&doing(), e))?;
                    match old {
                        Some(old) => counts.text_bytes = counts.text_bytes.saturating_sub(old.value().len() as u64),
                        None => counts.texts += 1,
                    }
                    counts.text_bytes += s.len() as u64;
                }
            }
        }
        self.write_counts(&txn, counts)?;
        txn.commit().map_err(|e| self.err(&doing(), e))?;
        Ok(counts)
    }

    /// Adds `new` (sorted, one point per time) to the chunks of series `id`; returns how many
    /// points the series gained (fewer than `new.len()` where times were already stored).
    fn merge_into_chunks(
        &self,
        chunks: &mut redb::Table<'_, (u32, i64), &[u8]>,
        id: u32,
        new: &[(i64, f64)],
    ) -> Result<i64, StoreError> {
        let (Some(&(lo, _)), Some(&(hi, _))) = (new.first(), new.last()) else {
            return Ok(0);
        };
        let doing = || format!("write the points of series {id}");
        // The chunks the new points fall into: from the one holding `lo` (the last one starting
        // at or before it, if any) to the last one starting at or before `hi`. Every point of
        // the chunk after those is later than `hi`, so the merged points can be re-cut into
        // chunks without overlapping it.
        let start = chunks
            .range((id, i64::MIN)..=(id, lo))
            .map_err(|e| self.err(&doing(), e))?
            .next_back()
            .transpose()
            .map_err(|e| self.err(&doing(), e))?
            .map_or(lo, |(k, _)| k.value().1);
        let mut old_keys = Vec::new();
        let mut old = Vec::new();
        for entry in chunks
            .range((id, start)..=(id, hi))
            .map_err(|e| self.err(&doing(), e))?
        {
            let (k, v) = entry.map_err(|e| self.err(&doing(), e))?;
            let (key, bytes) = (k.value().1, v.value());
            // A full chunk that ends before the new points stays as it is.
            if old_keys.is_empty()
                && bytes.len() >= CHUNK_POINTS * RECORD
                && last_time(bytes).is_some_and(|last| last < lo)
            {
                continue;
            }
            decode(bytes, &mut old).ok_or_else(|| self.corrupt(id, key, bytes.len()))?;
            old_keys.push(key);
        }
        let merged = merge(&old, new);
        for key in old_keys {
            chunks.remove((id, key)).map_err(|e| self.err(&doing(), e))?;
        }
        for part in merged.chunks(CHUNK_POINTS) {
            chunks
                .insert((id, part[0].0), encode(part).as_slice())
                .map_err(|e| self.err(&doing(), e))?;
        }
        Ok(merged.len() as i64 - old.len() as i64)
    }

    fn corrupt(&self, id: u32, key: i64, len: usize) -> StoreError {
        StoreError(format!(
            "history store {} is damaged: the chunk of series {id} at {key} µs holds {len} bytes, \
             expected a multiple of {RECORD} (time and value of each point)",
            self.path.display()
        ))
    }

    fn read_counts(&self, txn: &WriteTransaction) -> Result<Counts, StoreError> {
        let doing = "read the point counts";
        let meta = txn.open_table(META).map_err(|e| self.err(doing, e))?;
        counts_in(&meta).map_err(|e| self.err(doing, e))
    }

    fn write_counts(&self, txn: &WriteTransaction, c: Counts) -> Result<(), StoreError> {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| self.err("write the point counts", e))?;
        for (name, v) in [("numbers", c.numbers), ("texts", c.texts), ("text_bytes", c.text_bytes)] {
            meta.insert(name, v)
                .map_err(|e| self.err("write the point counts", e))?;
        }
        Ok(())
    }

    /// Every series with at least one point, sorted.
    pub fn series(&self) -> Result<Vec<SeriesKey>, StoreError> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let mut keys: Vec<SeriesKey> = index.keys().cloned().collect();
        keys.sort();
        Ok(keys)
    }

    /// The points of `key` with `from <= t <= to`, reduced to about `columns` pixel columns.
    ///
    /// Numbers and booleans (as 0/1) come as [`Values::Numbers`], reduced by
    /// [`downsample::min_max`] (after [`Transform::RatePerSecond`], if asked, on the raw
    /// points). Texts come as [`Values::Texts`]: the first point of the range and every change
    /// (the transform does not apply). The bounds are rounded to the microsecond, like stored
    /// times; an infinite bound is the end of the stored history. `from > to`, a NaN bound or an
    /// unknown series give an empty series; `columns = 0` counts as 1.
    pub fn query(
        &self,
        key: &SeriesKey,
        from: f64,
        to: f64,
        columns: usize,
        transform: Transform,
    ) -> Result<Series, StoreError> {
        let empty = Series {
            t: Vec::new(),
            values: Values::Numbers(Vec::new()),
            raw_points: 0,
        };
        if from.is_nan() || to.is_nan() || from > to {
            return Ok(empty);
        }
        let info = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            index.get(key).copied()
        };
        let Some(info) = info else {
            return Ok(empty);
        };
        let (lo, hi) = (bound_micros(from), bound_micros(to));
        // The buffer first, then the file: a commit in between shows a point twice (merged
        // away), never not at all.
        let doing = || format!("read {}/{}", key.device, key.metric);
        if info.kind.is_text() {
            let buffered = self.buffered(info.id, lo, hi, |b| &b.texts);
            let txn = self.db.begin_read().map_err(|e| self.err(&doing(), e))?;
            let texts = match txn.open_table(TEXTS) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => return Ok(empty),
                Err(e) => return Err(self.err(&doing(), e)),
            };
            let mut stored = Vec::new();
            for entry in texts
                .range((info.id, lo)..=(info.id, hi))
                .map_err(|e| self.err(&doing(), e))?
            {
                let (k, v) = entry.map_err(|e| self.err(&doing(), e))?;
                stored.push((k.value().1, v.value().to_string()));
            }
            let (t, v) = merge(&stored, &buffered)
                .into_iter()
                .map(|(t, v)| (to_secs(t), v))
                .unzip();
            return Ok(reduce_texts(t, v));
        }
        let buffered = self.buffered(info.id, lo, hi, |b| &b.numbers);
        let txn = self.db.begin_read().map_err(|e| self.err(&doing(), e))?;
        let chunks = match txn.open_table(CHUNKS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(empty),
            Err(e) => return Err(self.err(&doing(), e)),
        };
        // The chunk holding `lo` starts at or before it.
        let start = chunks
            .range((info.id, i64::MIN)..=(info.id, lo))
            .map_err(|e| self.err(&doing(), e))?
            .next_back()
            .transpose()
            .map_err(|e| self.err(&doing(), e))?
            .map_or(lo, |(k, _)| k.value().1);
        let mut stored = Vec::new();
        for entry in chunks
            .range((info.id, start)..=(info.id, hi))
            .map_err(|e| self.err(&doing(), e))?
        {
            let (k, v) = entry.map_err(|e| self.err(&doing(), e))?;
            let bytes = v.value();
            decode(bytes, &mut stored).ok_or_else(|| self.corrupt(info.id, k.value().1, bytes.len()))?;
        }
        let first = stored.partition_point(|p| p.0 < lo);
        let last = stored.partition_point(|p| p.0 <= hi);
        let all = if buffered.is_empty() {
            stored.truncate(last);
            stored.drain(..first);
            stored
        } else {
            merge(&stored[first..last], &buffered)
        };
        let t: Vec<f64> = all.iter().map(|p| to_secs(p.0)).collect();
        let v: Vec<f64> = all.iter().map(|p| p.1).collect();
        Ok(reduce_numbers(t, v, from, to, columns, transform))
    }

    /// The buffered points of series `id` in `[lo, hi]`, sorted, one per time.
    fn buffered<T: Clone>(
        &self,
        id: u32,
        lo: i64,
        hi: i64,
        pick: impl Fn(&Buffer) -> &HashMap<u32, Vec<(i64, T)>>,
    ) -> Vec<(i64, T)> {
        let p = lock(&self.pending);
        let mut out = Vec::new();
        // Committing first: the current buffer's points are newer.
        for b in p.committing.as_deref().into_iter().chain([&p.current]) {
            if let Some(points) = pick(b).get(&id) {
                out.extend(points.iter().filter(|q| lo <= q.0 && q.0 <= hi).cloned());
            }
        }
        drop(p);
        sort_dedup(out)
    }

    /// Drops what is older than the age bound at `now` (Unix seconds) or beyond the size bound;
    /// returns how many points were dropped. Commits the buffer first.
    ///
    /// A point is dropped when `t < now - max_age` (rounded to the microsecond): a point exactly
    /// `max_age` old stays.
    pub fn enforce_retention(&self, now: f64) -> Result<u64, StoreError> {
        let Some(now) = to_micros(now) else {
            return Err(self.err(
                "enforce retention",
                format!("`now` must be a Unix time in seconds, got {now}"),
            ));
        };
        let guard = lock(&self.writer);
        self.commit_buffer(&guard)?;
        let max_age = i64::try_from(self.retention.max_age.as_micros()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(max_age);
        let mut dropped = self.drop_before(cutoff)?;
        dropped += self.enforce_size_locked()?;
        Ok(dropped)
    }

    fn enforce_size(&self) -> Result<u64, StoreError> {
        let _guard = lock(&self.writer);
        self.enforce_size_locked()
    }

    /// Drops the oldest points, across all series, while the estimate is over the bound.
    fn enforce_size_locked(&self) -> Result<u64, StoreError> {
        let doing = "enforce the size bound";
        let series = self.index.read().unwrap_or_else(PoisonError::into_inner).len();
        let txn = self.db.begin_write().map_err(|e| self.err(doing, e))?;
        let counts = self.read_counts(&txn)?;
        let estimate = counts.estimated_bytes(series);
        let budget = self.size_budget()? as f64;
        if (estimate as f64) <= budget * HIGH_WATER {
            return Ok(0);
        }
        let excess = estimate - (budget * LOW_WATER) as u64;
        let cutoff = self.oldest_cutoff(&txn, excess)?;
        txn.abort().map_err(|e| self.err(doing, e))?;
        self.drop_before(cutoff)
    }

    /// The time before which the oldest points, across all series, are worth `excess`
    /// estimated bytes.
    fn oldest_cutoff(&self, txn: &WriteTransaction, excess: u64) -> Result<i64, StoreError> {
        let doing = "find the oldest points";
        let ids: Vec<SeriesInfo> = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .copied()
            .collect();
        let chunks = txn.open_table(CHUNKS).map_err(|e| self.err(doing, e))?;
        let texts = txn.open_table(TEXTS).map_err(|e| self.err(doing, e))?;
        /// The points of one series, oldest first, read a chunk at a time.
        enum Source<'a> {
            Chunks(redb::Range<'a, (u32, i64), &'static [u8]>, Vec<(i64, f64)>, usize),
            Texts(redb::Range<'a, (u32, i64), &'static str>),
        }
        let mut sources = Vec::new();
        for info in &ids {
            let range = (info.id, i64::MIN)..=(info.id, i64::MAX);
            sources.push(if info.kind.is_text() {
                Source::Texts(texts.range(range).map_err(|e| self.err(doing, e))?)
            } else {
                Source::Chunks(chunks.range(range).map_err(|e| self.err(doing, e))?, Vec::new(), 0)
            });
        }
        // The next point of a source: its time and estimated bytes.
        let next = |s: &mut Source<'_>, id: u32| -> Result<Option<(i64, u64)>, StoreError> {
            match s {
                Source::Chunks(range, buf, pos) => {
                    if *pos >= buf.len() {
                        buf.clear();
                        *pos = 0;
                        let Some(entry) = range.next() else {
                            return Ok(None);
                        };
                        let (k, v) = entry.map_err(|e| self.err(doing, e))?;
                        let bytes = v.value();
                        decode(bytes, buf).ok_or_else(|| self.corrupt(id, k.value().1, bytes.len()))?;
                    }
                    let t = buf.get(*pos).map(|p| p.0);
                    *pos += 1;
                    Ok(t.map(|t| (t, NUMBER_POINT_BYTES)))
                }
                Source::Texts(range) => match range.next() {
                    None => Ok(None),
                    Some(entry) => {
                        let (k, v) = entry.map_err(|e| self.err(doing, e))?;
                        Ok(Some((k.value().1, TEXT_POINT_BYTES + 2 * v.value().len() as u64)))
                    }
                },
            }
        };
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some((t, bytes)) = next(s, ids[i].id)? {
                heap.push(Reverse((t, i, bytes)));
            }
        }
        let mut freed = 0u64;
        while let Some(Reverse((t, i, bytes))) = heap.pop() {
            freed += bytes;
            if freed >= excess {
                return Ok(t.saturating_add(1));
            }
            if let Some((t, bytes)) = next(&mut sources[i], ids[i].id)? {
                heap.push(Reverse((t, i, bytes)));
            }
        }
        Ok(i64::MAX)
    }

    /// Drops every committed point with `t < cutoff` µs, removes the series left empty, and
    /// commits; returns how many points were dropped.
    fn drop_before(&self, cutoff: i64) -> Result<u64, StoreError> {
        let doing = "drop old points";
        let ids: Vec<(SeriesKey, SeriesInfo)> = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let txn = self.db.begin_write().map_err(|e| self.err(doing, e))?;
        let mut counts = self.read_counts(&txn)?;
        let mut dropped = 0u64;
        let mut emptied = Vec::new();
        {
            let mut chunks = txn.open_table(CHUNKS).map_err(|e| self.err(doing, e))?;
            let mut texts = txn.open_table(TEXTS).map_err(|e| self.err(doing, e))?;
            for (key, info) in &ids {
                let id = info.id;
                let mut n = 0u64;
                if info.kind.is_text() {
                    for entry in texts
                        .extract_if((id, i64::MIN)..(id, cutoff), |_, _| true)
                        .map_err(|e| self.err(doing, e))?
                    {
                        let (_, v) = entry.map_err(|e| self.err(doing, e))?;
                        n += 1;
                        counts.text_bytes = counts.text_bytes.saturating_sub(v.value().len() as u64);
                    }
                    counts.texts = counts.texts.saturating_sub(n);
                } else {
                    // Whole chunks before the cutoff go; the one across it is cut.
                    let mut remove = Vec::new();
                    let mut keep: Option<Vec<(i64, f64)>> = None;
                    for entry in chunks
                        .range((id, i64::MIN)..(id, cutoff))
                        .map_err(|e| self.err(doing, e))?
                    {
                        let (k, v) = entry.map_err(|e| self.err(doing, e))?;
                        let (start, bytes) = (k.value().1, v.value());
                        remove.push(start);
                        let mut points = Vec::new();
                        decode(bytes, &mut points).ok_or_else(|| self.corrupt(id, start, bytes.len()))?;
                        let old = points.partition_point(|p| p.0 < cutoff);
                        n += old as u64;
                        if old < points.len() {
                            keep = Some(points.split_off(old));
                        }
                    }
                    for start in remove {
                        chunks.remove((id, start)).map_err(|e| self.err(doing, e))?;
                    }
                    if let Some(rest) = keep {
                        chunks
                            .insert((id, rest[0].0), encode(&rest).as_slice())
                            .map_err(|e| self.err(doing, e))?;
                    }
                    counts.numbers = counts.numbers.saturating_sub(n);
                }
                if n > 0 {
                    dropped += n;
                    let range = (id, i64::MIN)..=(id, i64::MAX);
                    let left = if info.kind.is_text() {
                        texts.range(range).map_err(|e| self.err(doing, e))?.next().is_some()
                    } else {
                        chunks.range(range).map_err(|e| self.err(doing, e))?.next().is_some()
                    };
                    if !left {
                        emptied.push((key.clone(), id));
                    }
                }
            }
        }
        if dropped == 0 {
            txn.abort().map_err(|e| self.err(doing, e))?;
            return Ok(0);
        }
        // A series left without points loses its record, unless points of it arrived since.
        // Out of the index first (under the buffer's lock, so that an append now makes a new
        // series), then out of the file.
        if !emptied.is_empty() {
            let p = lock(&self.pending);
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            emptied.retain(|(_, id)| !p.current.numbers.contains_key(id) && !p.current.texts.contains_key(id));
            for (key, _) in &emptied {
                index.remove(key);
            }
            drop(index);
            drop(p);
            let mut series = txn.open_table(SERIES).map_err(|e| self.err(doing, e))?;
            for (_, id) in &emptied {
                series.remove(*id).map_err(|e| self.err(doing, e))?;
            }
        }
        self.write_counts(&txn, counts)?;
        txn.commit().map_err(|e| self.err(doing, e))?;
        Ok(dropped)
    }

    /// How many bytes the stored data may take: the file's size if it is over half of
    /// `max_bytes` (up to `max_bytes`), else half of `max_bytes`.
    ///
    /// redb doubles its file each time it runs out of pages (up to 4 GiB), so a file that has to
    /// grow past half of `max_bytes` would end over it: the data must fit in the largest file
    /// size of that sequence under `max_bytes`, which is over half of it. Until the file has
    /// reached that size, half of `max_bytes` is safe; once there, the file itself is the
    /// budget.
    pub fn size_budget(&self) -> Result<u64, StoreError> {
        let max = self.retention.max_bytes;
        let file = file_size(&self.path)?;
        Ok(if file > max / 2 { file.min(max) } else { max / 2 })
    }

    /// The bytes of the pages redb has allocated: the data, the pages a recent commit replaced
    /// (free from the next commit on) and redb's own tables. It walks every B-tree of the file:
    /// for tests and benchmarks.
    pub fn allocated_bytes(&self) -> Result<u64, StoreError> {
        let doing = "measure the allocated pages";
        let txn = self.db.begin_write().map_err(|e| self.err(doing, e))?;
        let stats = txn.stats().map_err(|e| self.err(doing, e))?;
        txn.abort().map_err(|e| self.err(doing, e))?;
        Ok(stats.allocated_pages() * stats.page_size() as u64)
    }

    /// Counts for tests, benchmarks and status.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let doing = "read the point counts";
        let txn = self.db.begin_read().map_err(|e| self.err(doing, e))?;
        let meta = txn.open_table(META).map_err(|e| self.err(doing, e))?;
        let counts = counts_in(&meta).map_err(|e| self.err(doing, e))?;
        let series = self.index.read().unwrap_or_else(PoisonError::into_inner).len();
        let p = lock(&self.pending);
        let buffered = p.current.points as u64 + p.committing.as_ref().map_or(0, |b| b.points as u64);
        Ok(StoreStats {
            series,
            points: counts.numbers + counts.texts + buffered,
            buffered,
            estimated_bytes: counts.estimated_bytes(series),
            file_bytes: file_size(&self.path)?,
            skipped: p.skipped,
        })
    }
}

enum Due {
    No,
    IfFree,
    Wait,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!("{e}; the points appended since the last commit are lost");
        }
    }
}

fn counts_in(meta: &impl ReadableTable<&'static str, u64>) -> Result<Counts, redb::StorageError> {
    let get = |name: &str| -> Result<u64, redb::StorageError> { Ok(meta.get(name)?.map_or(0, |v| v.value())) };
    Ok(Counts {
        numbers: get("numbers")?,
        texts: get("texts")?,
        text_bytes: get("text_bytes")?,
    })
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    let what = match &e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            "it is already open (another tlm-dashboard, or another store in this process)".to_string()
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData => {
            format!(
                "{io}; expected a tlm-dashboard history store (a redb file): move it aside to \
                 start a new history"
            )
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            format!("{io} (expected a writable file, or a writable directory to create it in)")
        }
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => format!(
            "it is damaged or not a redb file ({why}); expected a tlm-dashboard history store: \
             move it aside to start a new history"
        ),
        other => format!("{other} (expected a tlm-dashboard history store)"),
    };
    StoreError(format!("cannot open the history store {}: {what}", path.display()))
}

fn file_size(path: &Path) -> Result<u64, StoreError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| {
        StoreError(format!(
            "history store {}: cannot read the file's size: {e}",
            path.display()
        ))
    })
}

/// Creates the tables of a new store, checks the format of an existing one, and reads its
/// series; returns them and the next free series id.
fn load(db: &Database, path: &Path) -> Result<(HashMap<SeriesKey, SeriesInfo>, u32), StoreError> {
    let fail = |doing: &str, e: &dyn Display| {
        StoreError(format!(
            "history store {}: cannot {doing}: {e} (expected a tlm-dashboard history store, format {FORMAT})",
            path.display()
        ))
    };
    let txn = db.begin_write().map_err(|e| fail("begin a transaction", &e))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| fail("open the table `meta`", &e))?;
        let format = meta
            .get("format")
            .map_err(|e| fail("read the format", &e))?
            .map(|v| v.value());
        match format {
            None => {
                meta.insert("format", FORMAT)
                    .map_err(|e| fail("write the format", &e))?;
            }
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError(format!(
                    "history store {}: format {other}, expected {FORMAT}: it was written by \
                     another version of tlm-dashboard; move it aside to start a new history",
                    path.display()
                )));
            }
        }
    }
    txn.open_table(CHUNKS)
        .map_err(|e| fail("open the table `chunks`", &e))?;
    txn.open_table(TEXTS).map_err(|e| fail("open the table `texts`", &e))?;
    let mut index = HashMap::new();
    let mut next_id = 0u32;
    {
        let series = txn
            .open_table(SERIES)
            .map_err(|e| fail("open the table `series`", &e))?;
        for entry in series.iter().map_err(|e| fail("read the series", &e))? {
            let (k, v) = entry.map_err(|e| fail("read the series", &e))?;
            let id = k.value();
            let (device, metric, kind) = v.value();
            let kind = Kind::from_u8(kind).ok_or_else(|| {
                StoreError(format!(
                    "history store {} is damaged: series {id} ({device}/{metric}) has kind \
                     {kind}, expected 0 (number), 1 (boolean) or 2 (text)",
                    path.display()
                ))
            })?;
            index.insert(
                SeriesKey {
                    device: device.to_string(),
                    metric: metric.to_string(),
                },
                SeriesInfo { id, kind },
            );
            next_id = next_id.max(id.saturating_add(1));
        }
    }
    txn.commit().map_err(|e| fail("commit", &e))?;
    Ok((index, next_id))
}
