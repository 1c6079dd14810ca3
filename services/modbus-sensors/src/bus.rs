//! A bus: one connection (a TCP device, or a serial line with every device on it) and the
//! single task that owns it. The task polls its devices when they are due, runs the commands'
//! reads and writes between polls, and reconnects with exponential backoff.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_modbus::client::Context;
use tolomeo_core::{Reading, Readings, Value, unix_now};

use crate::codec::{self, DataType, Raw};
use crate::link::{self, Data, Fault, Write};
use crate::model::{Device, Register, Transport};

/// First wait after a failure; doubled after every further failure.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
/// Longest wait between two attempts on a failing device.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a device has been doing, for `GetDevices` and the health report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeviceStatus {
    /// A connection is open (for RTU: the serial port).
    pub connected: bool,
    /// When the last complete poll ended (Unix seconds).
    pub last_success_t: Option<f64>,
    /// The last fault, with the time it happened.
    pub last_error: Option<String>,
    pub last_error_t: Option<f64>,
    /// Polls whose every read succeeded.
    pub polls_ok: u64,
    /// Polls skipped because the device did not answer (their readings are not published).
    pub polls_failed: u64,
    /// Reads that went unanswered after every retry.
    pub timeouts: u64,
    /// Exception responses received.
    pub exceptions: u64,
    /// Failed connection attempts and lost connections.
    pub link_errors: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// Failures in a row; 0 when the last poll succeeded.
    pub consecutive_failures: u32,
    #[serde(skip)]
    ever_connected: bool,
}

/// The devices and their status, shared by the bus tasks, the commands and the health report.
#[derive(Debug)]
pub struct Shared {
    pub devices: Vec<Arc<Device>>,
    status: Vec<Mutex<DeviceStatus>>,
}

impl Shared {
    pub fn new(devices: Vec<Device>) -> Self {
        let status = devices.iter().map(|_| Mutex::new(DeviceStatus::default())).collect();
        Shared {
            devices: devices.into_iter().map(Arc::new).collect(),
            status,
        }
    }
    /// The status of device `i` (a default one for an unknown index).
    pub fn status(&self, i: usize) -> DeviceStatus {
        self.status
            .get(i)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
    fn update(&self, i: usize, f: impl FnOnce(&mut DeviceStatus)) {
        if let Some(m) = self.status.get(i) {
            let mut g: MutexGuard<'_, DeviceStatus> = m.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g);
        }
    }
    fn failed(&self, i: usize, fault: &Fault) {
        self.update(i, |s| {
            s.last_error = Some(fault.to_string());
            s.last_error_t = Some(unix_now());
            match fault {
                Fault::Timeout(_) => s.timeouts += 1,
                Fault::Exception(_) => s.exceptions += 1,
                Fault::Link(_) => {
                    s.link_errors += 1;
                    s.connected = false;
                }
            }
        });
    }
}

/// A read or write asked for by a command, run by the bus task between polls.
pub enum Op {
    Read {
        device: usize,
        register: usize,
        reply: oneshot::Sender<Result<Data, Fault>>,
    },
    Write {
        device: usize,
        register: usize,
        what: Write,
        reply: oneshot::Sender<Result<Write, Fault>>,
    },
}

/// One connection and its devices (indexes into [`Shared::devices`]).
pub struct Bus {
    pub devices: Vec<usize>,
    pub ops: mpsc::Receiver<Op>,
}

/// The published value of `reg` read as `words` (or a bit).
pub fn value_of(reg: &Register, data: &Data, offset: usize) -> Option<(Value, Raw)> {
    let raw = match data {
        Data::Bits(bits) => Raw::Bool(*bits.get(offset)?),
        Data::Words(words) => {
            let w = words.get(offset..offset + usize::from(reg.width))?;
            codec::decode(w, reg.data_type, reg.byte_order, reg.bit)?
        }
    };
    let value = match &raw {
        Raw::Bool(b) => Value::Bool(*b),
        Raw::Text(t) => Value::String(t.clone()),
        other => Value::Number(codec::scaled(other, reg.scale, reg.offset)?),
    };
    Some((value, raw))
}

struct Slot {
    next_due: Instant,
    backoff: Duration,
}

impl Bus {
    /// Run until the service stops draining readings.
    pub async fn run(mut self, shared: Arc<Shared>, readings: Readings, poll_time: watch::Receiver<Duration>) {
        let now = Instant::now();
        let mut slots: Vec<Slot> = self
            .devices
            .iter()
            .map(|_| Slot {
                next_due: now,
                backoff: BACKOFF_START,
            })
            .collect();
        let mut conn: Option<Context> = None;
        loop {
            let Some((k, due)) = slots
                .iter()
                .enumerate()
                .map(|(k, s)| (k, s.next_due))
                .min_by_key(|x| x.1)
            else {
                return;
            };
            tokio::select! {
                biased;
                op = self.ops.recv() => match op {
                    Some(op) => self.command(op, &shared, &mut conn).await,
                    None => return,
                },
                _ = tokio::time::sleep_until(due) => {
                    let Some(&d) = self.devices.get(k) else { return };
                    let Some(device) = shared.devices.get(d).cloned() else { return };
                    let period = device.poll_time.unwrap_or_else(|| *poll_time.borrow());
                    let ok = poll(&device, d, &shared, &mut conn, &readings).await;
                    let Some(slot) = slots.get_mut(k) else { return };
                    if ok {
                        slot.backoff = BACKOFF_START;
                        slot.next_due = (slot.next_due + period).max(Instant::now());
                    } else {
                        slot.next_due = Instant::now() + slot.backoff;
                        slot.backoff = (slot.backoff * 2).min(BACKOFF_MAX);
                    }
                    if readings.is_closed() {
                        return;
                    }
                }
            }
        }
    }

    async fn command(&self, op: Op, shared: &Shared, conn: &mut Option<Context>) {
        let (d, r) = match &op {
            Op::Read { device, register, .. } | Op::Write { device, register, .. } => (*device, *register),
        };
        let Some(device) = shared.devices.get(d).cloned() else {
            return;
        };
        let Some(reg) = device.registers.get(r) else { return };
        let result = match connect(&device, d, shared, conn).await {
            Err(f) => Err(f),
            Ok(ctx) => match &op {
                Op::Read { .. } => {
                    let count = if reg.kind.is_bits() { 1 } else { reg.width };
                    link::read(
                        ctx,
                        device.unit_id,
                        reg.kind,
                        reg.address,
                        count,
                        device.timeout,
                        device.retries,
                    )
                    .await
                    .map(Ok)
                }
                Op::Write { what, .. } => link::write(ctx, device.unit_id, reg.address, what, device.timeout)
                    .await
                    .map(Err),
            },
        };
        if let Err(f) = &result {
            shared.failed(d, f);
            if f.breaks_link() {
                *conn = None;
            }
        }
        match op {
            Op::Read { reply, .. } => {
                let _ = reply.send(result.and_then(|x| x.map_err(|_| Fault::Link("unexpected write result".into()))));
            }
            Op::Write { reply, .. } => {
                let _ = reply.send(result.and_then(|x| match x {
                    Err(w) => Ok(w),
                    Ok(_) => Err(Fault::Link("unexpected read result".into())),
                }));
            }
        }
    }
}

/// The open connection, opening it first when needed.
async fn connect<'c>(
    device: &Device,
    d: usize,
    shared: &Shared,
    conn: &'c mut Option<Context>,
) -> Result<&'c mut Context, Fault> {
    if conn.is_none() {
        let ctx = link::open(&device.transport, device.unit_id, device.timeout).await?;
        tracing::info!(device = %device.name, "connected to {}", device.address());
        shared.update(d, |s| {
            if s.ever_connected {
                s.reconnects += 1;
            }
            s.ever_connected = true;
        });
        if !device.pause_after_connect.is_zero() {
            tokio::time::sleep(device.pause_after_connect).await;
        }
        *conn = Some(ctx);
    }
    shared.update(d, |s| s.connected = true);
    conn.as_mut().ok_or_else(|| Fault::Link("not connected".into()))
}

/// What one pass over a device's plan gave.
#[derive(Debug)]
pub struct Outcome {
    /// The values read, stamped with the time the pass started.
    pub reading: Reading,
    /// Reads answered with data.
    pub answered: usize,
    /// Reads answered with an exception: the request and the fault.
    pub exceptions: Vec<(String, Fault)>,
}

/// Send every read of `device`'s plan over `ctx` and decode the answers. An exception skips
/// the values of that read only; a timeout or a broken link ends the pass with the fault.
pub async fn read_all(device: &Device, ctx: &mut Context) -> Result<Outcome, Fault> {
    let mut out = Outcome {
        reading: Reading::now(),
        answered: 0,
        exceptions: Vec::new(),
    };
    for (n, req) in device.plan.iter().enumerate() {
        if n > 0 && !device.pause_between_requests.is_zero() {
            tokio::time::sleep(device.pause_between_requests).await;
        }
        match link::read(
            ctx,
            device.unit_id,
            req.kind,
            req.start,
            req.count,
            device.timeout,
            device.retries,
        )
        .await
        {
            Ok(data) => {
                out.answered += 1;
                for &i in &req.items {
                    let Some(reg) = device.registers.get(i) else { continue };
                    let offset = usize::from(reg.address.saturating_sub(req.start));
                    if let Some((value, _)) = value_of(reg, &data, offset) {
                        out.reading.push(reg.metric.clone(), value);
                    }
                }
            }
            Err(f @ Fault::Exception(_)) => out.exceptions.push((req.to_string(), f)),
            Err(f) => return Err(f),
        }
    }
    Ok(out)
}

/// Poll one device and push its reading. False when the device did not answer (the poll is
/// skipped and counted; the caller backs off).
async fn poll(device: &Device, d: usize, shared: &Shared, conn: &mut Option<Context>, readings: &Readings) -> bool {
    let ctx = match connect(device, d, shared, conn).await {
        Ok(c) => c,
        Err(f) => {
            note_failure(device, d, shared, &f);
            return false;
        }
    };
    let outcome = match read_all(device, ctx).await {
        Ok(o) => o,
        Err(f) => {
            if matches!(device.transport, Transport::Tcp { .. }) || f.breaks_link() {
                // A TCP stream that timed out may deliver the late answer to the next request.
                *conn = None;
                shared.update(d, |s| s.connected = false);
            }
            note_failure(device, d, shared, &f);
            return false;
        }
    };
    for (req, f) in &outcome.exceptions {
        tracing::warn!(device = %device.name, "{req}: {f}; its values are skipped");
        shared.failed(d, f);
    }
    if outcome.answered == 0 && !device.plan.is_empty() {
        shared.update(d, |s| {
            s.polls_failed += 1;
            s.consecutive_failures += 1;
        });
        return true; // It answers, with exceptions only: no reconnect, keep the period.
    }
    let recovered = shared.status(d).consecutive_failures > 0;
    shared.update(d, |s| {
        s.polls_ok += 1;
        s.consecutive_failures = 0;
        s.last_success_t = Some(unix_now());
    });
    if recovered {
        tracing::info!(device = %device.name, "answering again");
    }
    readings.send(outcome.reading).await;
    true
}

fn note_failure(device: &Device, d: usize, shared: &Shared, f: &Fault) {
    let first = shared.status(d).consecutive_failures == 0;
    shared.failed(d, f);
    shared.update(d, |s| {
        s.polls_failed += 1;
        s.consecutive_failures += 1;
    });
    if first {
        tracing::warn!(device = %device.name, "{}: {f}; skipping its readings and retrying with backoff", device.address());
    } else {
        tracing::debug!(device = %device.name, "still failing: {f}");
    }
}

/// Registers that hold `value` for a writable register, or why they cannot.
pub fn encode_value(reg: &Register, value: &serde_json::Value) -> Result<Write, String> {
    match (reg.data_type, reg.kind.is_bits()) {
        (DataType::Bool, true) => value
            .as_bool()
            .map(Write::Coil)
            .ok_or_else(|| format!("{value} is not a boolean")),
        (DataType::Bool, false) => value
            .as_bool()
            .map(|b| Write::Bit(reg.bit.unwrap_or(0), b))
            .ok_or_else(|| format!("{value} is not a boolean")),
        (DataType::String, _) => {
            let s = value.as_str().ok_or_else(|| format!("{value} is not a string"))?;
            codec::encode(&Raw::Text(s.into()), DataType::String, reg.byte_order, reg.width).map(Write::Words)
        }
        (dt, _) => {
            let v = value.as_f64().ok_or_else(|| format!("{value} is not a number"))?;
            let raw = codec::unscaled(v, dt, reg.scale, reg.offset)?;
            codec::encode(&raw, dt, reg.byte_order, reg.width).map(Write::Words)
        }
    }
}
