//! Benchmark, not a test: heartbeats and `Ping` round trips of cpu-monitor with its spool on
//! slow flash, beside the same service without a spool, in one run (the systemd guest of
//! src/lib.rs with a disk that qemu throttles). It prints a table for BENCHMARKS.md and
//! asserts nothing about time. `cargo xtask bench flash` runs it; `cargo xtask system-test`
//! skips it (its name starts with `bench_`).
//!
//! Settings (environment): `TOLOMEO_BENCH_SECONDS` (default 60), `TOLOMEO_BENCH_IOPS`
//! (default 25: about 40 ms for each write the disk takes, which is what a cheap eMMC does
//! while something else writes to it).

use std::time::{Duration, Instant};

use tolomeo_system_tests::Vm;
use tolomeo_testkit::Recorder;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p`th percentile (0 to 100) of `xs`, nearest rank.
fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// What one service showed: heartbeat intervals and Ping round trips, in ms.
struct Seen {
    intervals: Vec<f64>,
    pings: Vec<f64>,
    ping_timeouts: usize,
    /// Requests refused at once: nobody subscribed (the service not connected).
    no_responders: usize,
}

/// Ping `client`'s cpu-monitor every 200 ms until `until`, and keep its heartbeats' intervals.
async fn measure(client: async_nats::Client, until: Instant) -> Seen {
    let beats = Recorder::start(&client, "heartbeat.cpu-monitor.service").await;
    let mut pings = Vec::new();
    let mut ping_timeouts = 0;
    let mut no_responders = 0;
    while Instant::now() < until {
        let sent = Instant::now();
        let req = client.request(
            "commands.cpu-monitor.req",
            bytes::Bytes::from_static(br#"[{"n":"Ping"}]"#),
        );
        match tokio::time::timeout(Duration::from_secs(5), req).await {
            Ok(Ok(_)) => pings.push(sent.elapsed().as_secs_f64() * 1e3),
            Ok(Err(_)) => no_responders += 1,
            Err(_) => ping_timeouts += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let at: Vec<Instant> = beats.messages().iter().map(|m| m.at).collect();
    let intervals = at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64() * 1e3).collect();
    Seen {
        intervals,
        pings,
        ping_timeouts,
        no_responders,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark in a VM: cargo xtask bench flash"]
async fn bench_heartbeat_and_ping_with_the_spool_on_slow_flash() {
    let seconds = setting("TOLOMEO_BENCH_SECONDS", 60);
    let iops = setting("TOLOMEO_BENCH_IOPS", 25) as u32;
    let mut vm = Vm::boot_systemd_with_flash(iops).await;
    // Two cpu-monitors at a 100 ms poll, each with a broker of its own (the subjects are the
    // service's name): one spools to the slow disk with an fsync every batch, one does not.
    let service = "[service]\\npoll_time_ms = 100\\nheartbeat_interval_ms = 1000\\n";
    vm.ok(&format!(
        "mkfs.ext4 -q /dev/vda && mkdir -p /mnt/flash && mount /dev/vda /mnt/flash
         printf '{service}spool_dir = \"/mnt/flash/spool\"\\nspool_fsync_batches = 1\\n' >/tmp/spooled.toml
         printf '{service}spool_dir = \"\"\\n' >/tmp/memory.toml
         systemd-run -q --unit=second-broker /usr/sbin/nats-server -a 0.0.0.0 -p 4223
         systemd-run -q --unit=spooled -E DEVICE_SERIAL_NUMBER=SN-FLASH /usr/bin/tlm-cpu-monitor --config /tmp/spooled.toml
         systemd-run -q --unit=memory -E DEVICE_SERIAL_NUMBER=SN-FLASH -E NATS_URL=nats://127.0.0.1:4223 \
             /usr/bin/tlm-cpu-monitor --config /tmp/memory.toml"
    ))
    .await;
    let connect = |port: u16| async move {
        let url = format!("nats://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(c) = async_nats::connect(&url).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no broker at {url}");
    };
    let spooled = connect(vm.host_port(4222)).await;
    let memory = connect(vm.host_port(4223)).await;
    // Let both start and fill their first windows.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let until = Instant::now() + Duration::from_secs(seconds);
    let (with_spool, without) = tokio::join!(measure(spooled, until), measure(memory, until));
    let writes = vm
        .ok("cat /sys/block/vda/stat | awk '{print $5, $8}'; ls /mnt/flash/spool | wc -l")
        .await;
    let journal = vm
        .ok("journalctl -q --no-pager -o short-monotonic -u spooled | tail -n 15")
        .await;
    println!("\nthe spooled service's journal (last lines):\n{journal}");

    println!("\nslow flash: throttled to {iops} I/O operations a second, {seconds} s, cpu-monitor at 100 ms polls");
    println!(
        "disk (writes completed, ms writing), spool files: {}",
        writes.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!(
        "| cpu-monitor | heartbeat interval p50 / p99 / max (ms) | Ping p50 / p99 / max (ms) | Ping timeouts (5 s) | Pings answered | refused (not connected) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, s) in [
        ("spool on the slow disk, fsync every batch", &with_spool),
        ("no spool", &without),
    ] {
        // p50 / p99 / max, or "none" when nothing arrived.
        let spread = |xs: &[f64], digits: usize| {
            if xs.is_empty() {
                return "none".to_string();
            }
            let max = xs.iter().copied().fold(f64::MIN, f64::max);
            format!(
                "{:.digits$} / {:.digits$} / {max:.digits$}",
                percentile(xs, 50.0),
                percentile(xs, 99.0)
            )
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            spread(&s.intervals, 0),
            spread(&s.pings, 1),
            s.ping_timeouts,
            s.pings.len(),
            s.no_responders
        );
    }
}
