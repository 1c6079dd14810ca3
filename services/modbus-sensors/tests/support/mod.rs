//! Shared by the integration tests: the service binary against a private nats-server, a
//! pymodbus peer (tests/pymodbus_server.py) and helpers to look at what was published.

#![allow(dead_code)]

pub(crate) mod memserver;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tolomeo_testkit::{NatsServer, Recorder, ServiceProcess, free_port};

pub(crate) const SERVICE: &str = "modbus-sensors";
pub(crate) const SERIAL: &str = "SNMODBUS1";

/// The service binary, running, with a client and a recorder of `events.data`.
pub(crate) struct Running {
    pub svc: ServiceProcess,
    pub client: async_nats::Client,
    pub data: Recorder,
    pub config: PathBuf,
}

/// Write `config` to a temp file.
pub(crate) fn config_file(config: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tlm-modbus-{}-{}.toml",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, config).unwrap();
    path
}

/// Start the binary with `config` and wait until it answers Ping.
pub(crate) async fn start(nats: &NatsServer, config: &str) -> Running {
    let path = config_file(config);
    let client = nats.client().await;
    let data = Recorder::start(&client, "events.data").await;
    let svc = ServiceProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_tlm-modbus-sensors")),
        &["--config", path.to_str().unwrap()],
        SERIAL,
        &nats.url(),
    );
    tolomeo_testkit::wait_ready(&client, SERVICE, &svc).await;
    Running {
        svc,
        client,
        data,
        config: path,
    }
}

impl Running {
    /// Every record published so far.
    pub(crate) fn records(&self) -> Vec<Value> {
        self.data
            .messages()
            .iter()
            .flat_map(|m| m.json().as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// The last record of `metric`.
    pub(crate) fn last(&self, metric: &str) -> Option<Value> {
        self.records().into_iter().rev().find(|r| r["n"] == metric)
    }

    /// Wait until every metric in `names` has been published at least once.
    pub(crate) async fn wait_for(&self, names: &[&str], timeout: Duration) {
        self.wait_since(names, 0.0, timeout).await
    }

    /// Wait until every metric in `names` has a record read after `t` (Unix seconds).
    pub(crate) async fn wait_since(&self, names: &[&str], t: f64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let recs: Vec<Value> = self
                .records()
                .into_iter()
                .filter(|r| r["t"].as_f64().is_some_and(|x| x > t))
                .collect();
            let missing: Vec<_> = names.iter().filter(|n| !recs.iter().any(|r| r["n"] == **n)).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never published: {missing:?}; log:\n{}",
                self.svc.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Call a command; the `vs` object of its answer.
    pub(crate) async fn call(&self, command: &str, args: Value) -> Value {
        tolomeo_testkit::call(&self.client, SERVICE, command, args).await
    }

    /// The status of device `name` from GetDevices.
    pub(crate) async fn device(&self, name: &str) -> Value {
        let all = self.call("GetDevices", serde_json::json!({})).await;
        all["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no device {name} in {all}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// tests/pymodbus_server.py as a child process, with its control port.
pub(crate) struct PyServer {
    child: Child,
    pub port: u16,
    pub control: u16,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pymodbus_server.py")
}

impl PyServer {
    /// A TCP server on a free port (every unit id).
    pub(crate) async fn tcp() -> Self {
        let port = free_port();
        Self::spawn(&["--tcp", &port.to_string()], port).await
    }

    /// A serial (RTU) server on `path` for unit ids `ids` (e.g. "1,2").
    pub(crate) async fn serial(path: &str, baud: u32, ids: &str) -> Self {
        Self::spawn(&["--serial", path, "--baud", &baud.to_string(), "--ids", ids], 0).await
    }

    async fn spawn(args: &[&str], port: u16) -> Self {
        let control = free_port();
        let child = Command::new(tolomeo_testkit::python())
            .arg(script())
            .args(args)
            .args(["--control", &control.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test environment's python3 runs");
        let s = PyServer { child, port, control };
        let deadline = Instant::now() + Duration::from_secs(15);
        while s.get(3, 0, 1).await.is_none() {
            assert!(Instant::now() < deadline, "pymodbus server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        s
    }

    /// Values held by the server: `fc` 1 coils, 2 discrete, 3 holding, 4 input.
    pub(crate) async fn get(&self, fc: u8, address: u16, count: u16) -> Option<Vec<u64>> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.control)).await.ok()?;
        let (r, mut w) = stream.into_split();
        w.write_all(format!("GET {fc} {address} {count}\n").as_bytes())
            .await
            .ok()?;
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await.ok()?;
        serde_json::from_str(&line).ok()
    }

    /// Stop it (the port closes; connections drop).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A socat pty pair: (link a, link b, process).
pub(crate) struct PtyPair {
    child: Child,
    pub a: String,
    pub b: String,
    /// Holds the links; socat leaves them behind when it is killed.
    _dir: tolomeo_testkit::tempfile::TempDir,
}

impl PtyPair {
    pub(crate) async fn start() -> Self {
        let dir = tolomeo_testkit::temp_dir();
        let a = dir.path().join("pty-a").display().to_string();
        let b = dir.path().join("pty-b").display().to_string();
        let child = Command::new("socat")
            .args([format!("pty,raw,echo=0,link={a}"), format!("pty,raw,echo=0,link={b}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (apt-get install socat)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(std::path::Path::new(&a).exists() && std::path::Path::new(&b).exists()) {
            assert!(Instant::now() < deadline, "socat did not create the pty pair");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        PtyPair { child, a, b, _dir: dir }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number in a record's `v`.
pub(crate) fn v(rec: &Value) -> f64 {
    rec["v"].as_f64().unwrap_or_else(|| panic!("no number in {rec}"))
}

/// Now, in Unix seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
