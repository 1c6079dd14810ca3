//! Direct readers of procfs text files: `/proc/stat` (CPU use), `/proc/net/dev` (one file for
//! every interface, where sysinfo opens several files per interface), `/proc/meminfo`,
//! `/proc/loadavg`, `/proc/uptime` and `/proc/self/mountinfo`, kept open and read again from
//! the start at each poll. Parsers take text so that they are tested on fixed input. The
//! system calls std does not wrap are in [`crate::sys`].

use std::fs::File;
use std::io;

/// Read a whole (small) file into `buf`, replacing its contents. Unlike `fs::read_to_string`
/// it asks for no size hint (no `statx`, no `lseek`): procfs and sysfs sizes are meaningless.
pub fn read_into(path: &str, buf: &mut String) -> io::Result<()> {
    let mut f = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
    read_all_at_start(&mut f, path, &mut Vec::new(), buf)
}

/// A procfs file kept open and read again from offset 0 at each poll (procfs files give
/// fresh contents at every read from 0), which saves the open and close of every poll.
#[derive(Debug)]
pub struct ProcFile {
    path: &'static str,
    file: Option<File>,
    /// Read buffer, zeroed once and grown as needed; its length is its capacity.
    raw: Vec<u8>,
}

impl ProcFile {
    /// A file to be opened at the first read.
    pub fn new(path: &'static str) -> Self {
        ProcFile {
            path,
            file: None,
            raw: Vec::new(),
        }
    }

    /// Read it whole into `buf`. After an error the file is opened again at the next read.
    pub fn read(&mut self, buf: &mut String) -> io::Result<()> {
        let path = self.path;
        let file = match &mut self.file {
            Some(f) => f,
            slot => {
                slot.insert(File::open(path).map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?)
            }
        };
        let r = read_all_at_start(file, path, &mut self.raw, buf);
        if r.is_err() {
            self.file = None;
        }
        r
    }
}

/// A first read shorter than asked and than this is the whole file: no second read to see the
/// end. procfs files are `seq_file`s, and a read stops short of what was asked only at the end
/// of the file or when the next record would overflow its buffer of a page (4 KiB or more),
/// which leaves at least 2 KiB in it for records of up to 2 KiB (a line of /proc/net/dev or
/// /proc/self/mountinfo is about 150 bytes; /proc/meminfo and /proc/uptime are one record).
/// The read at the end is not free: the kernel formats a `seq_file` again from its start to
/// reach the offset, so for /proc/meminfo it costs as much as the first.
const WHOLE_IN_ONE_READ: usize = 2048;

/// Read `f` from offset 0 to its end through `raw` into `buf`. `raw` keeps its length (all
/// initialized) between calls, so a poll copies the file's bytes once and zeroes nothing:
/// zeroing the spare room before every read was half of cpu-monitor's instructions per poll.
fn read_all_at_start(f: &mut File, path: &str, raw: &mut Vec<u8>, buf: &mut String) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    let result = loop {
        if raw.len() - filled < 512 {
            raw.resize((raw.len() * 2).max(1024), 0);
        }
        let Some(room) = raw.get_mut(filled..) else {
            break Ok(());
        };
        let asked = room.len();
        match f.read_at(room, filled as u64) {
            Ok(0) => break Ok(()),
            Ok(n) if filled == 0 && n < asked && n < WHOLE_IN_ONE_READ => {
                filled = n;
                break Ok(());
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(io::Error::new(e.kind(), format!("cannot read {path}: {e}"))),
        }
    };
    buf.clear();
    let bytes = raw.get(..filled).unwrap_or_default();
    match std::str::from_utf8(bytes) {
        Ok(text) => buf.push_str(text),
        Err(_) => buf.push_str(&String::from_utf8_lossy(bytes)),
    }
    result
}

/// The time counters of one CPU line of `/proc/stat` (the `cpu` line for all of them, `cpuN`
/// for one), in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// `None` for the `cpu` line, the kernel's CPU number for `cpuN`.
    pub cpu: Option<u32>,
    /// user + nice + system + idle + iowait + irq + softirq + steal. Guest time is left out:
    /// the kernel counts it in user and nice already.
    pub total: u64,
    /// idle + iowait.
    pub idle: u64,
}

impl CpuTicks {
    /// The busy share of the time from `earlier` to `self`, in percent: everything but idle
    /// and iowait, over all of it, as top, psutil and sysinfo compute it. 0 when no tick
    /// passed; counters that went back (a CPU taken offline and back) count as no time.
    pub fn busy_percent_since(&self, earlier: &CpuTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let idle = self.idle.saturating_sub(earlier.idle).min(total);
        (total - idle) as f64 / total as f64 * 100.0
    }
}

/// The `cpu` and `cpuN` lines of `/proc/stat` into `out` (cleared first), in file order. Lines
/// with fewer than the four fields of every kernel are skipped; fields a kernel does not
/// have (iowait before 2.5.41, steal before 2.6.11) count as 0.
pub fn parse_stat(text: &str, out: &mut Vec<CpuTicks>) {
    out.clear();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            // The cpu lines come first; nothing after them is needed.
            if !out.is_empty() {
                break;
            }
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let cpu = match rest.starts_with(' ') {
            true => None,
            false => match fields.next().and_then(|n| n.parse().ok()) {
                Some(n) => Some(n),
                None => continue,
            },
        };
        // user nice system idle iowait irq softirq steal (guest guest_nice follow).
        let mut v = [0u64; 8];
        let mut n = 0;
        for (slot, field) in v.iter_mut().zip(fields) {
            match field.parse() {
                Ok(x) => {
                    *slot = x;
                    n += 1;
                }
                Err(_) => break,
            }
        }
        if n < 4 {
            continue;
        }
        out.push(CpuTicks {
            cpu,
            total: v.iter().fold(0u64, |a, &x| a.saturating_add(x)),
            idle: v[3].saturating_add(v[4]),
        });
    }
}

/// `/proc/meminfo` values used here, in bytes (the file says `kB`, meaning KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable`.
    pub available: u64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
}

/// Parse `/proc/meminfo`. `None` without `MemTotal` or `MemAvailable` (Linux >= 3.14 has it).
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let (mut total, mut available, mut swap_total, mut swap_free) = (None, None, None, None);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let field = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "SwapTotal" => &mut swap_total,
            "SwapFree" => &mut swap_free,
            _ => continue,
        };
        if let Some(kib) = rest.split_ascii_whitespace().next().and_then(|v| v.parse::<u64>().ok()) {
            *field = Some(kib.saturating_mul(1024));
        }
        // The four come in the first 16 of about 55 lines: skip the rest.
        if total.is_some() && available.is_some() && swap_total.is_some() && swap_free.is_some() {
            break;
        }
    }
    Some(MemInfo {
        total: total?,
        available: available?,
        swap_total: swap_total.unwrap_or(0),
        swap_free: swap_free.unwrap_or(0),
    })
}

/// Parse `/proc/loadavg` (`0.52 0.58 0.59 1/257 12345`): the three load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text
        .split_ascii_whitespace()
        .map(|x| x.parse::<f64>().ok().filter(|v| v.is_finite()));
    Some([it.next()??, it.next()??, it.next()??])
}

/// One interface of `/proc/net/dev`: kernel name, bytes received, bytes sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDev<'a> {
    /// The kernel name (`eth0`).
    pub name: &'a str,
    /// Received bytes since the interface appeared.
    pub rx_bytes: u64,
    /// Sent bytes since the interface appeared.
    pub tx_bytes: u64,
}

/// Parse `/proc/net/dev`: two header lines, then `name: rx_bytes rx_packets ... (8 receive
/// fields) tx_bytes ...`. Lines that do not fit are skipped.
pub fn parse_net_dev(text: &str) -> Vec<NetDev<'_>> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let mut fields = rest.split_ascii_whitespace();
            let rx_bytes = fields.next()?.parse().ok()?;
            let tx_bytes = fields.nth(7)?.parse().ok()?;
            Some(NetDev {
                name: name.trim(),
                rx_bytes,
                tx_bytes,
            })
        })
        .collect()
}

/// Parse `/proc/uptime` (`12345.67 23456.78`): seconds since boot.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
        .filter(|x: &f64| x.is_finite())
}

/// The mount points of `/proc/self/mountinfo` (field 5), with the kernel's octal escapes
/// (`\040` for a space) undone.
pub fn parse_mountinfo(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && oct.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                oct.iter()
                    .fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 28977306   13373    0    0    0     0          0         0 28977306   13373    0    0    0     0       0          0
  eth0: 357559196   16600    0    0    0     0          0         0   969462   10704    0    0    0     0       0          0
wlan0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
broken: 12 x
";

    #[test]
    fn net_dev_is_parsed() {
        let devs = parse_net_dev(NET_DEV);
        assert_eq!(
            devs,
            [
                NetDev {
                    name: "lo",
                    rx_bytes: 28977306,
                    tx_bytes: 28977306
                },
                NetDev {
                    name: "eth0",
                    rx_bytes: 357559196,
                    tx_bytes: 969462
                },
                NetDev {
                    name: "wlan0",
                    rx_bytes: 1,
                    tx_bytes: 9
                },
            ]
        );
    }

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemFree:        19612700 kB\nMemAvailable:   23807376 kB\n\
                    SwapTotal:       2097148 kB\nSwapFree:        2097000 kB\nHugePages_Total:       0\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 24684084 * 1024);
        assert_eq!(m.available, 23807376 * 1024);
        assert_eq!(m.swap_total, 2097148 * 1024);
        assert_eq!(m.swap_free, 2097000 * 1024);
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None, "no MemAvailable");
    }

    #[test]
    fn loadavg_is_parsed() {
        assert_eq!(parse_loadavg("0.52 0.58 1.59 1/257 12345\n"), Some([0.52, 0.58, 1.59]));
        assert_eq!(parse_loadavg("0.52 x"), None);
    }

    #[test]
    fn proc_files_are_read_again_from_the_start() {
        let path = std::env::temp_dir().join(format!("cpu-monitor-procfile-{}", std::process::id()));
        std::fs::write(&path, "first").unwrap();
        let leaked: &'static str = Box::leak(path.display().to_string().into_boxed_str());
        let mut f = ProcFile::new(leaked);
        let mut buf = String::new();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "first");
        std::fs::write(&path, "second, longer").unwrap();
        f.read(&mut buf).unwrap();
        assert_eq!(buf, "second, longer");
        std::fs::remove_file(&path).unwrap();
        let big = "x".repeat(10_000);
        std::fs::write(&path, &big).unwrap();
        read_into(leaked, &mut buf).unwrap();
        assert_eq!(buf, big);
        std::fs::remove_file(&path).unwrap();
        assert!(read_into(leaked, &mut buf).unwrap_err().to_string().contains(leaked));
    }

    /// The one-read shortcut against std's read-to-end, on the kernel's own files; the
    /// meminfo line names and the interfaces do not change between the two reads.
    #[test]
    fn procfs_files_read_whole_in_one_read() {
        // The first word of each line (`MemTotal`, `eth0`, `cpu3`, `intr`).
        let names = |text: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.trim_start().split([':', ' ']).next())
                .map(str::to_string)
                .collect()
        };
        let mut buf = String::new();
        for path in [
            "/proc/meminfo",
            "/proc/net/dev",
            "/proc/self/mountinfo",
            "/proc/uptime",
            "/proc/stat",
        ] {
            let mut f = ProcFile::new(path);
            for _ in 0..2 {
                f.read(&mut buf).unwrap();
                let plain = std::fs::read_to_string(path).unwrap();
                assert!(buf.ends_with('\n'), "{path}: {buf:?}");
                if path == "/proc/self/mountinfo" {
                    assert_eq!(buf, plain, "{path}");
                } else {
                    assert_eq!(names(&buf), names(&plain), "{path}");
                }
            }
        }
    }

    const STAT: &str = "cpu  1000 20 300 5000 100 10 5 15 40 0
cpu0 600 10 200 2400 50 10 5 15 40 0
cpu2 400 10 100 2600 50 0 0 0 0 0
intr 12345 0 0
ctxt 999
cpu7 1 2 3 4 5 6 7 8 9 10
";

    #[test]
    fn stat_cpu_lines_are_parsed() {
        let mut v = Vec::new();
        parse_stat(STAT, &mut v);
        // cpu: 1000+20+300+5000+100+10+5+15 (guest 40 left out); idle 5000+100.
        assert_eq!(
            v,
            [
                CpuTicks {
                    cpu: None,
                    total: 6450,
                    idle: 5100
                },
                CpuTicks {
                    cpu: Some(0),
                    total: 3290,
                    idle: 2450
                },
                CpuTicks {
                    cpu: Some(2),
                    total: 3160,
                    idle: 2650
                },
            ],
            "cpu1 is offline (absent); the cpu7 after the other lines is not read"
        );
        // An old kernel's four fields; a malformed line is skipped; the buffer is reused.
        parse_stat("cpu  10 0 10 80\ncpuX 1 2 3 4\ncpu0 1 2\n", &mut v);
        assert_eq!(
            v,
            [CpuTicks {
                cpu: None,
                total: 100,
                idle: 80
            }]
        );
    }

    #[test]
    fn busy_percent_is_the_share_not_idle() {
        let before = CpuTicks {
            cpu: None,
            total: 6450,
            idle: 5100,
        };
        // 200 ticks later, 120 of them idle or iowait: 80 / 200 busy.
        let after = CpuTicks {
            cpu: None,
            total: 6650,
            idle: 5220,
        };
        assert_eq!(after.busy_percent_since(&before), 40.0);
        assert_eq!(before.busy_percent_since(&before), 0.0, "no tick passed");
        assert_eq!(before.busy_percent_since(&after), 0.0, "counters went back");
        let all_idle = CpuTicks {
            cpu: None,
            total: 6650,
            idle: 5300,
        };
        assert_eq!(all_idle.busy_percent_since(&before), 0.0);
        let all_busy = CpuTicks {
            cpu: None,
            total: 6650,
            idle: 5100,
        };
        assert_eq!(all_busy.busy_percent_since(&before), 100.0);
    }

    #[test]
    fn uptime_is_parsed() {
        assert_eq!(parse_uptime("12345.67 23456.78\n"), Some(12345.67));
        assert_eq!(parse_uptime(""), None);
        assert_eq!(parse_uptime("abc 1"), None);
    }

    #[test]
    fn mountinfo_is_parsed_and_unescaped() {
        let text = "22 1 0:21 / / rw,relatime - overlay overlay rw\n\
                    30 22 0:27 / /mnt/my\\040disk rw - ext4 /dev/sda1 rw\n\
                    31 22 0:28 / /data rw shared:1 - ext4 /dev/sda2 rw\n";
        assert_eq!(parse_mountinfo(text), ["/", "/mnt/my disk", "/data"]);
    }
}
