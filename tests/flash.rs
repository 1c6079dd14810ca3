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
use tolomeo_system_tests::bench::{measure, print_table};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
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
    print_table(&[
        ("spool on the slow disk, fsync every batch", &with_spool),
        ("no spool", &without),
    ]);
}
