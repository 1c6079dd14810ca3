//! Shared by the end-to-end tests: a tiny sensor plugin run as a real service in-process (with
//! the framework's own `Service`), and the built `tlm` binary run as a subprocess.

#![allow(dead_code)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tolomeo_core::{
    ArgInfo, Command, CommandContext, CommandError, CommandResult, DeviceSerial, Health, Metric, PluginError, Reading,
    SensorPlugin, Service, ServiceName, Settings, async_trait, output,
};

/// What the test plugin publishes as `tst:load`, in order, cycling.
pub(crate) const LOADS: [f64; 4] = [12.5, 50.0, 87.25, 0.5];

/// A plugin with two metrics (`tst:load` in %, `tst:state` a string), a command that echoes
/// its arguments, and one that always fails. Its health is switched by the test.
pub(crate) struct TestPlugin {
    pub healthy: Arc<AtomicBool>,
    next: AtomicUsize,
}

#[async_trait]
impl SensorPlugin for TestPlugin {
    fn id(&self) -> &str {
        "tst"
    }
    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::number("load").unit("%").display_name("Load"),
            Metric::string("state"),
        ]
    }
    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        vec![Box::new(Echo), Box::new(Fail)]
    }
    fn health(&self) -> Health {
        match self.healthy.load(Ordering::Relaxed) {
            true => Health::healthy("ok"),
            false => Health::unhealthy("unplugged by the test"),
        }
    }
    async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        reading.push("load", LOADS[i % LOADS.len()]);
        reading.push("state", "up");
        Ok(())
    }
}

/// `Echo {...}`: returns its arguments under `args`.
struct Echo;
#[async_trait]
impl Command<TestPlugin> for Echo {
    fn name(&self) -> &str {
        "Echo"
    }
    fn description(&self) -> &str {
        "Answers with its arguments"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![
            ArgInfo::string("text", "anything").optional(),
            ArgInfo::integer("times", "how often").range(1, 3).optional(),
        ]
    }
    async fn execute(&self, ctx: CommandContext<'_, TestPlugin>) -> CommandResult {
        let args: serde_json::Value = ctx.args_as()?;
        Ok(output!({ "message": "echoed", "args": args }))
    }
}

/// `Fail`: always `failed`.
struct Fail;
#[async_trait]
impl Command<TestPlugin> for Fail {
    fn name(&self) -> &str {
        "Fail"
    }
    async fn execute(&self, _ctx: CommandContext<'_, TestPlugin>) -> CommandResult {
        Err(CommandError::failed("broken on purpose"))
    }
}

/// A service running in this process; stopped when dropped.
pub(crate) struct TestService {
    pub token: CancellationToken,
    pub healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestService {
    /// Starts service `name` on device `serial`, polling and beating every 200 ms, and waits
    /// until it answers Ping.
    pub(crate) async fn start(url: &str, name: &str, serial: &str) -> Self {
        let mut settings = Settings::new(ServiceName::new(name).unwrap(), DeviceSerial::new(serial).unwrap());
        settings.default_poll_time = Duration::from_millis(200);
        settings.service.heartbeat_interval_ms = 200;
        settings.nats.url = url.to_string();
        let healthy = Arc::new(AtomicBool::new(true));
        let plugin = TestPlugin {
            healthy: healthy.clone(),
            next: AtomicUsize::new(0),
        };
        let token = CancellationToken::new();
        let run = Service::new(settings, plugin).run(token.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = run.await {
                panic!("the test service failed: {e}");
            }
        });
        let client = async_nats::connect(url).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let subject = format!("commands.{name}.req");
        loop {
            let ping = client.request(subject.clone(), r#"[{"n":"Ping"}]"#.into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
                break;
            }
            assert!(Instant::now() < deadline, "service {name} did not answer Ping");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        TestService { token, healthy, task }
    }

    /// Stops it and waits until it has.
    pub(crate) async fn stop(self) {
        self.token.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// What a `tlm` run gave.
#[derive(Debug)]
pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub(crate) fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{self:?}")))
            .collect()
    }
}

/// Runs the built `tlm` with `args` (stdout is a pipe, not a terminal), `NATS_URL` unset, and
/// `stdin` as its input; kills it after 30 s.
pub(crate) async fn tlm(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tlm"))
        .args(args)
        .env_remove("NATS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run tlm");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("tlm {args:?} did not finish within 30 s"))
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
