//! `tlm services` over a private nats-server with a real service run in-process (heartbeat
//! every 200 ms). Its heartbeat is stopped by making the plugin unhealthy (PROTOCOL.md
//! section 3: no heartbeat while the source is unhealthy).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{TestService, tlm};
use tolomeo_testkit::NatsServer;

/// PROTOCOL.md section 2, verbatim.
const ANNOUNCEMENT: &str = r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"metrics","vs":"[{\"id\":\"cpu:total\",\"name\":\"CPU total\",\"unit\":\"%\",\"type\":0,\"dataType\":1}]"}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_lists_alive_services_with_their_metrics() {
    let nats = NatsServer::start();
    let url = nats.url();
    let client = nats.client().await;
    let svc = TestService::start(&url, "tst-svc", "SNSVC1").await;

    let c = client.clone();
    let announce = tokio::spawn(async move {
        loop {
            c.publish("events.params", ANNOUNCEMENT.into()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let run = tlm(&["-s", &url, "services", "--wait", "1s"], b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.lines();
    assert!(lines[0].starts_with("SERVICE  STATUS   LAST SEEN  METRICS"), "{run:?}");
    assert!(
        lines[1].starts_with("tst-svc  alive  ") && lines[1].ends_with("ago  tst:load (%), tst:state"),
        "{run:?}"
    );
    assert!(
        lines.contains(&"announced on events.params:") && lines.contains(&"  SN123456: cpu:total"),
        "{run:?}"
    );
    announce.abort();

    let run = tlm(&["-s", &url, "services", "--wait", "1s", "--json"], b"").await;
    let services = run.json_lines();
    assert_eq!(services.len(), 1, "{run:?}");
    let s = &services[0];
    assert_eq!((&s["service"], &s["alive"]), (&"tst-svc".into(), &true.into()));
    assert!(s["age_s"].as_f64().unwrap() < 1.0, "{s}");
    let ids: Vec<&str> = s["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tst:load", "tst:state"]);

    // Its heartbeat stops: after --expire without one, it shows offline with its last-seen age.
    let healthy = svc.healthy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        healthy.store(false, Ordering::Relaxed);
    });
    let run = tlm(
        &[
            "-s",
            &url,
            "services",
            "--wait",
            "2s",
            "--expire",
            "1s",
            "--json",
            "--no-metrics",
        ],
        b"",
    )
    .await;
    let s = &run.json_lines()[0];
    assert_eq!(s["alive"], false, "{run:?}");
    assert!(s["age_s"].as_f64().unwrap() > 1.0, "{s}");
    svc.stop().await;

    // Nothing alive: an empty list and a message saying why.
    let run = tlm(&["-s", &url, "services", "--wait", "300ms"], b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stderr.contains("no heartbeat on heartbeat.*.service within 300 ms"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_drops_a_service_whose_heartbeat_stopped() {
    let nats = NatsServer::start();
    let url = nats.url();
    let svc = TestService::start(&url, "tst-svc", "SNSVC2").await;
    let healthy = svc.healthy.clone();
    // Heartbeats stop at 1 s and resume at 3 s.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        healthy.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        healthy.store(true, Ordering::Relaxed);
    });
    let args = ["-s", &url, "services", "--watch", "--expire", "1s", "--duration", "4s"];
    let run = tlm(&args, b"").await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let events: Vec<&str> = run
        .lines()
        .iter()
        .map(|l| l.split_once(' ').map_or(*l, |(_, rest)| rest))
        .collect();
    assert_eq!(
        events,
        ["up tst-svc", "down tst-svc (no heartbeat for 1 s)", "up tst-svc"],
        "{run:?}"
    );

    let args = ["-s", &url, "services", "--watch", "--json", "--duration", "500ms"];
    let run = tlm(&args, b"").await;
    let events = run.json_lines();
    assert_eq!(
        (&events[0]["event"], &events[0]["service"]),
        (&"up".into(), &"tst-svc".into()),
        "{run:?}"
    );
    svc.stop().await;
}
