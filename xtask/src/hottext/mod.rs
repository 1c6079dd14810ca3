//! `cargo xtask hot-text`: regenerate `crates/tolomeo-build/hot-text.ld`, the list of the
//! functions the services run, which their release links place side by side.
//!
//! Why: the kernel maps a program's code in 64 KiB windows around each page it touches
//! (fault-around). The code a service runs is about 0.5 MiB of a 1.8 MiB text section, spread
//! over all of it, so nearly the whole section ends up resident. Put together, it maps about
//! 0.75 MiB.
//!
//! How: each service is built in release mode with its symbols, run under callgrind for
//! `--duration` seconds (start-up, connection and polls at 1 s, as `bench footprint` runs
//! it) against a private nats-server, and every function callgrind saw run in the service's
//! binary is written as a glob (see [`mangled`]) into a linker script that puts them in one
//! output section, before `.init`.

pub mod mangled;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{bench, cargo, project_root, sh};

/// The crates of this workspace that run in the services, placed whole.
const OWN_CRATES: [&str; 4] = ["tolomeo_core", "cpu_monitor", "can_engine", "modbus_sensors"];

/// Where the list goes (tolomeo-build embeds it).
pub const SCRIPT: &str = "crates/tolomeo-build/hot-text.ld";

pub fn run(duration: u64) -> Result<()> {
    let root = project_root();
    let target_dir = root.join("target/hot-text");
    // Each package on its own, as its release build is made: built together, they would share
    // one set of dependency features, and the compiler would inline differently.
    let build = |package: &str| {
        sh(cargo()
            .args(["build", "--release", "-p", package])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CARGO_PROFILE_RELEASE_STRIP", "false")
            // The names are what matters; the order of the build that finds them does not.
            .env("TOLOMEO_HOT_TEXT", "0"))
    };

    let out_dir = target_dir.join("callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let (mut nats, url) = bench::private_nats()?;
    let mut globs = BTreeSet::new();
    let mut exact = BTreeSet::new();
    let result = (|| -> Result<()> {
        for t in bench::service_targets() {
            build(t.package)?;
            let binary = target_dir.join("release").join(t.binary_name());
            let out = out_dir.join(format!("{}.out", t.binary_name()));
            let mut beside = bench::start_beside(t)?;
            let mut child = Command::new("valgrind")
                .args(["--tool=callgrind", "--demangle=no", "--compress-strings=no"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(&binary)
                .args(t.args)
                .env("DEVICE_SERIAL_NUMBER", "HOTTEXT1")
                .env("NATS_URL", &url)
                // As on a device (/etc/default/tolomeo): the start-up messages are logged.
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot run valgrind (apt-get install valgrind)")?;
            std::thread::sleep(Duration::from_secs(duration));
            // SIGTERM: the service stops cleanly and callgrind writes its profile.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let status = child.wait()?;
            if let Some(b) = beside.as_mut() {
                let _ = b.kill();
                let _ = b.wait();
            }
            if !status.success() {
                bail!("{} under callgrind ended with {status}", binary.display());
            }
            let defined = text_symbols(&binary)?;
            let ran = callgrind_functions(&out)?;
            let mut n = 0;
            for name in ran.iter().filter(|n| defined.contains(*n)) {
                n += 1;
                match mangled::glob(name) {
                    Some(g) => {
                        globs.insert(g);
                    }
                    None if is_plain_symbol(name) => {
                        exact.insert(name.clone());
                    }
                    None => eprintln!("hot-text: skipping {name}: not a name the linker script can hold"),
                }
            }
            eprintln!("hot-text: {}: {n} functions ran", t.binary_name());
        }
        Ok(())
    })();
    let _ = nats.kill();
    let _ = nats.wait();
    result?;

    let script = render(&globs, &exact);
    std::fs::write(root.join(SCRIPT), script)?;
    eprintln!(
        "hot-text: wrote {SCRIPT}: {} patterns ({} Rust globs, {} other symbols)",
        globs.len() + exact.len(),
        globs.len(),
        exact.len()
    );
    Ok(())
}

/// The linker script: one output section, which INSERT adds to the linker's default layout
/// (GNU ld and lld both), right before `.init`, which runs too: GNU ld puts `.init` and
/// `.plt` ahead of `.text`, so both end up next to the hot code; lld keeps `.init` there and
/// puts `.plt` after `.text` (one more 16 KiB at the end of the mapping).
fn render(globs: &BTreeSet<String>, exact: &BTreeSet<String>) -> String {
    let mut s = String::from(
        "/* The functions the ToloMEO services run, placed side by side before .init so that\n   \
         the pages they touch are few (see crates/tolomeo-build/src/lib.rs).\n   \
         Generated by `cargo xtask hot-text`; do not edit. */\n\
         SECTIONS\n{\n  .text.tolomeo_hot :\n  {\n",
    );
    // The workspace's own crates whole (about 0.2 MiB): their code changes most often, and
    // what was added since the list was made is then still placed with the hot code.
    for krate in OWN_CRATES {
        let len = krate.len();
        s.push_str(&format!(
            "    *(.text._ZN{len}{krate}* .text.unlikely._ZN{len}{krate}* \
             .text._ZN*_$LT${krate}..* .text.unlikely._ZN*_$LT${krate}..*)\n"
        ));
    }
    // LLVM puts cold functions (`#[cold]`: a lock's slow path, a table's growth, a
    // once-only initialisation) in `.text.unlikely.<name>`.
    for name in globs.iter().filter(|g| !in_own_crates(g)).chain(exact) {
        s.push_str(&format!("    *(.text.{name} .text.unlikely.{name})\n"));
    }
    // The C start-up files and glibc's few static parts (_start, frame_dummy, pthread_atfork:
    // all run at start-up) come in a plain `.text`.
    for file in ["*crt1.o", "*crtbegin*.o", "*crtend*.o", "*libc_nonshared.a:*"] {
        s.push_str(&format!("    {file}(.text .text.*)\n"));
    }
    s.push_str("  }\n}\nINSERT BEFORE .init;\n");
    s
}

/// Whether the crate lines above already take every function `glob` matches: a legacy name
/// in one of [`OWN_CRATES`] (`_ZN12tolomeo_core...`, `_ZN83_$LT$tolomeo_core..`).
fn in_own_crates(glob: &str) -> bool {
    let Some(rest) = glob.strip_prefix("_ZN") else {
        return false;
    };
    let path = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    OWN_CRATES.iter().any(|krate| {
        rest.strip_prefix(&krate.len().to_string())
            .is_some_and(|r| r.starts_with(krate))
            || path
                .strip_prefix("_$LT$")
                .is_some_and(|r| r.strip_prefix(krate).is_some_and(|r| r.starts_with("..")))
    })
}

/// Symbols a linker script can name as they are: C functions (`ring_core_0_17_aes_...`).
fn is_plain_symbol(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
}

/// The functions defined in `binary`'s text (`nm`), so that libc's are left out.
fn text_symbols(binary: &Path) -> Result<BTreeSet<String>> {
    let out = Command::new("nm")
        .arg(binary)
        .output()
        .context("cannot run nm (apt-get install binutils)")?;
    if !out.status.success() {
        bail!(
            "nm {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then(|| name.to_string())
        })
        .collect())
}

/// Every function callgrind saw run: the names of `fn=` and `cfn=` lines (with
/// `--compress-strings=no` each line carries the name).
fn callgrind_functions(profile: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(profile).with_context(|| format!("cannot read {}", profile.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("fn=").or_else(|| l.strip_prefix("cfn=")))
        .map(|name| name.trim().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::in_own_crates;

    #[test]
    fn globs_the_crate_lines_take_are_left_out() {
        assert!(in_own_crates("_ZN12tolomeo_core5alarm5Alarm11sleep_until17h*"));
        assert!(in_own_crates(
            "_ZN83_$LT$tolomeo_core..senml..Value$u20$as$u20$core..fmt..Debug$GT$3fmt17h*"
        ));
        assert!(in_own_crates("_ZN11cpu_monitor7collect9Collector7collect17h*"));
        // Another crate, one whose name only starts like ours, a v0 name.
        assert!(!in_own_crates("_ZN5tokio7runtime4park17h*"));
        assert!(!in_own_crates("_ZN13tolomeo_corex3foo17h*"));
        assert!(!in_own_crates(
            "_ZN40_$LT$tolomeo_corex..Foo$u20$as$u20$Bar$GT$3baz17h*"
        ));
        assert!(!in_own_crates(
            "_ZN60_$LT$tokio..Foo$LT$tolomeo_core..Bar$GT$$u20$as$u20$Baz$GT$4poll17h*"
        ));
        assert!(!in_own_crates("_RNvCs*_12tolomeo_core3foo*"));
    }
}
