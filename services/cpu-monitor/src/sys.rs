//! The few system calls std does not wrap, each behind a safe function: `statvfs(2)` (disk
//! space, as `df`), `statx(2)` (is a path a mount root?) and `getdents64(2)` on a kept-open
//! `/proc` (the process count, without an allocation per entry nor a per-process read, where
//! sysinfo would read every process).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

/// How often the link-count method is checked against a listing of `/proc`.
pub const PROC_RECALIBRATE: Duration = Duration::from_secs(60);
/// How soon a failed first measurement of the link-count offset is tried again.
const PROC_RETRY: Duration = Duration::from_secs(5);

/// Counts processes: the numeric entries of a `/proc` directory (one per process; threads are
/// not listed).
///
/// Listing `/proc` costs the kernel a directory entry per process (measured: about 250 µs with
/// 100 processes, most of this service's CPU at a 1 s poll). So, in the initial PID namespace
/// (where `/proc` lists every process), the count is taken from the link count of `/proc`
/// instead, which the kernel computes as a constant plus the number of processes
/// (`proc_root_getattr`): one `statx`. The constant is measured against a listing at the first
/// count and again every [`PROC_RECALIBRATE`]; if it ever changes (e.g. `hidepid` hides
/// processes from the listing), the counter lists `/proc` at every count from then on. Listings
/// use `getdents64` on a kept-open directory into a reused buffer: no allocation per entry.
#[derive(Debug)]
pub struct ProcessCounter {
    dir: &'static str,
    fd: Option<File>,
    buf: Vec<u8>,
    /// Link count minus number of processes.
    offset: Option<u64>,
    /// When the offset was last measured (or tried).
    checked: Option<Instant>,
    /// The link-count method may be used.
    use_nlink: bool,
}

impl ProcessCounter {
    /// A counter of the processes listed in `dir` (normally `/proc`), opened at the first count.
    /// The link-count method is used only for `/proc` in the initial PID namespace.
    pub fn new(dir: &'static str) -> Self {
        ProcessCounter {
            dir,
            fd: None,
            buf: Vec::new(),
            offset: None,
            checked: None,
            use_nlink: dir == "/proc" && in_initial_pid_namespace(),
        }
    }

    /// A counter that always lists `dir`.
    pub fn listing_only(dir: &'static str) -> Self {
        ProcessCounter {
            use_nlink: false,
            ..Self::new(dir)
        }
    }

    /// `link count` when the link-count method is in use, `listing` otherwise.
    pub fn method(&self) -> &'static str {
        if self.use_nlink { "link count" } else { "listing" }
    }

    /// The number of processes now. After an error the directory is opened again next time.
    pub fn count(&mut self) -> io::Result<u64> {
        if self.use_nlink {
            // Until a first offset is known, try again every few seconds (processes starting
            // between the two listings make a try fail), listing meanwhile.
            let period = if self.offset.is_some() {
                PROC_RECALIBRATE
            } else {
                PROC_RETRY
            };
            if self.checked.is_none_or(|t| t.elapsed() >= period) {
                return self.calibrate();
            }
            if let Some(offset) = self.offset
                && let Ok(n) = self.nlink()
                && n > offset
            {
                return Ok(n - offset);
            }
        }
        self.list()
    }

    /// List, read the link count, list again; keep the offset when both listings agree.
    fn calibrate(&mut self) -> io::Result<u64> {
        self.checked = Some(Instant::now());
        let before = self.list()?;
        let nlink = self.nlink();
        let after = self.list()?;
        if let Ok(n) = nlink
            && before == after
            && n > before
        {
            let offset = n - before;
            match self.offset {
                Some(old) if old != offset => {
                    tracing::info!(
                        "the link count of {} is not a constant plus the processes ({old}, then {offset}); \
                         counting by listing from now on",
                        self.dir
                    );
                    self.use_nlink = false;
                }
                _ => self.offset = Some(offset),
            }
        }
        Ok(after)
    }

    fn nlink(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.dir).map(|m| m.nlink())
    }

    /// Count by listing.
    fn list(&mut self) -> io::Result<u64> {
        let r = self.count_once();
        if r.is_err() {
            self.fd = None;
        }
        r
    }

    fn count_once(&mut self) -> io::Result<u64> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.dir;
        let fd = match &mut self.fd {
            Some(f) => f,
            slot => slot.insert(
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(dir)
                    .map_err(|e| io::Error::new(e.kind(), format!("cannot list {dir}: {e}")))?,
            ),
        };
        let raw = fd.as_raw_fd();
        // SAFETY: lseek on a descriptor we own.
        if unsafe { libc::lseek(raw, 0, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.buf.resize(8 * 1024, 0);
        let mut n = 0;
        loop {
            // SAFETY: the buffer is valid for writes of its length; the kernel writes at most that.
            let got = unsafe { libc::syscall(libc::SYS_getdents64, raw, self.buf.as_mut_ptr(), self.buf.len()) };
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            if got == 0 {
                return Ok(n);
            }
            n += count_numeric_dirents(self.buf.get(..got as usize).unwrap_or_default());
        }
    }
}

/// `NSpid:` in /proc/self/status has one PID only in the initial PID namespace.
fn in_initial_pid_namespace() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|pids| pids.split_ascii_whitespace().count() == 1)
    })
}

/// Count the `linux_dirent64` records of `buf` whose name is all digits. A record is
/// `d_ino: u64, d_off: i64, d_reclen: u16, d_type: u8, d_name: NUL-terminated`.
fn count_numeric_dirents(buf: &[u8]) -> u64 {
    let mut n = 0;
    let mut at = 0;
    while let Some(head) = buf.get(at..at + 19) {
        let reclen = u16::from_ne_bytes([head[16], head[17]]) as usize;
        let Some(name) = buf.get(at + 19..at + reclen.max(19)) else {
            break;
        };
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
            n += 1;
        }
        if reclen == 0 {
            break;
        }
        at += reclen;
    }
    n
}

/// Space of one file system, in bytes, as `df` computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Size: `f_blocks * f_frsize`.
    pub total: u64,
    /// Used: `(f_blocks - f_bfree) * f_frsize`.
    pub used: u64,
    /// Available to unprivileged users: `f_bavail * f_frsize`.
    pub available: u64,
}

impl DiskUsage {
    /// `used / (used + available) * 100`: the share of the space an unprivileged user can
    /// fill, as `df` and psutil give it (the root-reserved blocks are left out).
    pub fn percent(&self) -> f64 {
        let usable = self.used.saturating_add(self.available);
        if usable == 0 {
            0.0
        } else {
            self.used as f64 / usable as f64 * 100.0
        }
    }
}

/// Is `path` the root of a mount? Asked with `statx(2)` (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8+):
/// one system call, where reading `/proc/self/mountinfo` costs the kernel a formatted line per
/// mount. `Ok(None)` when the kernel does not say (the caller falls back to mountinfo); an
/// error when the path cannot be looked up (it does not exist, say).
pub fn is_mount_root(path: &str) -> io::Result<Option<bool>> {
    let c_path = CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c_path` is NUL-terminated, `stx` is writable memory of the right type (zeroed,
    // so every field is initialised whatever the kernel fills in).
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_NO_AUTOMOUNT,
            libc::STATX_TYPE,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised above and filled by a successful statx.
    let stx = unsafe { stx.assume_init() };
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok((stx.stx_attributes_mask & flag != 0).then_some(stx.stx_attributes & flag != 0))
}

/// `statvfs(2)` on `path`.
pub fn statvfs(path: &str) -> io::Result<DiskUsage> {
    let c_path = CString::new(path).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `st` points to writable memory
    // of the right type; statvfs writes it fully on success, and we read it only then.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    // The casts are needed on 32-bit targets, where these fields are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bfree, bavail) = (
        st.f_frsize as u64,
        st.f_blocks as u64,
        st.f_bfree as u64,
        st.f_bavail as u64,
    );
    let bfree = bfree.min(blocks);
    Ok(DiskUsage {
        total: blocks.saturating_mul(frsize),
        used: (blocks - bfree).saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_entries_are_counted() {
        let dir = std::env::temp_dir().join(format!("cpu-monitor-procdir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for name in ["1", "42", "self", "4a", "123456789"] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("7"), "").unwrap();
        let leaked: &'static str = Box::leak(dir.display().to_string().into_boxed_str());
        let mut c = ProcessCounter::listing_only(leaked);
        assert_eq!(c.count().unwrap(), 4, "1, 42, 123456789 and 7");
        std::fs::create_dir(dir.join("8")).unwrap();
        assert_eq!(c.count().unwrap(), 5, "listed again from the start");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ProcessCounter::new("/no/such/proc").count().is_err());
    }

    #[test]
    fn the_link_count_method_agrees_with_a_listing() {
        let mut c = ProcessCounter::new("/proc");
        let mut listing = ProcessCounter::listing_only("/proc");
        for _ in 0..3 {
            let (a, b) = (c.count().unwrap(), listing.count().unwrap());
            // Other processes start and end meanwhile.
            assert!(a.abs_diff(b) <= 10, "{} {a} vs listing {b}", c.method());
        }
        if in_initial_pid_namespace() {
            assert_eq!(c.method(), "link count");
        }
    }

    #[test]
    fn disk_percent_leaves_reserved_blocks_out() {
        // 100 blocks, 10 free of which 5 reserved for root: used 90, available 5.
        let d = DiskUsage {
            total: 100,
            used: 90,
            available: 5,
        };
        assert!((d.percent() - 90.0 / 95.0 * 100.0).abs() < 1e-9);
        assert_eq!(
            DiskUsage {
                total: 0,
                used: 0,
                available: 0
            }
            .percent(),
            0.0
        );
    }

    #[test]
    fn mount_roots_are_recognised() {
        // / is a mount root everywhere; /proc/self is a directory inside the proc mount.
        assert_ne!(is_mount_root("/").unwrap(), Some(false));
        assert_ne!(is_mount_root("/proc/self/fd").unwrap(), Some(true));
        assert!(is_mount_root("/no/such/dir/for/cpu-monitor").is_err());
    }

    #[test]
    fn statvfs_fails_cleanly_on_a_missing_path() {
        assert!(statvfs("/no/such/dir/for/cpu-monitor").is_err());
        assert!(statvfs("a\0b").is_err());
    }
}
