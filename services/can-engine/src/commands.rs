//! `GetEngineState` and `ReadPid`.

use std::time::Duration;

use tokio::sync::oneshot;
use tolomeo_core::{ArgInfo, Command, CommandContext, CommandError, CommandResult, ErrorCode, async_trait, output};

use crate::config::Mode;
use crate::engine::{CanEngine, PidRequest};
use crate::obd2::Pid;

pub(crate) fn all() -> Vec<Box<dyn Command<CanEngine>>> {
    vec![Box::new(GetEngineState), Box::new(ReadPid), Box::new(GetFaults)]
}

/// `GetEngineState`: the latest decoded values, how old each is, and the bus counters.
struct GetEngineState;

#[async_trait]
impl Command<CanEngine> for GetEngineState {
    fn name(&self) -> &str {
        "GetEngineState"
    }
    fn description(&self) -> &str {
        "The latest decoded values with their age, and the bus counters"
    }
    async fn execute(&self, ctx: CommandContext<'_, CanEngine>) -> CommandResult {
        let health = tolomeo_core::SensorPlugin::health(ctx.plugin.as_ref());
        let p = ctx.plugin.pipeline.lock().unwrap_or_else(|e| e.into_inner());
        let mut values = serde_json::Map::new();
        for s in p.slots() {
            let v = match s.latest {
                Some((value, t, seen)) => serde_json::json!({
                    "value": value,
                    "unit": s.unit,
                    "t": t,
                    "age_s": (seen.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                }),
                None => serde_json::json!({ "value": null, "unit": s.unit, "t": null, "age_s": null }),
            };
            values.insert(s.name.clone(), v);
        }
        let counters = serde_json::to_value(p.counters).unwrap_or_default();
        let fresh = p.slots().iter().filter(|s| s.latest.is_some()).count();
        Ok(output!({
            "message": format!("{fresh} of {} values decoded so far", p.slots().len()),
            "values": values,
            "counters": counters,
            "source": health.detail,
            "healthy": health.healthy,
        }))
    }
}

/// `ReadPid {"pid": 12}`: one OBD-II request; the decoded value, or `timeout`.
struct ReadPid;

#[async_trait]
impl Command<CanEngine> for ReadPid {
    fn name(&self) -> &str {
        "ReadPid"
    }
    fn description(&self) -> &str {
        "Sends one OBD-II mode 01 request and answers the decoded value (obd2 mode only)"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![
            ArgInfo::integer(
                "pid",
                "the PID: 4 engine load, 5 coolant temperature, 12 engine speed, 13 vehicle speed",
            )
            .choices(Pid::ALL.map(Pid::code)),
        ]
    }
    async fn execute(&self, ctx: CommandContext<'_, CanEngine>) -> CommandResult {
        if ctx.plugin.cfg.mode != Mode::Obd2 {
            return Err(CommandError::forbidden("ReadPid needs `mode = \"obd2\"` in [can]"));
        }
        let code: u8 = ctx.arg("pid")?;
        let pid = Pid::from_code(code).ok_or_else(|| {
            CommandError::invalid_payload(format!(
                "argument `pid`: {code} is not supported; expected 4, 5, 12 or 13 (0x04, 0x05, 0x0C, 0x0D)"
            ))
        })?;
        let (tx, rx) = oneshot::channel();
        ctx.plugin
            .requests
            .send(PidRequest { pid, reply: tx })
            .await
            .map_err(|_| CommandError::failed("the CAN reader is not running"))?;
        let wait = Duration::from_millis(ctx.plugin.cfg.obd2.timeout_ms + 1_000);
        let (metric, unit) = pid.metric();
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(value))) => Ok(output!({
                "message": format!("PID {code:#04x}: {value} {unit}"),
                "pid": code,
                "metric": metric,
                "value": value,
                "unit": unit,
            })),
            Ok(Ok(Err(e))) if e.starts_with("no reply") => Err(CommandError::new(ErrorCode::Timeout, e)),
            Ok(Ok(Err(e))) => Err(CommandError::failed(e)),
            Ok(Err(_)) => Err(CommandError::failed("the CAN reader stopped")),
            Err(_) => Err(CommandError::new(
                ErrorCode::Timeout,
                format!("no reply to PID {code:#04x} (the CAN source is not being read)"),
            )),
        }
    }
}

/// `GetFaults`: per DM1 source address, the lamps and the active DTCs with when each was first
/// and last seen.
struct GetFaults;

#[async_trait]
impl Command<CanEngine> for GetFaults {
    fn name(&self) -> &str {
        "GetFaults"
    }
    fn description(&self) -> &str {
        "Active diagnostic trouble codes (J1939 DM1) per source address, with lamps and when each was first and last seen"
    }
    async fn execute(&self, ctx: CommandContext<'_, CanEngine>) -> CommandResult {
        let p = ctx.plugin.pipeline.lock().unwrap_or_else(|e| e.into_inner());
        if p.faults().is_empty() {
            return Err(CommandError::forbidden(
                "no DM1 is read: set `dm1_sources` in [can], e.g. [0] for engine #1",
            ));
        }
        let mut sources = Vec::new();
        let mut total = 0;
        for (sa, f) in p.faults() {
            total += f.active.len();
            let mut entry = serde_json::to_value(f).unwrap_or_default();
            if let Some(m) = entry.as_object_mut() {
                m.insert("source_address".into(), serde_json::json!(sa));
            }
            sources.push(entry);
        }
        Ok(output!({
            "message": format!("{total} active DTC(s) from {} source address(es)", sources.len()),
            "sources": sources,
        }))
    }
}
