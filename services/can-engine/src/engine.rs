//! The plugin: opens the configured source, runs the reading task, answers `sample`,
//! `health` and the commands.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tolomeo_core::config::{BuildContext, ConfigError, Problem};
use tolomeo_core::{Command, Health, Metric, PluginContext, PluginError, Reading, Readings, SensorPlugin, async_trait};

use crate::config::{CanConfig, Mode};
use crate::dbc::Dbc;
use crate::frame::{Frame, FrameSource, SourceError};
use crate::memory::MemoryBus;
use crate::obd2::{self, Pid};
use crate::pipeline::Pipeline;
use crate::replay::ReplaySource;

/// Longest wait between two attempts to open the source.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where frames come from.
enum SourceKind {
    Replay(PathBuf),
    SocketCan(String),
    Memory(Mutex<Option<MemoryBus>>),
}

/// The source's state, for `health`.
struct SourceState {
    open: bool,
    detail: String,
}

/// Where the answer to a one-off request goes.
type Waiter = oneshot::Sender<Result<f64, String>>;

/// A one-off OBD-II request from `ReadPid`.
pub(crate) struct PidRequest {
    pub(crate) pid: Pid,
    pub(crate) reply: Waiter,
}

/// The can-engine plugin.
pub struct CanEngine {
    pub(crate) cfg: CanConfig,
    kind: SourceKind,
    pub(crate) pipeline: Mutex<Pipeline>,
    state: Mutex<SourceState>,
    readings: OnceLock<Readings>,
    pub(crate) requests: mpsc::Sender<PidRequest>,
    requests_rx: Mutex<Option<mpsc::Receiver<PidRequest>>>,
    frames_at_last_sample: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CanEngine {
    /// Check `[can]` and build the plugin, in one call: what `main` gives `cli::main`. Checks
    /// the section's values, reads and parses the DBC file, builds the decoding pipeline with
    /// aggregation windows of the service's poll period. Opens nothing: the source is opened
    /// by `start`. Every problem at once, keys relative to `[can]`.
    pub fn new(cfg: &CanConfig, ctx: &BuildContext) -> Result<Self, ConfigError> {
        let kind = match &cfg.replay {
            Some(p) => SourceKind::Replay(p.clone()),
            None => SourceKind::SocketCan(cfg.interface.clone()),
        };
        Self::build(cfg, ctx, kind)
    }

    /// Build with an in-process bus as the source (tests, demos); checked as [`CanEngine::new`].
    pub fn with_memory_bus(cfg: &CanConfig, ctx: &BuildContext, bus: MemoryBus) -> Result<Self, ConfigError> {
        Self::build(cfg, ctx, SourceKind::Memory(Mutex::new(Some(bus))))
    }

    fn build(cfg: &CanConfig, ctx: &BuildContext, kind: SourceKind) -> Result<Self, ConfigError> {
        let mut problems = cfg.problems();
        let dbc = match &cfg.dbc {
            None => None,
            Some(path) => match std::fs::read_to_string(path) {
                Err(e) => {
                    problems.push(Problem::new(
                        "dbc",
                        format!("cannot read the DBC file {}: {e}", path.display()),
                    ));
                    None
                }
                Ok(text) => match Dbc::parse(&text) {
                    Ok(dbc) => Some(dbc),
                    Err(e) => {
                        problems.push(Problem::new("dbc", format!("{}: {e}", path.display())));
                        None
                    }
                },
            },
        };
        // The pipeline needs checked values and the DBC file's signals: without them it would
        // only report consequences of what is already reported.
        let pipeline = if problems.is_empty() {
            // Windows of the period in force at start; `drive` follows `SetPollTime`.
            match Pipeline::new(cfg, dbc.as_ref(), ctx.poll_time) {
                Ok(p) => Some(p),
                Err(found) => {
                    problems.extend(found);
                    None
                }
            }
        } else {
            None
        };
        let Some(pipeline) = pipeline else {
            return Err(ConfigError {
                source: "configuration section [can]".into(),
                problems,
            });
        };
        let (tx, rx) = mpsc::channel(16);
        Ok(CanEngine {
            cfg: cfg.clone(),
            kind,
            pipeline: Mutex::new(pipeline),
            state: Mutex::new(SourceState {
                open: false,
                detail: "not opened yet".into(),
            }),
            readings: OnceLock::new(),
            requests: tx,
            requests_rx: Mutex::new(Some(rx)),
            frames_at_last_sample: AtomicU64::new(0),
        })
    }

    fn set_state(&self, open: bool, detail: String) {
        let mut s = lock(&self.state);
        s.open = open;
        s.detail = detail;
    }

    /// Read the source until the service stops, then hand over what the open windows hold.
    async fn read_loop(self: Arc<Self>, readings: Readings, poll: watch::Receiver<Duration>, stop: CancellationToken) {
        tokio::select! {
            () = self.clone().read_source(readings.clone(), poll) => {}
            () = stop.cancelled() => {}
        }
        // Stopped or ended: what the open windows hold is delivered too.
        let mut out = Vec::new();
        lock(&self.pipeline).flush(&mut out);
        deliver(&readings, out, false).await;
    }

    /// Open the source and read it until it ends; reopen with backoff when it fails.
    async fn read_source(self: Arc<Self>, readings: Readings, mut poll: watch::Receiver<Duration>) {
        let Some(mut requests) = lock(&self.requests_rx).take() else {
            return;
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            let result = match &self.kind {
                SourceKind::Replay(path) => {
                    let speed = self.cfg.replay_speed.factor();
                    match ReplaySource::open(path, speed, self.cfg.replay_loop) {
                        Ok(s) => {
                            let now = self.cfg.replay_clock == crate::config::ReplayClock::Now;
                            self.drive(s.stamped_now(now), &readings, &mut poll, &mut requests)
                                .await
                        }
                        Err(e) => Err(e),
                    }
                }
                SourceKind::SocketCan(iface) => self.open_socketcan(iface, &readings, &mut poll, &mut requests).await,
                SourceKind::Memory(bus) => {
                    let bus = lock(bus).take();
                    match bus {
                        Some(b) => self.drive(b, &readings, &mut poll, &mut requests).await,
                        None => Err(SourceError::Unavailable("the in-process bus is closed".into())),
                    }
                }
            };
            let mut out = Vec::new();
            lock(&self.pipeline).flush(&mut out);
            deliver(&readings, out, true).await;
            match result {
                Ok(()) => return,
                Err(SourceError::End) => {
                    let frames = lock(&self.pipeline).counters.frames;
                    tracing::info!("replay finished after {frames} frames");
                    self.set_state(true, format!("replay finished after {frames} frames"));
                    return;
                }
                Err(e) => {
                    if lock(&self.state).open {
                        // It was readable until now: start the backoff again from 1 s.
                        backoff = Duration::from_secs(1);
                    }
                    tracing::warn!("{e}; retrying in {} s", backoff.as_secs());
                    self.set_state(
                        false,
                        format!("{e} (retrying every {} s at most)", MAX_BACKOFF.as_secs()),
                    );
                    self.wait_before_retry(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    async fn open_socketcan(
        &self,
        iface: &str,
        readings: &Readings,
        poll: &mut watch::Receiver<Duration>,
        requests: &mut mpsc::Receiver<PidRequest>,
    ) -> Result<(), SourceError> {
        let filters = crate::filters::kernel_filters(&self.cfg, &lock(&self.pipeline));
        let source = crate::socketcan_source::SocketCanSource::open(iface, &filters)?;
        self.drive(source, readings, poll, requests).await
    }

    #[cfg(not(target_os = "linux"))]
    async fn open_socketcan(
        &self,
        iface: &str,
        _readings: &Readings,
        _poll: &mut watch::Receiver<Duration>,
        _requests: &mut mpsc::Receiver<PidRequest>,
    ) -> Result<(), SourceError> {
        Err(SourceError::Unavailable(format!(
            "CAN interface {iface:?}: SocketCAN needs Linux"
        )))
    }

    /// Wait `backoff` before opening the source again; a CAN interface that is missing or down
    /// now is opened as soon as it is up, so that few frames are lost after it is re-created.
    async fn wait_before_retry(&self, backoff: Duration) {
        #[cfg(target_os = "linux")]
        if let SourceKind::SocketCan(iface) = &self.kind
            && crate::socketcan_source::link_up(iface) != Some(true)
        {
            crate::socketcan_source::wait_for_interface(iface, backoff).await;
            return;
        }
        tokio::time::sleep(backoff).await;
    }

    /// The link went down: unhealthy (no heartbeat) until it is up again; the source stays open.
    fn link_down(&self, down: &mut Option<String>, why: String) {
        if down.is_none() {
            tracing::warn!("{why}; waiting for it to come up");
        }
        self.set_state(false, format!("{why} (waiting for it to come up)"));
        *down = Some(why);
    }

    /// Answer and count the OBD-II requests whose reply did not come in time.
    fn expire(&self, pending: &mut Vec<(Pid, Instant, Option<Waiter>)>, timeout: Duration) {
        let now = Instant::now();
        let mut expired = 0;
        pending.retain_mut(|(pid, deadline, waiter)| {
            if *deadline > now {
                return true;
            }
            expired += 1;
            if let Some(w) = waiter.take() {
                let _ = w.send(Err(format!(
                    "no reply to PID {:#04x} within {} ms",
                    pid.code(),
                    timeout.as_millis()
                )));
            }
            false
        });
        if expired > 0 {
            lock(&self.pipeline).counters.obd_timeouts += expired;
        }
    }

    /// Read one open source until it fails or ends.
    async fn drive<S: FrameSource>(
        &self,
        mut source: S,
        readings: &Readings,
        poll: &mut watch::Receiver<Duration>,
        requests: &mut mpsc::Receiver<PidRequest>,
    ) -> Result<(), SourceError> {
        let what = source.describe();
        tracing::info!("reading {what}");
        self.set_state(true, format!("reading {what}"));
        let can_wait = matches!(self.kind, SourceKind::Replay(_));
        let obd = self.cfg.mode == Mode::Obd2;
        let mut pids = vec![Pid::Rpm];
        for pid in self.cfg.obd2.pids.iter().filter_map(|c| Pid::from_code(*c)) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        let timeout = Duration::from_millis(self.cfg.obd2.timeout_ms);
        let mut can_send = true;
        // Why the link is down, while it is.
        let mut down: Option<String> = None;
        let mut pending: Vec<(Pid, Instant, Option<Waiter>)> = Vec::new();
        let mut period = *poll.borrow_and_update();
        lock(&self.pipeline).set_period(period, &mut Vec::new());
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Frame> = Vec::with_capacity(512);
        let mut out: Vec<Reading> = Vec::new();
        loop {
            let next_deadline = pending.iter().map(|p| p.1).min();
            tokio::select! {
                biased;
                changed = poll.changed() => {
                    if changed.is_ok() {
                        period = *poll.borrow_and_update();
                        lock(&self.pipeline).set_period(period, &mut out);
                        tick = tokio::time::interval(period);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                Some(req) = requests.recv() => {
                    if !can_send {
                        let _ = req.reply.send(Err(format!("{what} cannot send requests")));
                    } else if let Some(why) = &down {
                        let _ = req.reply.send(Err(why.clone()));
                    } else {
                        match source.send(obd2::request(req.pid.code(), 0)).await {
                            Ok(()) => pending.push((req.pid, Instant::now() + timeout, Some(req.reply))),
                            Err(SourceError::CannotSend(m)) => {
                                can_send = false;
                                let _ = req.reply.send(Err(m));
                            }
                            Err(SourceError::LinkDown(m)) => {
                                let _ = req.reply.send(Err(m.clone()));
                                self.link_down(&mut down, m);
                            }
                            Err(e) => {
                                let _ = req.reply.send(Err(e.to_string()));
                                return Err(e);
                            }
                        }
                    }
                }
                _ = tick.tick(), if obd && can_send && down.is_none() => {
                    for &pid in &pids {
                        match source.send(obd2::request(pid.code(), 0)).await {
                            Ok(()) => pending.push((pid, Instant::now() + timeout, None)),
                            Err(SourceError::CannotSend(m)) => {
                                tracing::info!("{m}: OBD-II requests are not sent, replies in the log are decoded");
                                can_send = false;
                                break;
                            }
                            Err(SourceError::LinkDown(m)) => {
                                self.link_down(&mut down, m);
                                break;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                got = source.recv_batch(&mut batch, 512) => {
                    let malformed = source.take_malformed();
                    if malformed > 0 {
                        lock(&self.pipeline).malformed_lines(malformed);
                    }
                    match got {
                        Err(SourceError::LinkDown(m)) => self.link_down(&mut down, m),
                        Err(SourceError::LinkUp) => {
                            if down.take().is_some() {
                                tracing::info!("{what} is up again");
                            }
                            self.set_state(true, format!("reading {what}"));
                        }
                        other => other?,
                    }
                    let now = Instant::now();
                    {
                    let mut p = lock(&self.pipeline);
                    for f in &batch {
                        if let Some((pid, v)) = p.handle(f, now, &mut out) {
                            pending.retain_mut(|(want, _, waiter)| {
                                if *want != pid {
                                    return true;
                                }
                                if let Some(w) = waiter.take() {
                                    let _ = w.send(Ok(v));
                                }
                                false
                            });
                        }
                    }
                    }
                    let many = batch.len() > 1;
                    batch.clear();
                    // Replies read in this batch were matched first: a reply that waited in the
                    // socket while the process was not scheduled is not a timeout.
                    self.expire(&mut pending, timeout);
                    if many {
                        tokio::task::yield_now().await;
                    }
                }
                // After the socket: the branch above runs first when both are ready.
                _ = sleep_until(next_deadline) => self.expire(&mut pending, timeout),
            }
            if !out.is_empty() && !deliver(readings, std::mem::take(&mut out), can_wait).await {
                return Ok(());
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Hand readings to the service: a replay waits for room, a bus drops and counts. False when
/// the service stopped draining.
async fn deliver(readings: &Readings, out: Vec<Reading>, wait: bool) -> bool {
    for r in out {
        let ok = if wait {
            readings.send(r).await
        } else {
            readings.try_send(r)
        };
        if !ok {
            return false;
        }
    }
    true
}

#[async_trait]
impl SensorPlugin for CanEngine {
    fn id(&self) -> &str {
        "can"
    }

    fn metrics(&self) -> Vec<Metric> {
        lock(&self.pipeline).metrics()
    }

    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        crate::commands::all()
    }

    fn health(&self) -> Health {
        let (open, detail) = {
            let s = lock(&self.state);
            (s.open, s.detail.clone())
        };
        if !open {
            return Health::unhealthy(detail);
        }
        let last = lock(&self.pipeline).last_frame;
        let stale = Duration::from_millis(self.cfg.stale_after_ms);
        match last {
            Some(t) if t.elapsed() > stale => Health::healthy(format!(
                "{detail}; no frames for {:.1} s (engine off or bus silent)",
                t.elapsed().as_secs_f64()
            )),
            None => Health::healthy(format!("{detail}; no frames yet")),
            Some(_) => Health::healthy(detail),
        }
    }

    async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
        let mut out = Vec::new();
        {
            let mut p = lock(&self.pipeline);
            let frames = p.counters.frames;
            if self.frames_at_last_sample.swap(frames, Ordering::Relaxed) == frames {
                // The bus was quiet for a whole period: publish what the open windows hold.
                p.flush(&mut out);
            }
            for (name, value) in p.counter_reading(reading.time()).values() {
                reading.push(name.clone(), value.clone());
            }
        }
        if let Some(r) = self.readings.get() {
            for x in out {
                r.try_send(x);
            }
        }
        Ok(())
    }

    fn start(self: &Arc<Self>, ctx: &PluginContext) {
        let _ = self.readings.set(ctx.readings.clone());
        let me = self.clone();
        let readings = ctx.readings.clone();
        let poll = ctx.poll_time.clone();
        // It ends by itself at shutdown, after handing over the open aggregation windows.
        ctx.tasks
            .spawn_finishing("can reader", |stop| me.read_loop(readings, poll, stop));
    }
}
