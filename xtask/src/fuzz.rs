//! `cargo xtask fuzz`: every libFuzzer target in fuzz/, built the way cargo-fuzz builds them
//! (same coverage flags, `--cfg fuzzing`), on a pinned nightly, run for a fixed number of
//! executions. CI runs a short round; run longer by hand with `--runs` or with cargo-fuzz.
//!
//! A crash leaves its input in fuzz/artifacts/<target>/; add it as a regression test in the
//! crate that owns the parser.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sh;

/// The nightly the fuzz targets are built with (libFuzzer's coverage passes need nightly).
pub(crate) const TOOLCHAIN: &str = "nightly-2026-05-19";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub(crate) fn run(target: Option<&str>, runs: u64) -> Result<()> {
    let have = Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        bail!(
            "the fuzzing toolchain is not installed; install it with\n  rustup toolchain install {TOOLCHAIN} --profile minimal"
        );
    }
    let targets = list_targets()?;
    let chosen: Vec<&String> = match target {
        Some(t) => {
            let found: Vec<_> = targets.iter().filter(|x| x.as_str() == t).collect();
            if found.is_empty() {
                bail!("no fuzz target `{t}`; there are: {}", targets.join(", "));
            }
            found
        }
        None => targets.iter().collect(),
    };
    let flags = [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
    .join(" ");
    let mut build = Command::new("rustup");
    build
        .args([
            "run",
            TOOLCHAIN,
            "cargo",
            "build",
            "--release",
            // fuzz/Cargo.lock is committed: a run must not rewrite it.
            "--locked",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--target",
            TRIPLE,
        ])
        .env("RUSTFLAGS", flags);
    for t in &chosen {
        build.args(["--bin", t]);
    }
    sh(&mut build)?;
    for t in chosen {
        let bin = PathBuf::from("fuzz/target").join(TRIPLE).join("release").join(t);
        let corpus = PathBuf::from("fuzz/corpus").join(t);
        let artifacts = PathBuf::from("fuzz/artifacts").join(t);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let seeds = PathBuf::from("fuzz/seeds").join(t);
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("-runs={runs}"))
            .arg("-max_len=70000")
            .arg("-timeout=10")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        sh(&mut cmd).with_context(|| format!("fuzz target `{t}` found a crash: see {}", artifacts.display()))?;
        println!("fuzz target `{t}`: {runs} runs, no crash");
    }
    Ok(())
}

fn list_targets() -> Result<Vec<String>> {
    let dir = Path::new("fuzz/fuzz_targets");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "rs").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    out.sort();
    Ok(out)
}
