//! The disk spool end to end: what reached the spool survives SIGKILL and a damaged file.
//! (Truncation at every byte offset of the last entry is covered by the spool's unit tests.)

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tolomeo_testkit::{NatsServer, ServiceProcess, free_port, target_binary};

const SERIAL: &str = "SNSPOOL1";

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tlm-spool-{tag}-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config with a 100 ms poll and the spool in `dir`.
fn config(dir: &Path) -> PathBuf {
    let cfg = dir.join("service.toml");
    let spool = dir.join("spool");
    std::fs::write(
        &cfg,
        format!(
            "[service]\npoll_time_ms = 100\nspool_dir = {:?}\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn start(cfg: &Path, url: &str) -> ServiceProcess {
    ServiceProcess::start(
        &target_binary("examples/temp_service"),
        &["--config", cfg.to_str().unwrap()],
        SERIAL,
        url,
    )
}

/// `temp:samples` values of records taken before `before`, as they arrived.
fn samples_before(packs: &[bytes::Bytes], before: f64) -> Vec<u64> {
    let mut out = Vec::new();
    for p in packs {
        let pack: Value = serde_json::from_slice(p).unwrap();
        for r in pack.as_array().unwrap() {
            if r["n"] == "temp:samples" && r["t"].as_f64().unwrap() < before {
                out.push(r["v"].as_u64().unwrap());
            }
        }
    }
    out
}

/// Wait until the service has delivered everything it holds.
async fn drained(nats: &NatsServer, svc: &ServiceProcess) {
    let client = nats.client().await;
    tolomeo_testkit::wait_status(
        &client,
        "temp-example",
        svc,
        "delivery of the spool",
        Duration::from_secs(20),
        |st| st["buffered_records"] == 0 && st["published_records"].as_u64().unwrap_or(0) > 10,
    )
    .await;
}

fn contiguous_from_one(mut v: Vec<u64>) -> Option<u64> {
    v.sort();
    v.dedup();
    let max = *v.last()?;
    (v == (1..=max).collect::<Vec<_>>()).then_some(max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_outage_loses_nothing_that_reached_the_spool() {
    let dir = temp_dir("kill");
    let cfg = config(&dir);
    let mut nats = NatsServer::start_jetstream();
    nats.capture("DATA", "events.data").await;
    let svc = start(&cfg, &nats.url());
    tokio::time::sleep(Duration::from_millis(800)).await;
    nats.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await; // about 12 polls, on disk only
    let mut svc = svc;
    svc.signal("KILL");
    let killed_at = now();
    svc.wait(Duration::from_secs(5));
    nats.restart();
    let mut second = start(&cfg, &nats.url());
    drained(&nats, &second).await;
    assert!(second.log().contains("spool"), "{}", second.log());
    assert_eq!(second.terminate(Duration::from_secs(10)), Some(0));
    let packs = nats.captured("DATA").await;
    let first_run = samples_before(&packs, killed_at);
    let max = contiguous_from_one(first_run.clone()).unwrap_or_else(|| panic!("gap in {first_run:?}"));
    assert!(
        max >= 15,
        "samples from before and during the outage all arrived: {max}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the service with no broker until the spool holds a few batches, then SIGKILL it.
async fn fill_spool(cfg: &Path) -> f64 {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let mut svc = start(cfg, &url);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    svc.signal("KILL");
    svc.wait(Duration::from_secs(5));
    now()
}

fn segment(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log") && std::fs::metadata(p).unwrap().len() > 0)
        .expect("a spool segment")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_or_damaged_spool_is_replayed_as_far_as_it_is_intact() {
    for damage in ["truncate", "flip"] {
        let dir = temp_dir(damage);
        let cfg = config(&dir);
        let killed_at = fill_spool(&cfg).await;
        let seg = segment(&dir);
        let mut bytes = std::fs::read(&seg).unwrap();
        let len = bytes.len();
        assert!(len > 200, "the spool holds several batches: {len} bytes");
        match damage {
            // A power cut in the middle of the last write: its last 5 bytes never made it.
            "truncate" => bytes.truncate(len - 5),
            // A flipped bit near the end of the file.
            _ => bytes[len - 20] ^= 0x40,
        }
        std::fs::write(&seg, &bytes).unwrap();

        let nats = NatsServer::start_jetstream();
        nats.capture("DATA", "events.data").await;
        let mut svc = start(&cfg, &nats.url());
        drained(&nats, &svc).await;
        let log = svc.log();
        assert!(
            log.contains("skipped 1 damaged entries"),
            "{damage}: the damage is reported:\n{log}"
        );
        assert_eq!(svc.terminate(Duration::from_secs(10)), Some(0));
        let replayed = samples_before(&nats.captured("DATA").await, killed_at);
        let max = contiguous_from_one(replayed.clone()).unwrap_or_else(|| panic!("{damage}: gap in {replayed:?}"));
        assert!(max >= 5, "{damage}: the intact batches were replayed: {max}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
