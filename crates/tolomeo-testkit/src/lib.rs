//! Test fixtures shared by the workspace's integration tests. Not shipped.
//!
//! - [`NatsServer`]: a private `nats-server` on a free loopback port, stoppable and
//!   restartable on the same port (Debian's `nats-server` package; `NATS_SERVER` overrides
//!   the binary).
//! - [`ServiceProcess`]: a service binary run as a child process, stopped with SIGTERM.
//! - [`Recorder`]: an independent subscriber that keeps every message of a subject.
//! - [`target_binary`]: the path of a binary or example that `cargo test` built.
//! - [`temp_dir`], [`temp_file`]: temporary files that are removed when dropped, so a test
//!   run leaves nothing behind (`cargo xtask ci` checks).
//! - [`python`]: the Python with the pinned test peers (cantools, pymodbus), from the
//!   workspace's virtual environment that `cargo xtask setup` makes.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
pub use tempfile;

/// A private nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    store: Option<PathBuf>,
}

impl NatsServer {
    /// Start one on a free port and wait until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Start one with extra command-line arguments (e.g. `--max_payload`).
    pub fn start_with(args: &[&str]) -> Self {
        let port = free_port();
        let mut s = NatsServer {
            child: None,
            port,
            extra_args: args.iter().map(|a| a.to_string()).collect(),
            store: None,
        };
        s.spawn();
        s
    }

    /// Start one on a given port (e.g. one a service is already trying to reach).
    pub fn start_on(port: u16) -> Self {
        let mut s = NatsServer {
            child: None,
            port,
            extra_args: Vec::new(),
            store: None,
        };
        s.spawn();
        s
    }

    /// Start one with JetStream on a private file store, which survives [`NatsServer::restart`].
    pub fn start_jetstream() -> Self {
        let store = std::env::temp_dir().join(format!(
            "tlm-js-{}-{}",
            std::process::id(),
            LOG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let dir = store.display().to_string();
        let mut s = Self::start_with(&["-js", "-sd", &dir]);
        s.store = Some(store);
        s
    }

    /// Capture `subject` into a file-backed stream `name` (needs [`NatsServer::start_jetstream`]).
    /// Unlike a subscriber, the stream misses nothing around a restart of the server.
    pub async fn capture(&self, name: &str, subject: &str) {
        let js = async_nats::jetstream::new(self.client().await);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: vec![subject.to_string()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the capture stream");
    }

    /// Every payload captured by stream `name`, in order.
    pub async fn captured(&self, name: &str) -> Vec<Bytes> {
        let js = async_nats::jetstream::new(self.client().await);
        let mut stream = js.get_stream(name).await.expect("capture stream");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        for seq in state.first_sequence..=state.last_sequence {
            if state.messages == 0 {
                break;
            }
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(m.payload);
            }
        }
        out
    }

    fn spawn(&mut self) {
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{bin}` ({e}); install it with: apt-get install nats-server"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop it (connections drop; the port is kept for [`NatsServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// A client connected to it.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.store {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The path of a binary or example built by cargo next to the running test executable.
/// `target_binary("examples/temp_service")`, `target_binary("tlm-cpu-monitor")`.
pub fn target_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} was not built (cargo test builds examples and binaries)",
        path.display()
    );
    path
}

/// The Python interpreter of the workspace's test environment, `target/py-venv`, which has the
/// peers pinned in `requirements-test.txt`. `cargo xtask setup` (and `cargo xtask ci`) make it;
/// a test run without it, or with one made from another `requirements-test.txt`, fails here
/// with that command instead of failing later on a missing module. `TOLOMEO_TEST_PYTHON`
/// names another interpreter (one that has the same peers).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLOMEO_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    // crates/tolomeo-testkit -> the workspace root
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    let venv = root.join("target/py-venv");
    let python = venv.join("bin/python3");
    let want = std::fs::read_to_string(root.join("requirements-test.txt")).unwrap_or_default();
    let made_from = std::fs::read_to_string(venv.join("requirements-test.txt"));
    match made_from {
        Ok(have) if have == want && python.exists() => python,
        Ok(_) => panic!(
            "{} was made from an older requirements-test.txt; run `cargo xtask setup` to make it again",
            venv.display()
        ),
        Err(_) => panic!(
            "this test needs the Python peers of requirements-test.txt in {}; make it with `cargo xtask setup`",
            venv.display()
        ),
    }
}

/// A new directory in the system's temporary directory, removed with all it holds when the
/// value is dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tlm-test-")
        .tempdir()
        .expect("a temporary directory")
}

/// A file in the system's temporary directory holding `contents`, removed when the value is
/// dropped; it derefs to its [`Path`]. `suffix` is e.g. ".toml".
pub fn temp_file(suffix: &str, contents: &str) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .prefix("tlm-test-")
        .suffix(suffix)
        .tempfile()
        .expect("a temporary file");
    std::io::Write::write_all(&mut file, contents.as_bytes()).expect("write the temporary file");
    file.into_temp_path()
}

/// A service binary running as a child process; its stderr is kept in a file.
pub struct ServiceProcess {
    child: Child,
    log: PathBuf,
    held: Vec<Box<dyn std::any::Any + Send>>,
}

impl ServiceProcess {
    /// Run `bin` with `args`, `DEVICE_SERIAL_NUMBER=serial` and `NATS_URL=url`.
    pub fn start(bin: &Path, args: &[&str], serial: &str, url: &str) -> Self {
        Self::start_env(bin, args, &[("DEVICE_SERIAL_NUMBER", serial), ("NATS_URL", url)])
    }

    /// Run `bin` with `args` and exactly these extra environment variables.
    pub fn start_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "tlm-test-{}-{}.log",
            std::process::id(),
            LOG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_remove("NATS_URL")
            .env_remove("DEVICE_SERIAL_NUMBER")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        ServiceProcess {
            child,
            log,
            held: Vec::new(),
        }
    }

    /// Keep `guard` (say, the [`temp_file`] of its configuration) until the process is gone.
    pub fn hold(&mut self, guard: impl std::any::Any + Send) {
        self.held.push(Box::new(guard));
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// SIGTERM, then wait up to `timeout` for the exit code (None: still running, killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        self.signal("TERM");
        self.wait(timeout)
    }

    /// Wait up to `timeout` for it to exit by itself; kill it after that and return None.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

static LOG_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        self.held.clear();
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its subject.
    pub subject: String,
    /// Its payload.
    pub payload: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("payload on {} is not JSON ({e}): {:?}", self.subject, self.payload))
    }
}

/// Keeps every message of a subject (wildcards allowed).
#[derive(Clone)]
pub struct Recorder {
    messages: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    /// Subscribe with `client` and start recording. Flushes so nothing published after this
    /// returns is missed.
    pub async fn start(client: &async_nats::Client, subject: &str) -> Self {
        let mut sub = client.subscribe(subject.to_string()).await.expect("subscribe");
        client.flush().await.expect("flush");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                sink.lock().unwrap().push(Received {
                    subject: m.subject.to_string(),
                    payload: m.payload,
                    at: Instant::now(),
                });
            }
        });
        Recorder { messages }
    }

    /// A copy of what arrived so far.
    pub fn messages(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// How many arrived.
    pub fn len(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    /// True when none arrived.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget what arrived.
    pub fn clear(&self) {
        self.messages.lock().unwrap().clear();
    }

    /// Wait until `cond` holds on the messages, up to `timeout`; panics with `what` otherwise.
    pub async fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let msgs = self.messages();
            if cond(&msgs) {
                return msgs;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; got {} messages",
                msgs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Wait until `service` answers `Ping` (up to 10 s); panics with the service's log otherwise.
pub async fn wait_ready(client: &async_nats::Client, service: &str, svc: &ServiceProcess) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ping = client.request(
            format!("commands.{service}.req"),
            Bytes::from_static(br#"[{"n":"Ping"}]"#),
        );
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} did not answer Ping; log:\n{}",
            svc.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ask `service` for `GetStatus` until `cond` holds on its result (up to `timeout`); returns that
/// status, or panics with `what` and the service's log.
pub async fn wait_status(
    client: &async_nats::Client,
    service: &str,
    svc: &ServiceProcess,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    status_until(client, service, timeout, cond)
        .await
        .unwrap_or_else(|last| panic!("timed out waiting for {what} (last status {last}); log:\n{}", svc.log()))
}

/// Ask `service` for `GetStatus` until `cond` holds (up to `limit`): that status, or the last
/// one seen (`null` for none) as the error. For a service that is not a [`ServiceProcess`]
/// (one in a VM); otherwise [`wait_status`] panics with its log.
pub async fn status_until(
    client: &async_nats::Client,
    service: &str,
    limit: Duration,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value, serde_json::Value> {
    let deadline = Instant::now() + limit;
    let mut last = serde_json::Value::Null;
    loop {
        let req = client.request(
            format!("commands.{service}.req"),
            Bytes::from_static(br#"[{"n":"GetStatus"}]"#),
        );
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), req).await {
            let status = serde_json::from_slice::<serde_json::Value>(&m.payload)
                .ok()
                .and_then(|pack| pack[0]["vs"].as_str().and_then(|vs| serde_json::from_str(vs).ok()));
            if let Some(st) = status {
                if cond(&st) {
                    return Ok(st);
                }
                last = st;
            }
        }
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(t, v)` of every numeric record named `name` in the packs received, in arrival order.
pub fn records(msgs: &[Received], name: &str) -> Vec<(f64, f64)> {
    msgs.iter()
        .flat_map(|m| m.json().as_array().cloned().unwrap_or_default())
        .filter(|r| r["n"] == name)
        .filter_map(|r| Some((r["t"].as_f64()?, r["v"].as_f64()?)))
        .collect()
}

/// Send a SenML command request to `commands.<service>.req` and return the parsed response pack.
pub async fn request(client: &async_nats::Client, service: &str, payload: impl Into<Bytes>) -> serde_json::Value {
    let subject = format!("commands.{service}.req");
    let msg = tokio::time::timeout(Duration::from_secs(15), client.request(subject, payload.into()))
        .await
        .expect("no answer within 15 s")
        .expect("request failed");
    serde_json::from_slice(&msg.payload).expect("response is JSON")
}

/// Call one command with JSON arguments; return the parsed `vs` object of its response record.
pub async fn call(
    client: &async_nats::Client,
    service: &str,
    command: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let vs = args.to_string();
    let body = serde_json::json!([{ "n": command, "vs": vs }]).to_string();
    let pack = request(client, service, body).await;
    let rec = &pack[0];
    assert_eq!(rec["n"], command, "response record names the command: {pack}");
    serde_json::from_str(rec["vs"].as_str().expect("vs is a string")).expect("vs is JSON")
}
