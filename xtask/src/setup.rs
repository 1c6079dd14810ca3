//! `cargo xtask setup`: what the test command needs besides cargo, made ready on this machine.
//!
//! - Debian packages (the broker, socat, systemd-analyze, the aarch64 cross linker and
//!   qemu-user, Chromium and chromedriver, ...): installed with apt-get when running as root, otherwise the exact
//!   `apt-get install` line to run.
//! - The Python test peers, pinned in `requirements-test.txt`, in a virtual environment owned
//!   by the workspace: `target/py-venv` (see [`VENV`]). Created once, reused, and made anew
//!   when `requirements-test.txt` changes (a copy of the file it was made from is kept inside).
//! - Through rustup: rustfmt and clippy, the MSRV toolchain, the fuzzing nightly and the
//!   aarch64 target, each only when a step that needs it is going to run.
//!
//! `cargo xtask ci` runs this first; it can also be run alone, e.g. before `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{ci, fuzz, have, is_root, sh, system, yocto};

/// The workspace's Python virtual environment, relative to the workspace root. The tests find
/// it there too (tolomeo-testkit's `python()`).
pub(crate) const VENV: &str = "target/py-venv";
/// The pinned Python peers.
const REQUIREMENTS: &str = "requirements-test.txt";
/// The copy of [`REQUIREMENTS`] that the environment was made from.
const STAMP: &str = "requirements-test.txt";

/// What the steps about to run need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs {
    /// The MSRV toolchain.
    pub msrv: bool,
    /// The fuzzing nightly.
    pub fuzz: bool,
    /// The aarch64 target, its linker and qemu-user.
    pub cross: bool,
    /// systemd-analyze and the Python linter of the layer.
    pub lint: bool,
    /// BitBake's host tools and the en_US.UTF-8 locale (only where the Yocto sources are).
    pub yocto: bool,
    /// qemu, Debian's kernel, busybox-static and can-utils for the system tests' VMs.
    pub system: bool,
    /// Chromium and chromedriver for the dashboard's browser test.
    pub browser: bool,
}

impl Needs {
    pub(crate) const ALL: Needs = Needs {
        msrv: true,
        fuzz: true,
        cross: true,
        lint: true,
        yocto: true,
        system: true,
        browser: true,
    };
}

pub(crate) fn run(needs: Needs) -> Result<()> {
    debian(needs)?;
    python()?;
    rust(needs)?;
    Ok(())
}

/// A command the steps run, and the Debian package that has it.
struct Tool {
    command: &'static str,
    package: &'static str,
}

const fn tool(command: &'static str, package: &'static str) -> Tool {
    Tool { command, package }
}

fn debian(needs: Needs) -> Result<()> {
    let mut tools = vec![
        tool("nats-server", "nats-server"), // every test that talks to a broker
        tool("socat", "socat"),             // the pty pair of the Modbus RTU tests
        tool("openssl", "openssl"),         // the TLS tests' certificates
        tool("script", "util-linux"),       // tlm's terminal tests
        tool("cc", "gcc"),                  // crates that build C, and the host linker
    ];
    if needs.lint {
        tools.push(tool("systemd-analyze", "systemd"));
    }
    if needs.browser {
        tools.push(tool("chromium", "chromium"));
        tools.push(tool("chromedriver", "chromium-driver"));
    }
    if needs.cross {
        tools.push(tool("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"));
        tools.push(tool("qemu-aarch64", "qemu-user"));
    }
    let mut missing: Vec<&str> = tools.iter().filter(|t| !have(t.command)).map(|t| t.package).collect();
    if needs.system && system::unsupported().is_none() {
        missing.extend(system::missing_packages());
    }
    // Debian's own python3 splits venv and ensurepip into python3-venv.
    if !python_has_venv() {
        missing.push("python3-venv");
    }
    let yocto = needs.yocto && yocto::sources().is_ok();
    if yocto {
        missing.extend(yocto::HOST_TOOLS.iter().filter(|(c, _)| !have(c)).map(|(_, p)| *p));
        if !has_locale("en_US.utf8") {
            missing.push("locales");
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return if yocto { en_us_locale() } else { Ok(()) };
    }
    let line = format!("apt-get install -y {}", missing.join(" "));
    if !is_root() || !Path::new("/usr/bin/apt-get").exists() {
        bail!(
            "these Debian packages are missing: {}\ninstall them with\n  sudo apt-get update && sudo {line}\n\
             then run this command again",
            missing.join(", ")
        );
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if yocto { en_us_locale() } else { Ok(()) }
}

fn has_locale(name: &str) -> bool {
    Command::new("locale").arg("-a").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.eq_ignore_ascii_case(name))
    })
}

/// BitBake exits unless the en_US.UTF-8 locale exists (bb.utils.check_system_locale), even
/// when it runs with LANG=C.UTF-8.
fn en_us_locale() -> Result<()> {
    if has_locale("en_US.utf8") {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "BitBake needs the en_US.UTF-8 locale; make it with\n  \
             sudo sed -i 's/^# *en_US.UTF-8/en_US.UTF-8/' /etc/locale.gen && sudo locale-gen"
        );
    }
    eprintln!("setup: generating the en_US.UTF-8 locale that BitBake needs");
    let locale_gen = std::fs::read_to_string("/etc/locale.gen").unwrap_or_default();
    let mut lines: Vec<String> = locale_gen
        .lines()
        .map(|l| {
            if l.trim_start_matches(['#', ' ']) == "en_US.UTF-8 UTF-8" {
                "en_US.UTF-8 UTF-8".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    if !lines.iter().any(|l| l == "en_US.UTF-8 UTF-8") {
        lines.push("en_US.UTF-8 UTF-8".to_string());
    }
    std::fs::write("/etc/locale.gen", lines.join("\n") + "\n").context("cannot write /etc/locale.gen")?;
    sh(&mut Command::new("locale-gen"))
}

fn python_has_venv() -> bool {
    !have("python3")
        || Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// The virtual environment with the pinned peers: reused while `requirements-test.txt` is the
/// one it was made from, made anew otherwise.
fn python() -> Result<()> {
    if !have("python3") {
        bail!("python3 is missing; install it with\n  sudo apt-get install -y python3 python3-venv");
    }
    let want = std::fs::read_to_string(REQUIREMENTS).with_context(|| format!("cannot read {REQUIREMENTS}"))?;
    let venv = PathBuf::from(VENV);
    let stamp = venv.join(STAMP);
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == want) && venv.join("bin/python3").exists() {
        return Ok(());
    }
    eprintln!("setup: making the Python test environment {VENV} from {REQUIREMENTS}");
    if venv.exists() {
        std::fs::remove_dir_all(&venv).with_context(|| format!("cannot remove the old {VENV}"))?;
    }
    sh(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    sh(Command::new(venv.join("bin/python3")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--require-virtualenv",
        "-r",
        REQUIREMENTS,
    ]))?;
    // Written last, so an interrupted install is made again next time.
    std::fs::write(&stamp, want).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(())
}

/// A program of the virtual environment (`python3`, `oelint-adv`).
pub(crate) fn venv_bin(name: &str) -> PathBuf {
    PathBuf::from(VENV).join("bin").join(name)
}

fn rust(needs: Needs) -> Result<()> {
    if !have("rustup") {
        bail!(
            "rustup is missing: the test command installs toolchains and targets with it; \
             install Rust with rustup, or skip those steps with --no-msrv --no-fuzz --no-cross"
        );
    }
    let components = output(Command::new("rustup").args(["component", "list", "--installed"]))?;
    for c in ["rustfmt", "clippy"] {
        if !components.lines().any(|l| l.starts_with(&format!("{c}-"))) {
            sh(Command::new("rustup").args(["component", "add", c]))?;
        }
    }
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    let mut wanted = Vec::new();
    if needs.msrv {
        wanted.push(ci::MSRV_TOOLCHAIN);
    }
    if needs.fuzz {
        wanted.push(fuzz::TOOLCHAIN);
    }
    for t in wanted {
        if !toolchains.lines().any(|l| l.starts_with(&format!("{t}-"))) {
            sh(Command::new("rustup").args(["toolchain", "install", t, "--profile", "minimal"]))?;
        }
    }
    if needs.cross {
        let targets = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
        if !targets.lines().any(|l| l.trim() == "aarch64-unknown-linux-gnu") {
            sh(Command::new("rustup").args(["target", "add", "aarch64-unknown-linux-gnu"]))?;
        }
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", crate::describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            crate::describe(cmd),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
