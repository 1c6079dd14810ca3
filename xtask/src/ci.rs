//! `cargo xtask ci`: the test command of the README, and all that CI runs (`.ci/run` runs just
//! this). It sets up what it needs first (`setup`), runs each stage, and prints how long each
//! took. Green here means green in CI.
//!
//! Two promises are checked at the end: the checkout is as it was found (`git status`), and
//! nothing is left in the temporary directory the stages ran with (`target/ci-tmp`, which is
//! `TMPDIR` for everything this command starts).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{browser, cargo, cross, demo, fuzz, lint, setup, sh, soak, system, yocto};

/// The Rust of Yocto wrynose; `rust-version` in Cargo.toml must build with it.
pub(crate) const MSRV_TOOLCHAIN: &str = "1.94.1";

/// Where the stages' temporary files go; it must be empty at the end.
const TMP: &str = "target/ci-tmp";

/// Which stages to skip.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Skip {
    pub setup: bool,
    pub msrv: bool,
    pub lint: bool,
    pub fuzz: bool,
    pub cross: bool,
    pub demo: bool,
    pub browser: bool,
    pub soak: bool,
    pub yocto: bool,
    pub system: bool,
}

/// Each stage's name, wall time and outcome, for the table at the end.
#[derive(Default)]
struct Timings(Vec<(&'static str, Duration, &'static str)>);

impl Timings {
    fn stage(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("\n==> {name}");
        let started = Instant::now();
        let result = f();
        let outcome = if result.is_ok() { "ok" } else { "FAILED" };
        self.0.push((name, started.elapsed(), outcome));
        result.with_context(|| format!("stage `{name}` failed"))
    }

    fn skipped(&mut self, name: &'static str) {
        self.0.push((name, Duration::ZERO, "skipped"));
    }

    fn print(&self, total: Duration) {
        eprintln!("\nxtask ci: time per stage");
        for (name, took, outcome) in &self.0 {
            eprintln!("  {name:<8} {:>7.1} s  {outcome}", took.as_secs_f64());
        }
        eprintln!("  {:<8} {:>7.1} s", "total", total.as_secs_f64());
    }
}

pub(crate) fn run(skip: Skip) -> Result<()> {
    let started = Instant::now();
    let mut t = Timings::default();
    let result = stages(skip, &mut t);
    t.print(started.elapsed());
    result?;
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

fn stages(skip: Skip, t: &mut Timings) -> Result<()> {
    let before = git_status();
    let tmp = fresh_tmp()?;
    let needs = setup::Needs {
        msrv: !skip.msrv,
        fuzz: !skip.fuzz,
        cross: !skip.cross,
        lint: !skip.lint,
        yocto: !skip.yocto,
        system: !skip.system,
        browser: !skip.browser,
    };
    if skip.setup {
        t.skipped("setup");
    } else {
        t.stage("setup", || setup::run(needs))?;
    }
    main_stages(skip, t)?;
    t.stage("clean", || clean_after(&before, &tmp))
}

/// fmt to yocto, with the soak beside msrv..yocto.
///
/// Only the soak runs beside other stages: it mostly sleeps. BitBake and cargo both use every
/// core, and side by side on 2 cores they took 3,643 s where one after the other takes about
/// 1,500 s (BitBake's dry run 117 s alone, 639 s beside; yocto-check-layer 488 s and 1,927 s;
/// clippy 34 s and 181 s).
fn main_stages(skip: Skip, t: &mut Timings) -> Result<()> {
    t.stage("fmt", || sh(cargo().args(["fmt", "--all", "--", "--check"])))?;
    t.stage("clippy", || {
        sh(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            // benches/publish.rs needs it; it changes nothing else.
            "--features",
            "tolomeo-core/bench-internals",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    t.stage("test", || sh(cargo().args(["test", "--workspace"])))?;
    if skip.system {
        t.skipped("system");
    } else {
        t.stage("system", || system::run(None, false))?;
    }
    if skip.demo {
        t.skipped("demo");
    } else {
        // The newcomer's command, for 20 s: it fails unless all three services were seen, and
        // the dashboard answered GET /api/state with the telemetry it received.
        t.stage("demo", || demo::run(Some(20)))?;
    }
    if skip.browser {
        t.skipped("browser");
    } else {
        // The dashboard's page in headless Chromium against the demo's system.
        t.stage("browser", || browser::run(false))?;
    }
    // The 5-minute soak measures memory, not speed: it runs beside the stages that follow,
    // none of which use its directories, so it adds little wall time.
    let soak = (!skip.soak).then(|| beside(|| soak::run(5, false, 10, 512)));
    let rest = later_stages(skip, t);
    // Wait for it even when a stage failed, so that it does not outlive this command.
    let soak = joined(t, "soak", soak, "ok (beside msrv..yocto)");
    rest?;
    soak
}

type Beside = std::thread::JoinHandle<(Result<()>, Duration)>;

/// A stage run on a thread of its own, with its wall time.
fn beside(f: impl FnOnce() -> Result<()> + Send + 'static) -> Beside {
    std::thread::spawn(move || {
        let started = Instant::now();
        (f(), started.elapsed())
    })
}

/// Wait for a stage started with [`beside`] and put it in the table.
fn joined(t: &mut Timings, name: &'static str, handle: Option<Beside>, ok: &'static str) -> Result<()> {
    let Some(handle) = handle else {
        t.skipped(name);
        return Ok(());
    };
    let (result, took) = handle
        .join()
        .unwrap_or_else(|_| (Err(anyhow::anyhow!("the {name} thread panicked")), Duration::ZERO));
    let outcome = if result.is_ok() { ok } else { "FAILED" };
    t.0.push((name, took, outcome));
    result.with_context(|| format!("stage `{name}` failed"))
}

/// The stages that run while the soak runs beside them; the Yocto checks last, as they take
/// longest and need nothing the others make.
fn later_stages(skip: Skip, t: &mut Timings) -> Result<()> {
    if skip.msrv {
        t.skipped("msrv");
    } else {
        t.stage("msrv", msrv)?;
    }
    if skip.lint {
        t.skipped("lint");
    } else {
        t.stage("lint", lint::run)?;
    }
    if skip.fuzz {
        t.skipped("fuzz");
    } else {
        t.stage("fuzz", || fuzz::run(None, 20_000))?;
    }
    if skip.cross {
        t.skipped("cross");
    } else {
        t.stage("cross", || {
            cross::cross_build("aarch64-unknown-linux-gnu", true).map(|_| ())
        })?;
    }
    if skip.yocto {
        t.skipped("yocto");
    } else {
        t.stage("yocto", || yocto::run(yocto::CheckLayer::WhenChanged))?;
    }
    Ok(())
}

/// An empty `target/ci-tmp`, made `TMPDIR` for this process and all it starts.
fn fresh_tmp() -> Result<PathBuf> {
    let tmp = std::env::current_dir()?.join(TMP);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot empty {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    // SAFETY: called from the main thread before any other thread of this process exists
    // (the soak thread starts later), so nothing reads the environment concurrently.
    unsafe { std::env::set_var("TMPDIR", &tmp) };
    Ok(tmp)
}

/// The checkout is as it was found, and the stages left nothing in the temporary directory.
fn clean_after(before: &Option<String>, tmp: &Path) -> Result<()> {
    let mut problems = Vec::new();
    if let (Some(before), Some(after)) = (before, git_status())
        && before != &after
    {
        problems.push(format!(
            "the run changed the checkout (git status --porcelain):\n  before:\n{}\n  after:\n{}",
            indent(before),
            indent(&after)
        ));
    }
    let mut left: Vec<String> = std::fs::read_dir(tmp)
        .with_context(|| format!("cannot read {}", tmp.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    if !left.is_empty() {
        problems.push(format!(
            "the stages left files in their temporary directory {}:\n{}",
            tmp.display(),
            indent(&left.join("\n"))
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (clean)".to_string();
    }
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// `git status --porcelain`, or None outside a git checkout (e.g. an unpacked tarball).
fn git_status() -> Option<String> {
    let out = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Check every target with the MSRV toolchain, in its own target directory.
fn msrv() -> Result<()> {
    let have = Command::new("rustup")
        .args(["run", MSRV_TOOLCHAIN, "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        bail!(
            "the MSRV toolchain {MSRV_TOOLCHAIN} is not installed; install it with\n  \
             rustup toolchain install {MSRV_TOOLCHAIN} --profile minimal\nor skip this step with --no-msrv"
        );
    }
    sh(Command::new("rustup").args([
        "run",
        MSRV_TOOLCHAIN,
        "cargo",
        "check",
        "--workspace",
        "--all-targets",
        "--locked",
        "--target-dir",
        "target/msrv",
    ]))
}
