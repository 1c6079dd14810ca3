//! Shared by the end-to-end tests: start the real binary against a private nats-server, and
//! read the same kernel sources independently.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use tolomeo_testkit::{NatsServer, Received, ServiceProcess};

pub(crate) const SERVICE: &str = "cpu-monitor";
pub(crate) const SERIAL: &str = "SNCPU1";

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tlm-cpu-monitor"))
}

/// Write a config file in a temp dir; removed when dropped.
pub(crate) fn config_file(name: &str, text: &str) -> tolomeo_testkit::tempfile::TempPath {
    tolomeo_testkit::temp_file(&format!("-{name}.toml"), text)
}

/// Start the service with `config` and `args`; wait until it answers Ping.
pub(crate) async fn start(
    nats: &NatsServer,
    name: &str,
    config: &str,
    args: &[&str],
) -> (ServiceProcess, async_nats::Client) {
    let cfg = config_file(name, config);
    let mut all = vec!["--config", cfg.to_str().expect("utf-8 temp path")];
    all.extend_from_slice(args);
    let mut svc = ServiceProcess::start(binary(), &all, SERIAL, &nats.url());
    svc.hold(cfg);
    let client = nats.client().await;
    tolomeo_testkit::wait_ready(&client, SERVICE, &svc).await;
    (svc, client)
}

/// name -> (value, unit) of every record of one pack.
pub(crate) fn pack_values(msg: &Received) -> BTreeMap<String, (f64, Option<String>)> {
    let pack = msg.json();
    pack.as_array()
        .expect("a SenML pack")
        .iter()
        .map(|r| {
            (
                r["n"].as_str().expect("n").to_string(),
                (
                    r["v"].as_f64().expect("v is a number"),
                    r["u"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// The metric ids of an events.params announcement, with their `type`.
pub(crate) fn announced(msg: &Received) -> BTreeMap<String, u64> {
    let pack = msg.json();
    let vs = pack[0]["vs"].as_str().expect("vs");
    let entries: Value = serde_json::from_str(vs).expect("vs holds JSON");
    entries
        .as_array()
        .expect("an array of metrics")
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["type"].as_u64().unwrap()))
        .collect()
}

/// `Key: value kB` from /proc/meminfo, in bytes.
pub(crate) fn meminfo(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with(&format!("{key}:"))).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The online CPUs from /sys/devices/system/cpu/online (`0-3,5`).
pub(crate) fn online_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    text.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

/// Numeric entries of /proc.
pub(crate) fn proc_count() -> f64 {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as f64
}

/// `df -B1 --output=<field> <path>` as a number.
pub(crate) fn df(field: &str, path: &str) -> f64 {
    let out = std::process::Command::new("df")
        .args(["-B1", &format!("--output={field}"), path])
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .expect("df value line")
        .trim()
        .parse()
        .expect("df number")
}

/// Interfaces of /proc/net/dev other than `lo`, with rx and tx bytes.
pub(crate) fn interfaces() -> BTreeMap<String, (f64, f64)> {
    let text = std::fs::read_to_string("/proc/net/dev").unwrap();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<f64> = rest.split_whitespace().map(|x| x.parse().unwrap()).collect();
            Some((name.trim().to_string(), (f[0], f[8])))
        })
        .filter(|(n, _)| n != "lo")
        .collect()
}

/// Temperature inputs the kernel exposes: thermal zones with a `temp` file, hwmon `temp*_input`.
pub(crate) fn temperature_inputs() -> usize {
    let count = |dir: &str, prefix: &str, file_ok: &dyn Fn(&str) -> bool| -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| {
                std::fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|f| file_ok(&f.file_name().to_string_lossy()))
                    .count()
            })
            .sum()
    };
    count("/sys/class/thermal", "thermal_zone", &|f| f == "temp")
        + count("/sys/class/hwmon", "hwmon", &|f| {
            f.starts_with("temp") && f.ends_with("_input")
        })
}

/// /proc/uptime's first field.
pub(crate) fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}
