//! `cargo xtask demo`: the whole system on this machine, with one command.
//!
//! Builds the services, `tlm`, `tlm-dashboard` and the boiler simulator; starts a private
//! nats-server, the simulator (a Modbus TCP boiler), the three services (cpu-monitor on this
//! host, can-engine replaying the bundled engine recording in a loop, modbus-sensors reading
//! the simulator) and the dashboard on a free port of 127.0.0.1, with commands enabled; prints
//! the dashboard's address with its token, lists the live services, sends a command round trip,
//! and shows `tlm watch` until Ctrl-C or `--duration`. Everything it starts is stopped at the
//! end. A second `tlm watch --json` records what was published, so the demo checks itself: it
//! fails when a service showed no telemetry, or when the dashboard does not answer
//! `GET /api/state` with the telemetry it received (CI runs it that way).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

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
    /// Build tlm-dashboard too (in the same cargo build).
    pub dashboard: bool,
}

/// Build the services, `tlm`, the boiler simulator and, when asked, `tlm-dashboard` (what
/// [`launch`] starts).
pub(crate) fn build(release: bool, dashboard: bool) -> Result<()> {
    let profile = if release { "release" } else { "debug" };
    // cargo's own progress: a first build compiles about 300 crates (minutes on 2 cores), and
    // a quiet one looks hung.
    eprintln!(
        "building the services, tlm{} and the boiler simulator ({profile} build)",
        if dashboard { ", tlm-dashboard" } else { "" }
    );
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
    ]);
    if dashboard {
        build.args(["-p", "tlm-dashboard"]);
    }
    build.args(["--bins", "--example", "boiler_sim"]);
    if release {
        build.arg("--release");
    }
    sh(&mut build)
}

/// Build and start a private nats-server, the boiler simulator and the three services.
pub(crate) fn launch(how: &Launch) -> Result<System> {
    let nats = nats_server()?;
    let profile = if how.release { "release" } else { "debug" };
    build(how.release, how.dashboard)?;
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
                "[service]\npoll_time_ms = 1000\n[can]\nreplay = {:?}\nreplay_loop = true\nreplay_speed = 1.0\nreplay_clock = \"now\"\n",
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
        dashboard: true,
    })?;
    let bin = |name: &str| PathBuf::from("target/debug").join(name);
    let dashboard = start_dashboard(&mut procs, &url, &work, "dashboard", true)?;
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
        "== can-engine replays the recording (made in 2023) with the time of the replay (replay_clock = \"now\"), as if the engine ran now."
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
    dashboard.announce(&work, duration.is_none())?;
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

    // Asked while everything still runs; judged after the summary, with the rest.
    let dashboard_seen = dashboard.state();
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
    let dashboard_problem = match &dashboard_seen {
        Ok(seen) => {
            println!("   tlm-dashboard: {seen}");
            None
        }
        Err(e) => Some(format!("{e:#}")),
    };
    println!("== Logs of this run: {}", work.display());
    if !missing.is_empty() {
        bail!("no telemetry from {}; see the logs above", missing.join(", "));
    }
    if let Some(problem) = dashboard_problem {
        bail!("{problem}\n(its log: {})", work.join("dashboard.log").display());
    }
    Ok(())
}

/// A running tlm-dashboard: where it listens, and the token it printed (with commands on).
pub(crate) struct Dashboard {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// `127.0.0.1:<port>`.
    pub host: String,
    /// The command token, with commands enabled.
    pub token: Option<String>,
    /// Its output.
    pub log: PathBuf,
    /// Its lines about where to open it (`listening on`, and the token URL).
    pub lines: Vec<String>,
}

/// Start `target/debug/tlm-dashboard` on a free port, and wait for the lines it prints at start:
/// the address it listens on and, with `--enable-commands`, the address with the token.
pub(crate) fn start_dashboard(
    procs: &mut Procs,
    url: &str,
    work: &Path,
    name: &str,
    enable: bool,
) -> Result<Dashboard> {
    let port = free_port()?;
    let data = work.join(format!("{name}-data"));
    std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("target/debug/tlm-dashboard");
    cmd.args(["--server", url, "--listen", &listen, "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if enable {
        cmd.arg("--enable-commands");
    }
    procs.spawn(name, &mut cmd)?;
    let log = work.join(format!("{name}.log"));
    let (tx, rx) = mpsc::channel::<String>();
    {
        let (_, child) = procs.0.last_mut().ok_or_else(|| anyhow!("{name} was not started"))?;
        let mut file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let out = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let err = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let (line_tx, line_rx) = mpsc::channel::<String>();
        for stream in [out, err].into_iter().flatten() {
            let line_tx = line_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        // One writer keeps the log and passes each line on while anyone listens.
        std::thread::spawn(move || {
            for line in line_rx {
                let _ = writeln!(file, "{line}");
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut listening = false;
    let mut token = None;
    let mut lines = Vec::new();
    while !(listening && (token.is_some() || !enable)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains(&format!("listening on http://{listen}/")) {
                    listening = true;
                    lines.push(line.clone());
                }
                if line.contains("#token=") {
                    lines.push(line.clone());
                }
                if let Some(at) = line.find("#token=") {
                    let t: String = line[at + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    if t.is_empty() {
                        bail!("{name} printed an empty token: {line:?}");
                    }
                    token = Some(t);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "{name} did not print `tlm-dashboard: listening on http://{listen}/`{} within 30 s; see {}",
                if enable { " and the `#token=` address" } else { "" },
                log.display()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{name} exited at start; see {}", log.display())
            }
        }
    }
    Ok(Dashboard {
        base: format!("http://{listen}"),
        host: listen,
        token,
        log,
        lines,
    })
}

impl Dashboard {
    /// Shows where to open it, in a box, and keeps the address in `<work>/dashboard.url`.
    /// `tlm watch` redraws the whole terminal, so on a terminal the demo waits for Enter first.
    fn announce(&self, work: &Path, interactive: bool) -> Result<()> {
        let url = self
            .lines
            .iter()
            .find_map(|l| l.split("open ").nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| format!("http://{}/", self.host));
        std::fs::write(work.join("dashboard.url"), format!("{url}\n"))?;
        let rule = "=".repeat(78);
        println!("\n{rule}\n== The dashboard, in a browser on this machine:\n==");
        for line in &self.lines {
            println!("==   {line}");
        }
        println!(
            "==\n== (the address is also in {}; it stops with the demo)\n{rule}",
            work.join("dashboard.url").display()
        );
        if interactive && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            print!("\nOpen it now; press Enter for tlm watch, which takes over this terminal... ");
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
        }
        Ok(())
    }

    /// `GET /api/state`: answered with 200, and the dashboard received telemetry. Returns what
    /// it saw, for the summary.
    fn state(&self) -> Result<String> {
        let (status, body) = http(&self.host, "GET", "/api/state", &[], "")
            .with_context(|| format!("tlm-dashboard did not answer GET http://{}/api/state", self.host))?;
        if status != 200 {
            bail!(
                "tlm-dashboard answered GET http://{}/api/state with {status}, expected 200: {}",
                self.host,
                body.chars().take(300).collect::<String>()
            );
        }
        let state: serde_json::Value = serde_json::from_str(&body).with_context(|| {
            format!(
                "GET http://{}/api/state is not JSON: {}",
                self.host,
                body.chars().take(300).collect::<String>()
            )
        })?;
        let packs = state.pointer("/ingest/packs").and_then(|v| v.as_u64()).unwrap_or(0);
        if packs == 0 {
            bail!(
                "tlm-dashboard received no telemetry: GET http://{}/api/state has ingest.packs {}, expected more than 0",
                self.host,
                state
                    .pointer("/ingest/packs")
                    .map_or("missing".to_string(), |v| v.to_string())
            );
        }
        let mut services: Vec<&str> = state
            .get("devices")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.get("services").and_then(|s| s.as_array()))
            .flatten()
            .filter(|s| s.get("alive").and_then(|a| a.as_bool()) == Some(true))
            .filter_map(|s| s.get("name").and_then(|n| n.as_str()))
            .collect();
        services.sort_unstable();
        Ok(format!(
            "GET /api/state 200: {packs} packs received; services alive: {}",
            if services.is_empty() {
                "none".to_string()
            } else {
                services.join(", ")
            }
        ))
    }
}

/// One HTTP/1.1 request to `host` (an address on this machine), its status and body.
pub(crate) fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(host).with_context(|| format!("cannot connect to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(req.as_bytes())
        .with_context(|| format!("cannot send {method} {path} to {host}"))?;
    // Read by the answer's own framing: some servers (chromedriver) keep the connection open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (head, body_at) = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..end]).into_owned(), end + 4);
        }
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("no complete answer to {method} {path} from {host}"))?;
        if n == 0 {
            bail!(
                "{method} {path} on {host}: the connection closed before the end of the headers: {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path} on {host}: no status in {head:?}"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    loop {
        let body = &raw[body_at..];
        let complete = match length {
            Some(n) => body.len() >= n,
            None => chunked && body.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let n = stream
            .read(&mut buf)
            .with_context(|| format!("no complete answer to {method} {path} from {host}"))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[body_at..]).into_owned();
    Ok((status, if chunked { dechunk(&body) } else { body }))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
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
