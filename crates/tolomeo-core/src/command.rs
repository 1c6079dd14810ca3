//! Commands: the request/response side of a service (`commands.<service>.req`).
//!
//! A command is a type with a name and an async `execute` that returns a JSON object or a
//! typed [`CommandError`] (py-tolomeo's `PluginCmd.execute` returning a dict). A plugin lists
//! its commands in [`SensorPlugin::commands`](crate::SensorPlugin::commands); the service adds
//! the built-ins `Ping`, `GetStatus`, `GetMetrics` and `SetPollTime`, and the [`Router`]
//! matches each request record by name. Parsing requests and shaping responses and errors is
//! done here and nowhere else.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

pub use tolomeo_proto::command::{ArgInfo, ArgKind, CommandError, ErrorCode};

use crate::handle::ServiceHandle;

/// A command's successful result: a JSON object (by convention with a `message`).
pub type CommandOutput = Map<String, Json>;
/// What `execute` returns.
pub type CommandResult = Result<CommandOutput, CommandError>;

/// A command a service answers.
///
/// ```
/// use tolomeo_core::{ArgInfo, Command, CommandContext, CommandResult, SensorPlugin, Metric};
/// use tolomeo_core::async_trait;
///
/// struct Echo;
/// #[async_trait]
/// impl<P: SensorPlugin> Command<P> for Echo {
///     fn name(&self) -> &str { "Echo" }
///     fn description(&self) -> &str { "Answers with the text it was given" }
///     fn args(&self) -> Vec<ArgInfo> { vec![ArgInfo::string("text", "what to answer with")] }
///     async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult {
///         let text: String = ctx.arg("text")?;
///         Ok(tolomeo_core::output!({ "message": text }))
///     }
/// }
/// ```
#[async_trait]
pub trait Command<P>: Send + Sync {
    /// The name matched against a request record's `n` (e.g. `SetPollTime`).
    fn name(&self) -> &str;
    /// What it does, in one line, for `GetCommands` and `tlm cmd <service>`.
    fn description(&self) -> &str {
        ""
    }
    /// Its arguments, for `GetCommands` (a control panel builds its form from them).
    fn args(&self) -> Vec<ArgInfo> {
        Vec::new()
    }
    /// Run the command.
    async fn execute(&self, ctx: CommandContext<'_, P>) -> CommandResult;
}

/// Build a [`CommandOutput`] from a JSON object literal: `output!({"message": "ok", "n": 3})`.
#[macro_export]
macro_rules! output {
    ($($json:tt)+) => {
        match $crate::__json!($($json)+) {
            $crate::__Json::Object(map) => map,
            _ => ::core::unreachable!("output! takes a JSON object literal"),
        }
    };
}

/// What a running command can reach: its arguments, the plugin, and the service.
pub struct CommandContext<'a, P> {
    /// The parsed `vs` object (empty when the request had none).
    pub args: &'a Map<String, Json>,
    /// The plugin instance.
    pub plugin: &'a Arc<P>,
    /// The service: status, poll time, metrics.
    pub service: &'a ServiceHandle,
}

impl<P> CommandContext<'_, P> {
    /// A required argument, converted to `T`; `invalid_payload` naming the argument otherwise.
    pub fn arg<T: DeserializeOwned>(&self, name: &str) -> Result<T, CommandError> {
        let value = self
            .args
            .get(name)
            .ok_or_else(|| CommandError::invalid_payload(format!("argument `{name}` is missing")))?;
        T::deserialize(value)
            .map_err(|e| CommandError::invalid_payload(format!("argument `{name}`: {e} (got {value})")))
    }
    /// An optional argument: `Ok(None)` when absent or null.
    pub fn opt_arg<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CommandError> {
        match self.args.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(_) => self.arg(name).map(Some),
        }
    }
    /// All arguments as one struct (use `#[serde(deny_unknown_fields)]` to refuse extras).
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, CommandError> {
        T::deserialize(Json::Object(self.args.clone()))
            .map_err(|e| CommandError::invalid_payload(format!("arguments: {e}")))
    }
}
