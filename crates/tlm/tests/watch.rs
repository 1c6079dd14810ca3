//! `tlm watch` over a private nats-server: hand-made packs (PROTOCOL.md section 1's example)
//! and a real service run in-process. Expected values are the ones the test publishes.

mod common;

use std::time::Duration;

use common::{LOADS, TestService, tlm};
use serde_json::json;
use tolomeo_testkit::NatsServer;

/// PROTOCOL.md section 1, verbatim.
const EXAMPLE: &str = r#"[
  {"bn":"urn:cpt:device:sn:SN123456:","n":"cpu:total","u":"%","v":12.5,"t":1700000000.25},
  {"bn":"urn:cpt:device:sn:SN123456:","n":"mem:used","u":"B","v":523190272,"t":1700000000.25}
]"#;

/// Publishes `pack` on events.data every 100 ms until `run` finishes, so that it is seen
/// whenever tlm has subscribed.
async fn publish_while<F: std::future::Future>(client: &async_nats::Client, pack: &'static str, run: F) -> F::Output {
    let c = client.clone();
    let feeder = tokio::spawn(async move {
        loop {
            c.publish("events.data", pack.into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = run.await;
    feeder.abort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_and_plain_lines_of_hand_made_packs() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;

    let run = publish_while(
        &client,
        EXAMPLE,
        tlm(&["-s", &url, "watch", "--json", "--count", "2"], b""),
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.json_lines(),
        [
            json!({"name":"urn:cpt:device:sn:SN123456:cpu:total","unit":"%","value":12.5,"time":1700000000.25}),
            json!({"name":"urn:cpt:device:sn:SN123456:mem:used","unit":"B","value":523190272,"time":1700000000.25}),
        ]
    );

    // The glob keeps cpu:* only; off a terminal, one plain line per record.
    // 1700000000.25 is 2023-11-14 22:13:20.250 UTC (`date -u -d @1700000000`).
    let args = ["-s", &url, "watch", "--metric", "cpu:*", "--count", "2"];
    let run = publish_while(&client, EXAMPLE, tlm(&args, b"")).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.lines(), ["2023-11-14T22:13:20.250Z SN123456 cpu:total 12.5 %"; 2]);

    // An invalid pack is skipped with a message naming the record and the field; watching goes on.
    const BAD: &str = r#"[{"bn":"urn:cpt:device:sn:SN1:","n":"bad name","v":1,"t":1700000000}]"#;
    let c = client.clone();
    let bad = tokio::spawn(async move {
        for _ in 0..5 {
            c.publish("events.data", BAD.into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let run = publish_while(
        &client,
        EXAMPLE,
        tlm(&["-s", &url, "watch", "--duration", "1s", "--json"], b""),
    )
    .await;
    bad.await.unwrap();
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr
            .contains("skipped an invalid pack: record 0, field `n`: invalid name"),
        "{run:?}"
    );
    assert!(
        run.json_lines()
            .iter()
            .all(|r| r["name"] != "urn:cpt:device:sn:SN1:bad name")
    );
    assert!(run.json_lines().len() >= 2, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_service_filtered_by_service_name() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;
    let svc = TestService::start(&url, "tst-svc", "SNWATCH").await;

    // Another device publishes cpu:total at the same time; --service keeps the service's own
    // metrics (tst:load, tst:state, from its GetMetrics answer).
    let args = [
        "-s",
        &url,
        "watch",
        "--service",
        "tst-svc",
        "--json",
        "--duration",
        "1500ms",
    ];
    let run = publish_while(&client, EXAMPLE, tlm(&args, b"")).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let records = run.json_lines();
    let loads: Vec<f64> = records
        .iter()
        .filter(|r| r["name"] == "urn:cpt:device:sn:SNWATCH:tst:load")
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert!(loads.len() >= 3, "{run:?}");
    // Consecutive values follow the plugin's cycle.
    let start = LOADS.iter().position(|x| *x == loads[0]).expect("a published value");
    for (i, v) in loads.iter().enumerate() {
        assert_eq!(*v, LOADS[(start + i) % LOADS.len()], "{loads:?}");
    }
    for r in &records {
        let name = r["name"].as_str().unwrap();
        assert!(name.starts_with("urn:cpt:device:sn:SNWATCH:tst:"), "{name}");
        if name.ends_with(":tst:load") {
            assert_eq!(r["unit"], "%");
        } else {
            assert_eq!((&r["value"], &r["unit"]), (&json!("up"), &serde_json::Value::Null));
        }
    }

    // --service with a metric glob: both must match.
    let args = [
        "-s",
        &url,
        "watch",
        "--service",
        "tst-svc",
        "--metric",
        "*:state",
        "--json",
        "--count",
        "2",
    ];
    let run = tlm(&args, b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    for r in run.json_lines() {
        assert_eq!(r["name"], "urn:cpt:device:sn:SNWATCH:tst:state");
    }

    // A service that is not running: exit 3.
    let run = tlm(&["-s", &url, "watch", "--service", "nobody", "--count", "1"], b"").await;
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("no answer from service nobody"), "{run:?}");
    svc.stop().await;
}

/// On a terminal (a pseudo-terminal from util-linux `script`), the table is redrawn in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_redrawn_in_place_on_a_terminal() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;
    // engine:rpm rises 100, 200, 300...: its sparkline goes from the lowest bar to the highest.
    let feeder = tokio::spawn(async move {
        for i in 1..=1000u32 {
            let pack = format!(
                r#"[{{"bn":"urn:cpt:device:sn:SNTTY:","n":"engine:rpm","u":"rpm","v":{},"t":{}.5}}]"#,
                i * 100,
                1_700_000_000 + i
            );
            client.publish("events.data", pack.into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let inner = format!(
        "{} -s {url} watch --duration 1500ms --refresh 200ms",
        env!("CARGO_BIN_EXE_tlm")
    );
    let out = tokio::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run util-linux `script`");
    feeder.abort();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    // Each frame: hide the cursor, go home, draw, clear the rest; the cursor is shown at exit.
    assert!(screen.matches("\x1b[?25l\x1b[H").count() >= 3, "{screen:?}");
    assert!(screen.ends_with("\x1b[J\x1b[?25h"), "{screen:?}");
    let frame = screen.rsplit("\x1b[H").next().unwrap();
    let lines: Vec<&str> = frame.split("\x1b[K\r\n").collect();
    assert!(
        lines[0].starts_with(&format!("tlm watch  {url}  1 metrics  ")),
        "{frame:?}"
    );
    let header: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        header,
        ["DEVICE", "METRIC", "VALUE", "UNIT", "AGE", "TREND"],
        "{frame:?}"
    );
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(&row[..2], ["SNTTY", "engine:rpm"], "{frame:?}");
    assert_eq!(row[3], "rpm");
    let value: u32 = row[2].parse().unwrap();
    assert_eq!(value % 100, 0, "{frame:?}");
    let trend: Vec<char> = row[5].chars().collect();
    assert!(trend.len() >= 3, "{frame:?}");
    assert_eq!((trend[0], trend[trend.len() - 1]), ('▁', '█'), "{frame:?}");
}

/// Throughput of `tlm watch --json`: 200 packs of 1000 records published as fast as the
/// broker takes them. A measurement, not a test: run with
/// `cargo test -p tlm --test watch -- --ignored --nocapture` (add `--release` for real numbers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn watch_json_throughput() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;
    let (packs, per_pack) = (200usize, 1000usize);
    let pack: String = {
        let records: Vec<String> = (0..per_pack)
            .map(|i| {
                format!(
                    r#"{{"bn":"urn:cpt:device:sn:SN1:","n":"can:signal{:03}","u":"rpm","v":{}.25,"t":{}.125}}"#,
                    i % 64,
                    i,
                    1_700_000_000 + i
                )
            })
            .collect();
        format!("[{}]", records.join(","))
    };
    let count = (packs * per_pack).to_string();
    let child = tokio::spawn({
        let url = url.clone();
        async move { tlm(&["-s", &url, "watch", "--json", "--count", &count], b"").await }
    });
    // tlm connects and subscribes within a few ms; give it ample time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = std::time::Instant::now();
    for _ in 0..packs {
        client.publish("events.data", pack.clone().into()).await.unwrap();
    }
    client.flush().await.unwrap();
    let run = child.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), packs * per_pack);
    println!(
        "tlm watch --json: {} records in {secs:.2} s = {:.0} records/s ({} bytes of packs each)",
        packs * per_pack,
        (packs * per_pack) as f64 / secs,
        pack.len()
    );
}
