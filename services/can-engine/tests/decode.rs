//! The decoder path against independent references: Python cantools (frames encoded from
//! tests/fixtures/engine_test.dbc by tests/encode_fixture.py), frames built by hand from the
//! J1939 layout, and the worked example. Bad input is skipped and counted, never a number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use can_engine::config::{Aggregate, CanConfig};
use can_engine::dbc::Dbc;
use can_engine::pipeline::{Counters, Pipeline};
use can_engine::replay::ReplaySource;
use can_engine::{FrameSource, SourceError};
use tolomeo_core::{Reading, Value};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replay `log` at full speed through a pipeline built from `cfg`.
async fn run_log(cfg: &CanConfig, log: &Path) -> (Vec<Reading>, Counters) {
    let dbc = cfg
        .dbc
        .as_ref()
        .map(|p| Dbc::parse(&std::fs::read_to_string(p).unwrap()).unwrap());
    let mut p = Pipeline::new(cfg, dbc.as_ref(), Duration::from_millis(200)).unwrap();
    let mut src = ReplaySource::open(log, None, false).unwrap();
    let (mut out, mut batch) = (Vec::new(), Vec::new());
    loop {
        let got = src.recv_batch(&mut batch, 64).await;
        p.malformed_lines(src.take_malformed());
        match got {
            Ok(()) => {}
            Err(SourceError::End) => break,
            Err(e) => panic!("replay failed: {e}"),
        }
        for f in batch.drain(..) {
            p.handle(&f, Instant::now(), &mut out);
        }
    }
    p.flush(&mut out);
    (out, p.counters)
}

/// metric -> [(t, value)] in order.
fn series(readings: &[Reading]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut m: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in readings {
        for (name, v) in r.values() {
            let Value::Number(x) = v else {
                panic!("{name}: not a number")
            };
            m.entry(name.clone()).or_default().push((r.time(), *x));
        }
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The fixture's `expected` list: metric -> [(t, value)] in order.
fn expected(reference: &serde_json::Value) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut want: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in reference["expected"].as_array().unwrap() {
        let (t, v) = (e["t"].as_f64().unwrap(), e["value"].as_f64().unwrap());
        want.entry(e["metric"].as_str().unwrap().to_string())
            .or_default()
            .push((t, v));
    }
    want
}

/// Every metric of `want` was published with the same times and values, to rounding.
fn same_as_cantools(got: &BTreeMap<String, Vec<(f64, f64)>>, want: &BTreeMap<String, Vec<(f64, f64)>>) {
    for (name, expected) in want {
        let actual = got.get(name).unwrap_or_else(|| panic!("{name} was not published"));
        assert_eq!(actual.len(), expected.len(), "{name}: number of values");
        for ((ta, va), (te, ve)) in actual.iter().zip(expected) {
            assert!((ta - te).abs() < 1e-6, "{name}: t {ta} vs {te}");
            assert!(close(*va, *ve), "{name} at {te}: {va} vs cantools {ve}");
        }
    }
}

/// Run a fixture script of tests/ (cantools) on `dbc`: it writes a candump log and the
/// expected values as JSON. Returns the directory holding them (removed when dropped), the
/// log and the JSON.
fn fixture(script: &str, dbc: &Path) -> (tolomeo_testkit::tempfile::TempDir, PathBuf, serde_json::Value) {
    let dir = tolomeo_testkit::temp_dir();
    let log = dir.path().join("fixture.log");
    let json = dir.path().join("fixture.json");
    let status = std::process::Command::new(tolomeo_testkit::python())
        .arg(manifest().join("tests").join(script))
        .args([dbc, &log, &json])
        .status()
        .expect("the test environment's python3 runs");
    assert!(status.success(), "{script} failed (its error is above)");
    let reference = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (dir, log, reference)
}

#[tokio::test]
async fn dbc_signals_match_cantools() {
    let dbc = manifest().join("tests/fixtures/engine_test.dbc");
    let (_dir, log, reference) = fixture("encode_fixture.py", &dbc);

    let cfg: CanConfig = toml::from_str(&format!(
        r#"
        dbc = {:?}
        signals = ["EngineSpeed", "EEC1.ActualTorque", "CoolantTemp", "OilTemp", "VehicleSpeed", "Slope", "Accel"]
        aggregate = "none"
        "#,
        dbc.display().to_string()
    ))
    .unwrap();
    let (readings, counters) = run_log(&cfg, &log).await;
    let got = series(&readings);

    let mut want: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in reference["expected"].as_array().unwrap() {
        let name = e["metric"].as_str().unwrap().to_string();
        let (t, v) = (e["t"].as_f64().unwrap(), e["value"].as_f64().unwrap());
        want.entry(name.clone()).or_default().push((t, v));
        if name == "EEC1:EngineSpeed" {
            // The J1939 path decodes the same frames, from any source address.
            want.entry("engine:rpm".into()).or_default().push((t, v));
        }
    }
    same_as_cantools(&got, &want);
    let c = &reference["counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    assert_eq!(counters.malformed_lines, n("malformed_lines"));
    assert_eq!(counters.short_frames, n("short_frames"));
    assert_eq!(counters.decode_errors, n("malformed_lines") + n("short_frames"));
    assert_eq!(counters.fd_frames, n("fd_frames"));
    assert_eq!(counters.remote_frames, n("remote_frames"));
    assert_eq!(counters.errors, n("error_frames"));
    assert_eq!(counters.frames, n("frames"));
}

/// EEC1 data bytes by hand: SPN 512 byte 2, SPN 513 byte 3, SPN 190 bytes 4-5 (LE, 0.125 rpm/bit).
fn eec1(demand: u8, actual: u8, raw_rpm: u16) -> String {
    let [lo, hi] = raw_rpm.to_le_bytes();
    format!("F1{demand:02X}{actual:02X}{lo:02X}{hi:02X}FFF0FF")
}

#[tokio::test]
async fn j1939_by_hand_and_the_worked_example() {
    let dir = tolomeo_testkit::temp_dir();
    let log = dir.path().join("hand.log");
    let lines = [
        // The worked example: 700 rpm, 0 % and 0 %.
        "(1700000000.000000) can0 0CF00400#FF7D7DE015FFF0FF".to_string(),
        // 1200 rpm (9600 = 0x2580), demand 125 + 40, actual 125 - 25 from source 0x17.
        format!("(1700000000.020000) can0 0CF00417#{}", eec1(165, 100, 9600)),
        // Not available 0xFFFF / 0xFF, error indicator 0xFE, reserved 0xFB and 0xFB00; 0xFA is valid.
        format!("(1700000000.040000) can0 0CF00400#{}", eec1(0xFE, 0xFF, 0xFFFF)),
        format!("(1700000000.060000) can0 0CF00400#{}", eec1(0xFB, 0xFA, 0xFB00)),
        // Highest valid: 0xFAFF * 0.125 = 8031.875 rpm, 0xFA - 125 = 125 %.
        format!("(1700000000.080000) can0 0CF00400#{}", eec1(0x00, 0xFA, 0xFAFF)),
        // Wrong PGNs: EEC2 (0xF003), and PDU1 PGN 0xEF00 sent to destination 0x04.
        format!("(1700000000.100000) can0 0CF00300#{}", eec1(200, 200, 16000)),
        format!("(1700000000.120000) can0 0CEF0400#{}", eec1(200, 200, 16000)),
        // A standard-ID frame with the same bytes is not J1939.
        format!("(1700000000.140000) can0 400#{}", eec1(200, 200, 16000)),
        // Too short: 7 bytes.
        "(1700000000.160000) can0 0CF00400#F17D7D0019FFF0".to_string(),
        // CAN FD with an EEC1 id, a remote frame, an error frame.
        format!("(1700000000.180000) can0 0CF00400##0{}", eec1(200, 200, 16000)),
        "(1700000000.200000) can0 0CF00400#R".to_string(),
        "(1700000000.220000) can0 20000004#0004000000000000".to_string(),
    ];
    std::fs::write(&log, lines.join("\n")).unwrap();
    let cfg: CanConfig = toml::from_str("aggregate = \"none\"").unwrap();
    let (readings, c) = run_log(&cfg, &log).await;
    let s = series(&readings);
    assert_eq!(
        s["engine:rpm"],
        [
            (1700000000.0, 700.0),
            (1700000000.02, 1200.0),
            (1700000000.08, 8031.875)
        ]
    );
    assert_eq!(
        s["engine:torque_pct"],
        [
            (1700000000.0, 0.0),
            (1700000000.02, -25.0),
            (1700000000.06, 125.0),
            (1700000000.08, 125.0)
        ]
    );
    assert_eq!(
        s["engine:demand_torque_pct"],
        [(1700000000.0, 0.0), (1700000000.02, 40.0), (1700000000.08, -125.0)]
    );
    assert_eq!(c.not_available, 5); // 0xFE, 0xFF, 0xFFFF, 0xFB, 0xFB00
    assert_eq!(c.short_frames, 1);
    assert_eq!(c.ignored, 3);
    assert_eq!((c.fd_frames, c.remote_frames, c.errors), (1, 1, 1));
    assert_eq!(c.frames, 11);

    // Only source address 0x17.
    let cfg: CanConfig = toml::from_str("aggregate = \"none\"\nsource_address = 0x17").unwrap();
    let (readings, _) = run_log(&cfg, &log).await;
    assert_eq!(series(&readings)["engine:rpm"], [(1700000000.02, 1200.0)]);
}

#[tokio::test]
async fn aggregation_of_the_demo_recording() {
    // Means, minima and maxima per 200 ms window of the frame clock, computed here from the
    // recording's EEC1 lines by hand.
    let log = manifest().join("data/engine.log");
    let cfg: CanConfig = toml::from_str(
        "[metrics.\"engine:rpm\"]\naggregate = \"mean\"\nstats = [\"min\", \"max\"]\n[metrics.\"engine:torque_pct\"]\naggregate = \"last\"",
    )
    .unwrap();
    assert_eq!(cfg.aggregate, Aggregate::Mean);
    let (readings, _) = run_log(&cfg, &log).await;
    let got = series(&readings);
    let mut windows: BTreeMap<i64, (f64, Vec<f64>)> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let Some(data) = line.split("0CF00400#").nth(1) else {
            continue;
        };
        let t: f64 = line[1..line.find(')').unwrap()].parse().unwrap();
        let lo = u8::from_str_radix(&data[6..8], 16).unwrap() as f64;
        let hi = u8::from_str_radix(&data[8..10], 16).unwrap() as f64;
        let w = windows.entry((t / 0.2).floor() as i64).or_insert((0.0, Vec::new()));
        w.0 = t;
        w.1.push((hi * 256.0 + lo) * 0.125);
    }
    let want: Vec<(f64, f64, f64, f64)> = windows
        .values()
        .map(|(t, v)| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            (*t, mean, min, max)
        })
        .collect();
    assert_eq!(want.len(), 300);
    let rpm = &got["engine:rpm"];
    assert_eq!(rpm.len(), want.len());
    for (i, (t, mean, min, max)) in want.iter().enumerate() {
        assert!(
            (rpm[i].0 - t).abs() < 1e-6 && close(rpm[i].1, *mean),
            "window {i}: {:?} vs {mean}",
            rpm[i]
        );
        assert!(close(got["engine:rpm:min"][i].1, *min) && close(got["engine:rpm:max"][i].1, *max));
    }
    assert!(!got.contains_key("engine:torque_pct:max"));
}

/// The built-in J1939 parameters (`parameters = ["all"]`) against cantools: frames encoded from
/// tests/fixtures/j1939_params.dbc (each parameter placed and scaled as SAE J1939-71 says) by
/// tests/j1939_params.py, including the ends of each valid range; the same frames with the
/// parameters' bytes not available or in error are never published, only counted.
#[tokio::test]
async fn built_in_parameters_match_cantools() {
    let (_dir, log, reference) = fixture("j1939_params.py", &manifest().join("tests/fixtures/j1939_params.dbc"));

    let cfg: CanConfig = toml::from_str("parameters = [\"all\"]\naggregate = \"none\"").unwrap();
    let (readings, counters) = run_log(&cfg, &log).await;
    let got = series(&readings);
    let want = expected(&reference);
    assert_eq!(want.len(), 9);
    same_as_cantools(&got, &want);
    let c = &reference["counts"];
    assert_eq!(counters.not_available, c["not_available"].as_u64().unwrap());
    assert_eq!(counters.frames, c["frames"].as_u64().unwrap());
    assert_eq!((counters.decode_errors, counters.ignored), (0, 0));
}

/// A DBC message of 20 bytes, sent with the J1939 transport protocol (BAM at 50 ms and 1 ms
/// between packets, RTS/CTS between two other nodes) by tests/tp_fixture.py, and decoded by
/// cantools there: the same values at the time of the packet that completed each message.
/// The broken sessions (a packet missing, an abort) publish nothing and are counted. A 24-byte
/// CAN FD message, in candump's `##` frames, decoded as cantools decodes it.
#[tokio::test]
async fn multi_packet_and_fd_dbc_messages_match_cantools() {
    let dbc = manifest().join("tests/fixtures/tp_test.dbc");
    let (_dir, log, reference) = fixture("tp_fixture.py", &dbc);

    let cfg: CanConfig = toml::from_str(&format!(
        "dbc = {:?}\nsignals = [\"Counter\", \"Pressure\", \"Far\", \"Moto\", \"Last\", \"FdFirst\", \"FdLast\"]\naggregate = \"none\"",
        dbc.display().to_string()
    ))
    .unwrap();
    let (readings, counters) = run_log(&cfg, &log).await;
    let want = expected(&reference);
    assert_eq!(want.len(), 7);
    same_as_cantools(&series(&readings), &want);
    let c = &reference["counts"];
    let n = |k: &str| c[k].as_u64().unwrap();
    assert_eq!(counters.tp.complete, n("complete"));
    assert_eq!(counters.tp.out_of_order, n("out_of_order"));
    assert_eq!(counters.tp.aborted, n("aborted"));
    assert_eq!((counters.tp.timeouts, counters.tp.bad_announcements), (0, 0));
    // CAN FD: every FD frame decoded, the short one counted.
    assert_eq!(counters.fd_frames, n("fd_frames"));
    assert_eq!(counters.short_frames, n("short_fd_frames"));
    assert_eq!(counters.decode_errors, n("short_fd_frames"));
}
