//! The collector: reads every enabled group once and gives the values with their metric
//! declarations. Only the enabled groups are read, each from the cheapest source: sysinfo
//! for CPU use (one read of `/proc/stat`, usage only: no frequency, no full refresh), and
//! [`crate::procfs`] for the rest, with the procfs files kept open and read again from the
//! start at each poll (measured: this halves the service's system calls per poll). No
//! per-process scan.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sysinfo::{CpuRefreshKind, System};
use tolomeo_core::{Health, Metric};

use crate::config::CpuConfig;
use crate::names::{Labeler, selected};
use crate::presence::Presence;
use crate::procfs::{self, ProcFile};
use crate::sensors::{self, Sensor};
use crate::sys::{self, ProcessCounter};

/// How often the sensor list is read again from sysfs (between scans, only the known sensor
/// files are read; a sensor that fails to read triggers a scan at the next poll).
pub const SENSOR_RESCAN: Duration = Duration::from_secs(60);

/// One value read, with what its metric is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The metric name (`cpu:total`).
    pub name: String,
    /// Unit symbol, "" for none.
    pub unit: &'static str,
    /// A counter (INCREMENTAL) rather than a sample.
    pub counter: bool,
    /// The value.
    pub value: f64,
}

impl Entry {
    fn sample(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Entry {
            name: name.into(),
            unit,
            counter: false,
            value,
        }
    }
    fn counter(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Entry {
            counter: true,
            ..Self::sample(name, unit, value)
        }
    }
    /// Its declaration.
    pub fn metric(&self) -> Metric {
        let m = Metric::number(self.name.clone()).unit(self.unit);
        if self.counter { m.incremental() } else { m }
    }
}

/// Reads the enabled groups. One per service; not shared between threads while reading.
pub struct Collector {
    cfg: CpuConfig,
    sys: System,
    buf: String,
    uptime_file: ProcFile,
    meminfo_file: ProcFile,
    loadavg_file: ProcFile,
    mountinfo_file: ProcFile,
    netdev_file: ProcFile,
    processes: ProcessCounter,
    mounts: Presence,
    interfaces: Presence,
    sensor_presence: Presence,
    sensors: Vec<Sensor>,
    sensors_scanned: Option<Instant>,
    health: Health,
}

impl Collector {
    /// A collector for this configuration. Reads nothing yet.
    pub fn new(cfg: CpuConfig) -> Self {
        Collector {
            cfg,
            sys: System::new(),
            buf: String::with_capacity(4096),
            uptime_file: ProcFile::new("/proc/uptime"),
            meminfo_file: ProcFile::new("/proc/meminfo"),
            loadavg_file: ProcFile::new("/proc/loadavg"),
            mountinfo_file: ProcFile::new("/proc/self/mountinfo"),
            netdev_file: ProcFile::new("/proc/net/dev"),
            processes: ProcessCounter::new("/proc"),
            mounts: Presence::new("mount point"),
            interfaces: Presence::new("interface"),
            sensor_presence: Presence::new("sensor"),
            sensors: Vec::new(),
            sensors_scanned: None,
            health: Health::unhealthy("not read yet"),
        }
    }

    /// Whether /proc could be read at the last collection, and what was read.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Take the CPU counters now: the next [`Collector::collect`] at least
    /// `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` later reports real use over that interval.
    pub fn prime_cpu(&mut self) {
        if self.cfg.total || self.cfg.per_core {
            self.sys
                .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
        }
    }

    /// Read every enabled group now.
    pub fn collect(&mut self) -> Vec<Entry> {
        let mut out = Vec::with_capacity(32);
        // /proc/uptime is read at every collection: it is the health probe.
        let uptime = self.uptime_file.read(&mut self.buf).and_then(|()| {
            procfs::parse_uptime(&self.buf)
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/uptime: unexpected content"))
        });
        match uptime {
            Ok(up) => {
                if self.cfg.uptime {
                    out.push(Entry::counter("sys:uptime", "s", up));
                }
            }
            Err(e) => {
                if self.health.healthy {
                    tracing::warn!("cannot read /proc: {e}");
                }
                self.health = Health::unhealthy(format!("cannot read /proc: {e}"));
                return out;
            }
        }
        self.cpu(&mut out);
        self.memory(&mut out);
        if self.cfg.proc {
            match self.processes.count() {
                Ok(n) => out.push(Entry::sample("proc:count", "", n as f64)),
                Err(e) => tracing::debug!("cannot list /proc: {e}"),
            }
        }
        if self.cfg.disk.enabled {
            self.disks(&mut out);
        }
        if self.cfg.net.enabled {
            self.net(&mut out);
        }
        if self.cfg.temp.enabled {
            self.temps(&mut out);
        }
        self.health = Health::healthy(format!("reading /proc: {} values at the last poll", out.len()));
        out
    }

    fn cpu(&mut self, out: &mut Vec<Entry>) {
        if self.cfg.total || self.cfg.per_core {
            self.sys
                .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
            if self.cfg.total && !self.sys.cpus().is_empty() {
                out.push(Entry::sample(
                    "cpu:total",
                    "%",
                    percent(self.sys.global_cpu_usage().into()),
                ));
            }
            if self.cfg.per_core {
                for (i, cpu) in self.sys.cpus().iter().enumerate() {
                    // sysinfo names them after /proc/stat (`cpu3`): keep the kernel's number
                    // when some CPUs are offline.
                    let n = cpu.name().strip_prefix("cpu").and_then(|n| n.parse().ok()).unwrap_or(i);
                    out.push(Entry::sample(
                        format!("cpu:core{n}"),
                        "%",
                        percent(cpu.cpu_usage().into()),
                    ));
                }
            }
        }
        if self.cfg.load {
            let load = match self.loadavg_file.read(&mut self.buf) {
                Ok(()) => procfs::parse_loadavg(&self.buf),
                Err(e) => {
                    tracing::debug!("{e}");
                    None
                }
            };
            if let Some([one, five, fifteen]) = load {
                out.push(Entry::sample("cpu:load1", "", one));
                out.push(Entry::sample("cpu:load5", "", five));
                out.push(Entry::sample("cpu:load15", "", fifteen));
            }
        }
    }

    fn memory(&mut self, out: &mut Vec<Entry>) {
        if !self.cfg.mem && !self.cfg.swap {
            return;
        }
        let m = match self.meminfo_file.read(&mut self.buf) {
            Ok(()) => procfs::parse_meminfo(&self.buf),
            Err(e) => {
                tracing::debug!("{e}");
                None
            }
        };
        let Some(m) = m else { return };
        let total = m.total;
        if self.cfg.mem && total > 0 {
            let available = m.available.min(total);
            // used = total - available, as htop and psutil compute it.
            let used = total - available;
            out.push(Entry::sample("mem:total", "B", total as f64));
            out.push(Entry::sample("mem:used", "B", used as f64));
            out.push(Entry::sample("mem:available", "B", available as f64));
            out.push(Entry::sample(
                "mem:percent",
                "%",
                percent(used as f64 / total as f64 * 100.0),
            ));
        }
        let swap_total = m.swap_total;
        if self.cfg.swap && swap_total > 0 {
            let used = swap_total.saturating_sub(m.swap_free);
            out.push(Entry::sample("swap:used", "B", used as f64));
            out.push(Entry::sample(
                "swap:percent",
                "%",
                percent(used as f64 / swap_total as f64 * 100.0),
            ));
        }
    }

    fn disks(&mut self, out: &mut Vec<Entry>) {
        // Read only when statx cannot tell (kernels before 5.8).
        let mut mountinfo: Option<Vec<String>> = None;
        for m in &self.cfg.disk.mounts {
            let mounted = match sys::is_mount_root(&m.path) {
                Ok(Some(root)) => Ok(root),
                Ok(None) => Ok(mountinfo
                    .get_or_insert_with(|| match self.mountinfo_file.read(&mut self.buf) {
                        Ok(()) => procfs::parse_mountinfo(&self.buf),
                        Err(e) => {
                            tracing::debug!("{e}");
                            Vec::new()
                        }
                    })
                    .contains(&m.path)),
                Err(e) => Err(e),
            };
            match mounted {
                Ok(true) => {}
                Ok(false) => {
                    self.mounts.absent(&m.path, "is not a mount point", m.optional);
                    continue;
                }
                Err(e) => {
                    self.mounts
                        .absent(&m.path, format_args!("is not a mount point ({e})"), m.optional);
                    continue;
                }
            }
            match sys::statvfs(&m.path) {
                Ok(d) => {
                    self.mounts.present(&m.path);
                    let l = &m.label;
                    out.push(Entry::sample(format!("disk:{l}:used"), "B", d.used as f64));
                    out.push(Entry::sample(format!("disk:{l}:total"), "B", d.total as f64));
                    out.push(Entry::sample(format!("disk:{l}:percent"), "%", percent(d.percent())));
                }
                Err(e) => {
                    self.mounts
                        .absent(&m.path, format_args!("statvfs failed: {e}"), m.optional);
                }
            }
        }
    }

    fn net(&mut self, out: &mut Vec<Entry>) {
        if let Err(e) = self.netdev_file.read(&mut self.buf) {
            tracing::debug!("{e}");
            self.buf.clear();
        }
        let net = &self.cfg.net;
        let mut labels = Labeler::new();
        let mut now = BTreeSet::new();
        for dev in procfs::parse_net_dev(&self.buf) {
            let label = labels.label(dev.name);
            if !selected(&net.interfaces, &net.exclude, dev.name) {
                continue;
            }
            now.insert(dev.name);
            self.interfaces.present(dev.name);
            out.push(Entry::counter(
                format!("net:{label}:rx_bytes"),
                "B",
                dev.rx_bytes as f64,
            ));
            out.push(Entry::counter(
                format!("net:{label}:tx_bytes"),
                "B",
                dev.tx_bytes as f64,
            ));
        }
        self.interfaces.gone_except(&now);
        for name in &net.interfaces {
            if !name.ends_with('*') && !now.contains(name.as_str()) && !net.exclude.contains(name) {
                self.interfaces.absent(name, "is not present", false);
            }
        }
    }

    fn temps(&mut self, out: &mut Vec<Entry>) {
        let due = self.sensors_scanned.is_none_or(|t| t.elapsed() >= SENSOR_RESCAN);
        if due {
            self.sensors = sensors::discover(std::path::Path::new("/sys"), &self.cfg.temp);
            self.sensors_scanned = Some(Instant::now());
            let now: BTreeSet<&str> = self.sensors.iter().map(|s| s.label.as_str()).collect();
            self.sensor_presence.gone_except(&now);
        }
        let mut failed = false;
        for s in &self.sensors {
            match sensors::read_celsius(&s.path, &mut self.buf) {
                Ok(c) => {
                    self.sensor_presence.present(&s.label);
                    out.push(Entry::sample(format!("temp:{}", s.label), "Cel", c));
                }
                Err(e) => {
                    failed = true;
                    self.sensor_presence.absent(&s.label, &e, false);
                }
            }
        }
        if failed {
            self.sensors_scanned = None;
        }
    }
}

/// Percentages are published with two decimals.
fn percent(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
