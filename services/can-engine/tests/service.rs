//! The binary end to end: `tlm-can-engine` replaying the bundled recording against a private
//! nats-server, an interface that does not exist, and a source that appears late.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tolomeo_testkit::{NatsServer, Recorder, ServiceProcess, call, records};

const BIN: &str = env!("CARGO_BIN_EXE_tlm-can-engine");

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config file, removed when dropped.
fn write_config(name: &str, can: &str) -> tolomeo_testkit::tempfile::TempPath {
    let text = format!("[service]\npoll_time_ms = 200\nheartbeat_interval_ms = 200\n\n[can]\n{can}\n");
    tolomeo_testkit::temp_file(&format!("-{name}"), &text)
}

/// Mean engine speed per 200 ms window of the log's clock, at the window's last frame: computed
/// here from the EEC1 lines (bytes 4-5 little endian, 0.125 rpm/bit).
fn expected_means(log: &Path) -> Vec<(f64, f64)> {
    let mut windows: BTreeMap<i64, (f64, f64, u32)> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        let Some(data) = line.split(" 0CF00400#").nth(1) else {
            continue;
        };
        let t: f64 = line[1..line.find(')').unwrap()].parse().unwrap();
        let raw = u16::from_str_radix(&data[8..10], 16).unwrap() * 256 + u16::from_str_radix(&data[6..8], 16).unwrap();
        let w = windows.entry((t / 0.2).floor() as i64).or_insert((0.0, 0.0, 0));
        *w = (t, w.1 + raw as f64 * 0.125, w.2 + 1);
    }
    windows.values().map(|(t, sum, n)| (*t, sum / *n as f64)).collect()
}

/// Wait until the service answers commands (it subscribes shortly after it starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_the_recording_and_publishes_window_means() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let beats = Recorder::start(&client, "heartbeat.can-engine.service").await;
    let log = manifest().join("data/engine.log");
    let cfg = write_config(
        "replay.toml",
        &format!(
            "replay = {:?}\nreplay_speed = \"max\"\ndbc = {:?}\nsignals = [\"CoolantTemp\", \"WheelBasedVehicleSpeed\"]\nstale_after_ms = 300\nstats = [\"max\"]",
            log.display().to_string(),
            manifest().join("data/engine.dbc").display().to_string()
        ),
    );
    let mut svc = ServiceProcess::start(Path::new(BIN), &["--config", cfg.to_str().unwrap()], "SN1", &nats.url());

    let want = expected_means(&log);
    assert_eq!(want.len(), 300); // 60 s of 50 Hz in 200 ms windows
    let msgs = data
        .wait_until("every rpm window", Duration::from_secs(20), |m| {
            records(m, "engine:rpm").len() >= want.len()
        })
        .await;
    let got = records(&msgs, "engine:rpm");
    assert_eq!(got.len(), want.len(), "one point per window, no more");
    for ((tg, vg), (tw, vw)) in got.iter().zip(&want) {
        assert!((tg - tw).abs() < 1e-3, "t {tg} vs {tw}");
        assert!((vg - vw).abs() < 1e-6, "rpm mean at {tw}: {vg} vs {vw}");
    }
    let pack = &msgs
        .iter()
        .find(|m| m.payload.windows(10).any(|w| w == b"engine:rpm"))
        .unwrap()
        .json()[0];
    assert_eq!(pack["bn"], "urn:cpt:device:sn:SN1:");
    assert!(records(&msgs, "engine:rpm:max").len() == want.len());
    let coolant = records(&msgs, "ET1:CoolantTemp");
    assert!(
        !coolant.is_empty() && coolant.iter().all(|(_, v)| (40.0..=88.0).contains(v)),
        "{coolant:?}"
    );
    let speed = records(&msgs, "CCVS:WheelBasedVehicleSpeed");
    assert!(
        !speed.is_empty() && speed.iter().all(|(_, v)| (0.0..=90.0).contains(v)),
        "{speed:?}"
    );

    tolomeo_testkit::wait_ready(&client, "can-engine", &svc).await;
    // The replay ended: no frames for longer than stale_after, but the service is not failed.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let st = call(&client, "can-engine", "GetStatus", serde_json::json!({})).await;
    assert_eq!(st["healthy"], true, "{st}");
    let detail = st["detail"].as_str().unwrap();
    assert!(
        detail.contains("replay finished after 3660 frames") && detail.contains("no frames for"),
        "{detail}"
    );
    let n = beats.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(beats.len() > n, "heartbeat goes on while the bus is silent");

    let state = call(&client, "can-engine", "GetEngineState", serde_json::json!({})).await;
    let last = state["values"]["engine:rpm"]["value"].as_f64().unwrap();
    let data_line = std::fs::read_to_string(&log).unwrap();
    let last_eec1 = data_line
        .lines()
        .rfind(|l| l.contains(" 0CF00400#"))
        .unwrap()
        .to_string();
    let d = last_eec1.split('#').nth(1).unwrap();
    let raw = u16::from_str_radix(&d[8..10], 16).unwrap() * 256 + u16::from_str_radix(&d[6..8], 16).unwrap();
    assert_eq!(last, raw as f64 * 0.125);
    assert_eq!(state["counters"]["frames"], 3660, "{state}");
    assert_eq!(svc.terminate(Duration::from_secs(5)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_interface_stops_the_heartbeat_and_says_why() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let beats = Recorder::start(&client, "heartbeat.can-engine.service").await;
    let cfg = write_config("iface.toml", "interface = \"tlmnocan0\"");
    let mut svc = ServiceProcess::start(Path::new(BIN), &["--config", cfg.to_str().unwrap()], "SN1", &nats.url());
    tolomeo_testkit::wait_ready(&client, "can-engine", &svc).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let st = call(&client, "can-engine", "GetStatus", serde_json::json!({})).await;
    assert_eq!(st["healthy"], false, "{st}");
    assert!(st["detail"].as_str().unwrap().contains("tlmnocan0"), "{st}");
    assert!(beats.is_empty(), "no heartbeat without the interface");
    assert!(svc.log().contains("tlmnocan0"), "the log says why: {}", svc.log());
    assert_eq!(svc.terminate(Duration::from_secs(5)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_appears_later_is_read_without_a_restart() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let beats = Recorder::start(&client, "heartbeat.can-engine.service").await;
    let data = Recorder::start(&client, "events.data").await;
    let dir = tolomeo_testkit::temp_dir();
    let log = dir.path().join("late.log");
    let cfg = write_config(
        "late.toml",
        &format!("replay = {:?}\nreplay_speed = \"max\"", log.display().to_string()),
    );
    let mut svc = ServiceProcess::start(Path::new(BIN), &["--config", cfg.to_str().unwrap()], "SN1", &nats.url());
    tolomeo_testkit::wait_ready(&client, "can-engine", &svc).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = call(&client, "can-engine", "GetStatus", serde_json::json!({})).await;
    assert_eq!(st["healthy"], false, "{st}");
    assert!(st["detail"].as_str().unwrap().contains("late.log"), "{st}");
    assert!(beats.is_empty());
    std::fs::write(&log, "(1700000000.000000) can0 0CF00400#FF7D7DE015FFF0FF\n").unwrap();
    let msgs = data
        .wait_until("the worked example", Duration::from_secs(10), |m| {
            !records(m, "engine:rpm").is_empty()
        })
        .await;
    assert_eq!(records(&msgs, "engine:rpm"), [(1700000000.0, 700.0)]);
    beats
        .wait_until("heartbeat resumes", Duration::from_secs(5), |b| !b.is_empty())
        .await;
    assert_eq!(svc.terminate(Duration::from_secs(5)), Some(0));
}

/// A CAN interface that is absent now may appear later (a USB adapter, a driver loaded
/// later): `--check-config` warns, naming the key, and does not fail.
#[test]
fn an_absent_can_interface_is_a_warning() {
    let cfg = tolomeo_testkit::temp_file(".toml", "[can]\ninterface = \"nosuchcan7\"\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tlm-can-engine"))
        .args(["--check-config", "--config", cfg.to_str().unwrap()])
        .env("DEVICE_SERIAL_NUMBER", "SN1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("can.interface") && stderr.contains("\"nosuchcan7\""),
        "{stderr}"
    );
}

/// A DBC file that does not parse is a configuration error found by `--check-config`, before
/// the service would start: exit 78, the file, the key and the line.
#[test]
fn a_dbc_that_does_not_parse_fails_the_check() {
    // Line 2: a 99-bit signal, which no classic CAN frame can hold.
    let dbc = tolomeo_testkit::temp_file(".dbc", "BO_ 1 M: 8 X\n SG_ S : 0|99@1+ (1,0) [0|0] \"\" X\n");
    let cfg = tolomeo_testkit::temp_file(".toml", &format!("[can]\ndbc = \"{}\"\n", dbc.display()));
    let out = std::process::Command::new(BIN)
        .args(["--check-config", "--config", cfg.to_str().unwrap()])
        .env("DEVICE_SERIAL_NUMBER", "SN1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(&cfg.display().to_string())
            && stderr.contains("can.dbc")
            && stderr.contains(&dbc.display().to_string())
            && stderr.contains("line 2"),
        "{stderr}"
    );
}
