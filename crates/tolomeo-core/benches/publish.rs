//! The publish path against a bare async-nats loop, side by side on one private nats-server:
//! `cargo bench -p tolomeo-core --features bench-internals --bench publish`.
//!
//! All send the same records to `events.data` and end with a round trip through the broker,
//! so all count only what the broker has received. The bare loop publishes pre-encoded packs
//! and flushes. The transport (`Link::publish_confirmed`) publishes the same packs in confirmed
//! batches of 16. The whole path (`Link::publish_records`, what the delivery task runs) encodes
//! from records first. Target: at least half of the bare loop's rate. Five rounds, medians.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tolomeo_core::config::NatsConfig;
use tolomeo_core::transport::Link;
use tolomeo_proto::senml::{OutRecord, PackLimits, Value, encode_packs};
use tolomeo_testkit::NatsServer;

const BN: &str = "urn:cpt:device:sn:SN123456:";
const RECORDS: usize = 400_000;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let nats = NatsServer::start();
    let values: Vec<Value> = (0..RECORDS).map(|i| Value::Number(i as f64 * 0.5)).collect();
    let records: Vec<OutRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| OutRecord {
            name: "engine:rpm",
            unit: Some("rpm"),
            value: v,
            time: 1.7e9 + i as f64 * 0.01,
        })
        .collect();
    let limits = PackLimits {
        max_records: 1000,
        max_bytes: 512 * 1024,
    };
    let packs: Vec<Bytes> = encode_packs(BN, false, &records, limits)
        .into_iter()
        .map(|p| Bytes::from(p.bytes))
        .collect();
    let total_bytes: usize = packs.iter().map(|p| p.len()).sum();

    let cfg = NatsConfig {
        url: nats.url(),
        ..Default::default()
    };
    let link = Link::connect(&cfg, "bench").await.expect("link");
    let bare = nats.client().await;
    let mut state = link.state();
    while !state.borrow_and_update().connected {
        let _ = tokio::time::timeout(Duration::from_secs(5), state.changed()).await;
    }

    let (mut bare_rates, mut transport_rates, mut full_rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        // Bare async-nats: publish every pre-encoded pack, flush, one round trip.
        let t0 = Instant::now();
        for p in &packs {
            bare.publish("events.data", p.clone()).await.expect("publish");
        }
        bare.flush().await.expect("flush");
        round_trip(&bare).await;
        bare_rates.push(RECORDS as f64 / t0.elapsed().as_secs_f64());

        // The transport alone: the same pre-encoded packs, confirmed in batches of 16.
        let t0 = Instant::now();
        for batch in packs.chunks(16) {
            link.publish_confirmed("events.data", batch)
                .await
                .expect("publish_confirmed");
        }
        transport_rates.push(RECORDS as f64 / t0.elapsed().as_secs_f64());

        // The service's whole path: encode from records + publish, confirmed per 16 packs.
        let t0 = Instant::now();
        for batch in records.chunks(16 * limits.max_records) {
            link.publish_records("events.data", BN, false, batch, limits)
                .await
                .expect("publish_records");
        }
        full_rates.push(RECORDS as f64 / t0.elapsed().as_secs_f64());
    }
    let bare_m = median(&mut bare_rates);
    let transport_m = median(&mut transport_rates);
    let full_m = median(&mut full_rates);
    println!(
        "median of 5 rounds, {RECORDS} records ({:.0} MB) each: bare async-nats {:.2} M records/s; \
         tolomeo transport (confirmed publish of the same bytes) {:.2} M records/s = {:.0} % of bare; \
         encode + confirmed publish {:.2} M records/s = {:.0} % of bare",
        total_bytes as f64 / 1e6,
        bare_m / 1e6,
        transport_m / 1e6,
        transport_m / bare_m * 100.0,
        full_m / 1e6,
        full_m / bare_m * 100.0
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn round_trip(client: &async_nats::Client) {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    client.publish(inbox, Bytes::from_static(b"x")).await.expect("publish");
    let _ = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
}
