//! The dashboard as a whole (harness = false): `cargo bench -p tlm-dashboard --bench ingest`,
//! or `cargo xtask bench dashboard`.
//!
//! The release binary against a private nats-server, fed by a publisher in this process:
//!
//! 1. ingest: 24 hours of 1 s data for 50 metrics of one device (86,400 packs of 50 records,
//!    4.32 million points), at most 500 packs ahead of what the dashboard has counted
//!    (`GET /api/state`): the rate it sustains without dropping anything;
//! 2. a flood: 20,000 packs at once, far faster than it can take them: what it took, what the
//!    broker client dropped (slow-consumer events), and its memory after;
//! 3. memory: the process's VmRSS, PSS and anonymous memory (smaps_rollup);
//! 4. what opening the page costs: all 50 series over the 24 hours at 1,000 pixel columns,
//!    one after the other and 6 at a time (a browser's connections per host), as the page
//!    asks for them.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Dashboard;
use tolomeo_testkit::NatsServer;

const METRICS: usize = 50;
const SECONDS: usize = 86_400;
const START: f64 = 1_700_000_000.0;

fn pack(second: usize) -> String {
    let t = START + second as f64;
    let mut out = String::from("[");
    for m in 0..METRICS {
        if m > 0 {
            out.push(',');
        }
        // A slow sine per metric: every value differs, as real readings do.
        let v = ((second as f64 / 600.0) + m as f64).sin() * 100.0;
        out.push_str(&format!(
            r#"{{"bn":"urn:cpt:device:sn:SNBENCH:","n":"bench:m{m:02}","u":"Cel","v":{v:.3},"t":{t}}}"#
        ));
    }
    out.push(']');
    out
}

fn memory(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "VmRSS {}, Pss {}, Anonymous {}",
        field(&status, "VmRSS:"),
        field(&rollup, "Pss:"),
        field(&rollup, "Anonymous:")
    )
}

fn main() {
    let nats = NatsServer::start();
    let url = nats.url();
    let root = tolomeo_testkit::temp_dir();
    let dir = root.path().join("store").display().to_string();
    let d = Dashboard::start(
        &url,
        &["--data-dir", &dir, "--retention", "3650d", "--max-size", "4GiB"],
    );
    println!("tlm-dashboard at start: {}", memory(d.child.id()));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let total = (SECONDS * METRICS) as u64;
    let counted = |d: &Dashboard| {
        let (_, state) = d.get("/api/state");
        (state["ingest"]["records"].as_u64().unwrap_or(0), state)
    };
    // Closed loop: at most WINDOW packs in flight (fewer than the subscription buffer holds),
    // so the rate is what the dashboard sustains, not what the broker can be sent.
    const WINDOW: usize = 250;
    let started = Instant::now();
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        for chunk_start in (0..SECONDS).step_by(WINDOW) {
            for second in chunk_start..(chunk_start + WINDOW).min(SECONDS) {
                client.publish("events.data", pack(second).into()).await.unwrap();
            }
            client.flush().await.unwrap();
            let behind = (chunk_start.saturating_sub(WINDOW) * METRICS) as u64;
            while counted(&d).0 < behind {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let (records, state) = counted(&d);
        if records >= total || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let ingested = started.elapsed();
    let records = state["ingest"]["records"].as_u64().unwrap_or(0);
    println!(
        "ingest: {records} of {total} records in {:.1} s: {:.0} records/s sustained; slow-consumer events {}",
        ingested.as_secs_f64(),
        records as f64 / ingested.as_secs_f64(),
        state["ingest"]["slow_consumer_events"]
    );

    // A flood: 20,000 packs (1 million records) at once, faster than anything can ingest.
    let before = counted(&d).0;
    let t0 = Instant::now();
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        for second in 0..20_000 {
            client
                .publish("events.data", pack(SECONDS + second).into())
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    });
    std::thread::sleep(Duration::from_secs(3));
    let (after, state) = counted(&d);
    println!(
        "flood: 1,000,000 records sent in {:.1} s, {} taken, slow-consumer events {}; memory then: {}",
        t0.elapsed().as_secs_f64(),
        after - before,
        state["ingest"]["slow_consumer_events"],
        memory(d.child.id())
    );
    // The writer's last transactions.
    std::thread::sleep(Duration::from_secs(2));
    println!("tlm-dashboard after the ingest: {}", memory(d.child.id()));
    let size: u64 = std::fs::read_dir(&dir)
        .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    println!(
        "store on disk: {:.1} MiB ({:.1} bytes per point)",
        size as f64 / 1048576.0,
        size as f64 / records.max(1) as f64
    );

    let path = |m: usize| {
        format!(
            "/api/series?device=SNBENCH&metric=bench:m{m:02}&from={START}&to={}&width=1000",
            START + SECONDS as f64
        )
    };
    for round in ["first", "second"] {
        let t0 = Instant::now();
        let mut each = Vec::new();
        let mut points = 0;
        for m in 0..METRICS {
            let t = Instant::now();
            let (status, body) = d.get(&path(m));
            assert_eq!(status, 200, "{body}");
            points += body["t"].as_array().map_or(0, Vec::len);
            each.push(t.elapsed());
        }
        each.sort();
        println!(
            "open ({round}), one at a time: 50 series in {:.0} ms (median {:.1} ms, max {:.1} ms per series), {points} points sent",
            t0.elapsed().as_secs_f64() * 1e3,
            each[each.len() / 2].as_secs_f64() * 1e3,
            each[each.len() - 1].as_secs_f64() * 1e3,
        );
    }
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for lane in 0..6 {
            let d = &d;
            let path = &path;
            s.spawn(move || {
                for m in (lane..METRICS).step_by(6) {
                    let (status, _) = d.get(&path(m));
                    assert_eq!(status, 200);
                }
            });
        }
    });
    println!(
        "open, 6 at a time: 50 series in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    println!("tlm-dashboard after the queries: {}", memory(d.child.id()));
}
