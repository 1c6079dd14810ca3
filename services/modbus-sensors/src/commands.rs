//! The service's commands: `ReadRegister`, `WriteRegister`, `GetDevices`.

use serde_json::{Value as Json, json};
use tokio::sync::oneshot;
use tolomeo_core::{
    ArgInfo, ArgKind, Command, CommandContext, CommandError, CommandResult, Value, async_trait, output,
};

use crate::ModbusPlugin;
use crate::bus::{Op, encode_value, value_of};
use crate::link::{Data, Fault, Write};
use crate::model::Register;

/// Find `device` and `register` from the arguments.
fn lookup(ctx: &CommandContext<'_, ModbusPlugin>) -> Result<(usize, usize, Register), CommandError> {
    let device: String = ctx.arg("device")?;
    let register: String = ctx.arg("register")?;
    let shared = &ctx.plugin.shared;
    let (d, dev) = shared
        .devices
        .iter()
        .enumerate()
        .find(|(_, x)| x.name == device)
        .ok_or_else(|| {
            let names: Vec<&str> = shared.devices.iter().map(|x| x.name.as_str()).collect();
            CommandError::invalid_payload(format!(
                "argument `device`: no device {device:?}; configured: {names:?}"
            ))
        })?;
    let (r, reg) = dev
        .registers
        .iter()
        .enumerate()
        .find(|(_, x)| x.name == register)
        .ok_or_else(|| {
            CommandError::invalid_payload(format!(
                "argument `register`: device {device:?} has no register {register:?}"
            ))
        })?;
    Ok((d, r, reg.clone()))
}

fn fault(e: Fault) -> CommandError {
    CommandError::failed(e.to_string())
}

fn hex(words: &[u16]) -> Vec<String> {
    words.iter().map(|w| format!("0x{w:04X}")).collect()
}

fn json_value(v: &Value) -> Json {
    match v {
        Value::Number(n) => json!(n),
        Value::String(s) => json!(s),
        Value::Bool(b) => json!(b),
    }
}

/// The `device` and `register` arguments of `ReadRegister` and `WriteRegister`.
fn register_args(devices: &[String]) -> Vec<ArgInfo> {
    vec![
        ArgInfo::string("device", "the device's name in [[modbus.devices]]").choices(devices.iter().cloned()),
        ArgInfo::string(
            "register",
            "the register's name on that device (GetDevices lists the devices)",
        ),
    ]
}

/// `ReadRegister {"device","register"}`: a fresh read; the published value and the raw words.
pub struct ReadRegister {
    /// The configured devices' names, offered as the choices of `device`.
    pub devices: Vec<String>,
}

#[async_trait]
impl Command<ModbusPlugin> for ReadRegister {
    fn name(&self) -> &str {
        "ReadRegister"
    }
    fn description(&self) -> &str {
        "Reads one register now: its value as published and the raw words or bits"
    }
    fn args(&self) -> Vec<ArgInfo> {
        register_args(&self.devices)
    }
    async fn execute(&self, ctx: CommandContext<'_, ModbusPlugin>) -> CommandResult {
        let (d, r, reg) = lookup(&ctx)?;
        let (tx, rx) = oneshot::channel();
        ctx.plugin
            .send(
                d,
                Op::Read {
                    device: d,
                    register: r,
                    reply: tx,
                },
            )
            .await?;
        let data = rx
            .await
            .map_err(|_| CommandError::failed("the device task stopped"))?
            .map_err(fault)?;
        let (value, _) =
            value_of(&reg, &data, 0).ok_or_else(|| CommandError::failed("the response does not hold this register"))?;
        let mut out = output!({
            "message": format!("{} = {}", reg.metric, json_value(&value)),
            "metric": reg.metric,
            "value": json_value(&value),
            "kind": reg.kind.name(),
            "address": reg.address,
            "data_type": reg.data_type.name(),
        });
        match data {
            Data::Words(w) => {
                out.insert("words".into(), json!(w));
                out.insert("words_hex".into(), json!(hex(&w)));
            }
            Data::Bits(b) => {
                out.insert("bits".into(), json!(b));
            }
        }
        if let Some(u) = &reg.unit {
            out.insert("unit".into(), json!(u));
        }
        Ok(out)
    }
}

/// `WriteRegister {"device","register","value"}`: write a `writable` register.
pub struct WriteRegister {
    /// The configured devices' names, offered as the choices of `device`.
    pub devices: Vec<String>,
}

#[async_trait]
impl Command<ModbusPlugin> for WriteRegister {
    fn name(&self) -> &str {
        "WriteRegister"
    }
    fn description(&self) -> &str {
        "Writes a value to a register configured with writable = true"
    }
    fn args(&self) -> Vec<ArgInfo> {
        let mut args = register_args(&self.devices);
        args.push(ArgInfo::new(
            "value",
            ArgKind::Any,
            "in the register's unit (scale and offset are undone): a number, true/false for a coil or bit, a string for a string register",
        ));
        args
    }
    async fn execute(&self, ctx: CommandContext<'_, ModbusPlugin>) -> CommandResult {
        let (d, r, reg) = lookup(&ctx)?;
        let value: Json = ctx.arg("value")?;
        if !reg.writable {
            return Err(CommandError::forbidden(format!(
                "{} is not writable; set `writable = true` on this register in the configuration",
                reg.metric
            )));
        }
        let what = encode_value(&reg, &value)
            .map_err(|e| CommandError::invalid_payload(format!("argument `value` for {}: {e}", reg.metric)))?;
        let (tx, rx) = oneshot::channel();
        ctx.plugin
            .send(
                d,
                Op::Write {
                    device: d,
                    register: r,
                    what,
                    reply: tx,
                },
            )
            .await?;
        let written = rx
            .await
            .map_err(|_| CommandError::failed("the device task stopped"))?
            .map_err(fault)?;
        tracing::info!(device = %ctx.plugin.shared.devices.get(d).map_or("", |x| &x.name), "wrote {value} to {}", reg.metric);
        let mut out = output!({
            "message": format!("wrote {value} to {}", reg.metric),
            "metric": reg.metric,
            "value": value,
            "address": reg.address,
        });
        match written {
            Write::Words(w) => {
                out.insert("words".into(), json!(w));
                out.insert("words_hex".into(), json!(hex(&w)));
            }
            Write::Coil(b) => {
                out.insert("bits".into(), json!([b]));
            }
            Write::Bit(_, b) => {
                out.insert("bits".into(), json!([b]));
            }
        }
        Ok(out)
    }
}

/// `GetDevices`: per device, its connection, last success and error, counters and request plan.
pub struct GetDevices;

#[async_trait]
impl Command<ModbusPlugin> for GetDevices {
    fn name(&self) -> &str {
        "GetDevices"
    }
    fn description(&self) -> &str {
        "Per device: connection, last success and error, counters and request plan"
    }
    async fn execute(&self, ctx: CommandContext<'_, ModbusPlugin>) -> CommandResult {
        let shared = &ctx.plugin.shared;
        let devices: Vec<Json> = shared
            .devices
            .iter()
            .enumerate()
            .map(|(i, dev)| {
                let mut status = serde_json::to_value(shared.status(i)).unwrap_or(Json::Null);
                if let Json::Object(m) = &mut status {
                    m.insert("name".into(), json!(dev.name));
                    m.insert("address".into(), json!(dev.address()));
                    m.insert("registers".into(), json!(dev.registers.len()));
                    m.insert(
                        "plan".into(),
                        json!(dev.plan.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
                    );
                    m.insert(
                        "poll_time_ms".into(),
                        json!(dev.poll_time.map_or(ctx.service.poll_time(), |p| p).as_millis() as u64),
                    );
                }
                status
            })
            .collect();
        Ok(output!({
            "message": format!("{} device(s)", devices.len()),
            "devices": devices,
        }))
    }
}
