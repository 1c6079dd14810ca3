//! The publish path against a bare async-nats loop, side by side on one private nats-server:
//! `cargo bench -p tolomeo-core --bench publish`.
//!
//! Both send the same records to `events.data` and end with a round trip through the broker,
//! so both count only what the broker has received. The bare loop publishes pre-encoded packs
//! and flushes; the service path encodes from records and publishes in confirmed batches of 16
//! packs (`Link::publish_records`, what the delivery task runs). Target: at least half of the
//! bare loop's rate.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tolomeo_core::config::NatsConfig;
use tolomeo_core::senml::{OutRecord, PackLimits, Value, encode_packs};
use tolomeo_core::transport::Link;
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

    for round in 0..3 {
        // Bare async-nats: publish every pre-encoded pack, flush, one round trip.
        let t0 = Instant::now();
        for p in &packs {
            bare.publish("events.data", p.clone()).await.expect("publish");
        }
        bare.flush().await.expect("flush");
        round_trip(&bare).await;
        let bare_rate = RECORDS as f64 / t0.elapsed().as_secs_f64();

        // The service's path: encode + publish in confirmed batches of 16 packs.
        let t0 = Instant::now();
        for batch in records.chunks(16 * limits.max_records) {
            link.publish_records("events.data", BN, false, batch, limits)
                .await
                .expect("publish_records");
        }
        let ours = RECORDS as f64 / t0.elapsed().as_secs_f64();
        println!(
            "round {round}: bare async-nats {:.2} M records/s ({:.0} MB/s); tolomeo publish path {:.2} M records/s: {:.0} % of bare",
            bare_rate / 1e6,
            bare_rate * total_bytes as f64 / RECORDS as f64 / 1e6,
            ours / 1e6,
            ours / bare_rate * 100.0
        );
    }
}

async fn round_trip(client: &async_nats::Client) {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
    client.publish(inbox, Bytes::from_static(b"x")).await.expect("publish");
    let _ = tokio::time::timeout(Duration::from_secs(10), sub.next()).await;
}
