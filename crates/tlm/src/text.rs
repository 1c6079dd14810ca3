//! Small text helpers shared by the subcommands: durations, times, globs, sparklines, and how a
//! resolved SenML record is split and shown.

use std::io::Write;

use tolomeo_proto::senml::{Resolved, ResolvedValue};

/// The base-name prefix of every ToloMEO device (PROTOCOL.md section 0).
pub(crate) const DEVICE_PREFIX: &str = "urn:cpt:device:sn:";

/// Durations as every ToloMEO tool reads them: `500ms`, `10s`, `2m`, `1h`, `7d`, `1.5`.
pub(crate) use tolomeo_proto::client::parse_duration;

/// Does `text` match `glob`? `*` matches any run of characters (`:` included), `?` one character.
pub(crate) fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match g.get(gi) {
            Some('*') => {
                star = Some((gi, ti));
                gi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                gi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sg, st)) => {
                    gi = sg + 1;
                    ti = st + 1;
                    star = Some((sg, st + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// Splits a resolved name into (device serial, metric id): `urn:cpt:device:sn:SN1:cpu:total`
/// gives `("SN1", "cpu:total")`. A name outside that scheme gives `("", name)`.
pub(crate) fn split_name(name: &str) -> (&str, &str) {
    name.strip_prefix(DEVICE_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .unwrap_or(("", name))
}

/// The value as text: numbers in their shortest form, strings as they are.
pub(crate) fn value_text(v: Option<&ResolvedValue>) -> String {
    match v {
        Some(ResolvedValue::Number(x)) => number(*x),
        // A control character (a newline) would break "one line per record": quote the string.
        Some(ResolvedValue::String(s)) if s.chars().any(char::is_control) => format!("{s:?}"),
        Some(ResolvedValue::String(s)) => s.clone(),
        Some(ResolvedValue::Bool(b)) => b.to_string(),
        Some(ResolvedValue::Data(d)) => format!("<data {d}>"),
        None => "-".into(),
    }
}

/// A number in its shortest round-trip form, without a trailing `.0`.
pub(crate) fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// One resolved record as a JSON object, keys in this order: `name`, `unit` (or null),
/// `value`, `time`, and `sum` when the record has one. An integral number is written without
/// a fraction (`523190272`, not `523190272.0`).
pub(crate) fn record_json(r: &Resolved) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        name: &'a str,
        unit: Option<&'a str>,
        value: serde_json::Value,
        time: f64,
        #[serde(skip_serializing_if = "Option::is_none")]
        sum: Option<serde_json::Value>,
    }
    let out = Out {
        name: &r.name,
        unit: r.unit.as_deref(),
        value: match &r.value {
            Some(ResolvedValue::Number(x)) => json_number(*x),
            Some(ResolvedValue::String(s)) => serde_json::Value::from(s.as_str()),
            Some(ResolvedValue::Bool(b)) => serde_json::Value::from(*b),
            Some(ResolvedValue::Data(d)) => serde_json::Value::from(d.as_str()),
            None => serde_json::Value::Null,
        },
        time: r.time,
        sum: r.sum.map(json_number),
    };
    serde_json::to_string(&out).unwrap_or_default()
}

/// A finite number, as an integer when it is one exactly (below 2^53).
fn json_number(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        serde_json::Value::from(x as i64)
    } else {
        serde_json::Value::from(x)
    }
}

/// Unix seconds as `2026-11-27T09:30:00.250Z` (UTC, milliseconds).
pub(crate) fn iso_time(t: f64) -> String {
    if !t.is_finite() {
        return format!("{t}");
    }
    let ms = (t * 1000.0).round() as i64;
    let (secs, milli) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A short age: `0.4s`, `12s`, `3m05s`, `2h10m`, `3d`.
pub(crate) fn age(secs: f64) -> String {
    let s = secs.max(0.0);
    match s {
        s if s < 10.0 => format!("{s:.1}s"),
        s if s < 60.0 => format!("{}s", s as u64),
        s if s < 3600.0 => format!("{}m{:02}s", s as u64 / 60, s as u64 % 60),
        s if s < 86_400.0 => format!("{}h{:02}m", s as u64 / 3600, s as u64 % 3600 / 60),
        s => format!("{}d", s as u64 / 86_400),
    }
}

/// A sparkline of `values` scaled between their minimum and maximum; a flat series is drawn
/// at mid height.
pub(crate) fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| {
            if max - min <= 0.0 || !(max - min).is_finite() {
                BARS[3]
            } else {
                let i = ((v - min) / (max - min) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
        })
        .collect()
}

/// Writes to stdout and flushes; a closed stdout (`| head`) ends the process quietly.
pub(crate) fn print_out(s: &str) {
    let mut out = std::io::stdout().lock();
    if out.write_all(s.as_bytes()).and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Resolves on Ctrl-C (SIGINT). Where the handler cannot be installed (a background job whose
/// SIGINT is ignored), it never resolves, rather than ending the command at once.
pub(crate) async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("cpu:*", "cpu:total"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*:total", "cpu:total"));
        assert!(glob_match("c?u:*l", "cpu:total"));
        assert!(glob_match("*o*a*", "cpu:total"));
        assert!(!glob_match("cpu:*", "mem:used"));
        assert!(!glob_match("cpu", "cpu:total"));
        assert!(!glob_match("cpu:total?", "cpu:total"));
    }

    #[test]
    fn names_split_into_device_and_metric() {
        assert_eq!(split_name("urn:cpt:device:sn:SN1:cpu:total"), ("SN1", "cpu:total"));
        assert_eq!(
            split_name("urn:dev:ow:10e2073a01080063"),
            ("", "urn:dev:ow:10e2073a01080063")
        );
    }

    #[test]
    fn times() {
        // 1700000000 is 2023-11-14 22:13:20 UTC (date -u -d @1700000000).
        assert_eq!(iso_time(1_700_000_000.25), "2023-11-14T22:13:20.250Z");
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00.000Z");
        // 951782400 is 2000-02-29 00:00:00 UTC, a leap day.
        assert_eq!(iso_time(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(age(0.42), "0.4s");
        assert_eq!(age(185.0), "3m05s");
        assert_eq!(age(7800.0), "2h10m");
    }

    #[test]
    fn sparklines() {
        assert_eq!(sparkline(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), "▁▂▃▄▅▆▇█");
        assert_eq!(sparkline(&[5.0, 5.0]), "▄▄");
        assert_eq!(sparkline(&[]), "");
        assert_eq!(number(523_190_272.0), "523190272");
        assert_eq!(number(12.5), "12.5");
        let s = |x: &str| value_text(Some(&ResolvedValue::String(x.into())));
        assert_eq!(
            (s("Machine Room"), s("a\nb")),
            ("Machine Room".into(), r#""a\nb""#.into())
        );
    }

    #[test]
    fn json_records_keep_the_brief_s_key_order() {
        let r = Resolved {
            name: "urn:cpt:device:sn:SN1:mem:used".into(),
            unit: Some("B".into()),
            value: Some(ResolvedValue::Number(523_190_272.0)),
            sum: None,
            time: 1_700_000_000.25,
            update_time: None,
        };
        let expected = r#"{"name":"urn:cpt:device:sn:SN1:mem:used","unit":"B","value":523190272,"time":1700000000.25}"#;
        assert_eq!(record_json(&r), expected);
    }
}
