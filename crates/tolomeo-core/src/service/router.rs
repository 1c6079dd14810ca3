//! The command router on `commands.<service>.req` and the built-in commands every service
//! answers (`Ping`, `GetStatus`, `GetMetrics`, `SetPollTime`, `GetCommands`). The `Command` trait, the
//! contract's errors and request parsing are `crate::command`'s.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use tolomeo_proto::command::{Call, CommandInfo};

use crate::command::{ArgInfo, Command, CommandContext, CommandError, CommandOutput, CommandResult, ErrorCode};
use crate::config::{POLL_TIME_RANGE_MS, poll_time_problem};
use crate::handle::ServiceHandle;
use crate::output;
use crate::plugin::SensorPlugin;

/// The commands of one service, matched by name.
pub(crate) struct Router<P> {
    commands: Vec<Box<dyn Command<P>>>,
    timeout: Duration,
}

impl<P: SensorPlugin> Router<P> {
    /// The built-ins followed by `extra`. A name declared twice is refused.
    pub(crate) fn new(extra: Vec<Box<dyn Command<P>>>, timeout: Duration) -> Result<Self, String> {
        let catalog = Arc::new(OnceLock::new());
        let mut commands: Vec<Box<dyn Command<P>>> = vec![
            Box::new(Ping),
            Box::new(GetStatus),
            Box::new(GetMetrics),
            Box::new(SetPollTime),
            Box::new(GetCommands(catalog.clone())),
        ];
        for c in extra {
            if commands.iter().any(|k| k.name() == c.name()) {
                return Err(format!("command `{}` is declared twice", c.name()));
            }
            commands.push(c);
        }
        let list: Vec<CommandInfo> = commands
            .iter()
            .map(|c| CommandInfo {
                name: c.name().to_string(),
                description: c.description().to_string(),
                args: c.args(),
            })
            .collect();
        let list = serde_json::to_value(list).map_err(|e| format!("cannot list the commands: {e}"))?;
        let _ = catalog.set(list);
        Ok(Router { commands, timeout })
    }

    /// The names of all commands, built-ins first.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.commands.iter().map(|c| c.name()).collect()
    }

    /// Run one call under the timeout and give the `vs` object of its response.
    pub(crate) async fn run(&self, call: &Call, plugin: &Arc<P>, service: &ServiceHandle) -> CommandOutput {
        let result = match &call.args {
            Err(e) => Err(e.clone()),
            Ok(args) => match self.commands.iter().find(|c| c.name() == call.name) {
                None => Err(CommandError::new(
                    ErrorCode::UnknownCommand,
                    format!(
                        "no command `{}`; this service answers {}",
                        call.name,
                        self.names().join(", ")
                    ),
                )),
                Some(cmd) => {
                    let ctx = CommandContext { args, plugin, service };
                    match tokio::time::timeout(self.timeout, cmd.execute(ctx)).await {
                        Ok(r) => r,
                        Err(_) => Err(CommandError::new(
                            ErrorCode::Timeout,
                            format!("`{}` did not finish within {} ms", call.name, self.timeout.as_millis()),
                        )),
                    }
                }
            },
        };
        match result {
            Ok(out) => out,
            Err(e) => {
                tracing::info!(command = %call.name, code = %e.code, "command refused: {}", e.message);
                e.to_json()
            }
        }
    }
}

/// `Ping`: `message` "pong", `service`, `version`, `uptime_s`.
struct Ping;
#[async_trait]
impl<P: SensorPlugin> Command<P> for Ping {
    fn name(&self) -> &str {
        "Ping"
    }
    fn description(&self) -> &str {
        "Answers pong, with the service's name, version and uptime"
    }
    async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult {
        let s = ctx.service;
        Ok(output!({
            "message": "pong",
            "service": s.name(),
            "version": s.version(),
            "uptime_s": s.uptime().as_secs_f64(),
        }))
    }
}

/// `GetStatus`: health and delivery counters.
struct GetStatus;
#[async_trait]
impl<P: SensorPlugin> Command<P> for GetStatus {
    fn name(&self) -> &str {
        "GetStatus"
    }
    fn description(&self) -> &str {
        "Health, poll period and delivery counters"
    }
    async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult {
        let health = ctx.plugin.health();
        let st = ctx.service.status();
        Ok(output!({
            "healthy": health.healthy,
            "detail": health.detail,
            "poll_time_ms": ctx.service.poll_time().as_millis() as u64,
            "published_records": st.published_records,
            "dropped_records": st.dropped_records,
            "buffered_records": st.buffered_records,
            "last_publish_t": st.last_publish_t,
            "broker_connected": st.broker_connected,
        }))
    }
}

/// `GetMetrics`: the entries announced on `events.params`.
struct GetMetrics;
#[async_trait]
impl<P: SensorPlugin> Command<P> for GetMetrics {
    fn name(&self) -> &str {
        "GetMetrics"
    }
    fn description(&self) -> &str {
        "The metrics this service publishes, as announced on events.params"
    }
    async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult {
        let metrics = serde_json::to_value(ctx.service.announcements())
            .map_err(|e| CommandError::failed(format!("cannot encode metrics: {e}")))?;
        Ok(output!({ "metrics": metrics }))
    }
}

/// `SetPollTime {"poll_time_ms": 100..=3600000}`.
struct SetPollTime;
#[async_trait]
impl<P: SensorPlugin> Command<P> for SetPollTime {
    fn name(&self) -> &str {
        "SetPollTime"
    }
    fn description(&self) -> &str {
        "Changes the poll period until the service restarts"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![
            ArgInfo::integer("poll_time_ms", "the new poll period, in ms")
                .range(*POLL_TIME_RANGE_MS.start(), *POLL_TIME_RANGE_MS.end()),
        ]
    }
    async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult {
        let ms: u64 = ctx.arg("poll_time_ms")?;
        // The same check and words as `service.poll_time_ms` in the configuration.
        if let Some(problem) = poll_time_problem(ms) {
            return Err(CommandError::invalid_payload(format!(
                "argument `poll_time_ms`: {problem}"
            )));
        }
        ctx.service.set_poll_time(Duration::from_millis(ms));
        Ok(output!({ "message": format!("poll time set to {ms} ms"), "poll_time_ms": ms }))
    }
}

/// `GetCommands`: every command this service accepts, with a description and its arguments
/// (name, JSON type, required or not, range or choices), built-ins first.
struct GetCommands(Arc<OnceLock<serde_json::Value>>);
#[async_trait]
impl<P: SensorPlugin> Command<P> for GetCommands {
    fn name(&self) -> &str {
        "GetCommands"
    }
    fn description(&self) -> &str {
        "Lists the commands this service accepts, with their arguments"
    }
    async fn execute(&self, _ctx: CommandContext<'_, P>) -> CommandResult {
        let commands = self.0.get().cloned().unwrap_or_default();
        Ok(output!({ "commands": commands }))
    }
}
