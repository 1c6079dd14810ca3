//! `tlm services`: which services are alive, from their heartbeats on
//! `heartbeat.<service>.service`, and which metrics they publish.
//!
//! One-shot (default): listens for `--wait` (6 s: one 5 s heartbeat period and a margin), then
//! asks every service it heard `GetMetrics` and prints one row per service with its last-seen
//! age, plus the metric ids announced on `events.params` per device (an announcement names the
//! device, not the service). `--watch`: a live list; a service is dropped `--expire` (10 s, as
//! the agent does) after its last heartbeat. Off a terminal, `--watch` prints one line per
//! change (`up` / `down`) instead.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tolomeo_proto::senml;
use tolomeo_proto::wire::PARAMS_SUBJECT;
use tolomeo_proto::{ServiceName, unix_now};

use crate::cmd::call;
use crate::exit::{Failure, Outcome};
use crate::text::{self, print_out, sleep_until};
use tolomeo_proto::client::ConnArgs;

/// `tlm services` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How long to listen for heartbeats before printing (one-shot mode).
    #[arg(long, default_value = "6s", value_parser = text::parse_duration)]
    pub wait: Duration,
    /// Keep listening: a live list (on a terminal) or one line per up/down change.
    #[arg(long)]
    pub watch: bool,
    /// A service is offline after this long without a heartbeat.
    #[arg(long, default_value = "10s", value_parser = text::parse_duration)]
    pub expire: Duration,
    /// Stop --watch after this long.
    #[arg(long, value_parser = text::parse_duration)]
    pub duration: Option<Duration>,
    /// Do not ask each service GetMetrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// One JSON object per line: a service (one-shot) or an up/down event (--watch).
    #[arg(long)]
    pub json: bool,
}

/// What is known of one service.
#[derive(Debug, Clone)]
struct Seen {
    /// Unix time of the last heartbeat.
    last: f64,
    /// `GetMetrics` entries, when asked and answered.
    metrics: Option<Vec<Value>>,
}

/// Runs `tlm services`.
pub(crate) async fn run(conn: &ConnArgs, args: &Args) -> Outcome {
    let client = conn.connect("tlm").await?;
    let sub_err = |s: &str, e: async_nats::SubscribeError| Failure::io(format!("cannot subscribe to {s}: {e}"));
    let hb_subject = "heartbeat.*.service";
    let mut beats = client.subscribe(hb_subject).await.map_err(|e| sub_err(hb_subject, e))?;
    let mut params = client
        .subscribe(PARAMS_SUBJECT)
        .await
        .map_err(|e| sub_err(PARAMS_SUBJECT, e))?;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut announced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let live = Live {
        args,
        tty: std::io::stdout().is_terminal() && !args.json,
    };
    let stop = if args.watch { args.duration } else { Some(args.wait) };
    let stop = sleep_until(stop.map(|d| tokio::time::Instant::now() + d));
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            Some(msg) = beats.next() => {
                let Some(name) = service_of(&msg.subject) else { continue };
                let now = unix_now();
                let fresh = !seen.contains_key(name);
                let entry = seen.entry(name.to_string()).or_insert(Seen { last: now, metrics: None });
                entry.last = now;
                if args.watch && fresh {
                    if !args.no_metrics && live.tty {
                        entry.metrics = metrics_of(&client, name).await;
                    }
                    live.event("up", name, now);
                }
            }
            Some(msg) = params.next() => {
                if let Some((device, ids)) = announcement(&msg.payload) {
                    // Every service of a device announces under the same base name, and a pack
                    // does not say which service sent it: keep the union of what was announced.
                    let known = announced.entry(device).or_default();
                    for id in ids {
                        if !known.contains(&id) {
                            known.push(id);
                        }
                    }
                }
            }
            _ = tick.tick(), if args.watch => {
                let now = unix_now();
                let expire = args.expire.as_secs_f64();
                seen.retain(|name, s| {
                    let alive = now - s.last <= expire;
                    if !alive {
                        live.event("down", name, now);
                    }
                    alive
                });
                if live.tty {
                    print_out(&format!("\x1b[?25l\x1b[H{}\x1b[J", table(&seen, &announced, args, now).join("\x1b[K\n")));
                }
            }
            _ = &mut stop => break,
            () = text::interrupted() => break,
        }
    }
    if args.watch {
        if live.tty {
            print_out("\x1b[?25h\n");
        }
        return Ok(());
    }
    if !args.no_metrics {
        let names: Vec<String> = seen.keys().cloned().collect();
        let answers = futures_util::future::join_all(names.iter().map(|n| metrics_of(&client, n))).await;
        for (name, metrics) in names.iter().zip(answers) {
            if let Some(s) = seen.get_mut(name) {
                s.metrics = metrics;
            }
        }
    }
    let now = unix_now();
    if args.json {
        for (name, s) in &seen {
            let alive = now - s.last <= args.expire.as_secs_f64();
            let line = ServiceLine {
                service: name,
                alive,
                last_seen: s.last,
                age_s: now - s.last,
                metrics: s.metrics.as_deref(),
            };
            let line = serde_json::to_string(&line).unwrap_or_default();
            print_out(&format!("{line}\n"));
        }
    } else if seen.is_empty() {
        eprintln!(
            "no heartbeat on {hb_subject} within {}: no service is running (or --wait is shorter than its heartbeat interval)",
            crate::cmd::show_duration(args.wait)
        );
        print_out(&table(&seen, &announced, args, now).join("\n"));
    } else {
        print_out(&format!("{}\n", table(&seen, &announced, args, now).join("\n")));
    }
    Ok(())
}

/// One service in `--json` one-shot output, keys in this order.
#[derive(serde::Serialize)]
struct ServiceLine<'a> {
    service: &'a str,
    alive: bool,
    /// Unix time of the last heartbeat.
    last_seen: f64,
    age_s: f64,
    /// The `GetMetrics` entries, or null.
    metrics: Option<&'a [Value]>,
}

/// Prints events in `--watch` mode off a terminal.
struct Live<'a> {
    args: &'a Args,
    tty: bool,
}

impl Live<'_> {
    fn event(&self, what: &str, service: &str, now: f64) {
        if self.tty {
            return;
        }
        if self.args.json {
            print_out(&format!(
                "{}\n",
                json!({"event": what, "service": service, "time": now})
            ));
        } else {
            let why = match what {
                "down" => format!(" (no heartbeat for {})", crate::cmd::show_duration(self.args.expire)),
                _ => String::new(),
            };
            print_out(&format!("{} {what} {service}{why}\n", text::iso_time(now)));
        }
    }
}

/// The service name in `heartbeat.<service>.service`.
fn service_of(subject: &str) -> Option<&str> {
    let name = subject.strip_prefix("heartbeat.")?.strip_suffix(".service")?;
    (!name.is_empty() && !name.contains('.')).then_some(name)
}

/// (device serial or base name, metric ids) of an `events.params` announcement.
fn announcement(payload: &[u8]) -> Option<(String, Vec<String>)> {
    let pack = senml::decode_pack(payload).ok()?;
    let r = pack.iter().find(|r| r.n.as_deref() == Some("metrics"))?;
    let bn = pack.iter().find_map(|r| r.bn.clone()).unwrap_or_default();
    let entries: Vec<Value> = serde_json::from_str(r.vs.as_deref()?).ok()?;
    let ids = entries
        .iter()
        .filter_map(|e| e.get("id")?.as_str().map(str::to_string))
        .collect();
    let device = bn
        .strip_prefix(text::DEVICE_PREFIX)
        .map(|s| s.trim_end_matches(':').to_string())
        .unwrap_or(bn);
    Some((device, ids))
}

/// The `GetMetrics` entries of a service, or None if it does not answer within 1 s.
async fn metrics_of(client: &async_nats::Client, name: &str) -> Option<Vec<Value>> {
    let service = ServiceName::new(name).ok()?;
    let result = call(client, &service, "GetMetrics", &Map::new(), Duration::from_secs(1))
        .await
        .ok()?;
    result.get("metrics")?.as_array().cloned()
}

/// `cpu:total (%), mem:used (B)`.
fn metric_list(metrics: &[Value]) -> String {
    let show = |m: &Value| {
        let id = m.get("id").and_then(Value::as_str).unwrap_or("?");
        match m.get("unit").and_then(Value::as_str).filter(|u| !u.is_empty()) {
            Some(u) => format!("{id} ({u})"),
            None => id.to_string(),
        }
    };
    metrics.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// The list as lines.
fn table(
    seen: &BTreeMap<String, Seen>,
    announced: &BTreeMap<String, Vec<String>>,
    args: &Args,
    now: f64,
) -> Vec<String> {
    let width = seen.keys().map(String::len).max().unwrap_or(0).max(7);
    let mut out = vec![format!(
        "{:width$}  {:7}  {:>9}  METRICS",
        "SERVICE", "STATUS", "LAST SEEN"
    )];
    for (name, s) in seen {
        let age = now - s.last;
        let status = if age <= args.expire.as_secs_f64() {
            "alive"
        } else {
            "offline"
        };
        let metrics = match (&s.metrics, args.no_metrics) {
            (_, true) => String::new(),
            (Some(m), _) => metric_list(m),
            (None, _) => "(no answer to GetMetrics)".into(),
        };
        out.push(format!(
            "{name:width$}  {status:7}  {:>9}  {metrics}",
            format!("{} ago", text::age(age))
        ));
    }
    if !announced.is_empty() {
        out.push(String::new());
        out.push(format!("announced on {PARAMS_SUBJECT}:"));
        for (device, ids) in announced {
            out.push(format!("  {device}: {}", ids.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_subjects() {
        assert_eq!(service_of("heartbeat.cpu-monitor.service"), Some("cpu-monitor"));
        assert_eq!(service_of("heartbeat..service"), None);
        assert_eq!(service_of("events.data"), None);
    }

    #[test]
    fn announcements_per_protocol_section_2() {
        let p = br#"[{"bn":"urn:cpt:device:sn:SN123456:","n":"metrics","vs":"[{\"id\":\"cpu:total\",\"name\":\"CPU total\",\"unit\":\"%\",\"type\":0,\"dataType\":1}]"}]"#;
        assert_eq!(announcement(p), Some(("SN123456".into(), vec!["cpu:total".into()])));
        assert_eq!(announcement(b"[]"), None);
    }
}
