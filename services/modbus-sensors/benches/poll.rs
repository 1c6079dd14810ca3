//! Polling throughput: one TCP device with 200 holding registers spread over addresses
//! 0..400, read over loopback from an in-process tokio-modbus server through the plugin's
//! polling path (`bus::read_all`: the planned reads, decoding, scaling, the reading).
//!
//! Run: `cargo bench -p modbus-sensors --bench poll` (release build). Prints the plan, polls
//! per second and register values read per second.

#[path = "../tests/support/memserver.rs"]
mod memserver;

use std::time::{Duration, Instant};

use memserver::{MemServer, Store};
use modbus_sensors::config::ModbusConfig;
use modbus_sensors::{bus, link, model};
use tolomeo_core::Config;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let store = Store {
        holding: (0..400u16).map(|i| i.wrapping_mul(7)).collect(),
        ..Store::default()
    };
    let server = MemServer::start(store).await;
    let mut text = format!(
        "[[modbus.devices]]\nname = \"bench\"\nhost = \"127.0.0.1\"\nport = {}\n",
        server.addr.port()
    );
    for i in 0..200u16 {
        text += &format!(
            "[[modbus.devices.registers]]\nname = \"r{i}\"\naddress = {}\nscale = 0.5\n",
            i * 2
        );
    }
    let cfg = Config::<ModbusConfig>::from_toml(&text, "bench").expect("bench config");
    let devices = model::resolve(&cfg.plugin).expect("bench devices");
    let device = &devices[0];
    println!(
        "plan: {} registers in {} requests per poll",
        device.registers.len(),
        device.plan.len()
    );
    for r in &device.plan {
        println!("  {r}");
    }
    let mut ctx = link::open(&device.transport, device.unit_id, device.timeout)
        .await
        .unwrap();
    // Warm up, and check the values once.
    let first = bus::read_all(device, &mut ctx).await.unwrap();
    assert_eq!(first.reading.values().len(), 200);
    let expected = f64::from(2u16.wrapping_mul(7)) * 0.5; // r1 at address 2
    assert!(matches!(first.reading.values()[1].1, tolomeo_core::Value::Number(x) if x == expected));

    let duration = Duration::from_secs(5);
    let start = Instant::now();
    let (mut polls, mut values) = (0u64, 0u64);
    let mut worst = Duration::ZERO;
    while start.elapsed() < duration {
        let t = Instant::now();
        let out = bus::read_all(device, &mut ctx).await.unwrap();
        worst = worst.max(t.elapsed());
        polls += 1;
        values += out.reading.values().len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let requests = server.store.lock().unwrap().requests;
    println!(
        "{polls} polls in {secs:.2} s: {:.0} polls/s, {:.0} register values/s, {:.1} µs per poll (worst {} µs), {} requests served",
        polls as f64 / secs,
        values as f64 / secs,
        secs * 1e6 / polls as f64,
        worst.as_micros(),
        requests
    );
}
