//! SenML encoding rate on one core: `cargo bench -p tolomeo-core --bench encode`.
//! Target (issue: tolomeo-core): at least 2 million records per second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tolomeo_proto::senml::{OutRecord, PackLimits, Value, encode_packs};

fn main() {
    // Typical records: the cpu-monitor set, names of ~10 characters, a unit, a number, a time.
    let names = [
        "cpu:total",
        "cpu:core0",
        "mem:used",
        "mem:available",
        "net:eth0:rx_bytes",
        "sys:uptime",
    ];
    let units = [Some("%"), Some("%"), Some("B"), Some("B"), Some("B"), Some("s")];
    let values: Vec<Value> = (0..10_000).map(|i| Value::Number(i as f64 * 1.37 + 0.25)).collect();
    let records: Vec<OutRecord> = (0..10_000)
        .map(|i| OutRecord {
            name: names[i % names.len()],
            unit: units[i % units.len()],
            value: &values[i],
            time: 1_700_000_000.0 + i as f64 * 0.001,
        })
        .collect();
    let limits = PackLimits {
        max_records: 1000,
        max_bytes: 512 * 1024,
    };
    for (label, compact) in [("bn on every record", false), ("compact", true)] {
        // Warm up, then run for two seconds.
        for _ in 0..20 {
            black_box(encode_packs("urn:cpt:device:sn:SN123456:", compact, &records, limits));
        }
        let (mut n, mut bytes) = (0u64, 0u64);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            let packs = encode_packs("urn:cpt:device:sn:SN123456:", compact, black_box(&records), limits);
            n += records.len() as u64;
            bytes += packs.iter().map(|p| p.bytes.len() as u64).sum::<u64>();
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "senml encode ({label}): {:.2} M records/s, {:.0} MB/s, {:.1} bytes/record",
            n as f64 / secs / 1e6,
            bytes as f64 / secs / 1e6,
            bytes as f64 / n as f64
        );
    }
}
