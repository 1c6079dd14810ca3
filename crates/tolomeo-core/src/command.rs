//! Commands: the request/response side of a service (`commands.<service>.req`).
//!
//! A command is a type with a name and an async `execute` that returns a JSON object or a
//! typed [`CommandError`] (py-tolomeo's `PluginCmd.execute` returning a dict). A plugin lists
//! its commands in [`SensorPlugin::commands`](crate::SensorPlugin::commands); the service adds
//! the built-ins `Ping`, `GetStatus`, `GetMetrics` and `SetPollTime`, and the [`Router`]
//! matches each request record by name. Parsing requests and shaping responses and errors is
//! done here and nowhere else.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json, json};

use crate::handle::ServiceHandle;
use crate::senml;

/// A command's successful result: a JSON object (by convention with a `message`).
pub type CommandOutput = Map<String, Json>;
/// What `execute` returns.
pub type CommandResult = Result<CommandOutput, CommandError>;

/// Requests above this size are refused with `invalid_request` (PROTOCOL.md section 4).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A command a service answers.
///
/// ```
/// use tolomeo_core::{Command, CommandContext, CommandResult, SensorPlugin, Metric};
/// use tolomeo_core::async_trait;
///
/// struct Echo;
/// #[async_trait]
/// impl<P: SensorPlugin> Command<P> for Echo {
///     fn name(&self) -> &str { "Echo" }
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

/// The error codes of PROTOCOL.md section 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No command of that name.
    UnknownCommand,
    /// Not a SenML pack, no `n`, over the size limit.
    InvalidRequest,
    /// Arguments missing, of the wrong type or out of range.
    InvalidPayload,
    /// The configuration does not allow it.
    Forbidden,
    /// It ran and failed.
    Failed,
    /// It did not finish within the command timeout.
    Timeout,
}

impl ErrorCode {
    /// Every code, in the order of PROTOCOL.md section 4.
    pub const ALL: [ErrorCode; 6] = [
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidPayload,
        ErrorCode::Forbidden,
        ErrorCode::Failed,
        ErrorCode::Timeout,
    ];

    /// The code whose wire string is `s`.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPayload => "invalid_payload",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Failed => "failed",
            ErrorCode::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command's failure: a code from the contract and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    /// The contract's code.
    pub code: ErrorCode,
    /// What went wrong, for a human.
    pub message: String,
}

impl CommandError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CommandError {
            code,
            message: message.into(),
        }
    }
    /// `invalid_payload`: arguments missing, of the wrong type or out of range.
    pub fn invalid_payload(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPayload, message)
    }
    /// `forbidden`: the configuration does not allow it.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// `failed`: it ran and failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Failed, message)
    }
    /// The `vs` object of an error response.
    pub fn to_json(&self) -> CommandOutput {
        let mut map = Map::new();
        map.insert(
            "error".into(),
            json!({"code": self.code.as_str(), "message": self.message}),
        );
        map
    }
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

/// One request record, parsed: the command name and its arguments, or what was wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The record's `n` ("" when it had none).
    pub name: String,
    /// The arguments, or the error to answer with.
    pub args: Result<Map<String, Json>, CommandError>,
}

/// Parse a request payload into calls, one per record (PROTOCOL.md section 4). A payload that
/// is too large or not a SenML pack gives one call named "" carrying `invalid_request`.
pub fn parse_request(payload: &[u8]) -> Vec<Call> {
    let whole = |message: String| {
        vec![Call {
            name: String::new(),
            args: Err(CommandError::new(ErrorCode::InvalidRequest, message)),
        }]
    };
    if payload.len() > MAX_REQUEST_BYTES {
        return whole(format!(
            "request is {} bytes, over the limit of {MAX_REQUEST_BYTES} bytes",
            payload.len()
        ));
    }
    let pack = match senml::decode_pack(payload) {
        Ok(pack) => pack,
        Err(e) => return whole(format!("not a SenML pack: {e}")),
    };
    if pack.is_empty() {
        return whole("the pack has no record; expected one record per command".into());
    }
    pack.into_iter().map(parse_record).collect()
}

fn parse_record(record: senml::Record) -> Call {
    let name = record.n.unwrap_or_default();
    if name.is_empty() {
        return Call {
            name,
            args: Err(CommandError::new(
                ErrorCode::InvalidRequest,
                "record has no `n`; expected the command name in `n`",
            )),
        };
    }
    let args = match record.vs.as_deref().map(str::trim) {
        None | Some("") => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Json>(text) {
            Ok(Json::Object(map)) => Ok(map),
            Ok(other) => Err(CommandError::invalid_payload(format!(
                "`vs` must hold a JSON object of arguments, got {}",
                json_kind(&other)
            ))),
            Err(e) => Err(CommandError::invalid_payload(format!(
                "`vs` is not valid JSON ({e}); expected a JSON object of arguments"
            ))),
        },
    };
    Call { name, args }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8]) -> Call {
        let mut calls = parse_request(payload);
        assert_eq!(calls.len(), 1);
        calls.remove(0)
    }

    #[test]
    fn protocol_example_request_parses() {
        // PROTOCOL.md section 4.
        let c = one(br#"[{"bn":"","t":1700000000.0,"n":"SetPollTime","vs":"{\"poll_time_ms\":5000}"}]"#);
        assert_eq!(c.name, "SetPollTime");
        assert_eq!(c.args.unwrap().get("poll_time_ms"), Some(&json!(5000)));
    }

    #[test]
    fn absent_or_empty_vs_means_no_arguments() {
        assert_eq!(one(br#"[{"n":"Ping"}]"#).args, Ok(Map::new()));
        assert_eq!(one(br#"[{"n":"Ping","vs":""}]"#).args, Ok(Map::new()));
    }

    #[test]
    fn unparseable_requests_get_one_invalid_request() {
        for bad in [&b"\xff\xfe"[..], b"not json", b"{}", b"[1,2]", b"[]", br#"[{"n":5}]"#] {
            let c = one(bad);
            assert_eq!(c.name, "");
            assert_eq!(
                c.args.unwrap_err().code,
                ErrorCode::InvalidRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!(r#"[{{"n":"Ping","vs":"{}"}}]"#, "x".repeat(MAX_REQUEST_BYTES));
        let c = one(big.as_bytes());
        assert_eq!(c.args.unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn each_record_is_judged_on_its_own() {
        let calls = parse_request(br#"[{"n":"Ping"},{"vs":"{}"},{"n":"X","vs":"[1]"},{"n":"Y","vs":"{bad"}]"#);
        assert_eq!(calls.len(), 4);
        assert!(calls[0].args.is_ok());
        assert_eq!(calls[1].args.as_ref().unwrap_err().code, ErrorCode::InvalidRequest);
        assert_eq!(calls[2].args.as_ref().unwrap_err().code, ErrorCode::InvalidPayload);
        assert_eq!(calls[3].args.as_ref().unwrap_err().code, ErrorCode::InvalidPayload);
    }

    #[test]
    fn error_json_has_the_contract_shape() {
        let e = CommandError::forbidden("no");
        assert_eq!(
            serde_json::to_string(&e.to_json()).unwrap(),
            r#"{"error":{"code":"forbidden","message":"no"}}"#
        );
    }
}
