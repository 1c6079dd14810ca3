//! `tlm cmd <service> <Command> [json]`: one command per PROTOCOL.md section 4.
//!
//! The request is a SenML pack `[{"n":"<Command>","vs":"<json>"}]` sent to
//! `commands.<service>.req` as a NATS request; the reply's `vs` is printed as pretty JSON.
//! Without a command, `tlm cmd <service>` asks `GetCommands` and prints what the service
//! accepts, one command per line with its arguments below it.
//! [`call`] is also used by `watch --service` and `services` to ask `GetMetrics`.

use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value};
use tolomeo_proto::ServiceName;
use tolomeo_proto::command::{ArgInfo, CommandInfo};
use tolomeo_proto::senml;

use crate::exit::{Failure, Outcome};
use crate::text;
use tolomeo_proto::client::ConnArgs;

/// `tlm cmd` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service name, e.g. cpu-monitor.
    pub service: String,
    /// The command name, e.g. Ping, GetStatus, GetMetrics, SetPollTime; without it, the list of
    /// the commands the service accepts, with their arguments.
    pub command: Option<String>,
    /// The arguments: a JSON object, e.g. '{"poll_time_ms":5000}' (default {}).
    pub json: Option<String>,
    /// How long to wait for the answer, e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = text::parse_duration)]
    pub timeout: Duration,
    /// Print the result as one line of compact JSON instead of pretty JSON.
    #[arg(long)]
    pub compact: bool,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No responder, or no reply in time.
    NoAnswer(String),
    /// The service answered with an error object.
    Reply {
        /// The error code (`unknown_command`, `invalid_payload`...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The reply is not what PROTOCOL.md section 4 describes, or the request could not be sent.
    Invalid(String),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::NoAnswer(m) => Failure::no_answer(m),
            CallError::Reply { code, message } => Failure::failed(format!("error {code}: {message}")),
            CallError::Invalid(m) => Failure::failed(m),
        }
    }
}

/// Sends `command` with `args` to `service` and waits up to `timeout` for the result object.
pub(crate) async fn call(
    client: &async_nats::Client,
    service: &ServiceName,
    command: &str,
    args: &Map<String, Value>,
    timeout: Duration,
) -> Result<Map<String, Value>, CallError> {
    let record = senml::Record {
        n: Some(command.to_string()),
        vs: Some(Value::Object(args.clone()).to_string()),
        ..senml::Record::default()
    };
    let body = serde_json::to_vec(&[record]).map_err(|e| CallError::Invalid(format!("cannot encode: {e}")))?;
    let subject = service.request_subject();
    let name = service.as_str();
    let no_answer = || {
        CallError::NoAnswer(format!(
            "no answer from service {name} within {}: is it running? (nothing answered on {subject}; \
             a slow command needs a longer --timeout)",
            show_duration(timeout)
        ))
    };
    let reply = match tokio::time::timeout(timeout, client.request(subject.clone(), body.into())).await {
        Err(_) => return Err(no_answer()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(CallError::NoAnswer(format!(
                "no answer from service {name}: is it running? (no responder on {subject})"
            )));
        }
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => return Err(no_answer()),
        Ok(Err(e)) => return Err(CallError::Invalid(format!("cannot send the request on {subject}: {e}"))),
        Ok(Ok(m)) => m,
    };
    parse_reply(&reply.payload, name)
}

/// Reads the result object from a reply pack.
fn parse_reply(payload: &[u8], service: &str) -> Result<Map<String, Value>, CallError> {
    let invalid = |what: String| CallError::Invalid(format!("invalid reply from service {service}: {what}"));
    let pack = senml::decode_pack(payload).map_err(|e| invalid(e.to_string()))?;
    let first = pack
        .first()
        .ok_or_else(|| invalid("an empty pack: expected one record".into()))?;
    let vs = first
        .vs
        .as_deref()
        .ok_or_else(|| invalid("record 0 has no `vs`: expected the result as a JSON string".into()))?;
    let result: Map<String, Value> =
        serde_json::from_str(vs).map_err(|e| invalid(format!("record 0, field `vs`: {e}: expected a JSON object")))?;
    if let Some(err) = result.get("error") {
        let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
        return Err(CallError::Reply {
            code: field("code"),
            message: field("message"),
        });
    }
    Ok(result)
}

/// `5 s`, `500 ms`.
pub(crate) fn show_duration(d: Duration) -> String {
    match d.subsec_millis() {
        0 => format!("{} s", d.as_secs()),
        _ if d.as_secs() == 0 => format!("{} ms", d.as_millis()),
        _ => format!("{} s", d.as_secs_f64()),
    }
}

/// Parses the service name and the JSON arguments (exit 2 when they are wrong).
fn parse_args(args: &Args) -> Result<(ServiceName, Map<String, Value>), Failure> {
    let service =
        ServiceName::new(&args.service).map_err(|e| Failure::usage(format!("service name {:?}: {e}", args.service)))?;
    if args.command.as_deref() == Some("") {
        return Err(Failure::usage("the command name is empty: expected e.g. Ping"));
    }
    let text = args.json.as_deref().unwrap_or("{}");
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Failure::usage(format!(
            "invalid JSON argument {text:?}: {e}: expected a JSON object such as '{{\"poll_time_ms\":5000}}'"
        ))
    })?;
    match value {
        Value::Object(map) => Ok((service, map)),
        other => Err(Failure::usage(format!(
            "JSON argument {text:?} is a {}: expected a JSON object such as '{{\"poll_time_ms\":5000}}'",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Runs `tlm cmd`.
pub(crate) async fn run(conn: &ConnArgs, args: &Args) -> Outcome {
    let (service, map) = parse_args(args)?;
    let client = conn.connect("tlm").await?;
    let command = args.command.as_deref().unwrap_or("GetCommands");
    let result = call(&client, &service, command, &map, args.timeout).await?;
    let value = Value::Object(result);
    let text = match (args.compact, &args.command) {
        (true, _) => value.to_string(),
        (false, None) => list(&service, &value)?,
        (false, Some(_)) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string()),
    };
    // A closed stdout (`| head`) is not an error worth reporting.
    let _ = writeln!(std::io::stdout().lock(), "{text}");
    Ok(())
}

/// The answer to `GetCommands`, for a person: each command with its description, and its
/// arguments indented below it.
fn list(service: &ServiceName, reply: &Value) -> Result<String, Failure> {
    let commands: Vec<CommandInfo> = reply
        .get("commands")
        .cloned()
        .ok_or_else(|| {
            Failure::failed(format!(
                "invalid reply from service {service}: no `commands` in the answer to GetCommands"
            ))
        })
        .and_then(|v| {
            serde_json::from_value(v)
                .map_err(|e| Failure::failed(format!("invalid reply from service {service}: `commands`: {e}")))
        })?;
    let width = commands.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = format!("{service} accepts {} commands:\n", commands.len());
    for c in &commands {
        out.push_str(&format!("  {:<width$}  {}\n", c.name, c.description));
        for a in &c.args {
            out.push_str(&format!("  {:<width$}    {}\n", "", describe_arg(a)));
        }
    }
    out.push_str(&format!(
        "send one with: tlm cmd {service} <command> '<JSON object of arguments>'"
    ));
    Ok(out)
}

/// `poll_time_ms: integer, 100 to 3600000: the new poll period, in ms`.
fn describe_arg(a: &ArgInfo) -> String {
    let mut s = format!("{}: {}", a.name, a.kind.as_str());
    if !a.required {
        s.push_str(", optional");
    }
    match (&a.min, &a.max) {
        (Some(min), Some(max)) => s.push_str(&format!(", {min} to {max}")),
        (Some(min), None) => s.push_str(&format!(", at least {min}")),
        (None, Some(max)) => s.push_str(&format!(", at most {max}")),
        (None, None) => {}
    }
    if !a.choices.is_empty() {
        let choices: Vec<String> = a.choices.iter().map(Value::to_string).collect();
        s.push_str(&format!(", one of {}", choices.join(", ")));
    }
    if !a.description.is_empty() {
        s.push_str(&format!(": {}", a.description));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_per_protocol_section_4() {
        let ok = br#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"SetPollTime","t":1700000001.2,"vs":"{\"message\":\"poll time set to 5000 ms\",\"poll_time_ms\":5000}"}]"#;
        let r = parse_reply(ok, "x").unwrap();
        assert_eq!(r.get("poll_time_ms"), Some(&Value::from(5000)));
        let err = br#"[{"n":"X","vs":"{\"error\":{\"code\":\"unknown_command\",\"message\":\"no X\"}}"}]"#;
        let e = Failure::from(parse_reply(err, "x").unwrap_err());
        assert_eq!((e.code, e.message.as_str()), (1, "error unknown_command: no X"));
        for bad in [&b"nope"[..], b"[]", br#"[{"n":"X"}]"#, br#"[{"n":"X","vs":"[1]"}]"#] {
            assert!(matches!(parse_reply(bad, "x"), Err(CallError::Invalid(_))));
        }
    }

    #[test]
    fn durations_read_like_the_brief() {
        assert_eq!(show_duration(Duration::from_secs(5)), "5 s");
        assert_eq!(show_duration(Duration::from_millis(300)), "300 ms");
    }
}
