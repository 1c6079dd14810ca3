//! Benchmark, not a test: heartbeats and `Ping` round trips of cpu-monitor at a 100 ms poll
//! with its spool, fsync after every batch, while every `fsync`/`fdatasync` it makes is held
//! up by strace's fault injection (what a busy eMMC does to a device). Four services run side
//! by side in one run, each with a private nats-server: no spool; spool under strace with no
//! delay (the cost of strace itself); +50 ms; +200 ms. It prints a table for BENCHMARKS.md and
//! asserts nothing about time. `cargo xtask bench fsync` builds the release cpu-monitor and
//! runs it; it needs no VM, only `strace`.
//!
//! Settings (environment): `TOLOMEO_BENCH_SECONDS` (default 60), `TOLOMEO_BENCH_BINARY` (default
//! `target/release/tlm-cpu-monitor`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tolomeo_system_tests::bench::{measure, print_table};
use tolomeo_system_tests::workspace;
use tolomeo_testkit::{NatsServer, ServiceProcess, temp_dir, temp_file};

/// One cpu-monitor, maybe under strace; the strace process is the child when `delay_ms` is set.
struct Run {
    label: String,
    nats: NatsServer,
    process: ServiceProcess,
    traced: bool,
    _spool: tempfile::TempDir,
}

fn start(binary: &Path, spool: bool, delay_ms: Option<u64>) -> Run {
    let nats = NatsServer::start();
    let dir = temp_dir();
    let spool_dir = if spool {
        dir.path().join("spool").display().to_string()
    } else {
        String::new()
    };
    let config = temp_file(
        ".toml",
        &format!(
            "[service]\npoll_time_ms = 100\nheartbeat_interval_ms = 1000\nspool_dir = \"{spool_dir}\"\nspool_fsync_batches = 1\n"
        ),
    );
    let config_path = config.to_string_lossy().into_owned();
    let url = nats.url();
    let env = [("DEVICE_SERIAL_NUMBER", "SN-FSYNC"), ("NATS_URL", url.as_str())];
    let (mut process, label) = match delay_ms {
        None => (
            ServiceProcess::start_env(binary, &["--config", &config_path], &env),
            if spool { "spool, fsync every batch" } else { "no spool" }.to_string(),
        ),
        Some(ms) => {
            let inject = format!("inject=fsync,fdatasync:delay_enter={}", ms * 1000);
            let bin = binary.to_string_lossy();
            let mut args = vec![
                "-f",
                "-qq",
                "--seccomp-bpf",
                "-o",
                "/dev/null",
                "-e",
                "trace=fsync,fdatasync",
            ];
            if ms > 0 {
                args.extend(["-e", &inject]);
            }
            args.extend([bin.as_ref(), "--config", &config_path]);
            let p = ServiceProcess::start_env(Path::new("strace"), &args, &env);
            let label = if ms == 0 {
                "spool, fsync every batch, under strace".to_string()
            } else {
                format!("spool, fsync every batch, every fsync +{ms} ms")
            };
            (p, label)
        }
    };
    process.hold(config);
    Run {
        label,
        nats,
        process,
        traced: delay_ms.is_some(),
        _spool: dir,
    }
}

/// The service itself: the process, or strace's child.
fn service_pid(run: &Run) -> Option<u32> {
    if !run.traced {
        return Some(run.process.pid());
    }
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", run.process.pid())).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo xtask bench fsync"]
async fn bench_heartbeat_and_ping_with_fsync_delayed() {
    let seconds: u64 = std::env::var("TOLOMEO_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let binary = std::env::var_os("TOLOMEO_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/release/tlm-cpu-monitor"));
    assert!(
        binary.exists(),
        "{} is not built: run `cargo xtask bench fsync`",
        binary.display()
    );
    let mut runs = vec![
        start(&binary, false, None),
        start(&binary, true, Some(0)),
        start(&binary, true, Some(50)),
        start(&binary, true, Some(200)),
    ];
    let mut clients = Vec::new();
    for r in &runs {
        clients.push(r.nats.client().await);
    }
    // Let each start and fill its first windows.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let until = Instant::now() + Duration::from_secs(seconds);
    let seen = futures_util::future::join_all(clients.into_iter().map(|c| measure(c, until))).await;
    for r in &mut runs {
        let kill = |sig: &str, pid: u32| {
            let _ = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status();
        };
        let pid = service_pid(r);
        if let Some(pid) = pid {
            kill("-TERM", pid);
        }
        // Not gone in 10 s: strace is killed, and the service with it.
        if r.process.wait(Duration::from_secs(10)).is_none()
            && let Some(pid) = pid
        {
            kill("-KILL", pid);
        }
    }
    println!(
        "\nfsync delayed by strace: cpu-monitor at 100 ms polls, heartbeat every 1000 ms, {seconds} s, a Ping every 200 ms"
    );
    let rows: Vec<(&str, _)> = runs.iter().zip(&seen).map(|(r, s)| (r.label.as_str(), s)).collect();
    print_table(&rows);
    for r in &runs {
        let log = r.process.log();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        println!(
            "\n{}: last lines of its log:\n{}",
            r.label,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
