//! `cargo xtask soak`: all three services under load for a while, their resident memory
//! sampled over time, which must stay flat.
//!
//! The same system as the demo (private nats-server, simulated boiler on Modbus TCP, the
//! three services at a 1 s poll), with can-engine replaying a 100 Hz bus in a loop. After a
//! warm-up minute, each service's VmRSS is sampled every `--sample` seconds; at the end, the
//! growth from the first sample after warm-up to the highest later one must stay within
//! `--max-growth-kib`, and no service may have dropped records. CI runs 5 minutes; the
//! documented run is an hour: `cargo xtask soak --minutes 60 --release --sample 60`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::demo::{Launch, System, launch};

pub(crate) fn run(minutes: u64, release: bool, sample_s: u64, max_growth_kib: u64) -> Result<()> {
    let System { procs, url, work, .. } = launch(&Launch {
        release,
        can_log: "services/can-engine/bench/engine-100hz.log",
        cpu_poll_ms: 1000,
        work_dir: "soak",
        dashboard: false,
    })?;
    let services: Vec<(String, u32)> = procs
        .0
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "cpu-monitor" | "can-engine" | "modbus-sensors"))
        .map(|(name, child)| (name.clone(), child.id()))
        .collect();
    let total = Duration::from_secs(minutes * 60);
    let warmup = Duration::from_secs(60).min(total / 4);
    let started = Instant::now();
    std::thread::sleep(warmup);
    let mut samples: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    println!(
        "minute  {}",
        services.iter().map(|(n, _)| format!("{n:>16}")).collect::<String>()
    );
    while started.elapsed() < total {
        let mut row = format!("{:>6.1}  ", started.elapsed().as_secs_f64() / 60.0);
        for (name, pid) in &services {
            let kib = crate::bench::status_kib(*pid, "VmRSS:")
                .with_context(|| format!("{name} is gone; see {}", work.display()))?;
            samples.entry(name.clone()).or_default().push(kib);
            row.push_str(&format!("{:>12} KiB", kib));
        }
        println!("{row}");
        std::thread::sleep(Duration::from_secs(sample_s).min(total.saturating_sub(started.elapsed())));
    }
    let tlm = PathBuf::from("target")
        .join(if release { "release" } else { "debug" })
        .join("tlm");
    let mut failures = Vec::new();
    for (name, _) in &services {
        let out = Command::new(&tlm)
            .args(["-s", &url, "cmd", "--compact", name, "GetStatus"])
            .output()?;
        let status = String::from_utf8_lossy(&out.stdout).to_string();
        let dropped = field(&status, "dropped_records");
        let published = field(&status, "published_records");
        let s = samples.get(name).map(Vec::as_slice).unwrap_or_default();
        let first = s.first().copied().unwrap_or(0);
        let peak = s.iter().copied().max().unwrap_or(0);
        let growth = peak.saturating_sub(first);
        println!(
            "{name}: VmRSS {first} KiB after warm-up, peak {peak} KiB (growth {growth} KiB); published {published}, dropped {dropped}"
        );
        if growth > max_growth_kib {
            failures.push(format!("{name} grew by {growth} KiB (bound {max_growth_kib} KiB)"));
        }
        if dropped != 0 || published == 0 {
            failures.push(format!("{name}: published {published}, dropped {dropped}: {status}"));
        }
    }
    drop(procs);
    if !failures.is_empty() {
        bail!("soak failed:\n  {}\nlogs: {}", failures.join("\n  "), work.display());
    }
    println!("soak: {minutes} min, memory flat within {max_growth_kib} KiB, nothing dropped");
    Ok(())
}

/// A number field of a compact JSON object (`"key":123`); 0 when absent.
fn field(json: &str, key: &str) -> u64 {
    json.split(&format!("\"{key}\":"))
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
