//! Against in-process tokio-modbus servers (values written out below as hex words): decoding,
//! a server stopped and restarted mid-run, a device that never answers, and the heartbeat
//! that stops only when every device fails.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::memserver::{MemServer, Store};
use support::{Running, now, start, v};
use tolomeo_testkit::{NatsServer, Recorder, free_port};

fn store() -> Store {
    let mut holding = vec![0u16; 100];
    // 0x40490FDB is the f32 nearest to pi; ABCD at 0, DCBA at 2 (bytes DB 0F 49 40).
    holding[0..2].copy_from_slice(&[0x4049, 0x0FDB]);
    holding[2..4].copy_from_slice(&[0xDB0F, 0x4940]);
    // -1000000 as i32 = 0xFFF0BDC0; CDAB at 4.
    holding[4..6].copy_from_slice(&[0xBDC0, 0xFFF0]);
    // 0x0102030405060708 as u64, BADC at 6.
    holding[6..10].copy_from_slice(&[0x0201, 0x0403, 0x0605, 0x0807]);
    holding[10] = 0x8000; // i16 -32768
    Store {
        holding,
        input: vec![0; 10],
        coils: vec![false, true],
        discrete: vec![true],
        requests: 0,
    }
}

fn device(name: &str, port: u16) -> String {
    format!(
        r#"
[[modbus.devices]]
name = "{name}"
host = "127.0.0.1"
port = {port}
timeout_ms = 300
[[modbus.devices.registers]]
name = "pi"
data_type = "f32"
address = 0
[[modbus.devices.registers]]
name = "pi_dcba"
data_type = "f32"
byte_order = "DCBA"
address = 2
[[modbus.devices.registers]]
name = "i32_cdab"
data_type = "i32"
byte_order = "CDAB"
address = 4
[[modbus.devices.registers]]
name = "u64_badc"
data_type = "u64"
byte_order = "BADC"
address = 6
[[modbus.devices.registers]]
name = "min_i16"
data_type = "i16"
address = 10
[[modbus.devices.registers]]
name = "coil1"
kind = "coil"
address = 1
"#
    )
}

async fn heartbeats_between(hb: &Recorder, from: Instant, to: Instant) -> usize {
    hb.messages().iter().filter(|m| m.at > from && m.at <= to).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_restarted_server_does_not_stop_the_others() {
    let nats = NatsServer::start();
    let mut a = MemServer::start(store()).await;
    let mut b = MemServer::start(store()).await;
    let dead_port = free_port(); // nothing listens: connection refused
    let config = format!(
        "[service]\npoll_time_ms = 100\nheartbeat_interval_ms = 200\n{}{}{}",
        device("a", a.addr.port()),
        device("b", b.addr.port()),
        device("dead", dead_port)
    );
    let client = nats.client().await;
    let hb = Recorder::start(&client, "heartbeat.modbus-sensors.service").await;
    let svc: Running = start(&nats, &config).await;
    svc.wait_for(&["a:pi", "b:pi", "a:coil1"], Duration::from_secs(5)).await;

    // 0x40490FDB is π as an f32; it is published as that f32's shortest decimal form, which is
    // this literal (not f64's π, and not the f32 widened bit for bit: 3.1415927410125732).
    #[allow(clippy::approx_constant)]
    let pi = 3.1415927;
    assert_eq!(v(&svc.last("a:pi").unwrap()), pi);
    assert_eq!(v(&svc.last("a:pi_dcba").unwrap()), pi);
    assert_eq!(v(&svc.last("a:i32_cdab").unwrap()), -1_000_000.0);
    assert_eq!(v(&svc.last("a:u64_badc").unwrap()), 0x0102_0304_0506_0708u64 as f64);
    assert_eq!(v(&svc.last("a:min_i16").unwrap()), -32768.0);
    assert_eq!(svc.last("a:coil1").unwrap()["vb"], true);

    // The dead device is reported, and the others went on meanwhile.
    let dead = svc.device("dead").await;
    assert_eq!(dead["connected"], false, "{dead}");
    assert!(dead["link_errors"].as_u64().unwrap() >= 1, "{dead}");
    assert!(dead["last_error"].as_str().unwrap().contains("refused"), "{dead}");
    assert!(svc.last("dead:pi").is_none());

    // Stop server a mid-run: b carries on, a is reported failing, the service stays healthy.
    a.stop();
    let t_stop = now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    svc.wait_since(&["b:pi"], t_stop + 0.5, Duration::from_secs(3)).await;
    let dev_a = svc.device("a").await;
    assert!(dev_a["polls_failed"].as_u64().unwrap() >= 1, "{dev_a}");
    assert!(dev_a["last_error"].as_str().is_some(), "{dev_a}");
    let status = svc.call("GetStatus", json!({})).await;
    assert_eq!(status["healthy"], true, "{status}");
    assert!(status["detail"].as_str().unwrap().contains("1 of 3"), "{status}");
    // Nothing from a was read after it stopped.
    let late_a = svc
        .records()
        .iter()
        .filter(|r| r["n"] == "a:pi" && r["t"].as_f64().unwrap() > t_stop + 0.05)
        .count();
    assert_eq!(late_a, 0);

    // Restart it: reconnects (backoff 0.5 s, 1 s, ...) and resumes.
    a.restart().await;
    let t_restart = now();
    svc.wait_since(&["a:pi"], t_restart, Duration::from_secs(5)).await;
    let dev_a = svc.device("a").await;
    assert_eq!(dev_a["connected"], true, "{dev_a}");
    assert!(dev_a["reconnects"].as_u64().unwrap() >= 1, "{dev_a}");
    assert_eq!(dev_a["consecutive_failures"], 0, "{dev_a}");

    // Every device failing: unhealthy, and the heartbeat stops.
    a.stop();
    b.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = svc.call("GetStatus", json!({})).await;
    assert_eq!(status["healthy"], false, "{status}");
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(heartbeats_between(&hb, quiet_from, Instant::now()).await, 0);
    // One comes back: heartbeats again.
    b.restart().await;
    let back = Instant::now();
    hb.wait_until("heartbeats after recovery", Duration::from_secs(5), |m| {
        m.iter().any(|x| x.at > back)
    })
    .await;
    assert!(svc.svc.log().contains("answering again"), "{}", svc.svc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_follows_set_poll_time_and_metrics_are_announced() {
    let nats = NatsServer::start();
    let server = MemServer::start(store()).await;
    let config = format!(
        "[service]\npoll_time_ms = 100\n{}[[modbus.devices.registers]]\nname = \"count\"\naddress = 20\nunit = \"count\"\ntype = \"incremental\"\n",
        device("a", server.addr.port())
    );
    let svc = start(&nats, &config).await;
    svc.wait_for(&["a:pi"], Duration::from_secs(5)).await;
    // Requests per poll, from the plan: holding 0..=20 and coil 1.
    let dev = svc.device("a").await;
    assert_eq!(dev["plan"].as_array().unwrap().len(), 2, "{dev}");
    let served = || server.store.lock().unwrap().requests;
    let r0 = served();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fast = served() - r0;
    let r = svc.call("SetPollTime", json!({"poll_time_ms": 1000})).await;
    assert_eq!(r["poll_time_ms"], 1000, "{r}");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the poll already scheduled
    let r1 = served();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let slow = served() - r1;
    // 100 ms: about 10 polls (20 requests) a second; 1000 ms: about 2 polls (4 requests) in 2 s.
    assert!(fast >= 12, "{fast} requests in 1 s at 100 ms");
    assert!((2..=6).contains(&slow), "{slow} requests in 2 s at 1000 ms");

    let metrics = svc.call("GetMetrics", json!({})).await;
    let list = metrics["metrics"].as_array().unwrap();
    let find = |id: &str| list.iter().find(|m| m["id"] == id).cloned().unwrap();
    assert_eq!(find("a:count")["type"], 1); // INCREMENTAL
    assert_eq!(find("a:count")["unit"], "count");
    assert_eq!(find("a:pi")["dataType"], 1); // NUMBER
    assert_eq!(find("a:coil1")["dataType"], 2); // BOOLEAN
}

/// `GetCommands`: the register commands offer the configured devices as the choices of
/// `device`, and `value` takes any JSON type (a number, a boolean for a coil, a string).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_commands_offers_the_configured_devices() {
    let nats = NatsServer::start();
    let server = MemServer::start(store()).await;
    let config = format!(
        "{}{}",
        device("boiler", server.addr.port()),
        device("meter", server.addr.port())
    );
    let svc = start(&nats, &config).await;
    let got = svc.call("GetCommands", json!({})).await;
    let commands = got["commands"].as_array().unwrap_or_else(|| panic!("{got}"));
    let find = |n: &str| {
        commands
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("no {n} in {got}"))
    };
    for name in ["ReadRegister", "WriteRegister"] {
        let args = find(name)["args"].clone();
        assert_eq!(args[0]["name"], "device", "{args}");
        assert_eq!(args[0]["choices"], json!(["boiler", "meter"]), "{args}");
        assert_eq!(args[1]["name"], "register", "{args}");
    }
    assert_eq!(find("WriteRegister")["args"][2]["type"], "any");
    assert_eq!(find("GetDevices")["args"], json!([]));
}
