//! `cargo xtask ci`: what CI runs after `.ci/run` has installed the prerequisites. Green here
//! means green in CI.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, cross, demo, fuzz, lint, sh, soak};

/// The Rust of Yocto wrynose; `rust-version` in Cargo.toml must build with it.
pub const MSRV_TOOLCHAIN: &str = "1.94.1";

/// Which steps to skip (each needs a toolchain or tool that .ci/run installs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Skip {
    pub msrv: bool,
    pub lint: bool,
    pub fuzz: bool,
    pub cross: bool,
    pub demo: bool,
    pub soak: bool,
}

pub fn run(skip: Skip) -> Result<()> {
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    sh(cargo().args(["test", "--workspace"]))?;
    if !skip.demo {
        // The newcomer's command, for 20 s: it fails unless all three services were seen.
        demo::run(Some(20))?;
    }
    // The 5-minute soak measures memory, not speed: it runs beside the steps that follow, none
    // of which use its target directory, so it adds no wall time.
    let soak = (!skip.soak).then(|| std::thread::spawn(|| soak::run(5, false, 10, 512)));
    if !skip.msrv {
        msrv()?;
    }
    if !skip.lint {
        lint::run()?;
    }
    if !skip.fuzz {
        fuzz::run(None, 20_000)?;
    }
    if !skip.cross {
        cross::cross_build("aarch64-unknown-linux-gnu", true)?;
    }
    if let Some(handle) = soak {
        match handle.join() {
            Ok(result) => result?,
            Err(_) => bail!("the soak thread panicked"),
        }
    }
    eprintln!("xtask ci: all checks passed");
    Ok(())
}

/// Build every target with the MSRV toolchain, in its own target directory.
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
