//! Shared by the dashboard's tests: the binary run as a subprocess, plain HTTP/1.1 requests to
//! it, SenML packs published by hand, and a small service run in-process with the framework.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tolomeo_core::{
    Command as SvcCommand, CommandContext, CommandResult, DeviceSerial, Health, Metric, PluginError, Reading,
    SensorPlugin, Service, ServiceName, Settings, async_trait, output,
};

/// A running `tlm-dashboard`.
pub(crate) struct Dashboard {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// The command token, when started with --enable-commands.
    pub(crate) token: Option<String>,
    pub(crate) stdout: Vec<String>,
}

impl Dashboard {
    /// Starts it on a free port with `args` and waits for its "listening" line.
    pub(crate) fn start(url: &str, args: &[&str]) -> Dashboard {
        let port = tolomeo_testkit::free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tlm-dashboard"))
            .args(["--server", url, "--listen", &listen])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tlm-dashboard starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let mut token = None;
        // The listening line comes first, then the commands line.
        for _ in 0..2 {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.split("#token=").nth(1) {
                token = Some(rest.trim().to_string());
            }
            seen.push(line);
        }
        assert!(
            seen.first()
                .is_some_and(|l| l == &format!("tlm-dashboard: listening on http://{listen}/")),
            "unexpected start: {seen:?}"
        );
        std::thread::spawn(move || for _ in lines {});
        Dashboard {
            child,
            port,
            token,
            stdout: seen,
        }
    }

    /// SIGTERM, and the exit code.
    pub(crate) fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tlm-dashboard did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET `path` (with Host 127.0.0.1:port), as status and JSON body.
    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = http(self.port, "GET", path, &[], "");
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// GET `path` until `cond` holds for its JSON, or panics after `timeout` saying `what`.
    pub(crate) fn get_until(&self, path: &str, what: &str, timeout: Duration, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(path);
            if status == 200 && cond(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; last {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// POST a command with these extra headers.
    pub(crate) fn command(&self, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut all = vec![("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        let (status, text) = http(self.port, "POST", "/api/command", &all, body);
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The resident memory of the process, in KiB (VmRSS).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body. A `Host` header
/// among `headers` replaces the default one.
pub(crate) fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the dashboard accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(body) } else { body.to_string() })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A free data directory for one dashboard.
pub(crate) fn data_dir(root: &Path, name: &str) -> String {
    root.join(name).display().to_string()
}

/// A metric of the test service: a number in %, an incremental counter, a boolean, a string.
pub(crate) struct Probe;

#[async_trait]
impl SensorPlugin for Probe {
    fn id(&self) -> &str {
        "probe"
    }
    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::number("level").unit("%").display_name("Tank level"),
            Metric::number("pulses").unit("count").incremental(),
            Metric::boolean("pump"),
            Metric::string("mode"),
        ]
    }
    fn commands(&self) -> Vec<Box<dyn SvcCommand<Self>>> {
        vec![Box::new(Flush)]
    }
    fn health(&self) -> Health {
        Health::healthy("probe ok")
    }
    async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
        reading.push("level", 42.5);
        reading.push("pulses", 7u64);
        reading.push("pump", true);
        reading.push("mode", "auto");
        Ok(())
    }
}

/// `Flush`: answers "flushed".
struct Flush;
#[async_trait]
impl SvcCommand<Probe> for Flush {
    fn name(&self) -> &str {
        "Flush"
    }
    fn description(&self) -> &str {
        "Flushes the probe"
    }
    async fn execute(&self, _ctx: CommandContext<'_, Probe>) -> CommandResult {
        Ok(output!({ "message": "flushed" }))
    }
}

/// A service running in this process; stopped when dropped.
pub(crate) struct TestService {
    token: CancellationToken,
}

impl TestService {
    /// Starts service `name` of device `serial`, polling and beating every 200 ms.
    pub(crate) fn start(url: &str, name: &str, serial: &str) -> TestService {
        let mut settings = Settings::new(ServiceName::new(name).unwrap(), DeviceSerial::new(serial).unwrap());
        settings.default_poll_time = Duration::from_millis(200);
        settings.service.heartbeat_interval_ms = 200;
        settings.nats.url = url.to_string();
        let token = CancellationToken::new();
        let run = Service::new(settings, Probe).run(token.clone());
        tokio::spawn(async move {
            if let Err(e) = run.await {
                panic!("the test service failed: {e}");
            }
        });
        TestService { token }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
