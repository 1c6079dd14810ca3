//! The collector: reads every enabled group once and gives the values with their metric
//! declarations. Only the enabled groups are read, each from the cheapest source: the procfs
//! files of [`crate::procfs`], kept open and read again from the start at each poll
//! (measured: this halves the service's system calls per poll), and the system calls of
//! [`crate::sys`]. No per-process scan.
//!
//! CPU use was read through sysinfo until it was measured: at a 1 s poll, its refresh (open,
//! read through a `BufReader` split into lines, close, at every poll) was a fifth of the
//! service's CPU time. The same formula on the kept-open file is [`CpuTicks`]; the tests
//! compare it with sysinfo's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tolomeo_core::{Health, Metric};

use crate::config::CpuConfig;
use crate::names::{Labeler, selected};
use crate::presence::Presence;
use crate::procfs::{self, CpuTicks, ProcFile};
use crate::sensors::{self, Sensor};
use crate::sys::{self, ProcessCounter};

/// The shortest interval CPU use is measured over: shorter ones are a few clock ticks (10 ms
/// each at the usual 100 Hz), too coarse for a percentage. Also how long the service waits
/// after taking the first counters before its first poll.
pub const MIN_CPU_INTERVAL: Duration = Duration::from_millis(200);

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
    buf: String,
    stat_file: ProcFile,
    /// CPU counters read earlier, newest first, each at least MIN_CPU_INTERVAL after the
    /// one before it, with when they were read: use is measured from the newest that is at
    /// least MIN_CPU_INTERVAL old.
    cpu_bases: [(Vec<CpuTicks>, Option<Instant>); 2],
    /// The counters just read (kept to reuse its allocation).
    cpu_now: Vec<CpuTicks>,
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
            buf: String::with_capacity(4096),
            stat_file: ProcFile::new("/proc/stat"),
            cpu_bases: [(Vec::new(), None), (Vec::new(), None)],
            cpu_now: Vec::new(),
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
    /// [`MIN_CPU_INTERVAL`] later reports real use over that interval.
    pub fn prime_cpu(&mut self) {
        if self.cfg.total || self.cfg.per_core {
            self.read_cpu_ticks();
            self.keep_cpu_base();
        }
    }

    /// The counters just read become the newest base, if the newest is MIN_CPU_INTERVAL old.
    fn keep_cpu_base(&mut self) {
        let due = self.cpu_bases[0].1.is_none_or(|t| t.elapsed() >= MIN_CPU_INTERVAL);
        if due && !self.cpu_now.is_empty() {
            self.cpu_bases.swap(0, 1);
            std::mem::swap(&mut self.cpu_bases[0].0, &mut self.cpu_now);
            self.cpu_bases[0].1 = Some(Instant::now());
        }
    }

    /// /proc/stat's CPU lines into `cpu_now`; empty when it cannot be read.
    fn read_cpu_ticks(&mut self) {
        match self.stat_file.read(&mut self.buf) {
            Ok(()) => procfs::parse_stat(&self.buf, &mut self.cpu_now),
            Err(e) => {
                tracing::debug!("{e}");
                self.cpu_now.clear();
            }
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
            self.read_cpu_ticks();
            // A GetSnapshot right after a poll measures from the base before: never over
            // less than MIN_CPU_INTERVAL. Nothing before the first base.
            let base = match &self.cpu_bases {
                [(newest, Some(t)), _] if t.elapsed() >= MIN_CPU_INTERVAL => Some(newest),
                [_, (older, Some(_))] => Some(older),
                [(newest, Some(_)), _] => Some(newest),
                _ => None,
            };
            if let Some(base) = base {
                for now in &self.cpu_now {
                    let wanted = match now.cpu {
                        None => self.cfg.total,
                        Some(_) => self.cfg.per_core,
                    };
                    // A CPU that just came online has no base yet: from the next poll on.
                    let Some(earlier) = base.iter().find(|b| b.cpu == now.cpu).filter(|_| wanted) else {
                        continue;
                    };
                    let name = match now.cpu {
                        None => "cpu:total".to_string(),
                        Some(n) => format!("cpu:core{n}"),
                    };
                    out.push(Entry::sample(name, "%", percent(now.busy_percent_since(earlier))));
                }
            }
            self.keep_cpu_base();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::config::{DiskConfig, NetConfig, TempConfig};

    fn cpu_only() -> CpuConfig {
        CpuConfig {
            load: false,
            mem: false,
            swap: false,
            uptime: false,
            proc: false,
            disk: DiskConfig {
                enabled: false,
                ..DiskConfig::default()
            },
            net: NetConfig {
                enabled: false,
                ..NetConfig::default()
            },
            temp: TempConfig {
                enabled: false,
                ..TempConfig::default()
            },
            ..CpuConfig::default()
        }
    }

    fn value(entries: &[Entry], name: &str) -> Option<f64> {
        entries.iter().find(|e| e.name == name).map(|e| e.value)
    }

    /// Against sysinfo, an independent implementation reading the same counters at (nearly)
    /// the same moments, with one core kept busy: over 0.6 s a clock tick is at most 2
    /// percentage points of one core at 100 Hz, and the two reads of each end are
    /// microseconds apart.
    #[test]
    fn cpu_use_agrees_with_sysinfo() {
        let stop = Arc::new(AtomicBool::new(false));
        let spin = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let mut sys = sysinfo::System::new();
        let mut c = Collector::new(cpu_only());
        sys.refresh_cpu_usage();
        c.prime_cpu();
        std::thread::sleep(Duration::from_millis(600));
        let ours = c.collect();
        sys.refresh_cpu_usage();
        stop.store(true, Ordering::Relaxed);
        spin.join().unwrap();

        let total = value(&ours, "cpu:total").unwrap();
        let theirs = f64::from(sys.global_cpu_usage());
        assert!((total - theirs).abs() <= 5.0, "cpu:total {total} vs sysinfo {theirs}");
        assert!(
            total >= 100.0 / sys.cpus().len() as f64 * 0.8,
            "one core of {} was busy: {total}",
            sys.cpus().len()
        );
        assert_eq!(
            ours.iter().filter(|e| e.name.starts_with("cpu:core")).count(),
            sys.cpus().len()
        );
        for cpu in sys.cpus() {
            let n = cpu.name().strip_prefix("cpu").unwrap();
            let core = value(&ours, &format!("cpu:core{n}")).unwrap();
            let theirs = f64::from(cpu.cpu_usage());
            assert!((core - theirs).abs() <= 10.0, "cpu:core{n} {core} vs sysinfo {theirs}");
        }
    }

    #[test]
    fn cpu_use_is_only_published_over_a_real_interval() {
        let mut c = Collector::new(cpu_only());
        // Not primed: no base, so no CPU values yet (never a made-up 0).
        let first = c.collect();
        assert_eq!(value(&first, "cpu:total"), None);
        std::thread::sleep(MIN_CPU_INTERVAL + Duration::from_millis(50));
        let second = c.collect();
        assert!(value(&second, "cpu:total").is_some_and(|v| (0.0..=100.0).contains(&v)));
        // Right after: measured from the base before, MIN_CPU_INTERVAL or more ago.
        let snapshot = c.collect();
        assert!(value(&snapshot, "cpu:total").is_some());
        assert!(c.cpu_bases[1].1.is_some_and(|t| t.elapsed() >= MIN_CPU_INTERVAL));
    }
}
