//! `tlm watch`: what the services publish on `events.data`, as a live table on a terminal,
//! one line per record otherwise, or one JSON object per record with `--json`.
//!
//! Filters. `--metric GLOB` matches the metric id (the part of the resolved name after
//! `urn:cpt:device:sn:<serial>:`, e.g. `cpu:total`; the whole name for a foreign base name).
//! `--service NAME`: an `events.params` announcement carries the device's base name but not the
//! service's, so the service's metric ids are asked with `GetMetrics` at start (exit 3 if it
//! does not answer), and asked again whenever an announcement arrives on `events.params` (a
//! service re-announces when its metric set changes). Both filters together must both match.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Map;
use tolomeo_proto::senml::{self, Resolved};
use tolomeo_proto::wire::{DATA_SUBJECT, PARAMS_SUBJECT};
use tolomeo_proto::{ServiceName, unix_now};

use crate::cmd::{CallError, call};
use crate::exit::{Failure, Outcome};
use crate::table::Latest;
use crate::text::{self, print_out, sleep_until};
use tolomeo_proto::client::ConnArgs;

/// `tlm watch` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only the metrics of this service (asked with GetMetrics, refreshed on events.params).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Only metric ids matching this glob (`*` any run, `?` one character), e.g. 'cpu:*'.
    /// Repeat it to show several.
    #[arg(long, value_name = "GLOB")]
    pub metric: Vec<String>,
    /// One resolved record per line as JSON: name, unit, value, time.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many records (after filtering).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 30s, 2m.
    #[arg(long, value_parser = text::parse_duration)]
    pub duration: Option<Duration>,
    /// Redraw period of the table on a terminal.
    #[arg(long, default_value = "500ms", value_parser = text::parse_duration)]
    pub refresh: Duration,
}

/// How records are shown.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Table,
    Lines,
    Json,
}

/// The `--service` filter: the service's metric ids, as last answered.
struct ServiceFilter {
    name: ServiceName,
    ids: BTreeSet<String>,
}

impl ServiceFilter {
    async fn refresh(&mut self, client: &async_nats::Client) -> Result<(), CallError> {
        let result = call(client, &self.name, "GetMetrics", &Map::new(), Duration::from_secs(2)).await?;
        let metrics = result.get("metrics").and_then(|m| m.as_array()).ok_or_else(|| {
            CallError::Invalid(format!(
                "GetMetrics of {}: no `metrics` array in the result",
                self.name.as_str()
            ))
        })?;
        self.ids = metrics
            .iter()
            .filter_map(|m| m.get("id").and_then(|id| id.as_str()).map(str::to_string))
            .collect();
        Ok(())
    }
}

/// Runs `tlm watch`.
pub(crate) async fn run(conn: &ConnArgs, args: &Args) -> Outcome {
    let mode = match (args.json, std::io::stdout().is_terminal()) {
        (true, _) => Mode::Json,
        (false, true) => Mode::Table,
        (false, false) => Mode::Lines,
    };
    if args.refresh.is_zero() {
        return Err(Failure::usage("--refresh 0: expected a period above 0, e.g. 500ms"));
    }
    let mut service = match &args.service {
        Some(name) => Some(ServiceFilter {
            name: ServiceName::new(name).map_err(|e| Failure::usage(format!("--service {name:?}: {e}")))?,
            ids: BTreeSet::new(),
        }),
        None => None,
    };
    let client = conn.connect("tlm").await?;
    let sub_err = |s: &str, e: async_nats::SubscribeError| Failure::io(format!("cannot subscribe to {s}: {e}"));
    let mut data = client
        .subscribe(DATA_SUBJECT)
        .await
        .map_err(|e| sub_err(DATA_SUBJECT, e))?;
    let mut params = client
        .subscribe(PARAMS_SUBJECT)
        .await
        .map_err(|e| sub_err(PARAMS_SUBJECT, e))?;
    if let Some(f) = service.as_mut() {
        f.refresh(&client).await.map_err(Failure::from)?;
    }
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut view = View {
        mode,
        latest: Latest::default(),
        shown: 0,
        packs: 0,
        invalid: 0,
        last_problem: None,
        started: Instant::now(),
        server: conn.server.clone(),
    };
    let mut tick = tokio::time::interval(args.refresh);
    let result = loop {
        tokio::select! {
            msg = data.next() => {
                let Some(msg) = msg else { break Err(Failure::io("the broker closed the subscription")) };
                let filter = |r: &Resolved| keep(r, &args.metric, service.as_ref());
                if !view.take(&msg.payload, filter, args.count) {
                    break Ok(());
                }
            }
            Some(_) = params.next() => {
                if let Some(f) = service.as_mut()
                    && let Err(e) = f.refresh(&client).await
                {
                    view.warn(&format!("cannot refresh the metrics of {}: {}", f.name.as_str(), Failure::from(e).message));
                }
            }
            _ = tick.tick(), if mode == Mode::Table => view.draw(),
            _ = sleep_until(deadline) => break Ok(()),
            () = text::interrupted() => break Ok(()),
        }
    };
    if mode == Mode::Table {
        view.draw();
        // Show the cursor again.
        print_out("\x1b[?25h");
    }
    result
}

/// Does this record pass the filters?
fn keep(r: &Resolved, globs: &[String], service: Option<&ServiceFilter>) -> bool {
    let (_, metric) = text::split_name(&r.name);
    let by_glob = globs.is_empty() || globs.iter().any(|g| text::glob_match(g, metric));
    let by_service = service.is_none_or(|f| f.ids.contains(metric));
    by_glob && by_service
}

/// Output state.
struct View {
    mode: Mode,
    latest: Latest,
    shown: u64,
    packs: u64,
    invalid: u64,
    last_problem: Option<String>,
    started: Instant,
    server: String,
}

impl View {
    /// Takes one pack; false once `count` records have been shown.
    fn take(&mut self, payload: &[u8], filter: impl Fn(&Resolved) -> bool, count: Option<u64>) -> bool {
        self.packs += 1;
        let pack = match senml::decode_pack(payload) {
            Ok(p) => p,
            Err(e) => {
                self.invalid += 1;
                self.warn(&format!("{DATA_SUBJECT}: skipped a pack: {e}"));
                return true;
            }
        };
        let records = match senml::resolve(&pack, unix_now()) {
            Ok(r) => r,
            Err(problems) => {
                self.invalid += 1;
                let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
                self.warn(&format!("{DATA_SUBJECT}: skipped an invalid pack: {}", all.join("; ")));
                return true;
            }
        };
        // One write per pack, not per record.
        let mut out = String::new();
        let mut more = true;
        for r in records.iter().filter(|r| filter(r)) {
            if count.is_some_and(|n| self.shown >= n) {
                more = false;
                break;
            }
            self.shown += 1;
            match self.mode {
                Mode::Table => self.latest.update(r),
                Mode::Json => {
                    out.push_str(&text::record_json(r));
                    out.push('\n');
                }
                Mode::Lines => {
                    let (device, metric) = text::split_name(&r.name);
                    let device = if device.is_empty() { "-" } else { device };
                    let unit = r.unit.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
                    let value = text::value_text(r.value.as_ref());
                    out.push_str(&format!("{} {device} {metric} {value}{unit}\n", text::iso_time(r.time)));
                }
            }
        }
        if !out.is_empty() {
            print_out(&out);
        }
        more && count.is_none_or(|n| self.shown < n)
    }

    /// A problem with the input: on stderr, or in the table's status line.
    fn warn(&mut self, msg: &str) {
        match self.mode {
            Mode::Table => self.last_problem = Some(msg.to_string()),
            _ => eprintln!("tlm: {msg}"),
        }
    }

    /// Redraws the table in place: cursor home, the table, clear to the end of the screen.
    fn draw(&self) {
        let mut out = String::from("\x1b[?25l\x1b[H");
        out.push_str(&format!(
            "tlm watch  {}  {} metrics  {} packs  {} invalid  {}  (Ctrl-C to quit)\x1b[K\n\x1b[K\n",
            self.server,
            self.latest.len(),
            self.packs,
            self.invalid,
            text::age(self.started.elapsed().as_secs_f64()),
        ));
        for line in self.latest.render(unix_now()) {
            out.push_str(&line);
            out.push_str("\x1b[K\n");
        }
        if self.latest.len() == 0 {
            out.push_str(&format!("waiting for {DATA_SUBJECT}...\x1b[K\n"));
        }
        if let Some(p) = &self.last_problem {
            out.push_str(&format!("\x1b[K\nlast problem: {p}\x1b[K\n"));
        }
        out.push_str("\x1b[J");
        print_out(&out);
    }
}
