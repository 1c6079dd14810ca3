//! The dashboard as a user runs it: the binary against a private nats-server, packs published
//! by hand (so every expected value is written out here), a real service in-process, and plain
//! HTTP requests to the API.

mod common;

use std::time::Duration;

use common::{Dashboard, TestService, data_dir, http};
use serde_json::{Value, json};
use tolomeo_testkit::NatsServer;

const WAIT: Duration = Duration::from_secs(15);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Publishes each payload on `subject`, then flushes.
fn publish(rt: &tokio::runtime::Runtime, url: &str, subject: &str, payloads: &[String]) {
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        for p in payloads {
            client.publish(subject.to_string(), p.clone().into()).await.unwrap();
        }
        client.flush().await.unwrap();
    });
}

fn series(d: &Dashboard, device: &str, metric: &str, from: f64, to: f64, extra: &str) -> (u16, Value) {
    d.get(&format!(
        "/api/series?device={device}&metric={metric}&from={from}&to={to}{extra}"
    ))
}

/// Three readings of one metric, a string, a boolean; a malformed pack; a record of no device.
fn sample_packs() -> Vec<String> {
    let bn = "urn:cpt:device:sn:SNDASH1:";
    vec![
        format!(
            r#"[{{"bn":"{bn}","n":"boiler:temp","u":"Cel","v":61.5,"t":1700000000.25}},{{"bn":"{bn}","n":"boiler:mode","vs":"heating","t":1700000000.25}}]"#
        ),
        "not json at all".to_string(),
        format!(
            r#"[{{"bn":"{bn}","n":"boiler:temp","u":"Cel","v":62.0,"t":1700000001.25}},{{"bn":"{bn}","n":"boiler:pump","vb":true,"t":1700000001.25}}]"#
        ),
        format!(
            r#"[{{"bn":"{bn}","n":"boiler:temp","u":"Cel","v":-3.75,"t":1700000002.5}},{{"bn":"{bn}","n":"boiler:mode","vs":"idle","t":1700000002.5}}]"#
        ),
        r#"[{"bn":"urn:dev:mac:0024befffe804ff1:","n":"temp","v":1,"t":1700000002.5}]"#.to_string(),
    ]
}

#[test]
fn telemetry_is_stored_served_and_kept_across_a_restart() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let root = tolomeo_testkit::temp_dir();
    let dir = data_dir(root.path(), "store");
    // The packs are of November 2023: a retention that keeps them.
    let keep = ["--data-dir", &dir, "--retention", "36500d"];
    let d = Dashboard::start(&url, &keep);
    publish(&rt, &url, "events.data", &sample_packs());

    // The three readings, exactly as published.
    // Four valid packs (one of them of no device), one malformed.
    let state = d.get_until("/api/state", "the packs counted", WAIT, |s| s["ingest"]["packs"] == 4);
    assert_eq!(state["ingest"]["malformed_packs"], 1, "{state}");
    assert_eq!(state["ingest"]["records"], 6, "{state}");
    assert_eq!(state["ingest"]["foreign_records"], 1, "{state}");
    let expected_temp =
        json!({"t": [1700000000.25, 1700000001.25, 1700000002.5], "values": [61.5, 62.0, -3.75], "raw_points": 3});
    let got = d.get_until(
        "/api/series?device=SNDASH1&metric=boiler:temp&from=1699999999&to=1700000003",
        "the stored readings",
        WAIT,
        |s| s["raw_points"] == 3,
    );
    assert_eq!(got, expected_temp);
    // A range holds what is inside it, ends included.
    let (status, got) = series(&d, "SNDASH1", "boiler:temp", 1700000001.25, 1700000002.5, "");
    assert_eq!(status, 200);
    assert_eq!(got["values"], json!([62.0, -3.75]));
    // Strings and booleans.
    let (_, got) = series(&d, "SNDASH1", "boiler:mode", 1699999999.0, 1700000003.0, "");
    assert_eq!(got["values"], json!(["heating", "idle"]));
    let (_, got) = series(&d, "SNDASH1", "boiler:pump", 1699999999.0, 1700000003.0, "");
    assert_eq!(got["values"], json!([1.0]));
    // The device is listed with its metrics.
    let state = d.get("/api/state").1;
    let device = &state["devices"][0];
    assert_eq!(device["serial"], "SNDASH1", "{state}");
    assert!(device["last_seen"].as_f64().is_some(), "{state}");
    // An announcement on events.params (PROTOCOL.md section 2) declares the metric, with the
    // name and unit the chart shows.
    publish(
        &rt,
        &url,
        "events.params",
        &[r#"[{"bn":"urn:cpt:device:sn:SNDASH1:","n":"metrics","vs":"[{\"id\":\"boiler:temp\",\"name\":\"Boiler temperature\",\"unit\":\"Cel\",\"type\":0,\"dataType\":1}]"}]"#.to_string()],
    );
    let state = d.get_until("/api/state", "the announced metric", WAIT, |s| {
        s["devices"][0]["metrics"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["name"] == "Boiler temperature"))
    });
    let ids: Vec<&str> = state["devices"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&"boiler:temp"), "{ids:?}");
    let temp = state["devices"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "boiler:temp")
        .unwrap();
    assert_eq!(temp["unit"], "Cel");
    assert_eq!(temp["dataType"], 1);

    // Bad queries say what was wrong.
    let (status, body) = series(&d, "SNDASH1", "boiler:temp", 5.0, 1.0, "");
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("from <= to"),
        "{body}"
    );
    let (status, body) = d.get("/api/series?device=SNDASH1");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");

    // A restart keeps the history, and lists what it holds before anything new arrives.
    assert_eq!(d.stop(), Some(0), "SIGTERM is a clean stop");
    let d = Dashboard::start(&url, &keep);
    let (_, got) = series(&d, "SNDASH1", "boiler:temp", 1699999999.0, 1700000003.0, "");
    assert_eq!(got, expected_temp);
    let state = d.get("/api/state").1;
    let ids: Vec<&str> = state["devices"][0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["boiler:mode", "boiler:pump", "boiler:temp"], "{state}");
}

#[test]
fn services_appear_with_their_device_status_metrics_and_commands() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let _enter = rt.enter();
    let root = tolomeo_testkit::temp_dir();
    let d = Dashboard::start(&url, &["--data-dir", &data_dir(root.path(), "s"), "--expire", "2s"]);
    let svc = TestService::start(&url, "probe-svc", "SNPROBE");

    let state = d.get_until(
        "/api/state",
        "the service under its device, with its status",
        WAIT,
        |s| {
            s["devices"].as_array().is_some_and(|devices| {
                devices.iter().any(|d| {
                    d["serial"] == "SNPROBE"
                        && d["services"][0]["name"] == "probe-svc"
                        && d["services"][0]["alive"] == true
                        && d["services"][0]["status"]["healthy"] == true
                })
            })
        },
    );
    let device = state["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["serial"] == "SNPROBE")
        .unwrap();
    assert_eq!(device["services"][0]["status"]["detail"], "probe ok");
    // The declared metrics, as the service announced them (PROTOCOL.md section 2), with the
    // service that declared them.
    let level = device["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "probe:level")
        .unwrap_or_else(|| panic!("probe:level declared: {device}"));
    assert_eq!(level["unit"], "%");
    assert_eq!(level["name"], "Tank level");
    assert_eq!(level["type"], 0);
    assert_eq!(level["dataType"], 1);
    assert_eq!(level["service"], "probe-svc");
    let pulses = device["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "probe:pulses")
        .unwrap();
    assert_eq!(pulses["type"], 1, "incremental");

    // The readings of a live service are charted.
    d.get_until(
        &format!(
            "/api/series?device=SNPROBE&metric=probe:level&from=0&to={}",
            tolomeo_proto::unix_now() + 60.0
        ),
        "the service's readings",
        WAIT,
        |s| s["raw_points"].as_u64().unwrap_or(0) >= 2 && s["values"][0] == 42.5,
    );

    // Its commands, built-ins first.
    let (status, commands) = d.get("/api/commands?service=probe-svc");
    assert_eq!(status, 200, "{commands}");
    let names: Vec<&str> = commands["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names.first(), Some(&"Ping"), "{names:?}");
    assert!(names.contains(&"Flush") && names.contains(&"SetPollTime"), "{names:?}");
    let (status, body) = d.get("/api/commands?service=nobody");
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "no_responders");

    // Stopped, it is listed as not alive after --expire.
    drop(svc);
    d.get_until("/api/state", "the stopped service shown as not alive", WAIT, |s| {
        s["devices"].as_array().is_some_and(|devices| {
            devices
                .iter()
                .any(|d| d["serial"] == "SNPROBE" && d["services"][0]["alive"] == false)
        })
    });
}

#[test]
fn commands_need_the_flag_the_token_and_the_dashboards_own_origin() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let _enter = rt.enter();
    let root = tolomeo_testkit::temp_dir();
    let _svc = TestService::start(&url, "probe-svc", "SNSEC");
    let ping = r#"{"service":"probe-svc","command":"Ping"}"#;

    // Without --enable-commands: refused, token or not.
    let off = Dashboard::start(&url, &["--data-dir", &data_dir(root.path(), "off")]);
    assert!(off.token.is_none());
    let (status, body) = off.command(&[("Authorization", "Bearer 0123")], ping);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("--enable-commands"),
        "{body}"
    );
    assert_eq!(off.get("/api/state").1["commands_enabled"], false);

    let on = Dashboard::start(&url, &["--data-dir", &data_dir(root.path(), "on"), "--enable-commands"]);
    let token = on.token.clone().expect("the token is printed at start");
    assert_eq!(token.len(), 32, "128 bits in hex: {token}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    let bearer = format!("Bearer {token}");
    let own_origin = format!("http://127.0.0.1:{}", on.port);

    // No token, a wrong one.
    let (status, body) = on.command(&[], ping);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let wrong = format!("Bearer {}", "0".repeat(32));
    let (status, _) = on.command(&[("Authorization", &wrong)], ping);
    assert_eq!(status, 401);
    // Another site's page, even with the token.
    let (status, body) = on.command(&[("Authorization", &bearer), ("Origin", "https://evil.example")], ping);
    assert_eq!(status, 403, "{body}");
    // DNS rebinding: a foreign name for 127.0.0.1 cannot even read.
    let (status, _) = http(
        on.port,
        "GET",
        "/api/state",
        &[("Host", &format!("evil.example:{}", on.port))],
        "",
    );
    assert_eq!(status, 403);
    // Not JSON.
    let (status, _) = http(
        on.port,
        "POST",
        "/api/command",
        &[("Authorization", &bearer), ("Content-Type", "text/plain")],
        ping,
    );
    assert_eq!(status, 415);

    on.get_until("/api/state", "the service alive", WAIT, |s| {
        s.to_string().contains(r#""alive":true"#)
    });
    // With all three: the service answers (PROTOCOL.md section 4: Ping answers "pong").
    let (status, body) = on.command(&[("Authorization", &bearer), ("Origin", &own_origin)], ping);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["result"]["message"], "pong");
    assert_eq!(body["result"]["service"], "probe-svc");
    let (_, body) = on.command(
        &[("Authorization", &bearer)],
        r#"{"service":"probe-svc","command":"SetPollTime","args":{"poll_time_ms":2000}}"#,
    );
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["result"]["poll_time_ms"], 2000);
    // An error reply is passed on as one: SetPollTime's range is 100 to 3,600,000 ms.
    let (status, body) = on.command(
        &[("Authorization", &bearer)],
        r#"{"service":"probe-svc","command":"SetPollTime","args":{"poll_time_ms":5}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["error"]["code"], "invalid_payload");
    // Malformed requests.
    let (status, body) = on.command(&[("Authorization", &bearer)], r#"{"service":"probe-svc"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `command`"),
        "{body}"
    );
    let (status, _) = on.command(
        &[("Authorization", &bearer)],
        r#"{"service":"probe-svc","command":"Ping","args":[1]}"#,
    );
    assert_eq!(status, 400);
    let (status, body) = on.command(
        &[("Authorization", &bearer)],
        r#"{"service":"nobody","command":"Ping"}"#,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("no_responders")),
        "{body}"
    );
}

#[test]
fn live_points_arrive_as_server_sent_events() {
    use std::io::{Read, Write};
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let root = tolomeo_testkit::temp_dir();
    let d = Dashboard::start(&url, &["--data-dir", &data_dir(root.path(), "live")]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET /api/live HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", d.port).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    // The first event is the state.
    while !seen.contains("event: state") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("content-type: text/event-stream"), "{seen}");
    publish(
        &rt,
        &url,
        "events.data",
        &[r#"[{"bn":"urn:cpt:device:sn:SNLIVE:","n":"tank:level","u":"%","v":12.5,"t":1700000100.5}]"#.to_string()],
    );
    while !seen.contains("event: points") || !seen[seen.find("event: points").unwrap()..].contains("\n\n") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let at = seen.find("event: points").unwrap();
    let data = seen[at..].lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        event,
        json!({"device": "SNLIVE", "points": [{"metric": "tank:level", "t": 1700000100.5, "v": 12.5}]})
    );
}

#[test]
fn history_from_a_jetstream_stream() {
    let nats = NatsServer::start_jetstream();
    let url = nats.url();
    let rt = runtime();
    let root = tolomeo_testkit::temp_dir();

    // A stream that does not exist is a usage error that says how to make it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tlm-dashboard"))
        .args(["--server", &url, "--listen", "127.0.0.1:0", "--stream", "NOSUCH"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--stream NOSUCH") && stderr.contains("--create-stream"),
        "{stderr}"
    );

    let first = Dashboard::start(
        &url,
        &["--stream", "TLMHIST", "--create-stream", "--stream-max-age", "1d"],
    );
    assert_eq!(first.get("/api/state").1["history"], "stream:TLMHIST");
    // Stored by the broker, not by the dashboard: recent times, as the stream keeps one day.
    let now = tolomeo_proto::unix_now().floor();
    let bn = "urn:cpt:device:sn:SNJS:";
    let packs: Vec<String> = (0..3)
        .map(|i| {
            let t = now - 3.0 + f64::from(i);
            format!(
                r#"[{{"bn":"{bn}","n":"line:speed","u":"rpm","v":{},"t":{t}}},{{"bn":"{bn}","n":"line:state","vs":"s{i}","t":{t}}}]"#,
                100 + i * 10
            )
        })
        .collect();
    publish(&rt, &url, "events.data", &packs);
    let path = format!(
        "/api/series?device=SNJS&metric=line:speed&from={}&to={}",
        now - 60.0,
        now + 60.0
    );
    let got = first.get_until(&path, "the readings read back from the stream", WAIT, |s| {
        s["raw_points"] == 3
    });
    assert_eq!(got["t"], json!([now - 3.0, now - 2.0, now - 1.0]));
    assert_eq!(got["values"], json!([100.0, 110.0, 120.0]));
    // Another metric of the same range (served by the same read of the stream).
    let (_, got) = first.get(&path.replace("line:speed", "line:state"));
    assert_eq!(got["values"], json!(["s0", "s1", "s2"]), "{got}");
    drop(first);
    // Another dashboard, with nothing of its own, serves the same history.
    let second = Dashboard::start(&url, &["--stream", "TLMHIST"]);
    let (_, got) = second.get(&path);
    assert_eq!(got["values"], json!([100.0, 110.0, 120.0]), "{got}");
    // The stream was made with the retention asked for.
    let max_age = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        let mut stream = js.get_stream("TLMHIST").await.unwrap();
        stream.info().await.unwrap().config.max_age
    });
    assert_eq!(max_age, Duration::from_secs(86_400));
    drop(root);
}

#[test]
fn retention_drops_what_is_older_than_the_bound() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let root = tolomeo_testkit::temp_dir();
    let dir = data_dir(root.path(), "ret");
    let args = ["--data-dir", &dir, "--retention", "1h"];
    let d = Dashboard::start(&url, &args);
    let now = tolomeo_proto::unix_now().floor();
    // Two hours old, then one minute old: only the second is within the hour.
    let bn = "urn:cpt:device:sn:SNRET:";
    publish(
        &rt,
        &url,
        "events.data",
        &[
            format!(r#"[{{"bn":"{bn}","n":"x:y","v":1.5,"t":{}}}]"#, now - 7200.0),
            format!(r#"[{{"bn":"{bn}","n":"x:y","v":2.5,"t":{}}}]"#, now - 60.0),
        ],
    );
    d.get_until("/api/state", "both packs taken", WAIT, |s| s["ingest"]["records"] == 2);
    // The bound is enforced every 10 s and at the stop.
    assert_eq!(d.stop(), Some(0));
    let d = Dashboard::start(&url, &args);
    let (_, got) = series(&d, "SNRET", "x:y", now - 10_000.0, now, "");
    assert_eq!(got["values"], json!([2.5]), "{got}");
    assert_eq!(got["t"], json!([now - 60.0]));
}

#[test]
fn a_flood_of_packs_does_not_grow_memory_without_bound() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let root = tolomeo_testkit::temp_dir();
    let d = Dashboard::start(
        &url,
        &["--data-dir", &data_dir(root.path(), "flood"), "--max-size", "8MiB"],
    );
    let before = d.rss_kib();
    // 20,000 packs of 50 records (a million points, about 4 MB each second of a flood) as fast
    // as the broker takes them: far more than the subscription buffer (1,024 packs) holds.
    let bn = "urn:cpt:device:sn:SNFLOOD:";
    let now = tolomeo_proto::unix_now().floor();
    let packs: Vec<String> = (0..20_000)
        .map(|i| {
            let records: Vec<String> = (0..50)
                .map(|m| {
                    format!(
                        r#"{{"bn":"{bn}","n":"f:m{m}","v":{i}.5,"t":{}}}"#,
                        now - 20_000.0 + f64::from(i)
                    )
                })
                .collect();
            format!("[{}]", records.join(","))
        })
        .collect();
    publish(&rt, &url, "events.data", &packs);
    // It still answers, and what it took is bounded by the buffers, not by the flood.
    let state = d.get_until("/api/state", "the flood taken or dropped", WAIT, |s| {
        s["ingest"]["records"].as_u64().unwrap_or(0) > 0
    });
    std::thread::sleep(Duration::from_secs(2));
    let after = d.rss_kib();
    eprintln!("flood: VmRSS {before} KiB -> {after} KiB; {}", state["ingest"]);
    assert!(
        after < before + 48 * 1024,
        "VmRSS grew from {before} KiB to {after} KiB under the flood ({state})"
    );
    let (status, _) = d.get("/api/state");
    assert_eq!(status, 200);
}

#[test]
fn services_are_asked_only_while_a_page_looks() {
    let nats = NatsServer::start();
    let url = nats.url();
    let rt = runtime();
    let _enter = rt.enter();
    let root = tolomeo_testkit::temp_dir();
    let requests = rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        tolomeo_testkit::Recorder::start(&client, "commands.probe-svc.req").await
    });
    let _svc = TestService::start(&url, "probe-svc", "SNASK");
    let d = Dashboard::start(&url, &["--data-dir", &data_dir(root.path(), "ask")]);
    // A new service is asked once, at its first heartbeat, to learn its device and metrics...
    let first = rt.block_on(requests.wait_until("the first ask", WAIT, |m| !m.is_empty()));
    let names: Vec<String> = first[0]
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].to_string())
        .collect();
    assert_eq!(names, [r#""GetStatus""#, r#""GetMetrics""#]);
    // ...and then not again while no page asks for the state: its answers are also published
    // on commands.<service>.res, which the agent may carry to the cloud. The dashboard's round
    // is 5 s; 7 s hold one.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(requests.len(), 1, "{:?}", requests.messages());
    // A page looks: the round resumes, with GetStatus only (the metrics are known).
    let (status, _) = d.get("/api/state");
    assert_eq!(status, 200);
    let asked = rt.block_on(requests.wait_until("a round while the page looks", WAIT, |m| m.len() >= 2));
    assert_eq!(asked[1].json(), json!([{"n": "GetStatus"}]));
}

/// At fleet scale: a device's broker joined to a central one as a leaf node, the history in a
/// JetStream stream of the central one, the dashboard connected there only.
#[test]
fn a_device_behind_a_leaf_node_is_seen_and_charted_from_the_central_stream() {
    let root = tolomeo_testkit::temp_dir();
    let leaf_port = tolomeo_testkit::free_port();
    let hub_conf = root.path().join("hub.conf");
    std::fs::write(
        &hub_conf,
        format!("leafnodes {{ host: 127.0.0.1, port: {leaf_port} }}\n"),
    )
    .unwrap();
    let store = root.path().join("js").display().to_string();
    let hub = NatsServer::start_with(&["-js", "-sd", &store, "-c", &hub_conf.display().to_string()]);
    let device_conf = root.path().join("device.conf");
    std::fs::write(
        &device_conf,
        format!("leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\" }} ] }}\n"),
    )
    .unwrap();
    let device = NatsServer::start_with(&["-c", &device_conf.display().to_string()]);
    let rt = runtime();
    let _enter = rt.enter();
    // The leaf connection is up when a message published on the device reaches the hub.
    rt.block_on(async {
        let hub_client = async_nats::connect(hub.url()).await.unwrap();
        let mut probe = hub_client.subscribe("leaf.check").await.unwrap();
        hub_client.flush().await.unwrap();
        let device_client = async_nats::connect(device.url()).await.unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            device_client.publish("leaf.check", "x".into()).await.unwrap();
            device_client.flush().await.unwrap();
            use futures_util::StreamExt;
            if tokio::time::timeout(Duration::from_millis(200), probe.next())
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the leaf node did not connect to the hub"
            );
        }
    });
    let d = Dashboard::start(&hub.url(), &["--stream", "FLEET", "--create-stream"]);
    let _svc = TestService::start(&device.url(), "probe-svc", "SNLEAF");

    // Heartbeats cross the leaf connection, and so do the dashboard's requests and the answers.
    d.get_until(
        "/api/state",
        "the device's service, alive, with its status",
        WAIT,
        |s| {
            s["devices"].as_array().is_some_and(|devices| {
                devices.iter().any(|d| {
                    d["serial"] == "SNLEAF"
                        && d["services"][0]["alive"] == true
                        && d["services"][0]["status"]["detail"] == "probe ok"
                })
            })
        },
    );
    // The readings, read back from the hub's stream.
    let now = tolomeo_proto::unix_now();
    let got = d.get_until(
        &format!(
            "/api/series?device=SNLEAF&metric=probe:level&from={}&to={}",
            now - 60.0,
            now + 60.0
        ),
        "the device's readings in the hub's stream",
        WAIT,
        |s| s["raw_points"].as_u64().unwrap_or(0) >= 2,
    );
    assert!(got["values"].as_array().unwrap().iter().all(|v| v == 42.5), "{got}");
}
