//! The history store (harness = false): `cargo bench -p tlm-dashboard --bench store`, or
//! `cargo xtask bench store`.
//!
//! 1. ingest: 50 series, packs of 50 points (one point per series, one pack per simulated
//!    second), as the dashboard appends them; records per second with the default buffering,
//!    and with a durable commit per pack (`sync_interval = 0`) beside it.
//! 2. fill: 24 h × 50 metrics at 1 s (4.32 M points) into a new store; time and file size.
//! 3. query: all 50 series over the 24 h at 1,000 columns, raw and as a rate; cold (the store
//!    just reopened: redb's cache empty, the kernel's page cache as the fill left it) and warm.
//! 4. bounded: the same day into a store bounded to 32 MiB, with retention run every second of
//!    wall time as the dashboard's timer would (the store also trims at its commits): rate, and
//!    the file's largest size, sampled every 1,000 packs.
//! 5. memory: VmRSS, RssAnon (/proc/self/status) and Anonymous (/proc/self/smaps_rollup) after
//!    each step, and the peak (VmHWM).
//!
//! The store's file goes to a temporary directory, or under `TLM_BENCH_DIR` if set (to measure
//! on another disk).

use std::path::Path;
use std::time::{Duration, Instant};

use tlm_dashboard::store::{Point, Retention, Sample, SeriesKey, Store, StoreOptions, Transform};

const SERIES: usize = 50;
const T0: f64 = 1_767_225_600.0; // 2026-01-01T00:00:00Z

fn keys() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|i| SeriesKey {
            device: "BENCH1".into(),
            metric: format!("metric_{i:02}"),
        })
        .collect()
}

/// The pack of second `s`: one point per series, values that wander like sensor readings.
fn pack(keys: &[SeriesKey], s: u32) -> Vec<Point> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| Point {
            key: k.clone(),
            t: T0 + f64::from(s),
            value: Sample::Number(20.0 + (f64::from(s) * 0.001 + i as f64).sin() * 5.0 + f64::from(s % 7) * 0.01),
        })
        .collect()
}

fn retention() -> Retention {
    Retention {
        max_age: Duration::from_secs(7 * 86_400),
        max_bytes: 1 << 40,
    }
}

/// Fields of /proc/self/status and /proc/self/smaps_rollup, in KiB.
fn memory() -> String {
    let kib = |file: &str, field: &str| -> u64 {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let mib = |k: u64| k as f64 / 1024.0;
    format!(
        "VmRSS {:.1} MiB (anonymous {:.1} MiB, file {:.1} MiB; smaps_rollup Anonymous {:.1} MiB), peak VmHWM {:.1} MiB",
        mib(kib("/proc/self/status", "VmRSS:")),
        mib(kib("/proc/self/status", "RssAnon:")),
        mib(kib("/proc/self/status", "RssFile:")),
        mib(kib("/proc/self/smaps_rollup", "Anonymous:")),
        mib(kib("/proc/self/status", "VmHWM:")),
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Appends `seconds` packs; records per second. Each pack is built just before its append
/// (as the ingest decodes one), so that the whole day is never in memory at once; building
/// counts in the rate.
fn ingest(store: &Store, keys: &[SeriesKey], first: u32, seconds: u32) -> f64 {
    let t0 = Instant::now();
    for s in first..first + seconds {
        store.append(&pack(keys, s)).expect("append");
    }
    store.flush().expect("flush");
    (seconds as usize * SERIES) as f64 / t0.elapsed().as_secs_f64()
}

/// Queries every series over the whole day; total time and the points returned.
fn query_all(store: &Store, keys: &[SeriesKey], seconds: u32, transform: Transform) -> (Duration, u64, usize) {
    let t0 = Instant::now();
    let (mut raw, mut returned) = (0, 0);
    for k in keys {
        let s = store
            .query(k, T0, T0 + f64::from(seconds - 1), 1000, transform)
            .expect("query");
        raw += s.raw_points;
        returned += s.t.len();
    }
    (t0.elapsed(), raw, returned)
}

fn report_queries(label: &str, store: &Store, keys: &[SeriesKey], seconds: u32) {
    for (name, transform) in [("raw", Transform::Raw), ("rate", Transform::RatePerSecond)] {
        let (took, raw, returned) = query_all(store, keys, seconds, transform);
        println!(
            "query {label}, {name}: 50 series × {seconds} s at 1,000 columns in {:>7.1} ms ({:.2} ms per series; {raw} raw points, {returned} returned)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / SERIES as f64,
        );
    }
}

fn main() {
    // `cargo test --benches` runs this without --bench: keep it quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let day: u32 = if quick { 3_600 } else { 86_400 };
    let dir = match std::env::var_os("TLM_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let keys = keys();
    println!("start: {}", memory());

    // 1. Ingest rate, buffered (default) and with a durable commit per pack.
    {
        let path = dir.path().join("ingest.redb");
        let store = Store::open(&path, retention()).expect("open");
        let packs = if quick { 2_000 } else { 20_000 };
        let rate = ingest(&store, &keys, 0, packs);
        println!(
            "ingest, buffered (default: commit every 1 s or 50,000 points): {rate:>10.0} records/s ({packs} packs of 50)"
        );
        drop(store);
        let path = dir.path().join("ingest-sync.redb");
        let every = StoreOptions {
            sync_interval: Duration::ZERO,
            ..StoreOptions::default()
        };
        let store = Store::open_with(&path, retention(), every).expect("open");
        let packs = if quick { 200 } else { 2_000 };
        let rate = ingest(&store, &keys, 0, packs);
        println!(
            "ingest, durable commit per pack (sync_interval = 0):           {rate:>10.0} records/s ({packs} packs of 50)"
        );
    }

    // 2. Fill a day.
    let path = dir.path().join("day.redb");
    {
        let store = Store::open(&path, retention()).expect("open");
        let t0 = Instant::now();
        let rate = ingest(&store, &keys, 0, day);
        let took = t0.elapsed();
        let stats = store.stats().expect("stats");
        let allocated = store.allocated_bytes().expect("allocated");
        println!(
            "fill: {} points ({SERIES} series × {day} s) in {:.1} s = {rate:.0} records/s",
            stats.points,
            took.as_secs_f64()
        );
        println!(
            "file: {:.1} MiB on disk, {:.1} MiB allocated by redb ({:.1} bytes per point), size estimate {:.1} MiB",
            mib(stats.file_bytes),
            mib(allocated),
            allocated as f64 / stats.points as f64,
            mib(stats.estimated_bytes)
        );
        println!("after fill: {}", memory());
        report_queries("in the filling process", &store, &keys, day);
    }

    // 3. Reopen (verifies the whole file), query cold, then warm.
    let t0 = Instant::now();
    let store = Store::open(&path, retention()).expect("reopen");
    println!(
        "open with integrity check: {:.0} ms ({:.1} MiB)",
        t0.elapsed().as_secs_f64() * 1e3,
        mib(file_size(&path))
    );
    let (took, _, _) = query_all(&store, &keys, day, Transform::Raw);
    println!(
        "query cold (reopened store), raw: 50 series in {:.1} ms ({:.2} ms per series)",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e3 / SERIES as f64
    );
    report_queries("warm", &store, &keys, day);
    println!("after queries: {}", memory());
    drop(store);

    // 4. A day into a store bounded to 32 MiB.
    let path = dir.path().join("bounded.redb");
    let bound = Retention {
        max_age: Duration::from_secs(7 * 86_400),
        max_bytes: 32 << 20,
    };
    let store = Store::open(&path, bound).expect("open");
    let mut largest = 0;
    let t0 = Instant::now();
    let mut last_retention = t0;
    for s in 0..day {
        store.append(&pack(&keys, s)).expect("append");
        if last_retention.elapsed() >= Duration::from_secs(1) {
            store.enforce_retention(T0 + f64::from(s)).expect("retention");
            last_retention = Instant::now();
        }
        if s % 1000 == 999 {
            largest = largest.max(file_size(&path));
        }
    }
    store.flush().expect("flush");
    let took = t0.elapsed();
    largest = largest.max(file_size(&path));
    let stats = store.stats().expect("stats");
    println!(
        "bounded to {:.0} MiB: {} points appended in {:.1} s = {:.0} records/s, {} kept (the newest); file at most {:.1} MiB",
        mib(bound.max_bytes),
        day as usize * SERIES,
        took.as_secs_f64(),
        (day as usize * SERIES) as f64 / took.as_secs_f64(),
        stats.points,
        mib(largest)
    );
    println!("after the bounded run: {}", memory());
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
