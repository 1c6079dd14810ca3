//! Build-script helper for ToloMEO services: in release builds for Linux, the functions a
//! service runs are linked side by side, so that the service maps a third of the code pages.
//!
//! In the `build.rs` of a service crate, with `tolomeo-build` in `[build-dependencies]`:
//!
//! ```text
//! fn main() {
//!     tolomeo_build::hot_text();
//! }
//! ```
//!
//! # Why
//!
//! The kernel maps a program's code in 64 KiB windows around each page it touches
//! (fault-around), and counts every page mapped in the program's resident set. A service
//! runs about 0.5 MiB of its 1.8 MiB of code, but that code is spread over the whole text
//! section, so nearly all of it ends up resident: 1.6 MiB of tlm-cpu-monitor's 3.9 MiB.
//!
//! # How
//!
//! `hot-text.ld` lists, as globs over section names, the functions the three services ran
//! under callgrind (start-up, connection, polls; `cargo xtask hot-text` regenerates it). It is
//! a linker script that only adds an output section (`INSERT BEFORE .init`), so the rest of
//! the layout is the linker's default; GNU ld and lld both take it, and both put `.init`,
//! which runs too, right after it (GNU ld `.plt` as well). Functions it names that a binary does not have match
//! nothing; functions it misses stay where they were. The globs leave out what changes between builds of the same source (crate hashes,
//! back-references, LLVM suffixes), so the list holds for every target and compiler version,
//! and for a service crate outside this workspace, whose framework functions are the same.
//!
//! gold and mold do not take `INSERT` scripts: when the rustflags choose one
//! (`-fuse-ld=gold`), the script is left out with a warning; when the linker is chosen
//! elsewhere (a distribution's linker wrapper), set `TOLOMEO_HOT_TEXT=0`.

use std::path::PathBuf;

/// The linker script (see the crate documentation).
pub const SCRIPT: &str = include_str!("../hot-text.ld");

/// From a build script: link this package's binaries with [`SCRIPT`], in release builds for
/// Linux, unless `TOLOMEO_HOT_TEXT=0`.
pub fn hot_text() {
    println!("cargo:rerun-if-env-changed=TOLOMEO_HOT_TEXT");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if !applies(&var("TOLOMEO_HOT_TEXT"), &var("PROFILE"), &var("CARGO_CFG_TARGET_OS")) {
        return;
    }
    if let Some(linker) = script_less_linker(&var("CARGO_ENCODED_RUSTFLAGS")) {
        println!(
            "cargo:warning=tolomeo-build: {linker} does not take INSERT linker scripts; linking without hot-text.ld"
        );
        return;
    }
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        println!("cargo:warning=tolomeo-build: OUT_DIR is not set; linking without hot-text.ld");
        return;
    };
    let path = PathBuf::from(out_dir).join("hot-text.ld");
    if let Err(e) = std::fs::write(&path, SCRIPT) {
        println!(
            "cargo:warning=tolomeo-build: cannot write {}: {e}; linking without it",
            path.display()
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
}

/// Whether the script is used: release profile, Linux target, not turned off.
fn applies(setting: &str, profile: &str, target_os: &str) -> bool {
    setting != "0" && profile == "release" && target_os == "linux"
}

/// gold or mold, when the flags choose one (`-C link-arg=-fuse-ld=gold`): they reject the
/// script's INSERT (gold: "syntax error, unexpected STRING").
fn script_less_linker(encoded_rustflags: &str) -> Option<&'static str> {
    let flags = encoded_rustflags.split('\x1f');
    flags
        .filter_map(|f| f.split("-fuse-ld=").nth(1))
        .find_map(|ld| ["gold", "mold"].into_iter().find(|l| ld.starts_with(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_linux_builds_only_and_it_can_be_turned_off() {
        assert!(applies("", "release", "linux"));
        assert!(applies("1", "release", "linux"));
        assert!(!applies("0", "release", "linux"));
        assert!(!applies("", "debug", "linux"));
        assert!(!applies("", "release", "macos"));
    }

    #[test]
    fn gold_and_mold_are_recognised_in_the_flags() {
        assert_eq!(script_less_linker("-Clink-arg=-fuse-ld=gold"), Some("gold"));
        assert_eq!(
            script_less_linker("-C\x1flink-arg=-fuse-ld=mold\x1f-Copt-level=z"),
            Some("mold")
        );
        assert_eq!(script_less_linker("-Clink-arg=-Wl,-z,pack-relative-relocs"), None);
        assert_eq!(script_less_linker("-Clink-arg=-fuse-ld=lld"), None);
        assert_eq!(script_less_linker(""), None);
    }

    #[test]
    fn the_script_only_inserts_a_section() {
        // INSERT keeps the linker's default layout; a script without it would replace it.
        assert!(SCRIPT.trim_end().ends_with("INSERT BEFORE .init;"), "{SCRIPT}");
        assert!(SCRIPT.contains(".text.tolomeo_hot :"));
    }
}
