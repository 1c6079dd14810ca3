//! can-engine throughput (harness = false): `cargo bench -p can-engine`.
//!
//! 1. decode: data/engine.log replayed in a loop at "max" through the candump parser, the
//!    J1939 EEC1 decoder (and, second run, the DBC path) and the per-period mean aggregation:
//!    frames per second.
//! 2. publish: the plugin run by tolomeo_core::Service in-process with `aggregate = "none"`
//!    (every frame published), replaying at "max" in a loop, against a private nats-server:
//!    records per second counted by an independent subscriber.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use can_engine::config::CanConfig;
use can_engine::dbc::Dbc;
use can_engine::pipeline::Pipeline;
use can_engine::replay::ReplaySource;
use can_engine::{CanEngine, FrameSource};
use futures_util::StreamExt;
use tolomeo_core::{BuildContext, DeviceSerial, Service, ServiceName, Settings};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join(name)
}

async fn decode_rate(cfg: &CanConfig, frames: u64) -> (f64, u64) {
    let dbc = cfg
        .dbc
        .as_ref()
        .map(|p| Dbc::parse(&std::fs::read_to_string(p).unwrap()).unwrap());
    let mut p = Pipeline::new(cfg, dbc.as_ref(), Duration::from_secs(1)).unwrap();
    let mut src = ReplaySource::open(&data("engine.log"), None, true).unwrap();
    let (mut batch, mut out) = (Vec::with_capacity(512), Vec::new());
    let (mut n, mut points) = (0u64, 0u64);
    let t0 = Instant::now();
    while n < frames {
        src.recv_batch(&mut batch, 512).await.unwrap();
        let now = Instant::now();
        for f in batch.drain(..) {
            p.handle(&f, now, &mut out);
            n += 1;
        }
        points += out.len() as u64;
        out.clear();
    }
    (n as f64 / t0.elapsed().as_secs_f64(), points)
}

async fn publish_rate(seconds: u64) -> f64 {
    let nats = tolomeo_testkit::NatsServer::start();
    let client = nats.client().await;
    let mut sub = client.subscribe("events.data").await.unwrap();
    client.flush().await.unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None::<Instant>));
    {
        let (count, first) = (count.clone(), first.clone());
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                first.lock().unwrap().get_or_insert_with(Instant::now);
                let n = m.payload.windows(5).filter(|w| w == b"\"n\":\"").count();
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    let cfg: CanConfig = toml::from_str(&format!(
        "replay = {:?}\nreplay_speed = \"max\"\nreplay_loop = true\naggregate = \"none\"",
        data("engine.log").display().to_string()
    ))
    .unwrap();
    let mut settings = Settings::new(
        ServiceName::new("can-engine").unwrap(),
        DeviceSerial::new("BENCH1").unwrap(),
    );
    settings.nats.url = nats.url();
    settings.service.poll_time_ms = Some(100);
    settings.service.reading_queue = 50_000;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let plugin = CanEngine::new(&cfg, &BuildContext::new(settings.poll_time())).unwrap();
    let service = tokio::spawn(Service::new(settings, plugin).run(shutdown.clone()));
    // Warm up, then measure a window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c0 = count.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let c1 = count.load(Ordering::Relaxed);
    let rate = (c1 - c0) as f64 / t0.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), service).await;
    rate
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let frames = if quick { 50_000 } else { 5_000_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = CanConfig::default();
    let (rate, points) = rt.block_on(decode_rate(&cfg, frames));
    println!("decode+aggregate (J1939 EEC1, mean): {rate:>12.0} frames/s ({frames} frames, {points} points)");
    let cfg: CanConfig = toml::from_str(&format!(
        "dbc = {:?}\nsignals = [\"EngineSpeed\", \"CoolantTemp\", \"WheelBasedVehicleSpeed\"]\nstats = [\"min\", \"max\"]",
        data("engine.dbc").display().to_string()
    ))
    .unwrap();
    let (rate, points) = rt.block_on(decode_rate(&cfg, frames));
    println!("decode+aggregate (J1939 + DBC, mean/min/max): {rate:>12.0} frames/s ({frames} frames, {points} points)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rate = rt.block_on(publish_rate(if quick { 1 } else { 5 }));
    println!("aggregate=\"none\" delivered to nats-server: {rate:>12.0} records/s (counted by a subscriber)");
}
