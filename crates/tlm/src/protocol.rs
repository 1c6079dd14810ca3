//! The PROTOCOL.md rules on top of RFC 8428, for each kind of pack `tlm validate` checks:
//! telemetry on `events.data` ([`Kind::Data`], section 1), the announcement on `events.params`
//! ([`Kind::Params`], section 2), and a command request or response ([`Kind::Request`],
//! [`Kind::Response`], section 4). Each rule gives a [`Problem`] with the record index and field;
//! a few give warnings, which do not make the pack invalid.

use serde_json::Value;
use tolomeo_proto::DeviceSerial;
use tolomeo_proto::senml::{Problem, RELATIVE_TIME_LIMIT, Record, check_name};

/// What a pack is meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Telemetry on events.data (PROTOCOL.md section 1).
    Data,
    /// The metric announcement on events.params (section 2).
    Params,
    /// A command request on `commands.<service>.req` (section 4).
    Request,
    /// A command response (section 4).
    Response,
}

use tolomeo_proto::command::ErrorCode;
/// Requests above this size are refused with `invalid_request` (PROTOCOL.md section 4): the
/// services' own limit.
pub(crate) use tolomeo_proto::command::MAX_REQUEST_BYTES;

/// The protocol problems and warnings of a pack of `size` bytes that decoded as `pack`.
pub(crate) fn problems(kind: Kind, pack: &[Record], size: usize) -> (Vec<Problem>, Vec<Problem>) {
    match kind {
        Kind::Data => data(pack),
        Kind::Params => (params(pack), Vec::new()),
        Kind::Request => (request(pack, size), Vec::new()),
        Kind::Response => (response(pack), Vec::new()),
    }
}

fn problem(index: usize, field: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        index,
        field,
        message: message.into(),
    }
}

/// PROTOCOL.md section 2: one record, `bn` the device, `n` = "metrics", `vs` a JSON array of
/// entries `{id, name, unit, type 0|1, dataType 0|1|2[, minGranularity, label]}`.
fn params(pack: &[Record]) -> Vec<Problem> {
    let mut out = Vec::new();
    if pack.len() != 1 {
        out.push(problem(0, "", format!("{} records: expected exactly one", pack.len())));
    }
    let Some(r) = pack.first() else { return out };
    match &r.bn {
        None => out.push(problem(0, "bn", "no base name: expected `urn:cpt:device:sn:<serial>:`")),
        Some(bn) => {
            if let Err(why) = check_base_name(bn) {
                out.push(problem(0, "bn", format!("{bn:?}: {why}")));
            }
        }
    }
    if r.n.as_deref() != Some("metrics") {
        out.push(problem(
            0,
            "n",
            format!("{:?}: expected \"metrics\"", r.n.as_deref().unwrap_or("")),
        ));
    }
    let Some(vs) = r.vs.as_deref() else {
        out.push(problem(
            0,
            "vs",
            "no `vs`: expected the metric entries as a JSON array in a string",
        ));
        return out;
    };
    let entries: Vec<Value> = match serde_json::from_str(vs) {
        Ok(e) => e,
        Err(e) => {
            out.push(problem(
                0,
                "vs",
                format!("{e}: expected a JSON array of metric entries"),
            ));
            return out;
        }
    };
    for (i, e) in entries.iter().enumerate() {
        for why in entry_problems(e) {
            out.push(problem(0, "vs", format!("entry {i}: {why}")));
        }
    }
    out
}

/// What is wrong with one metric entry of an announcement.
fn entry_problems(e: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(obj) = e.as_object() else {
        return vec![
            "not a JSON object: expected {\"id\":...,\"name\":...,\"unit\":...,\"type\":...,\"dataType\":...}".into(),
        ];
    };
    match obj.get("id").and_then(Value::as_str) {
        None => out.push("no string `id`: expected the metric name used in `n`".into()),
        Some(id) => {
            if let Err(why) = check_name(id) {
                out.push(format!("`id` {id:?}: {why}"));
            }
        }
    }
    for key in ["name", "unit"] {
        if !obj.get(key).is_some_and(Value::is_string) {
            out.push(format!("no string `{key}`"));
        }
    }
    let int_in = |key: &str, max: u64| obj.get(key).and_then(Value::as_u64).is_some_and(|x| x <= max);
    if !int_in("type", 1) {
        out.push(format!(
            "`type` is {}: expected 0 (TEMPORAL) or 1 (INCREMENTAL)",
            show(obj.get("type"))
        ));
    }
    if !int_in("dataType", 2) {
        let got = show(obj.get("dataType"));
        out.push(format!(
            "`dataType` is {got}: expected 0 (STRING), 1 (NUMBER) or 2 (BOOLEAN)"
        ));
    }
    if let Some(g) = obj.get("minGranularity") {
        let ok = g.as_str().is_some_and(|g| {
            let (num, unit) = g.split_at(g.len().saturating_sub(1));
            !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) && "smhdwMy".contains(unit) && !unit.is_empty()
        });
        if !ok {
            out.push(format!(
                "`minGranularity` is {g}: expected <integer><s|m|h|d|w|M|y>, e.g. \"1m\""
            ));
        }
    }
    if obj.get("label").is_some_and(|l| !l.is_string()) {
        out.push("`label` is not a string".into());
    }
    out
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".into(), Value::to_string)
}

/// PROTOCOL.md section 4, a request: at most 64 KiB, each record names a command in `n`, and its
/// `vs` (when present and not empty) is a JSON object.
fn request(pack: &[Record], size: usize) -> Vec<Problem> {
    let mut out = Vec::new();
    if size > MAX_REQUEST_BYTES {
        out.push(problem(
            0,
            "",
            format!("{size} bytes: a request is refused above {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    if pack.is_empty() {
        out.push(problem(0, "", "an empty pack: expected one record per command"));
    }
    for (i, r) in pack.iter().enumerate() {
        if r.n.as_deref().is_none_or(str::is_empty) {
            out.push(problem(i, "n", "no command name: expected e.g. \"Ping\""));
        }
        if let Some(vs) = r.vs.as_deref().filter(|vs| !vs.is_empty())
            && let Err(why) = json_object(vs)
        {
            out.push(problem(
                i,
                "vs",
                format!("{why}: expected the arguments as a JSON object, e.g. \"{{}}\""),
            ));
        }
    }
    out
}

/// PROTOCOL.md section 4, a response: each record has the device `bn`, `n`, an absolute `t`,
/// and a `vs` holding a JSON object; an error object has a known `code` and a `message`.
fn response(pack: &[Record]) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, r) in pack.iter().enumerate() {
        match &r.bn {
            None if i == 0 => out.push(problem(i, "bn", "no base name: expected `urn:cpt:device:sn:<serial>:`")),
            Some(bn) => {
                if let Err(why) = check_base_name(bn) {
                    out.push(problem(i, "bn", format!("{bn:?}: {why}")));
                }
            }
            None => {}
        }
        if r.n.is_none() {
            out.push(problem(
                i,
                "n",
                "no `n`: expected the command name (\"\" for an unparseable request)",
            ));
        }
        if !r.t.is_some_and(|t| t >= RELATIVE_TIME_LIMIT) {
            out.push(problem(
                i,
                "t",
                "expected the absolute Unix time of the answer, in seconds",
            ));
        }
        let Some(vs) = r.vs.as_deref() else {
            out.push(problem(
                i,
                "vs",
                "no `vs`: expected the result as a JSON object in a string",
            ));
            continue;
        };
        match json_object(vs) {
            Err(why) => out.push(problem(i, "vs", format!("{why}: expected the result as a JSON object"))),
            Ok(obj) => {
                if let Some(err) = obj.get("error") {
                    let code = err.get("code").and_then(Value::as_str);
                    if code.and_then(ErrorCode::from_wire).is_none() {
                        let expected: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
                        let expected = expected.join(", ");
                        out.push(problem(
                            i,
                            "vs",
                            format!("error code {}: expected one of {expected}", show(err.get("code"))),
                        ));
                    }
                    if !err.get("message").is_some_and(Value::is_string) {
                        out.push(problem(i, "vs", "an error without a string `message`"));
                    }
                }
            }
        }
    }
    out
}

fn json_object(text: &str) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("`{other}` is not an object")),
        Err(e) => Err(format!("not JSON ({e})")),
    }
}

/// The units of the SenML registry (RFC 8428 section 12.1, RFC 8798) and the platform's own
/// (`rpm`, PROTOCOL.md section 1).
const UNITS: &[&str] = &[
    "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V", "F", "Ohm", "S",
    "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l", "m/s", "m/s2", "m3/s", "l/s", "W/m2",
    "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW", "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s",
    "1/min", "beat/min", "beats", "S/m", "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg", "NTU", "ms", "min",
    "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "VAh", "kVAh", "km/h", "kPa", "mm/h", "m/h",
    "ppm", "/100m", "/km", "mV", "mA", "dBm", "ug/m3", "mm", "cm", "km", "rpm",
];

/// Known misspellings of platform units, and what is expected instead.
const WRONG_UNITS: &[(&str, &str)] = &[
    ("By", "B"),
    ("bytes", "B"),
    ("RPM", "rpm"),
    ("percent", "%"),
    ("°C", "Cel"),
];

/// PROTOCOL.md section 1, an `events.data` pack:
///
/// - the first record has `bn`, and every `bn` is `urn:cpt:device:sn:<serial>:` with a valid
///   serial (later records may leave `bn` out: the `compact` option, which RFC 8428 allows);
/// - every record has `n` and `t`, and exactly one of `v`, `vs`, `vb` (no `vd`, no sum `s`);
/// - `bt` + `t` is absolute Unix time in seconds: 2^28 or more (not relative), and below 10^11
///   (a larger value is milliseconds); records are ordered by `t`. A JSON number's precision
///   cannot be checked: `1700000000` is a valid millisecond time;
/// - `u`, when present, is not empty and not a known misspelling (`By` for `B`, `RPM` for `rpm`).
///
/// Warnings: a unit outside the SenML registry; an `n` without the `<group>:<field>` shape.
fn data(pack: &[Record]) -> (Vec<Problem>, Vec<Problem>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let mut p = |index, field, message: String| problems.push(Problem { index, field, message });
    let mut bt = 0.0;
    let mut previous_t: Option<f64> = None;
    if pack.is_empty() {
        p(0, "", "an empty pack: a service publishes at least one record".into());
    }
    for (i, r) in pack.iter().enumerate() {
        match &r.bn {
            None if i == 0 => p(
                i,
                "bn",
                "no base name: expected `urn:cpt:device:sn:<serial>:` on every record".into(),
            ),
            None => {}
            Some(bn) => {
                if let Err(why) = check_base_name(bn) {
                    p(i, "bn", format!("{bn:?}: {why}"));
                }
            }
        }
        match r.n.as_deref() {
            None | Some("") => p(i, "n", "no name: expected the metric id, e.g. \"cpu:total\"".into()),
            Some(n) if !n.contains(':') => warnings.push(Problem {
                index: i,
                field: "n",
                message: format!("{n:?} is not `<group>:<field>` (the convention, e.g. \"cpu:total\")"),
            }),
            Some(_) => {}
        }
        bt = r.bt.unwrap_or(bt);
        match r.t {
            None => p(
                i,
                "t",
                "no time: expected absolute Unix time in seconds, e.g. 1700000000.25".into(),
            ),
            Some(t) => {
                let at = bt + t;
                if at < RELATIVE_TIME_LIMIT {
                    p(
                        i,
                        "t",
                        format!("{at} is a relative time: expected absolute Unix time in seconds (2^28 or more)"),
                    );
                } else if at >= 1e11 {
                    p(
                        i,
                        "t",
                        format!("{at} looks like milliseconds: expected Unix time in seconds, e.g. 1700000000.25"),
                    );
                } else {
                    if previous_t.is_some_and(|prev| at < prev) {
                        let msg = format!("{at} is earlier than the record before: expected the records ordered by t");
                        p(i, "t", msg);
                    }
                    previous_t = Some(at);
                }
            }
        }
        let values = [r.v.is_some(), r.vs.is_some(), r.vb.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if r.vd.is_some() {
            p(
                i,
                "vd",
                "a data value: expected v (number), vs (string) or vb (boolean)".into(),
            );
        } else if values == 0 {
            p(i, "", "no value: expected exactly one of v, vs, vb".into());
        }
        if r.s.is_some() {
            p(
                i,
                "s",
                "a sum: the protocol sends values only, expected v, vs or vb".into(),
            );
        }
        if let Some(u) = r.u.as_deref().or(r.bu.as_deref()) {
            let field = if r.u.is_some() { "u" } else { "bu" };
            if u.is_empty() {
                p(
                    i,
                    field,
                    "an empty unit: leave `u` out for a metric without a unit".into(),
                );
            } else if let Some((_, good)) = WRONG_UNITS.iter().find(|(bad, _)| *bad == u) {
                p(i, field, format!("unit {u:?}: expected {good:?}"));
            } else if !UNITS.contains(&u) {
                let message = match UNITS.iter().find(|k| k.eq_ignore_ascii_case(u)) {
                    Some(k) => format!("unit {u:?} is not in the SenML registry: did you mean {k:?}?"),
                    None => format!("unit {u:?} is not in the SenML registry (RFC 8428 section 12.1) nor `rpm`"),
                };
                warnings.push(Problem {
                    index: i,
                    field,
                    message,
                });
            }
        }
    }
    (problems, warnings)
}

/// `urn:cpt:device:sn:<serial>:` with a serial of `^[A-Za-z0-9._-]{1,64}$`.
fn check_base_name(bn: &str) -> Result<(), String> {
    let expected = "expected `urn:cpt:device:sn:<serial>:`";
    let rest = bn
        .strip_prefix(crate::text::DEVICE_PREFIX)
        .ok_or(expected.to_string())?;
    let serial = rest.strip_suffix(':').ok_or(format!("no final `:`: {expected}"))?;
    DeviceSerial::new(serial)
        .map(|_| ())
        .map_err(|e| format!("serial {serial:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tolomeo_proto::senml::decode_pack;

    fn at(kind: Kind, json: &str) -> Vec<(usize, &'static str)> {
        let pack = decode_pack(json.as_bytes()).unwrap();
        problems(kind, &pack, json.len())
            .0
            .iter()
            .map(|p| (p.index, p.field))
            .collect()
    }

    #[test]
    fn base_names() {
        assert!(check_base_name("urn:cpt:device:sn:SN1:").is_ok());
        assert!(check_base_name("urn:cpt:device:sn:SN1").is_err());
        assert!(check_base_name("urn:dev:ow:10e2073a01080063:").is_err());
        assert!(check_base_name("urn:cpt:device:sn::").is_err());
    }

    #[test]
    fn protocol_examples_are_valid() {
        // PROTOCOL.md sections 2 and 4, verbatim.
        let params = r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"metrics","vs":"[{\"id\":\"cpu:total\",\"name\":\"CPU total\",\"unit\":\"%\",\"type\":0,\"dataType\":1}]"}]"#;
        assert_eq!(at(Kind::Params, params), []);
        let req = r#"[{"bn":"","t":1700000000.0,"n":"SetPollTime","vs":"{\"poll_time_ms\":5000}"}]"#;
        assert_eq!(at(Kind::Request, req), []);
        let res = r#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"SetPollTime","t":1700000001.2,"vs":"{\"message\":\"poll time set to 5000 ms\",\"poll_time_ms\":5000}"}]"#;
        assert_eq!(at(Kind::Response, res), []);
    }

    #[test]
    fn broken_announcements_requests_and_responses() {
        let params = r#"[{"bn":"urn:cpt:device:sn:SN1:","n":"metric","vs":"[{\"id\":\"a b\",\"name\":\"x\",\"unit\":\"\",\"type\":2,\"dataType\":1,\"minGranularity\":\"5x\"}]"}]"#;
        assert_eq!(at(Kind::Params, params), [(0, "n"), (0, "vs"), (0, "vs"), (0, "vs")]);
        let req = r#"[{"n":"Ping"},{"vs":"{}"},{"n":"X","vs":"[1]"}]"#;
        assert_eq!(at(Kind::Request, req), [(1, "n"), (2, "vs")]);
        let big = format!(r#"[{{"n":"X","vs":"{{{}}}"}}]"#, " ".repeat(MAX_REQUEST_BYTES));
        assert_eq!(at(Kind::Request, &big), [(0, "")]);
        let res = r#"[{"bn":"urn:cpt:device:sn:SN1:","n":"X","t":1700000000,"vs":"{\"error\":{\"code\":\"oops\"}}"},{"n":"Y","t":5}]"#;
        assert_eq!(at(Kind::Response, res), [(0, "vs"), (0, "vs"), (1, "t"), (1, "vs")]);
    }
}
