//! `cargo xtask bench`: the numbers in BENCHMARKS.md.
//!
//! - `encode`, `publish`: `cargo bench -p tolomeo-core` (SenML encoding rate; publish path
//!   against a bare async-nats loop, side by side on one private nats-server).
//! - `store`: `cargo bench -p tlm-dashboard --bench store` (the dashboard's history: ingest
//!   rate, a day of 50 metrics, queries at 1,000 columns, file size and memory).
//! - `dashboard`: `cargo bench -p tlm-dashboard --bench ingest` (the dashboard as a whole: the
//!   rate it sustains from the broker, a flood, memory, opening a day of 50 series over HTTP).
//! - `footprint`: each service built in release mode, run at a 1 s poll against a private
//!   nats-server for `--duration` seconds; resident memory (VmRSS, PSS and USS from
//!   smaps_rollup, sampled every second) and
//!   CPU time (every thread's schedstat, in nanoseconds) over the measured window.
//! - `flash` (a VM with a throttled disk, tests/flash.rs) and `fsync` (strace delays every
//!   fsync, tests/fsync.rs): heartbeat intervals and `Ping` round trips with the spool on a
//!   slow disk.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, sh};

/// A service to measure: how to build it, how to run it, and what it needs running beside it.
struct Target {
    label: &'static str,
    build: &'static [&'static str],
    binary: &'static str,
    args: &'static [&'static str],
    beside: &'static [&'static str],
    /// A TCP port on 127.0.0.1 that accepts connections once `beside` is ready.
    ready_port: Option<u16>,
}

const TARGETS: &[Target] = &[
    Target {
        label: "temp_service example (tolomeo-core), 1 s poll",
        // Built as a service crate of its own would build it: see `example_as_service`.
        build: &[],
        binary: "target/release/temp_service",
        args: &["--poll-time-ms", "1000"],
        beside: &[],
        ready_port: None,
    },
    Target {
        label: "tlm-cpu-monitor, default groups, 1 s poll",
        build: &["build", "--release", "-p", "cpu-monitor"],
        binary: "target/release/tlm-cpu-monitor",
        args: &[
            "--config",
            "services/cpu-monitor/bench/footprint.toml",
            "--poll-time-ms",
            "1000",
        ],
        beside: &[],
        ready_port: None,
    },
    Target {
        label: "tlm-can-engine, 100 Hz bus (replay), 1 s poll",
        build: &["build", "--release", "-p", "can-engine"],
        binary: "target/release/tlm-can-engine",
        args: &["--config", "services/can-engine/bench/footprint.toml"],
        beside: &[],
        ready_port: None,
    },
    Target {
        label: "tlm-modbus-sensors, 10 TCP devices, 1 s poll",
        build: &["build", "--release", "-p", "modbus-sensors"],
        binary: "target/release/tlm-modbus-sensors",
        args: &["--config", "services/modbus-sensors/bench/footprint.toml"],
        beside: &[
            "target/py-venv/bin/python3", // setup::VENV
            "services/modbus-sensors/tests/pymodbus_server.py",
            "--tcp",
            "15020",
            "--control",
            "15021",
        ],
        ready_port: Some(15020),
    },
];

pub(crate) fn run(which: &str, duration: u64) -> Result<()> {
    match which {
        "all" => {
            sh(cargo().args(["bench", "-p", "tolomeo-core"]))?;
            store()?;
            footprint(duration)
        }
        "encode" => sh(cargo().args(["bench", "-p", "tolomeo-core", "--bench", "encode"])),
        "publish" => sh(cargo().args([
            "bench",
            "-p",
            "tolomeo-core",
            "--features",
            "bench-internals",
            "--bench",
            "publish",
        ])),
        "store" => store(),
        "dashboard" => sh(cargo().args(["bench", "-p", "tlm-dashboard", "--bench", "ingest"])),
        "footprint" => footprint(duration),
        // Not in `all`: it boots a VM (tests/flash.rs).
        "flash" => crate::system::bench_flash(duration),
        "fsync" => fsync(duration),
        other => bail!(
            "unknown benchmark `{other}`; expected all, encode, publish, store, dashboard, footprint, flash or fsync"
        ),
    }
}

/// The dashboard's history store (crates/tlm-dashboard/benches/store.rs).
fn store() -> Result<()> {
    sh(cargo().args(["bench", "-p", "tlm-dashboard", "--bench", "store"]))
}

/// Heartbeats and Ping round trips while strace delays every fsync (tests/fsync.rs).
fn fsync(duration: u64) -> Result<()> {
    if !crate::have("strace") {
        bail!("the fsync benchmark needs strace; install it with\n  apt-get install strace");
    }
    sh(cargo().args(["build", "--release", "-p", "cpu-monitor"]))?;
    crate::system::bench("fsync", duration, None)
}

/// A nats-server on a free port of 127.0.0.1, and its URL.
fn private_nats() -> Result<(Child, String)> {
    let port = crate::demo::free_port()?;
    let nats = Command::new(crate::demo::nats_server()?)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run nats-server (apt-get install nats-server)")?;
    wait_for_port(port, Duration::from_secs(10))?;
    Ok((nats, format!("nats://127.0.0.1:{port}")))
}

/// What `t` needs running beside it (the Modbus peer), started and listening.
fn start_beside(t: &Target) -> Result<Option<Child>> {
    let beside = match t.beside.split_first() {
        Some((cmd, args)) => Some(
            Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| {
                    format!(
                        "cannot run {} (the Python peers are made by `cargo xtask setup`)",
                        t.beside.join(" ")
                    )
                })?,
        ),
        None => None,
    };
    if let Some(port) = t.ready_port {
        wait_for_port(port, Duration::from_secs(30))?;
    }
    Ok(beside)
}

fn footprint(duration: u64) -> Result<()> {
    let (mut nats, url) = private_nats()?;
    for t in TARGETS {
        if t.build.is_empty() {
            example_as_service()?;
        } else {
            sh(cargo().args(t.build))?;
        }
        let mut beside = start_beside(t)?;
        let size = std::fs::metadata(t.binary).map(|m| m.len()).unwrap_or(0);
        let mut child = Command::new(t.binary)
            .args(t.args)
            .env("DEVICE_SERIAL_NUMBER", "BENCH1")
            .env("NATS_URL", &url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run {}", t.binary))?;
        let m = measure(&mut child, Duration::from_secs(duration));
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
        if let Some(b) = beside.as_mut() {
            let _ = b.kill();
            let _ = b.wait();
        }
        let m = m?;
        println!(
            "{}: RSS / PSS / USS max {:.2} / {:.2} / {:.2} MiB (RSS mean {:.2}; anonymous max {:.2}, \
             file pages {:.2}); CPU {:.3} % of one core over {} s; binary {:.2} MiB",
            t.label,
            m.rss_max_kib as f64 / 1024.0,
            m.pss_max_kib as f64 / 1024.0,
            m.uss_max_kib as f64 / 1024.0,
            m.rss_mean_kib / 1024.0,
            m.anon_max_kib as f64 / 1024.0,
            m.file_max_kib as f64 / 1024.0,
            m.cpu_percent,
            duration,
            size as f64 / 1_048_576.0
        );
    }
    let _ = nats.kill();
    let _ = nats.wait();
    Ok(())
}

/// Build `crates/tolomeo-core/examples/temp_service.rs` as the binary of a crate that depends
/// on tolomeo-core alone, with the workspace's
/// release profile and lock file.
///
/// `cargo build --example` would also enable the features of tolomeo-core's dev-dependencies
/// (the test kit turns on tokio's multi-threaded runtime, which links libm: 0.3 MiB more
/// resident). A service author's own crate does not have them, and neither do the services.
fn example_as_service() -> Result<()> {
    let root = crate::project_root();
    let dir = root.join("target/footprint-example");
    std::fs::create_dir_all(&dir)?;
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    // [profile.release] and its per-package overrides, as the services get them.
    let profile: Vec<&str> = manifest
        .split("\n[")
        .filter(|s| s.starts_with("profile.release"))
        .collect();
    if profile.is_empty() {
        bail!("no [profile.release] in Cargo.toml");
    }
    let profile = profile.join("\n[");
    let core = root.join("crates/tolomeo-core");
    let toml = format!(
        "[package]\nname = \"temp-service\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [[bin]]\nname = \"temp_service\"\npath = {example:?}\n\n\
         [dependencies]\ntolomeo-core = {{ path = {core:?} }}\n\
         serde = {{ version = \"1\", features = [\"derive\"] }}\ntokio = {{ version = \"1\", features = [\"time\"] }}\n\n\
         [workspace]\n\n[{profile}",
        example = core.join("examples/temp_service.rs"),
        core = core,
    );
    std::fs::write(dir.join("Cargo.toml"), toml)?;
    // An earlier version wrote a build script here; cargo would run it.
    let _ = std::fs::remove_file(dir.join("build.rs"));
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    sh(cargo()
        .args(["build", "--release", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", root.join("target")))
}

fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > timeout {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

struct Footprint {
    rss_max_kib: u64,
    rss_mean_kib: f64,
    anon_max_kib: u64,
    file_max_kib: u64,
    pss_max_kib: u64,
    uss_max_kib: u64,
    cpu_percent: f64,
}

fn measure(child: &mut Child, duration: Duration) -> Result<Footprint> {
    let pid = child.id();
    // Let it start, connect and take its first samples before measuring.
    std::thread::sleep(Duration::from_secs(3));
    if let Ok(Some(status)) = child.try_wait() {
        bail!("the service exited during warm-up: {status}");
    }
    let cpu0 = cpu_ns(pid)?;
    let t0 = Instant::now();
    let (mut max, mut sum, mut n) = (0u64, 0u64, 0u64);
    let (mut anon, mut file, mut pss, mut uss) = (0u64, 0u64, 0u64, 0u64);
    while t0.elapsed() < duration {
        let rss = status_kib(pid, "VmRSS:")?;
        max = max.max(rss);
        anon = anon.max(status_kib(pid, "RssAnon:")?);
        file = file.max(status_kib(pid, "RssFile:")?);
        let (p, u) = pss_uss_kib(pid).unwrap_or((0, 0));
        pss = pss.max(p);
        uss = uss.max(u);
        sum += rss;
        n += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu1 = cpu_ns(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    Ok(Footprint {
        rss_max_kib: max,
        rss_mean_kib: sum as f64 / n.max(1) as f64,
        anon_max_kib: anon,
        file_max_kib: file,
        pss_max_kib: pss,
        uss_max_kib: uss,
        cpu_percent: cpu1.saturating_sub(cpu0) as f64 / 1e9 / secs * 100.0,
    })
}

/// A `kB` field of /proc/<pid>/status (VmRSS, RssAnon, RssFile).
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Proportional set size (shared pages divided among the processes that map them) and
/// unique set size (the pages this process alone maps: what stopping it would free).
fn pss_uss_kib(pid: u32) -> Result<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |f: &str| kib_field(&rollup, f).with_context(|| format!("no {f} in smaps_rollup"));
    Ok((field("Pss:")?, field("Private_Clean:")? + field("Private_Dirty:")?))
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time of every thread of `pid` in nanoseconds (the first field of each thread's
/// schedstat): tick-based utime/stime would count 0.01 s steps, as much as the 0.05 % target
/// allows in 20 s.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let ns = text.split_whitespace().next().context("empty schedstat")?;
        total += ns
            .parse::<u64>()
            .with_context(|| format!("malformed {}", path.display()))?;
    }
    Ok(total)
}
