//! The history store through its public API: restarts, retention by age and by size, queries
//! and their reduction, and malformed input. Expected values are worked out by hand in each test.

use std::path::Path;
use std::time::Duration;

use tlm_dashboard::store::{Point, Retention, Sample, Series, SeriesKey, Store, StoreOptions, Transform, Values};

const DAY: Duration = Duration::from_secs(86_400);
const BIG: Retention = Retention {
    max_age: Duration::from_secs(100 * 365 * 86_400),
    max_bytes: 1 << 40,
};

fn key(device: &str, metric: &str) -> SeriesKey {
    SeriesKey {
        device: device.into(),
        metric: metric.into(),
    }
}

fn num(k: &SeriesKey, t: f64, v: f64) -> Point {
    Point {
        key: k.clone(),
        t,
        value: Sample::Number(v),
    }
}

fn text(k: &SeriesKey, t: f64, s: &str) -> Point {
    Point {
        key: k.clone(),
        t,
        value: Sample::Text(s.into()),
    }
}

fn numbers(s: &Series) -> &[f64] {
    match &s.values {
        Values::Numbers(v) => v,
        Values::Texts(t) => panic!("expected numbers, got texts {t:?}"),
    }
}

fn texts(s: &Series) -> &[String] {
    match &s.values {
        Values::Texts(v) => v,
        Values::Numbers(n) => panic!("expected texts, got numbers {n:?}"),
    }
}

fn open(path: &Path, retention: Retention) -> Store {
    Store::open(path, retention).unwrap()
}

/// Everything of a series, unreduced (more columns than points).
fn all(store: &Store, k: &SeriesKey) -> Series {
    store
        .query(k, f64::NEG_INFINITY, f64::INFINITY, 1 << 30, Transform::Raw)
        .unwrap()
}

#[test]
fn a_restart_keeps_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.redb");
    let (temp, state, door) = (key("D1", "temp"), key("D1", "state"), key("D2", "door"));
    {
        let store = open(&path, BIG);
        let mut pack = Vec::new();
        for i in 0..600 {
            pack.push(num(&temp, 1000.0 + f64::from(i), f64::from(i) * 0.5));
        }
        pack.push(text(&state, 1000.0, "idle"));
        pack.push(text(&state, 1010.0, "run"));
        pack.push(Point {
            key: door.clone(),
            t: 1000.0,
            value: Sample::Bool(true),
        });
        store.append(&pack).unwrap();
        // Half committed, half still buffered when the store is dropped.
        store.flush().unwrap();
        store
            .append(&[
                num(&temp, 1600.0, 300.0),
                Point {
                    key: door.clone(),
                    t: 1001.0,
                    value: Sample::Bool(false),
                },
            ])
            .unwrap();
        assert_eq!(store.stats().unwrap().buffered, 2);
    }
    let store = open(&path, BIG);
    assert_eq!(
        store.series().unwrap(),
        vec![key("D1", "state"), key("D1", "temp"), door.clone()]
    );
    let s = all(&store, &temp);
    assert_eq!(s.raw_points, 601);
    assert_eq!(s.t.len(), 601);
    assert_eq!(s.t[0], 1000.0);
    assert_eq!(s.t[600], 1600.0);
    assert_eq!(numbers(&s)[599], 299.5);
    assert_eq!(numbers(&s)[600], 300.0);
    let s = all(&store, &state);
    assert_eq!(s.t, [1000.0, 1010.0]);
    assert_eq!(texts(&s), ["idle", "run"]);
    let s = all(&store, &door);
    assert_eq!(s.t, [1000.0, 1001.0]);
    assert_eq!(numbers(&s), [1.0, 0.0]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.points, stats.buffered, stats.series), (605, 0, 3));
}

#[test]
fn times_round_trip_to_the_microsecond() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "m");
    let times = [
        1_700_000_000.123_456,
        1_700_000_000.000_001,
        1_700_000_000.999_999,
        0.000_001,
        -12.5,
        1_700_000_001.0,
    ];
    let points: Vec<Point> = times.iter().map(|&t| num(&k, t, t)).collect();
    store.append(&points).unwrap();
    store.flush().unwrap();
    let s = all(&store, &k);
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Each is the f64 nearest its decimal, which is what comes back from whole microseconds.
    assert_eq!(s.t, sorted);
    // A time between two microseconds is rounded to the nearer: 5.0000004 → 5.000000,
    // 5.0000016 → 5.000002.
    store
        .append(&[num(&k, 5.000_000_4, 1.0), num(&k, 5.000_001_6, 2.0)])
        .unwrap();
    let s = store.query(&k, 4.0, 6.0, 100, Transform::Raw).unwrap();
    assert_eq!(s.t, [5.0, 5.000_002]);
}

#[test]
fn retention_by_age_drops_exactly_the_older_points() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 40,
    };
    let store = open(&dir.path().join("h.redb"), retention);
    let (k, s, gone) = (key("D", "n"), key("D", "s"), key("D", "old"));
    // 1,001 points at t = 6000, 6001, ..., 7000 (four chunks of 250 and one of 1), a point
    // 1 µs either side of the bound, texts, and a series entirely older than the bound.
    let mut pack: Vec<Point> = (6000..=7000).map(|t| num(&k, f64::from(t), f64::from(t))).collect();
    pack.push(num(&k, 6_399.999_999, -1.0));
    pack.push(num(&k, 6_400.000_001, -2.0));
    pack.push(text(&s, 6399.0, "a"));
    pack.push(text(&s, 6400.0, "b"));
    pack.push(num(&gone, 100.0, 1.0));
    store.append(&pack).unwrap();
    // now = 10,000 s, max_age = 3,600 s: the bound is 10,000 - 3,600 = 6,400 s. Older than it
    // (t < 6400): 6000..=6399 (400 points), 6399.999999, the text at 6399 and the point at
    // 100: 403. The point at exactly 6400 is 3,600 s old, not older, and stays.
    assert_eq!(store.enforce_retention(10_000.0).unwrap(), 403);
    let n = all(&store, &k);
    // Left: 6400..=7000 (601 points) and 6400.000001.
    assert_eq!(n.raw_points, 602);
    assert_eq!(n.t[0], 6400.0);
    assert_eq!(n.t[1], 6_400.000_001);
    assert_eq!(n.t[2], 6401.0);
    assert_eq!(*n.t.last().unwrap(), 7000.0);
    assert_eq!(texts(&all(&store, &s)), ["b"]);
    // The emptied series is gone.
    assert_eq!(store.series().unwrap(), vec![k.clone(), s.clone()]);
    assert_eq!(all(&store, &gone).raw_points, 0);
    // A second pass 1 µs later: the bound is 6400.000001, so the number and the text at 6400
    // go (2 points, and the text series with them); the point at 6400.000001 is exactly
    // 3,600 s old and stays.
    assert_eq!(store.enforce_retention(10_000.000_001).unwrap(), 2);
    assert_eq!(all(&store, &k).t[0], 6_400.000_001);
    assert_eq!(store.series().unwrap(), vec![k.clone()]);
    // 6400.000001 and 6401..=7000.
    assert_eq!(store.stats().unwrap().points, 1 + 600);
}

#[test]
fn retention_by_age_then_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let retention = Retention {
        max_age: Duration::from_secs(10),
        max_bytes: 1 << 40,
    };
    let k = key("D", "n");
    {
        let store = open(&path, retention);
        let pack: Vec<Point> = (0..100).map(|t| num(&k, f64::from(t), 1.0)).collect();
        store.append(&pack).unwrap();
        // Bound 100 - 10 = 90: t = 0..=89 go (90 points), 90..=99 stay.
        assert_eq!(store.enforce_retention(100.0).unwrap(), 90);
    }
    let store = open(&path, retention);
    let s = all(&store, &k);
    assert_eq!(s.t, (90..100).map(f64::from).collect::<Vec<_>>());
    assert_eq!(store.stats().unwrap().points, 10);
}

#[test]
fn a_flood_stays_under_the_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    const MAX: u64 = 4 << 20;
    let retention = Retention {
        max_age: DAY,
        max_bytes: MAX,
    };
    let store = open(&path, retention);
    let keys: Vec<SeriesKey> = (0..50).map(|i| key("FLOOD", &format!("m{i}"))).collect();
    // 50 series at 1 point per second for 20,000 s: 1,000,000 points, about 17 MB at 17 bytes
    // a point, four times the bound. Retention runs every 100 packs, as the dashboard's timer
    // would, with `now` at the newest point (nothing is old enough for the age bound).
    let mut max_file = 0;
    for s in 0..20_000u32 {
        let t = 1_000_000.0 + f64::from(s);
        let pack: Vec<Point> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| num(k, t, f64::from(s) + i as f64))
            .collect();
        store.append(&pack).unwrap();
        if s % 100 == 99 {
            store.enforce_retention(t).unwrap();
            let size = std::fs::metadata(&path).unwrap().len();
            if s % 5000 == 4999 {
                let st = store.stats().unwrap();
                eprintln!(
                    "{s}: file {size} allocated {} estimated {} points {} budget {}",
                    store.allocated_bytes().unwrap(),
                    st.estimated_bytes,
                    st.points,
                    store.size_budget().unwrap()
                );
            }
            max_file = max_file.max(size);
            assert!(size <= MAX, "after {} s the file holds {size} bytes, over {MAX}", s + 1);
        }
    }
    let stats = store.stats().unwrap();
    eprintln!("flood: {stats:?}, largest file {max_file} bytes");
    assert!(stats.estimated_bytes as f64 <= store.size_budget().unwrap() as f64 * 0.9);
    // What is left is the newest: every series holds the same last stretch, and its last point.
    let last = all(&store, &keys[49]);
    assert_eq!(*last.t.last().unwrap(), 1_000_000.0 + 19_999.0);
    // The cut is one time for all series: each holds the same stretch, without gaps.
    let first = all(&store, &keys[0]);
    assert!(first.raw_points >= 500, "{} points left", first.raw_points);
    assert_eq!(first.raw_points * 50, stats.points);
    assert_eq!(first.raw_points as f64, 1_000_000.0 + 19_999.0 - first.t[0] + 1.0);
}

#[test]
fn a_smaller_bound_at_open_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let k = key("D", "n");
    {
        let store = open(&path, BIG);
        let pack: Vec<Point> = (0..300_000).map(|t| num(&k, f64::from(t), 1.0)).collect();
        store.append(&pack).unwrap();
    }
    // 300,000 points at about 16.4 bytes: a file of several MB.
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(before > 4 << 20, "{before}");
    const MAX: u64 = 1 << 20;
    let store = open(
        &path,
        Retention {
            max_age: DAY,
            max_bytes: MAX,
        },
    );
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after <= MAX, "{after} bytes after open, bound {MAX}");
    // The newest points are the ones kept.
    let s = all(&store, &k);
    assert!(s.raw_points > 10_000, "{}", s.raw_points);
    assert_eq!(*s.t.last().unwrap(), 299_999.0);
    assert_eq!(s.t[0], 300_000.0 - s.raw_points as f64);
}

#[test]
fn a_spike_in_a_flat_series_survives_the_reduction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "flat");
    // 10,000 points at t = 0..9999 of 20.0, with 95.0 at t = 4321, over 100 columns of 100 s.
    let pack: Vec<Point> = (0..10_000)
        .map(|t| num(&k, f64::from(t), if t == 4321 { 95.0 } else { 20.0 }))
        .collect();
    store.append(&pack).unwrap();
    let s = store.query(&k, 0.0, 10_000.0, 100, Transform::Raw).unwrap();
    assert_eq!(s.raw_points, 10_000);
    // A flat column keeps its first and last point (t = 100c and 100c + 99); column 43 keeps
    // its first (the minimum, 20.0 at 4300) and the spike.
    let mut expected = Vec::new();
    for c in 0..100 {
        if c == 43 {
            expected.extend([4300.0, 4321.0]);
        } else {
            expected.extend([f64::from(100 * c), f64::from(100 * c + 99)]);
        }
    }
    assert_eq!(s.t, expected);
    let v = numbers(&s);
    assert_eq!(v[87], 95.0);
    assert_eq!(v.iter().filter(|&&x| x == 20.0).count(), 199);
}

#[test]
fn ten_columns_of_ten_points_give_twenty() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "saw");
    // t = 0..99, v = t mod 10 (a sawtooth), over [0, 100) in 10 columns: each column's first
    // point is its minimum (0) and its last its maximum (9).
    let pack: Vec<Point> = (0..100).map(|t| num(&k, f64::from(t), f64::from(t % 10))).collect();
    store.append(&pack).unwrap();
    store.flush().unwrap();
    let s = store.query(&k, 0.0, 100.0, 10, Transform::Raw).unwrap();
    assert_eq!(s.raw_points, 100);
    let t: Vec<f64> = (0..10)
        .flat_map(|c| [f64::from(10 * c), f64::from(10 * c + 9)])
        .collect();
    assert_eq!(s.t, t);
    assert_eq!(numbers(&s), [0.0, 9.0].repeat(10));
    // The bounds are inclusive: [10, 19] is one column's points exactly; fewer than
    // 2 × 10 columns, so all 10 come back.
    let s = store.query(&k, 10.0, 19.0, 10, Transform::Raw).unwrap();
    assert_eq!(s.t, (10..=19).map(f64::from).collect::<Vec<_>>());
    assert_eq!(s.raw_points, 10);
}

#[test]
fn rate_per_second_is_computed_before_the_reduction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "bytes");
    // A counter: +10 a second for t = 0..=50 (0, 10, ..., 500), reset to 3 at t = 51, then +4
    // a second up to t = 60 (3, 7, ..., 39).
    let mut pack = Vec::new();
    for t in 0..=50 {
        pack.push(num(&k, f64::from(t), f64::from(10 * t)));
    }
    for t in 51..=60 {
        pack.push(num(&k, f64::from(t), f64::from(3 + 4 * (t - 51))));
    }
    store.append(&pack).unwrap();
    let s = store.query(&k, 0.0, 60.0, 100, Transform::RatePerSecond).unwrap();
    // 61 raw points; rates at t = 1..=50 (10/s) and 52..=60 (4/s): 59 points, none at the reset
    // (t = 51) and none at t = 0.
    assert_eq!(s.raw_points, 61);
    let mut t: Vec<f64> = (1..=50).map(f64::from).collect();
    t.extend((52..=60).map(f64::from));
    assert_eq!(s.t, t);
    assert!(numbers(&s)[..50].iter().all(|&r| r == 10.0));
    assert!(numbers(&s)[50..].iter().all(|&r| r == 4.0));
    // Reduced to 2 columns ([0, 30) and [30, 60]) after the rate: column 0 holds rates at
    // t = 1..=29, all 10 (first and last kept: 1 and 29); column 1 holds t = 30..=60 with
    // rates 10 (30..=50) and 4 (52..=60): the earliest minimum is at 52, the latest maximum
    // at 50; the last point (60) is added.
    let s = store.query(&k, 0.0, 60.0, 2, Transform::RatePerSecond).unwrap();
    assert_eq!(s.t, [1.0, 29.0, 50.0, 52.0, 60.0]);
    assert_eq!(numbers(&s), [10.0, 10.0, 10.0, 4.0, 4.0]);
}

#[test]
fn a_state_timeline_keeps_only_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "mode");
    let states = ["idle", "idle", "run", "run", "run", "idle", "fault", "fault", "idle"];
    let pack: Vec<Point> = states
        .iter()
        .enumerate()
        .map(|(i, s)| text(&k, 100.0 + i as f64, s))
        .collect();
    // Half committed, half buffered: the query merges them.
    store.append(&pack[..4]).unwrap();
    store.flush().unwrap();
    store.append(&pack[4..]).unwrap();
    let s = store.query(&k, 0.0, 1000.0, 10, Transform::Raw).unwrap();
    assert_eq!(s.raw_points, 9);
    assert_eq!(s.t, [100.0, 102.0, 105.0, 106.0, 108.0]);
    assert_eq!(texts(&s), ["idle", "run", "idle", "fault", "idle"]);
    // From t = 103: the first point in range (run, at 103) is kept although it is no change.
    let s = store.query(&k, 103.0, 1000.0, 10, Transform::RatePerSecond).unwrap();
    assert_eq!(s.t, [103.0, 105.0, 106.0, 108.0]);
    assert_eq!(texts(&s), ["run", "idle", "fault", "idle"]);
}

#[test]
fn booleans_come_back_as_zero_and_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "door");
    let pack: Vec<Point> = [true, false, false, true]
        .iter()
        .enumerate()
        .map(|(i, &b)| Point {
            key: k.clone(),
            t: i as f64,
            value: Sample::Bool(b),
        })
        .collect();
    store.append(&pack).unwrap();
    let s = all(&store, &k);
    assert_eq!(numbers(&s), [1.0, 0.0, 0.0, 1.0]);
}

#[test]
fn late_and_repeated_points_are_merged_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let k = key("D", "n");
    // 1,000 points at t = 0..999 (four full chunks), committed; then 10 late points at
    // t = 500.5..509.5 and a new value for t = 700, committed; then t = 999 again, buffered.
    let pack: Vec<Point> = (0..1000).map(|t| num(&k, f64::from(t), 1.0)).collect();
    store.append(&pack).unwrap();
    store.flush().unwrap();
    let mut late: Vec<Point> = (500..510).rev().map(|t| num(&k, f64::from(t) + 0.5, 2.0)).collect();
    late.push(num(&k, 700.0, 3.0));
    store.append(&late).unwrap();
    store.flush().unwrap();
    store.append(&[num(&k, 999.0, 4.0)]).unwrap();
    let s = all(&store, &k);
    assert_eq!(s.raw_points, 1010);
    assert!(s.t.windows(2).all(|w| w[0] < w[1]));
    let v = numbers(&s);
    let at = |t: f64| v[s.t.iter().position(|&x| x == t).unwrap()];
    assert_eq!(at(500.5), 2.0);
    assert_eq!(at(509.5), 2.0);
    assert_eq!(at(700.0), 3.0);
    assert_eq!(at(999.0), 4.0);
    store.flush().unwrap();
    assert_eq!(all(&store, &k), s);
    assert_eq!(store.stats().unwrap().points, 1010);
}

#[test]
fn malformed_queries_and_points() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("h.redb"), BIG);
    let (k, s) = (key("D", "n"), key("D", "s"));
    // Empty store.
    assert!(store.series().unwrap().is_empty());
    assert_eq!(all(&store, &k).raw_points, 0);
    assert_eq!(store.enforce_retention(1e9).unwrap(), 0);
    store.append(&[]).unwrap();
    // NaN and infinite values or times are skipped; a text into a number series and a number
    // into a text series too. Only the two good points are stored.
    store
        .append(&[
            num(&k, 1.0, f64::NAN),
            num(&k, 2.0, f64::INFINITY),
            num(&k, f64::NAN, 1.0),
            num(&k, f64::INFINITY, 1.0),
            num(&k, 1e300, 1.0),
            num(&k, 3.0, 7.0),
            text(&k, 4.0, "x"),
            text(&s, 4.0, "y"),
            num(&s, 5.0, 1.0),
        ])
        .unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.points, stats.skipped, stats.series), (2, 7, 2));
    store.flush().unwrap();
    let all_k = all(&store, &k);
    assert_eq!((all_k.t.as_slice(), numbers(&all_k)), (&[3.0][..], &[7.0][..]));
    // A NaN never reached the file.
    assert!(numbers(&all_k).iter().all(|v| v.is_finite()));
    // from > to, NaN bounds, unknown series: empty.
    let empty = Series {
        t: vec![],
        values: Values::Numbers(vec![]),
        raw_points: 0,
    };
    assert_eq!(store.query(&k, 4.0, 2.0, 10, Transform::Raw).unwrap(), empty);
    assert_eq!(store.query(&k, f64::NAN, 9.0, 10, Transform::Raw).unwrap(), empty);
    assert_eq!(store.query(&k, 0.0, f64::NAN, 10, Transform::Raw).unwrap(), empty);
    assert_eq!(
        store.query(&key("D", "none"), 0.0, 9.0, 10, Transform::Raw).unwrap(),
        empty
    );
    // columns = 0 counts as 1: the one point comes back.
    assert_eq!(store.query(&k, 0.0, 9.0, 0, Transform::Raw).unwrap().t, [3.0]);
    // A NaN `now` is an error, not a retention pass at a guessed time.
    let e = store.enforce_retention(f64::NAN).unwrap_err().to_string();
    assert!(e.contains("h.redb") && e.contains("Unix time"), "{e}");
}

#[test]
fn a_bad_or_unwritable_file_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    // Not a redb file.
    let garbage = dir.path().join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 20_000]).unwrap();
    let e = Store::open(&garbage, BIG).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(e.contains("garbage.redb") && e.contains("expected"), "{e}");
    // A path under a regular file: cannot be created (even as root).
    let under = garbage.join("h.redb");
    let e = Store::open(&under, BIG).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(e.contains("garbage.redb/h.redb") && e.contains("expected"), "{e}");
    // A size bound too small to hold anything.
    let small = Retention {
        max_age: DAY,
        max_bytes: 100_000,
    };
    let e = Store::open(&dir.path().join("small.redb"), small)
        .err()
        .unwrap()
        .to_string();
    eprintln!("{e}");
    assert!(
        e.contains("small.redb") && e.contains("100000") && e.contains("at least"),
        "{e}"
    );
    // Opened twice.
    let path = dir.path().join("h.redb");
    let store = open(&path, BIG);
    let e = Store::open(&path, BIG).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(e.contains("h.redb") && e.contains("already open"), "{e}");
    drop(store);
}

#[test]
fn a_damaged_store_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    let k = key("D", "n");
    {
        let store = open(&path, BIG);
        let pack: Vec<Point> = (0..20_000).map(|t| num(&k, f64::from(t), 1.0)).collect();
        store.append(&pack).unwrap();
    }
    let good = std::fs::read(&path).unwrap();
    // Overwrite the middle of the file (the data pages; the header and its commit slots are in
    // the first page).
    let mut bad = good.clone();
    let len = bad.len();
    bad[len / 4..3 * len / 4].fill(0xa5);
    std::fs::write(&path, &bad).unwrap();
    let e = Store::open(&path, BIG).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(e.contains("h.redb") && e.contains("damaged"), "{e}");
    // Truncated.
    std::fs::write(&path, &good[..len / 2]).unwrap();
    let e = Store::open(&path, BIG).err().unwrap().to_string();
    eprintln!("{e}");
    assert!(e.contains("h.redb"), "{e}");
}

#[test]
fn queries_run_beside_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        Store::open_with(
            &dir.path().join("h.redb"),
            BIG,
            StoreOptions {
                sync_interval: Duration::ZERO,
                ..StoreOptions::default()
            },
        )
        .unwrap(),
    );
    let k = key("D", "n");
    let writer = {
        let (store, k) = (store.clone(), k.clone());
        std::thread::spawn(move || {
            for i in 0..500 {
                store.append(&[num(&k, f64::from(i), f64::from(i))]).unwrap();
            }
        })
    };
    // Every query sees a prefix of the appends: 0..n, in order, never fewer than before.
    let mut seen = 0;
    while seen < 500 {
        let s = all(&store, &k);
        assert!(s.raw_points >= seen, "{} after {seen}", s.raw_points);
        seen = s.raw_points;
        assert_eq!(s.t, (0..seen).map(|i| i as f64).collect::<Vec<_>>());
    }
    writer.join().unwrap();
}

#[test]
fn texts_count_in_the_size_bound_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.redb");
    const MAX: u64 = 1 << 20;
    let store = open(
        &path,
        Retention {
            max_age: DAY,
            max_bytes: MAX,
        },
    );
    let (log, n) = (key("D", "log"), key("D", "n"));
    // 3,000 seconds of a 1,000-byte state and a number: the texts alone are 3 MB of strings,
    // three times the bound.
    for s in 0..3000u32 {
        let t = f64::from(s);
        let line = format!("{s:>6}{}", "x".repeat(994));
        store.append(&[text(&log, t, &line), num(&n, t, t)]).unwrap();
        if s % 50 == 49 {
            store.enforce_retention(t).unwrap();
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size <= MAX, "after {} s the file holds {size} bytes, over {MAX}", s + 1);
        }
    }
    // Every state differs from the one before, so each is a change; the newest are kept, in
    // one stretch that ends at the last second, and the numbers were cut at the same time.
    let s = all(&store, &log);
    assert!(s.raw_points >= 50, "{}", s.raw_points);
    assert_eq!(*s.t.last().unwrap(), 2999.0);
    assert_eq!(s.raw_points as f64, 3000.0 - s.t[0]);
    assert_eq!(texts(&s)[0], format!("{:>6}{}", s.t[0], "x".repeat(994)));
    let numbers = all(&store, &n);
    assert_eq!(numbers.t[0], s.t[0]);
}

#[test]
fn a_series_emptied_by_retention_may_change_kind() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        max_age: Duration::from_secs(60),
        max_bytes: 1 << 40,
    };
    let store = open(&dir.path().join("h.redb"), retention);
    let k = key("D", "x");
    store.append(&[text(&k, 0.0, "on")]).unwrap();
    // A number for a text series: skipped.
    store.append(&[num(&k, 1.0, 1.0)]).unwrap();
    assert_eq!(store.stats().unwrap().skipped, 1);
    // At now = 100 the bound is 40: the text at 0 goes, and the series with it.
    assert_eq!(store.enforce_retention(100.0).unwrap(), 1);
    assert!(store.series().unwrap().is_empty());
    store.append(&[num(&k, 101.0, 5.0)]).unwrap();
    let s = all(&store, &k);
    assert_eq!((s.t.as_slice(), numbers(&s)), (&[101.0][..], &[5.0][..]));
    assert_eq!(store.stats().unwrap().skipped, 1);
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
}
