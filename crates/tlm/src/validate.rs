//! `tlm validate [FILE|-]...`: checks SenML packs, with no broker.
//!
//! Two layers, every problem reported with its record index (0-based) and field:
//!
//! 1. RFC 8428, by the core's own decoder: `senml::decode_pack` (JSON shape and field types)
//!    and `senml::resolve` (names, versions, base fields, one value per record...).
//! 2. PROTOCOL.md, unless `--rfc8428`, for the kind of pack given by `--kind` (default `data`,
//!    an `events.data` pack): see [`protocol`].

use std::io::{Read, Write};

use tolomeo_proto::senml;
use tolomeo_proto::unix_now;

use crate::exit::{Failure, Outcome};
use crate::protocol::{self, Kind};

/// `tlm validate` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files holding one SenML JSON pack each; `-` (the default) reads stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    pub files: Vec<String>,
    /// Check RFC 8428 only, not the PROTOCOL.md rules.
    #[arg(long, conflicts_with = "kind")]
    pub rfc8428: bool,
    /// Which PROTOCOL.md rules: data (events.data), params (events.params), request or
    /// response (`commands.<service>.req` / reply).
    #[arg(long, value_enum, default_value = "data")]
    pub kind: Kind,
}

/// The outcome of checking one pack.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Records in the pack (0 if it could not be decoded).
    pub records: usize,
    /// Problems: the pack is invalid when there is any.
    pub problems: Vec<String>,
    /// Warnings: printed, without making the pack invalid.
    pub warnings: Vec<String>,
}

/// Checks one pack against RFC 8428 and, with a kind, PROTOCOL.md.
pub(crate) fn check(bytes: &[u8], kind: Option<Kind>) -> Report {
    let mut report = Report::default();
    let pack = match senml::decode_pack(bytes) {
        Ok(p) => p,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.records = pack.len();
    // PROTOCOL.md section 4: a request record without `vs` means "no arguments"; read it as
    // `"vs":"{}"` so that RFC 8428 does not call it a record without a value.
    let mut resolvable = pack.clone();
    if kind == Some(Kind::Request) {
        for r in resolvable
            .iter_mut()
            .filter(|r| r.v.is_none() && r.vs.is_none() && r.vb.is_none() && r.vd.is_none())
        {
            r.vs = Some("{}".into());
        }
    }
    let mut problems = match senml::resolve(&resolvable, unix_now()) {
        Ok(_) => Vec::new(),
        Err(p) => p,
    };
    if let Some(kind) = kind {
        let (more, warnings) = protocol::problems(kind, &pack, bytes.len());
        // One message per (record, field) of the RFC layer: its own is kept.
        let rfc: Vec<(usize, &str)> = problems.iter().map(|p| (p.index, p.field)).collect();
        problems.extend(more.into_iter().filter(|p| !rfc.contains(&(p.index, p.field))));
        report.warnings = warnings.iter().map(ToString::to_string).collect();
    }
    problems.sort_by_key(|p| p.index);
    report.problems = problems.iter().map(ToString::to_string).collect();
    report
}

/// Runs `tlm validate`: exit 0 when every pack is valid, 1 when one is not, 2 when a file
/// cannot be read.
pub(crate) fn run(args: &Args) -> Outcome {
    let mut all_valid = true;
    let mut out = std::io::stdout().lock();
    for file in &args.files {
        let mut bytes = Vec::new();
        let read = match file.as_str() {
            "-" => std::io::stdin().read_to_end(&mut bytes).map(|_| ()),
            path => std::fs::read(path).map(|b| bytes = b),
        };
        read.map_err(|e| Failure::usage(format!("{file}: cannot read it: {e}")))?;
        let name = if file == "-" { "<stdin>" } else { file.as_str() };
        let kind = (!args.rfc8428).then_some(args.kind);
        let report = check(&bytes, kind);
        let mut text = String::new();
        for w in &report.warnings {
            text.push_str(&format!("{name}: warning: {w}\n"));
        }
        for p in &report.problems {
            text.push_str(&format!("{name}: {p}\n"));
        }
        if report.problems.is_empty() {
            let rules = match kind {
                None => "RFC 8428",
                Some(Kind::Data) => "RFC 8428 and PROTOCOL.md events.data",
                Some(Kind::Params) => "RFC 8428 and PROTOCOL.md events.params",
                Some(Kind::Request) => "RFC 8428 and PROTOCOL.md command request",
                Some(Kind::Response) => "RFC 8428 and PROTOCOL.md command response",
            };
            let plural = if report.records == 1 { "" } else { "s" };
            text.push_str(&format!("{name}: valid ({rules}), {} record{plural}\n", report.records));
        } else {
            all_valid = false;
            let n = report.problems.len();
            text.push_str(&format!(
                "{name}: invalid, {n} problem{}\n",
                if n == 1 { "" } else { "s" }
            ));
        }
        if out.write_all(text.as_bytes()).is_err() {
            break;
        }
    }
    if all_valid { Ok(()) } else { Err(Failure::failed("")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_example_is_valid() {
        let pack = br#"[
  {"bn":"urn:cpt:device:sn:SN123456:","n":"cpu:total","u":"%","v":12.5,"t":1700000000.25},
  {"bn":"urn:cpt:device:sn:SN123456:","n":"mem:used","u":"B","v":523190272,"t":1700000000.25}
]"#;
        let r = check(pack, Some(Kind::Data));
        assert_eq!((r.records, r.problems.len(), r.warnings.len()), (2, 0, 0), "{r:?}");
    }
}
