//! `cargo xtask ci`: what CI runs after `.ci/run` has installed the prerequisites.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{cargo, sh};

/// The Rust of Yocto wrynose; `rust-version` in Cargo.toml must build with it.
pub const MSRV_TOOLCHAIN: &str = "1.94.1";

pub fn run(no_msrv: bool) -> Result<()> {
    sh(cargo().args(["fmt", "--all", "--", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    sh(cargo().args(["test", "--workspace"]))?;
    if !no_msrv {
        msrv()?;
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
