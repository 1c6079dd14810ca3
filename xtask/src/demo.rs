//! `cargo xtask demo`: the whole system on this machine, with one command.
//!
//! Builds the services, `tlm` and the boiler simulator; starts a private nats-server, the
//! simulator (a Modbus TCP boiler) and the three services (cpu-monitor on this host,
//! can-engine replaying the bundled engine recording in a loop, modbus-sensors reading the
//! simulator); lists the live services, sends a command round trip, and shows `tlm watch`
//! until Ctrl-C or `--duration`. Everything it starts is stopped at the end. A second
//! `tlm watch --json` records what was published, so the demo checks itself: it fails when a
//! service showed no telemetry (CI runs it that way).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, sh};

/// The device serial the demo's services publish as.
pub(crate) const SERIAL: &str = "DEMO0001";

/// Which service publishes a metric, by its group (the part before the first `:`).
const GROUPS: &[(&str, &[&str])] = &[
    (
        "cpu-monitor",
        &["cpu", "mem", "swap", "disk", "net", "sys", "temp", "proc"],
    ),
    ("can-engine", &["engine", "vehicle", "can"]),
    ("modbus-sensors", &["boiler"]),
];

pub(crate) struct Procs(pub Vec<(String, Child)>);

impl Procs {
    pub(crate) fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<()> {
        let child = cmd.spawn().with_context(|| format!("cannot start {name}"))?;
        self.0.push((name.to_string(), child));
        Ok(())
    }
}

impl Drop for Procs {
    /// Services first (SIGTERM, they deliver what they hold), then the simulator and broker.
    fn drop(&mut self) {
        for (_, c) in self.0.iter().rev() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, c) in self.0.iter_mut().rev() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        eprintln!("demo: {name} did not stop; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// The running system: broker, simulator, services, and where it keeps its files.
pub(crate) struct System {
    pub procs: Procs,
    pub url: String,
    pub sim_port: u16,
    pub work: PathBuf,
}

/// How to run the services: which profile, and which CAN recording.
pub(crate) struct Launch {
    pub release: bool,
    pub can_log: &'static str,
    pub cpu_poll_ms: u64,
    /// Where the logs go, under target/.
    pub work_dir: &'static str,
}

/// Build the services, `tlm` and the boiler simulator (what [`launch`] starts).
pub(crate) fn build(release: bool) -> Result<()> {
    let profile = if release { "release" } else { "debug" };
    // cargo's own progress: a first build compiles about 300 crates (minutes on 2 cores), and
    // a quiet one looks hung.
    eprintln!("building the services, tlm and the boiler simulator ({profile} build)");
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "cpu-monitor",
        "-p",
        "can-engine",
        "-p",
        "modbus-sensors",
        "-p",
        "tlm",
        "--bins",
        "--example",
        "boiler_sim",
    ]);
    if release {
        build.arg("--release");
    }
    sh(&mut build)
}

/// Build and start a private nats-server, the boiler simulator and the three services.
pub(crate) fn launch(how: &Launch) -> Result<System> {
    let nats = nats_server()?;
    let profile = if how.release { "release" } else { "debug" };
    build(how.release)?;
    let bin = |name: &str| PathBuf::from("target").join(profile).join(name);
    let root = std::env::current_dir()?;
    // The logs of this run, kept for a look afterwards and replaced by the next run.
    let work = root.join("target").join(how.work_dir);
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("cannot empty {}", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let nats_port = free_port()?;
    let sim_port = free_port()?;
    let url = format!("nats://127.0.0.1:{nats_port}");

    let mut procs = Procs(Vec::new());
    procs.spawn(
        "nats-server",
        Command::new(&nats)
            .args(["-a", "127.0.0.1", "-p", &nats_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    procs.spawn(
        "boiler simulator",
        Command::new(bin("examples/boiler_sim"))
            .args(["--port", &sim_port.to_string()])
            .stdout(Stdio::null())
            .stderr(log_file(&work, "boiler_sim")?),
    )?;
    std::thread::sleep(Duration::from_millis(500));

    let configs = [
        (
            "cpu-monitor",
            format!("[service]\npoll_time_ms = {}\n", how.cpu_poll_ms),
        ),
        (
            "can-engine",
            format!(
                "[service]\npoll_time_ms = 1000\n[can]\nreplay = {:?}\nreplay_loop = true\nreplay_speed = 1.0\n",
                root.join(how.can_log).display().to_string()
            ),
        ),
        ("modbus-sensors", boiler_config(sim_port)),
    ];
    for (service, text) in &configs {
        let cfg = work.join(format!("{service}.toml"));
        std::fs::write(&cfg, text)?;
        procs.spawn(
            service,
            Command::new(bin(&format!("tlm-{service}")))
                .arg("--config")
                .arg(&cfg)
                .env("DEVICE_SERIAL_NUMBER", SERIAL)
                .env("NATS_URL", &url)
                .env("RUST_LOG", "warn")
                .env_remove("STATE_DIRECTORY")
                .stdout(Stdio::null())
                .stderr(log_file(&work, service)?),
        )?;
    }
    Ok(System {
        procs,
        url,
        sim_port,
        work,
    })
}

pub(crate) fn run(duration: Option<u64>) -> Result<()> {
    let System {
        mut procs,
        url,
        sim_port,
        work,
    } = launch(&Launch {
        release: false,
        can_log: "services/can-engine/data/engine.log",
        cpu_poll_ms: 2000,
        work_dir: "demo",
    })?;
    let bin = |name: &str| PathBuf::from("target/debug").join(name);
    let record = work.join("watch.jsonl");
    procs.spawn(
        "recorder",
        Command::new(bin("tlm"))
            .args(["-s", &url, "watch", "--json"])
            .stdout(std::fs::File::create(&record)?)
            .stderr(Stdio::null()),
    )?;

    println!(
        "\n== The simulated boiler (Modbus TCP on 127.0.0.1:{sim_port}) and the engine recording are the project's own simulations."
    );
    println!(
        "== can-engine publishes each frame's time from the recording (made in 2023), so tlm shows those values as days old."
    );
    println!("== Live services (tlm services):\n");
    let _ = Command::new(bin("tlm"))
        .args(["-s", &url, "services", "--wait", "6"])
        .status();
    println!(
        "\n== A command round trip (tlm cmd modbus-sensors ReadRegister {{\"device\":\"boiler\",\"register\":\"flow_temp\"}}):\n"
    );
    let _ = Command::new(bin("tlm"))
        .args([
            "-s",
            &url,
            "cmd",
            "modbus-sensors",
            "ReadRegister",
            r#"{"device":"boiler","register":"flow_temp"}"#,
        ])
        .status();
    println!(
        "\n== Live telemetry (tlm watch){}:\n",
        match duration {
            Some(s) => format!(" for {s} s"),
            None => ", Ctrl-C to stop".to_string(),
        }
    );
    let mut watch = Command::new(bin("tlm"));
    watch.args(["-s", &url, "watch"]);
    if let Some(s) = duration {
        watch.args(["--duration", &format!("{s}s")]);
    }
    let _ = watch.status();

    drop(procs);
    let seen = summarize(&record)?;
    println!("\n== Telemetry seen:");
    let mut missing = Vec::new();
    for (service, groups) in GROUPS {
        let metrics: Vec<&String> = seen
            .keys()
            .filter(|m| groups.iter().any(|g| m.split(':').next() == Some(g)))
            .collect();
        println!(
            "   {service}: {} metrics ({})",
            metrics.len(),
            metrics
                .iter()
                .take(6)
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if metrics.is_empty() {
            missing.push(*service);
        }
    }
    println!("== Logs of this run: {}", work.display());
    if !missing.is_empty() {
        bail!("no telemetry from {}; see the logs above", missing.join(", "));
    }
    Ok(())
}

/// Metric name -> records seen, from `tlm watch --json` lines (names carry the base name).
fn summarize(record: &Path) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let prefix = format!("urn:cpt:device:sn:{SERIAL}:");
    let mut seen = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("\"name\":\"").nth(1) else {
            continue;
        };
        let Some(name) = rest.split('"').next() else { continue };
        *seen.entry(name.trim_start_matches(&prefix).to_string()).or_insert(0) += 1;
    }
    Ok(seen)
}

/// modbus-sensors reading the simulated boiler.
fn boiler_config(port: u16) -> String {
    format!(
        r#"[service]
poll_time_ms = 1000

[[modbus.devices]]
name = "boiler"
host = "127.0.0.1"
port = {port}
unit_id = 1

[[modbus.devices.registers]]
name = "flow_temp"
kind = "input"
address = 0
data_type = "f32"
unit = "Cel"

[[modbus.devices.registers]]
name = "return_temp"
kind = "input"
address = 2
data_type = "f32"
unit = "Cel"

[[modbus.devices.registers]]
name = "pressure"
kind = "input"
address = 4
data_type = "u16"
scale = 1000.0      # 0.01 bar per count
unit = "Pa"

[[modbus.devices.registers]]
name = "energy"
kind = "input"
address = 10
data_type = "u32"
unit = "Wh"
type = "incremental"

[[modbus.devices.registers]]
name = "pump"
kind = "coil"
address = 0
data_type = "bool"

[[modbus.devices.registers]]
name = "setpoint"
kind = "holding"
address = 20
data_type = "u16"
unit = "Cel"
writable = true
"#
    )
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    Ok(std::fs::File::create(dir.join(format!("{name}.log")))?)
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Debian's nats-server: found, installed when we can, or the exact command to install it.
pub(crate) fn nats_server() -> Result<PathBuf> {
    let find = || {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v nats-server"])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if root && Path::new("/usr/bin/apt-get").exists() {
        eprintln!("demo: nats-server is missing; installing Debian's package");
        sh(Command::new("apt-get").args(["update", "-qq"]))?;
        sh(Command::new("apt-get")
            .args(["install", "-y", "-qq", "nats-server"])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if let Some(p) = find() {
            return Ok(p);
        }
    }
    bail!("the demo needs a NATS server; install it with\n  sudo apt-get install nats-server")
}
