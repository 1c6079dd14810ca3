//! The few system calls std does not wrap, each behind a safe function: `statvfs(2)` (disk
//! space, as `df`) and `statx(2)` (is a path a mount root?); and the process count, a listing
//! of `/proc` (where sysinfo would read every process).

use std::ffi::CString;
use std::io;

/// Counts processes: the numeric entries of a `/proc` directory (one per process; threads are
/// not listed), by listing it: 59 µs with 87 processes (`process_count_cost` below), 6 µs a
/// second at the default 10 s poll.
#[derive(Debug)]
pub struct ProcessCounter {
    dir: &'static str,
}

impl ProcessCounter {
    /// A counter of the processes listed in `dir` (normally `/proc`).
    pub fn new(dir: &'static str) -> Self {
        ProcessCounter { dir }
    }

    /// The number of processes now.
    pub fn count(&mut self) -> io::Result<u64> {
        let dir = self.dir;
        let listing =
            std::fs::read_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("cannot list {dir}: {e}")))?;
        let mut n = 0;
        for entry in listing {
            let name = entry?.file_name();
            let name = name.as_encoded_bytes();
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
                n += 1;
            }
        }
        Ok(n)
    }
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
        let mut c = ProcessCounter::new(leaked);
        assert_eq!(c.count().unwrap(), 4, "1, 42, 123456789 and 7");
        std::fs::create_dir(dir.join("8")).unwrap();
        assert_eq!(c.count().unwrap(), 5, "listed again from the start");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(ProcessCounter::new("/no/such/proc").count().is_err());
    }

    /// What a process count costs: `cargo test --release -p cpu-monitor --lib
    /// process_count_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn process_count_cost() {
        let mut c = ProcessCounter::new("/proc");
        let n = c.count().unwrap();
        let t0 = std::time::Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(c.count().unwrap());
        }
        let per = t0.elapsed().as_secs_f64() * 1e3;
        println!(
            "{n} processes: {per:.1} µs a count ({:.4} % of a core at a 1 s poll)",
            per / 1e4
        );
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
