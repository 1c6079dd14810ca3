//! PROTOCOL.md, checked end to end: the example service runs as a separate process against
//! a private nats-server; an independent subscriber checks every subject and rule.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tolomeo_testkit::{NatsServer, Recorder, ServiceProcess, call, request, target_binary};

const SERVICE: &str = "temp-example";
const SERIAL: &str = "SNTEST1";
const BN: &str = "urn:cpt:device:sn:SNTEST1:";

fn example() -> PathBuf {
    target_binary("examples/temp_service")
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A config file in a temp dir, removed when dropped.
fn config_file(text: &str) -> tolomeo_testkit::tempfile::TempPath {
    tolomeo_testkit::temp_file(".toml", text)
}

/// Start the example with a config and wait until it answers Ping.
async fn start(nats: &NatsServer, config: &str) -> (ServiceProcess, async_nats::Client) {
    let cfg = config_file(config);
    let mut svc = ServiceProcess::start(&example(), &["--config", cfg.to_str().unwrap()], SERIAL, &nats.url());
    svc.hold(cfg);
    let client = nats.client().await;
    tolomeo_testkit::wait_ready(&client, SERVICE, &svc).await;
    (svc, client)
}

fn records(pack: &Value) -> &Vec<Value> {
    pack.as_array().expect("a SenML pack is a JSON array")
}

/// Values of `temp:samples` in the order they appear.
fn sample_counts(packs: &[Value]) -> Vec<u64> {
    packs
        .iter()
        .flat_map(|p| records(p).iter())
        .filter(|r| r["n"] == "temp:samples")
        .map(|r| r["v"].as_u64().expect("samples is an integer"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_packs_follow_the_protocol() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let t0 = now();
    let (mut svc, _c) = start(&nats, "[service]\npoll_time_ms = 200\n").await;
    let msgs = data
        .wait_until("4 data packs", Duration::from_secs(10), |m| m.len() >= 4)
        .await;
    let mut counts = Vec::new();
    let mut last_t = 0.0;
    for m in &msgs {
        let pack = m.json();
        let arrived = now();
        for r in records(&pack) {
            let obj = r.as_object().unwrap();
            assert_eq!(r["bn"], BN, "bn on every record: {pack}");
            let t = r["t"].as_f64().expect("t is a number");
            assert!(
                t >= t0 && t <= arrived,
                "t {t} is the reading time, between start {t0} and arrival {arrived}"
            );
            assert!(t >= last_t, "records ordered by t");
            last_t = t;
            let value_fields = ["v", "vs", "vb", "vd"].iter().filter(|k| obj.contains_key(**k)).count();
            assert_eq!(value_fields, 1, "exactly one value field: {r}");
            match r["n"].as_str().unwrap() {
                "temp:temperature" => {
                    assert_eq!(r["u"], "Cel");
                    let v = r["v"].as_f64().unwrap();
                    assert!((15.0..=27.0).contains(&v), "simulated temperature near 21: {v}");
                }
                "temp:samples" => {
                    assert_eq!(r["u"], "count");
                    counts.push(r["v"].as_u64().unwrap());
                }
                other => panic!("undeclared metric published: {other}"),
            }
            let allowed = ["bn", "n", "u", "v", "t"];
            assert!(
                obj.keys().all(|k| allowed.contains(&k.as_str())),
                "no other fields: {r}"
            );
        }
    }
    // One pack per poll, each with one sample: the counter goes 1, 2, 3, ...
    let expected: Vec<u64> = (1..=counts.len() as u64).collect();
    assert_eq!(counts, expected);
    // Packs arrive about once per poll period (200 ms), not all at once.
    let span = msgs.last().unwrap().at - msgs.first().unwrap().at;
    assert!(
        span >= Duration::from_millis(3 * 150),
        "packs spread over time: {span:?}"
    );
    assert_eq!(
        svc.terminate(Duration::from_secs(10)),
        Some(0),
        "clean exit; log:\n{}",
        svc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_stops_while_unhealthy_and_resumes() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let hb = Recorder::start(&client, "heartbeat.temp-example.service").await;
    let (_svc, client) = start(&nats, "[service]\npoll_time_ms = 200\nheartbeat_interval_ms = 100\n").await;
    let msgs = hb
        .wait_until("3 heartbeats", Duration::from_secs(5), |m| m.len() >= 3)
        .await;
    assert!(
        msgs.iter().all(|m| m.payload.is_empty()),
        "heartbeats have an empty payload"
    );

    let r = call(&client, SERVICE, "SimulateFault", json!({"fault": "unplugged"})).await;
    assert!(r.get("error").is_none(), "{r}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    hb.clear();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(hb.len(), 0, "no heartbeat while the plugin is unhealthy");
    let status = call(&client, SERVICE, "GetStatus", json!({})).await;
    assert_eq!(status["healthy"], false);
    assert_eq!(status["detail"], "sensor unplugged (simulated)");

    call(&client, SERVICE, "SimulateFault", json!({"fault": "none"})).await;
    hb.wait_until("heartbeats again", Duration::from_secs(5), |m| m.len() >= 2)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_announced_on_connect_and_on_change() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let params = Recorder::start(&client, "events.params").await;
    let (_svc, client) = start(&nats, "").await;
    let msgs = params
        .wait_until("an announcement", Duration::from_secs(5), |m| !m.is_empty())
        .await;
    let pack = msgs[0].json();
    let rec = &records(&pack)[0];
    assert_eq!(records(&pack).len(), 1);
    assert_eq!(rec["bn"], BN);
    assert_eq!(rec["n"], "metrics");
    let entries: Value = serde_json::from_str(rec["vs"].as_str().unwrap()).unwrap();
    let expected = json!([
        {"id": "temp:temperature", "name": "Temperature", "unit": "Cel", "type": 0, "dataType": 1},
        {"id": "temp:samples", "name": "Samples taken", "unit": "count", "type": 1, "dataType": 1}
    ]);
    assert_eq!(entries, expected);
    let got = call(&client, SERVICE, "GetMetrics", json!({})).await;
    assert_eq!(got["metrics"], expected, "GetMetrics gives what was announced");

    params.clear();
    let r = call(&client, SERVICE, "TempUnitCmd", json!({"unit": "F"})).await;
    assert_eq!(r["unit"], "F", "{r}");
    let msgs = params
        .wait_until("a new announcement", Duration::from_secs(5), |m| !m.is_empty())
        .await;
    let entries: Value = serde_json::from_str(records(&msgs[0].json())[0]["vs"].as_str().unwrap()).unwrap();
    assert_eq!(entries[0]["unit"], "degF");
}

fn error_code(vs: &Value) -> &str {
    vs["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error response: {vs}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_commands_and_every_error_code() {
    let nats = NatsServer::start();
    let (_svc, client) = start(
        &nats,
        "[service]\npoll_time_ms = 1000\ncommand_timeout_ms = 500\n[temp]\nallow_unit_change = false\n",
    )
    .await;
    let res = Recorder::start(&client, "commands.temp-example.res").await;

    let pong = call(&client, SERVICE, "Ping", json!({})).await;
    assert_eq!(pong["message"], "pong");
    assert_eq!(pong["service"], SERVICE);
    assert_eq!(pong["version"], env!("CARGO_PKG_VERSION"));
    assert!(pong["uptime_s"].as_f64().unwrap() >= 0.0);

    let st = call(&client, SERVICE, "GetStatus", json!({})).await;
    assert_eq!(st["healthy"], true);
    assert_eq!(st["poll_time_ms"], 1000);
    assert_eq!(st["broker_connected"], true);
    for k in ["published_records", "dropped_records", "buffered_records"] {
        assert!(st[k].is_u64(), "{k} in {st}");
    }
    assert!(st.as_object().unwrap().contains_key("last_publish_t"));

    let set = call(&client, SERVICE, "SetPollTime", json!({"poll_time_ms": 5000})).await;
    assert_eq!(
        set,
        json!({"message": "poll time set to 5000 ms", "poll_time_ms": 5000})
    );
    assert_eq!(
        call(&client, SERVICE, "GetStatus", json!({})).await["poll_time_ms"],
        5000
    );

    // invalid_payload: out of range (both ends), wrong type, missing.
    for args in [
        json!({"poll_time_ms": 99}),
        json!({"poll_time_ms": 3_600_001}),
        json!({"poll_time_ms": "fast"}),
        json!({}),
    ] {
        let r = call(&client, SERVICE, "SetPollTime", args.clone()).await;
        assert_eq!(error_code(&r), "invalid_payload", "{args} -> {r}");
        assert!(r["error"]["message"].as_str().unwrap().contains("poll_time_ms"));
    }
    assert_eq!(
        call(&client, SERVICE, "GetStatus", json!({})).await["poll_time_ms"],
        5000,
        "unchanged by refused calls"
    );

    assert_eq!(
        error_code(&call(&client, SERVICE, "Reboot", json!({})).await),
        "unknown_command"
    );
    assert_eq!(
        error_code(&call(&client, SERVICE, "TempUnitCmd", json!({"unit": "C"})).await),
        "forbidden"
    );
    assert_eq!(
        error_code(&call(&client, SERVICE, "Calibrate", json!({"seconds": 2})).await),
        "timeout"
    );
    call(&client, SERVICE, "SimulateFault", json!({"fault": "unplugged"})).await;
    assert_eq!(
        error_code(&call(&client, SERVICE, "Calibrate", json!({"seconds": 0})).await),
        "failed"
    );
    call(&client, SERVICE, "SimulateFault", json!({"fault": "none"})).await;

    // invalid_request: not JSON, not a pack, no `n`, over 64 KiB. One record named "".
    let big = format!(r#"[{{"n":"Ping","vs":"{}"}}]"#, "x".repeat(70_000));
    for body in [
        "{not json".to_string(),
        r#"{"n":"Ping"}"#.to_string(),
        r#"[{"vs":"{}"}]"#.to_string(),
        big,
    ] {
        let pack = request(&client, SERVICE, body.clone()).await;
        assert_eq!(records(&pack).len(), 1);
        assert_eq!(pack[0]["n"], "");
        assert_eq!(pack[0]["bn"], BN);
        let vs: Value = serde_json::from_str(pack[0]["vs"].as_str().unwrap()).unwrap();
        assert_eq!(error_code(&vs), "invalid_request", "{}", &body[..body.len().min(40)]);
    }

    // Several records: one response record each, in order.
    let pack = request(
        &client,
        SERVICE,
        r#"[{"n":"Ping"},{"n":"Nope"},{"n":"SetPollTime","vs":"{\"poll_time_ms\":200}"}]"#,
    )
    .await;
    let names: Vec<_> = records(&pack).iter().map(|r| r["n"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ping", "Nope", "SetPollTime"]);
    assert!(records(&pack).iter().all(|r| r["t"].as_f64().unwrap() > 1.7e9));

    // Every response also went to commands.<service>.res.
    let on_res = res
        .wait_until("responses on .res", Duration::from_secs(5), |m| m.len() >= 20)
        .await;
    let last = on_res.last().unwrap().json();
    assert_eq!(last, pack, "the same pack on the reply subject and on .res");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_command_holds_up_neither_telemetry_nor_heartbeats() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let hb = Recorder::start(&client, "heartbeat.temp-example.service").await;
    let (_svc, client) = start(&nats, "[service]\npoll_time_ms = 200\nheartbeat_interval_ms = 100\n").await;
    data.wait_until("first pack", Duration::from_secs(5), |m| !m.is_empty())
        .await;
    let res = Recorder::start(&client, "commands.temp-example.res").await;
    data.clear();
    hb.clear();
    // Calibrate takes 1.5 s; a Ping sent right after it waits its turn.
    client
        .publish(
            "commands.temp-example.req",
            r#"[{"n":"Calibrate","vs":"{\"seconds\":1.5}"}]"#.into(),
        )
        .await
        .unwrap();
    client
        .publish("commands.temp-example.req", r#"[{"n":"Ping"}]"#.into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let msgs = res
        .wait_until("both responses", Duration::from_secs(10), |m| m.len() >= 2)
        .await;
    assert_eq!(
        msgs[0].json()[0]["n"],
        "Calibrate",
        "commands run one at a time, in arrival order"
    );
    assert_eq!(msgs[1].json()[0]["n"], "Ping");
    assert!(
        data.len() >= 4,
        "telemetry went on during the command: {} packs",
        data.len()
    );
    assert!(hb.len() >= 8, "heartbeats went on during the command: {}", hb.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_requests_changes_nothing() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let (mut svc, client) = start(&nats, "[service]\npoll_time_ms = 200\n").await;
    let big = format!(r#"[{{"n":"Ping","vs":"{}"}}]"#, "y".repeat(66_000));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..600 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let body: Vec<u8> = match i % 6 {
            0 => (0..(seed % 300)).map(|k| (seed >> (k % 56)) as u8).collect(),
            1 => b"[{\"n\":".to_vec(),
            2 => br#"[{"vs":"{\"a\":1}"},{"t":5}]"#.to_vec(),
            3 => big.clone().into_bytes(),
            4 => format!(r#"[{{"n":"Unknown{i}"}}]"#).into_bytes(),
            _ => br#"[{"n":"SetPollTime","vs":"{\"poll_time_ms\":-1}"}]"#.to_vec(),
        };
        client.publish("commands.temp-example.req", body.into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let pong = call(&client, SERVICE, "Ping", json!({})).await;
    assert_eq!(pong["message"], "pong");
    assert_eq!(
        call(&client, SERVICE, "GetStatus", json!({})).await["poll_time_ms"],
        200,
        "nothing changed the poll time"
    );
    data.clear();
    data.wait_until("telemetry still flowing", Duration::from_secs(5), |m| m.len() >= 2)
        .await;
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_and_undeclared_readings_are_dropped_and_counted() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let (svc, client) = start(&nats, "[service]\npoll_time_ms = 150\n").await;
    for fault in ["nan", "undeclared"] {
        call(&client, SERVICE, "SimulateFault", json!({"fault": fault})).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    call(&client, SERVICE, "SimulateFault", json!({"fault": "none"})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = call(&client, SERVICE, "GetStatus", json!({})).await;
    assert!(st["dropped_records"].as_u64().unwrap() >= 4, "{st}");
    for m in data.messages() {
        let text = String::from_utf8_lossy(&m.payload).to_string();
        assert!(
            !text.contains("NaN") && !text.contains("null") && !text.contains("humidity"),
            "{text}"
        );
    }
    let log = svc.log();
    assert!(log.contains("undeclared metrics: humidity"), "{log}");
    assert!(log.contains("NaN"), "{log}");
}

/// Broker stopped for a minute while the service publishes at 10 Hz, then restarted: every
/// record collected meanwhile arrives, in order, and nothing twice beyond the documented window
/// (one batch in flight when the connection drops). A JetStream stream on the server captures
/// events.data, so the check does not depend on when a subscriber reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_loses_nothing_and_keeps_order() {
    let mut nats = NatsServer::start_jetstream();
    nats.capture("DATA", "events.data").await;
    let (mut svc, _c) = start(&nats, "[service]\npoll_time_ms = 100\n").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_secs(60)).await; // about 600 polls collected offline
    nats.restart();
    // Wait until the service has reconnected and delivered, then stop it cleanly.
    let client = nats.client().await;
    tolomeo_testkit::wait_status(
        &client,
        SERVICE,
        &svc,
        "delivery after the restart",
        Duration::from_secs(15),
        |st| st["buffered_records"] == 0 && st["published_records"].as_u64().unwrap_or(0) > 1200,
    )
    .await;
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0));
    let packs: Vec<Value> = nats
        .captured("DATA")
        .await
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    let counts = sample_counts(&packs);
    // At-least-once: a batch in flight when the broker went away may come twice. Without the
    // repeats, the counter must run 1, 2, 3, ... with no gap and never go back.
    let mut dedup = counts.clone();
    dedup.dedup();
    let max = *dedup.last().unwrap();
    let mut unique = dedup.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique, (1..=max).collect::<Vec<_>>(), "no record lost: {counts:?}");
    assert!(max >= 30, "the service kept sampling during the outage: {max}");
    let repeats = counts.len() - max as usize;
    assert!(
        repeats <= 2 * 16 * 1000,
        "duplicates stay within one confirmation window: {repeats}"
    );
    let first_seen: Vec<u64> = {
        let mut seen = std::collections::HashSet::new();
        counts.iter().copied().filter(|c| seen.insert(*c)).collect()
    };
    assert!(
        first_seen.windows(2).all(|w| w[0] < w[1]),
        "records first arrive in order: {first_seen:?}"
    );
}

/// SIGTERM while records wait in the buffer (broker down): the service delivers them once the
/// broker is back, within its shutdown timeout, then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_what_is_held() {
    let mut nats = NatsServer::start_jetstream();
    nats.capture("DATA", "events.data").await;
    let (mut svc, _c) = start(&nats, "[service]\npoll_time_ms = 100\nshutdown_timeout_ms = 10000\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    svc.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    nats.restart();
    let code = svc.wait(Duration::from_secs(15));
    let log = svc.log();
    assert_eq!(code, Some(0), "clean exit; log:\n{log}");
    let packs: Vec<Value> = nats
        .captured("DATA")
        .await
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    let mut counts = sample_counts(&packs);
    counts.sort();
    counts.dedup();
    let max = *counts.last().unwrap();
    assert_eq!(
        counts,
        (1..=max).collect::<Vec<_>>(),
        "every sample taken before SIGTERM arrived"
    );
    assert!(max >= 12, "samples from before and during the outage: {max}");
    assert!(log.contains("delivered what was held"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_a_broker_and_delivers_when_it_appears() {
    let port = tolomeo_testkit::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let cfg = config_file("[service]\npoll_time_ms = 100\n");
    let mut svc = ServiceProcess::start(&example(), &["--config", cfg.to_str().unwrap()], SERIAL, &url);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(svc.is_running(), "keeps running without a broker; log:\n{}", svc.log());
    let nats = NatsServer::start_on(port);
    let client = nats.client().await;
    // About 15 polls (2 records each) were collected before the broker existed; the counters
    // only count what the broker confirmed.
    let st = tolomeo_testkit::wait_status(
        &client,
        SERVICE,
        &svc,
        "records from before the broker",
        Duration::from_secs(15),
        |st| st["published_records"].as_u64().unwrap_or(0) >= 28,
    )
    .await;
    assert_eq!(st["dropped_records"], 0, "{st}");
    assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0), "{}", svc.log());
}

/// `GetCommands` (PROTOCOL.md section 4): every command, built-ins first, each with its
/// arguments; the range it lists for `SetPollTime` is the contract's and the one enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_commands_lists_every_command_with_its_arguments() {
    let nats = NatsServer::start();
    let (_svc, client) = start(&nats, "[service]\npoll_time_ms = 1000\ncommand_timeout_ms = 500\n").await;
    let got = call(&client, SERVICE, "GetCommands", json!({})).await;
    let commands = got["commands"].as_array().unwrap_or_else(|| panic!("{got}"));
    let names: Vec<&str> = commands.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Ping",
            "GetStatus",
            "GetMetrics",
            "SetPollTime",
            "GetCommands",
            "TempUnitCmd",
            "Calibrate",
            "SimulateFault"
        ]
    );
    for c in commands {
        assert!(!c["description"].as_str().unwrap().is_empty(), "{c}");
        // Every command listed is one the service answers.
        let name = c["name"].as_str().unwrap();
        if name != "Calibrate" {
            let r = call(&client, SERVICE, name, json!({})).await;
            assert_ne!(r["error"]["code"], "unknown_command", "{name}: {r}");
        }
    }
    let by_name = |n: &str| commands.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by_name("Ping")["args"], json!([]));
    // Section 4: `poll_time_ms` (100 to 3,600,000).
    let arg = &by_name("SetPollTime")["args"][0];
    assert_eq!(
        (&arg["name"], &arg["type"], &arg["required"], &arg["min"], &arg["max"]),
        (
            &json!("poll_time_ms"),
            &json!("integer"),
            &json!(true),
            &json!(100),
            &json!(3_600_000)
        ),
        "{arg}"
    );
    for (ms, ok) in [(100, true), (3_600_000, true), (99, false), (3_600_001, false)] {
        let r = call(&client, SERVICE, "SetPollTime", json!({ "poll_time_ms": ms })).await;
        assert_eq!(r.get("error").is_none(), ok, "{ms}: {r}");
    }
    let unit = &by_name("TempUnitCmd")["args"][0];
    assert_eq!(
        (&unit["type"], &unit["choices"]),
        (&json!("string"), &json!(["C", "F"]))
    );
    let seconds = &by_name("Calibrate")["args"][0];
    assert_eq!(seconds["required"], false, "{seconds}");
}
