//! `cargo xtask cross-build` and `cargo xtask dist`: release binaries for a device, and a
//! tarball laid out as its root file system.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, have, sh};

/// A binary a device gets.
pub(crate) struct Binary {
    /// The Cargo package that builds it.
    pub package: &'static str,
    /// The executable's name.
    pub name: &'static str,
    /// The largest release build allowed, in bytes, checked by every cross build.
    pub max_bytes: Option<u64>,
}

/// The size budget of what every device gets (BENCHMARKS.md: at most 4 MiB each): the services
/// and `tlm`.
const DEVICE_BUDGET: Option<u64> = Some(4 * 1024 * 1024);

/// The binaries a device gets. `tlm-dashboard` is a package of its own, on the devices that ask
/// for it (meta-tolomeo-rust/README.md), and has no budget: whatever it weighs, `tlm` does not
/// grow.
pub(crate) const BINARIES: &[Binary] = &[
    Binary {
        package: "cpu-monitor",
        name: "tlm-cpu-monitor",
        max_bytes: DEVICE_BUDGET,
    },
    Binary {
        package: "can-engine",
        name: "tlm-can-engine",
        max_bytes: DEVICE_BUDGET,
    },
    Binary {
        package: "modbus-sensors",
        name: "tlm-modbus-sensors",
        max_bytes: DEVICE_BUDGET,
    },
    Binary {
        package: "tlm",
        name: "tlm",
        max_bytes: DEVICE_BUDGET,
    },
    Binary {
        package: "tlm-dashboard",
        name: "tlm-dashboard",
        max_bytes: None,
    },
];

/// The services (config and unit names).
pub(crate) const SERVICES: &[&str] = &["cpu-monitor", "can-engine", "modbus-sensors"];

/// The systemd units in packaging/systemd, by name without `.service`; each runs
/// `/usr/bin/<name>`. `cargo xtask lint` checks that this is every unit there and that the
/// Yocto recipe ships each.
pub(crate) const UNITS: &[&str] = &[
    "tlm-cpu-monitor",
    "tlm-can-engine",
    "tlm-modbus-sensors",
    "tlm-dashboard",
];

/// The environment files in packaging/default, installed in /etc/default.
pub(crate) const DEFAULTS: &[&str] = &["tolomeo", "tlm-dashboard"];

/// A target we build for: its triple, C cross compiler, Debian package and qemu-user binary.
struct Target {
    triple: &'static str,
    gcc: &'static str,
    apt: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        triple: "aarch64-unknown-linux-gnu",
        gcc: "aarch64-linux-gnu-gcc",
        apt: "gcc-aarch64-linux-gnu",
        qemu: "qemu-aarch64",
        sysroot: "/usr/aarch64-linux-gnu",
    },
    Target {
        triple: "armv7-unknown-linux-gnueabihf",
        gcc: "arm-linux-gnueabihf-gcc",
        apt: "gcc-arm-linux-gnueabihf",
        qemu: "qemu-arm",
        sysroot: "/usr/arm-linux-gnueabihf",
    },
    Target {
        triple: "x86_64-unknown-linux-gnu",
        gcc: "cc",
        apt: "gcc",
        qemu: "",
        sysroot: "",
    },
];

fn target(triple: &str) -> Result<&'static Target> {
    TARGETS.iter().find(|t| t.triple == triple).with_context(|| {
        let known: Vec<_> = TARGETS.iter().map(|t| t.triple).collect();
        format!("unknown target `{triple}`; expected one of {}", known.join(", "))
    })
}

/// Build the release binaries for `triple`; with `check`, run each under qemu-user.
pub(crate) fn cross_build(triple: &str, check: bool) -> Result<PathBuf> {
    let t = target(triple)?;
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == t.triple)
    {
        bail!(
            "the Rust target {0} is not installed; install it with\n  rustup target add {0}",
            t.triple
        );
    }
    if !have(t.gcc) {
        bail!(
            "the linker {} is missing; install it with\n  apt-get install {}",
            t.gcc,
            t.apt
        );
    }
    let env_triple = t.triple.replace('-', "_");
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked", "--target", t.triple])
        .env(format!("CARGO_TARGET_{}_LINKER", env_triple.to_uppercase()), t.gcc)
        .env(format!("CC_{env_triple}"), t.gcc);
    for b in BINARIES {
        cmd.args(["--package", b.package]);
    }
    sh(&mut cmd)?;
    let dir = PathBuf::from("target").join(t.triple).join("release");
    sizes(&dir)?;
    if check {
        qemu_check(t, &dir)?;
    }
    Ok(dir)
}

/// Print each binary's size; fail when one is over its budget.
fn sizes(dir: &Path) -> Result<()> {
    let mut over = Vec::new();
    for b in BINARIES {
        let path = dir.join(b.name);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("cargo built no {}", path.display()))?
            .len();
        let budget = match b.max_bytes {
            Some(max) => {
                if size > max {
                    over.push(format!(
                        "{}: {} bytes ({}), over its budget of {} bytes ({})",
                        path.display(),
                        size,
                        mib(size),
                        max,
                        mib(max)
                    ));
                }
                format!("budget {}", mib(max))
            }
            None => "no budget: a package of its own".to_string(),
        };
        println!("{}: {} ({size} bytes; {budget})", path.display(), mib(size));
    }
    if !over.is_empty() {
        bail!(
            "release binaries over their size budget (BINARIES in xtask/src/cross.rs; the device's \
             flash budget is in BENCHMARKS.md):\n  {}\nfind what grew with `cargo tree -p <package> -e normal` \
             or `cargo bloat`; move optional code behind a feature or into a crate of its own",
            over.join("\n  ")
        );
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / 1_048_576.0)
}

/// Each binary under qemu-user: `--version`, and `--check-config` on its default config.
fn qemu_check(t: &Target, dir: &Path) -> Result<()> {
    let run = |bin: &Path, args: &[&str]| -> Result<()> {
        let mut cmd = if t.qemu.is_empty() {
            Command::new(bin)
        } else {
            if !have(t.qemu) {
                bail!("{} is missing; install it with\n  apt-get install qemu-user", t.qemu);
            }
            let mut c = Command::new(t.qemu);
            c.args(["-L", t.sysroot]).arg(bin);
            c
        };
        cmd.args(args).env("DEVICE_SERIAL_NUMBER", "QEMU0001");
        sh(&mut cmd)
    };
    for b in BINARIES {
        run(&dir.join(b.name), &["--version"])?;
    }
    for s in SERVICES {
        let config = format!("packaging/config/{s}.toml");
        run(&dir.join(format!("tlm-{s}")), &["--check-config", "--config", &config])?;
    }
    println!("qemu-user: every {} binary runs", t.triple);
    Ok(())
}

/// Build, then lay out usr/bin, usr/lib/sysusers.d, lib/systemd/system, etc/tolomeo,
/// etc/default in a tarball.
pub(crate) fn dist(triple: &str) -> Result<()> {
    let bins = cross_build(triple, false)?;
    let version = workspace_version()?;
    let name = format!("tolomeo-rust-{version}-{triple}");
    let stage = PathBuf::from("target/dist").join(&name);
    layout(&bins, &stage)?;
    std::fs::create_dir_all("dist")?;
    let tarball = PathBuf::from("dist").join(format!("{name}.tar.gz"));
    sh(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-czf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .args(
            LAYOUT
                .iter()
                .map(|d| d.split('/').next().unwrap_or(d))
                .collect::<std::collections::BTreeSet<_>>(),
        ))?;
    println!(
        "{}: unpack on the device with `tar -xzf {name}.tar.gz -C /`",
        tarball.display()
    );
    Ok(())
}

/// The directories of a device's root file system that the packages fill.
const LAYOUT: [&str; 5] = [
    "usr/bin",
    "usr/lib/sysusers.d",
    "lib/systemd/system",
    "etc/tolomeo",
    "etc/default",
];

/// The binaries in `bins` with the units, configurations, environment files and sysusers.d
/// file, laid out in `stage` as on the device (what the Yocto packages install). The system
/// tests install it into their guest.
pub(crate) fn layout(bins: &Path, stage: &Path) -> Result<()> {
    if stage.exists() {
        std::fs::remove_dir_all(stage)?;
    }
    for d in LAYOUT {
        std::fs::create_dir_all(stage.join(d))?;
    }
    copy(
        Path::new("packaging/sysusers/tolomeo-rust.conf"),
        &stage.join("usr/lib/sysusers.d/tolomeo-rust.conf"),
    )?;
    for b in BINARIES {
        copy(&bins.join(b.name), &stage.join("usr/bin").join(b.name))?;
    }
    for unit in UNITS {
        copy(
            Path::new(&format!("packaging/systemd/{unit}.service")),
            &stage.join(format!("lib/systemd/system/{unit}.service")),
        )?;
    }
    for s in SERVICES {
        copy(
            Path::new(&format!("packaging/config/{s}.toml")),
            &stage.join(format!("etc/tolomeo/{s}.toml")),
        )?;
    }
    for name in DEFAULTS {
        copy(
            Path::new(&format!("packaging/default/{name}")),
            &stage.join(format!("etc/default/{name}")),
        )?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// `[workspace.package] version` from Cargo.toml.
pub(crate) fn workspace_version() -> Result<String> {
    let text = std::fs::read_to_string("Cargo.toml")?;
    let doc: toml::Table = text.parse().context("Cargo.toml is not valid TOML")?;
    doc.get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .context("no [workspace.package] version in Cargo.toml")
}
