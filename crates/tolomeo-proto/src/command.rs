//! Command requests and error responses (PROTOCOL.md section 4): the request size limit,
//! the error codes, the parsing of a request pack into calls, and the command list that the
//! built-in `GetCommands` answers with ([`CommandInfo`], [`ArgInfo`]). A service's router and
//! `tlm cmd` both use them, so both read the contract the same way.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::senml;

/// Requests above this size are refused with `invalid_request` (PROTOCOL.md section 4).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

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
    pub fn to_json(&self) -> Map<String, Json> {
        let mut map = Map::new();
        map.insert(
            "error".into(),
            json!({"code": self.code.as_str(), "message": self.message}),
        );
        map
    }
}

/// One command as `GetCommands` lists it (PROTOCOL.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// The name to put in a request record's `n`.
    pub name: String,
    /// What it does, in one line.
    #[serde(default)]
    pub description: String,
    /// Its arguments, the members of the `vs` object.
    #[serde(default)]
    pub args: Vec<ArgInfo>,
}

/// The JSON type of an argument, named as JSON Schema names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArgKind {
    /// A number without a fraction.
    Integer,
    /// Any number.
    Number,
    /// A string.
    String,
    /// `true` or `false`.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// Any JSON value: its type depends on the other arguments (say, the register written).
    Any,
}

impl ArgKind {
    /// The name used on the wire (`integer`, `number`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ArgKind::Integer => "integer",
            ArgKind::Number => "number",
            ArgKind::String => "string",
            ArgKind::Boolean => "boolean",
            ArgKind::Object => "object",
            ArgKind::Array => "array",
            ArgKind::Any => "any",
        }
    }
}

/// One argument of a command: name, JSON type, whether it is required, and its range or
/// choices when it has them.
///
/// ```
/// use tolomeo_proto::command::ArgInfo;
/// let a = ArgInfo::integer("poll_time_ms", "the new poll period, in ms").range(100, 3_600_000);
/// assert_eq!(
///     serde_json::to_string(&a).unwrap(),
///     r#"{"name":"poll_time_ms","type":"integer","required":true,"description":"the new poll period, in ms","min":100,"max":3600000}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgInfo {
    /// The member's name in the `vs` object.
    pub name: String,
    /// Its JSON type.
    #[serde(rename = "type")]
    pub kind: ArgKind,
    /// False when it may be left out.
    pub required: bool,
    /// What it means, with its unit.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The smallest value accepted (numbers), a JSON number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Json>,
    /// The largest value accepted (numbers), a JSON number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Json>,
    /// The only values accepted, when there is a fixed set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<Json>,
}

impl ArgInfo {
    /// A required argument of type `kind`.
    pub fn new(name: impl Into<String>, kind: ArgKind, description: impl Into<String>) -> Self {
        ArgInfo {
            name: name.into(),
            kind,
            required: true,
            description: description.into(),
            min: None,
            max: None,
            choices: Vec::new(),
        }
    }
    /// A required integer.
    pub fn integer(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, ArgKind::Integer, description)
    }
    /// A required number.
    pub fn number(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, ArgKind::Number, description)
    }
    /// A required string.
    pub fn string(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, ArgKind::String, description)
    }
    /// A required boolean.
    pub fn boolean(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(name, ArgKind::Boolean, description)
    }
    /// May be left out.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    /// Accepted from `min` to `max`, both included.
    pub fn range(mut self, min: impl Into<Json>, max: impl Into<Json>) -> Self {
        self.min = Some(min.into());
        self.max = Some(max.into());
        self
    }
    /// Only these values are accepted.
    pub fn choices<T: Into<Json>>(mut self, choices: impl IntoIterator<Item = T>) -> Self {
        self.choices = choices.into_iter().map(Into::into).collect();
        self
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
