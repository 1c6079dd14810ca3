//! `cargo xtask lint`: the Yocto layer and the systemd units, checked as CI checks them.
//!
//! - the recipe's crate list and version are in step with Cargo.lock and Cargo.toml;
//! - every unit of packaging/systemd is in `cross::UNITS` (so `cargo xtask dist` ships it and
//!   this checks it), and the recipe builds every binary and packages every unit and
//!   environment file;
//! - `oelint-adv` (pinned) finds nothing on the layer, with the suppressions listed here;
//! - `systemd-analyze verify` is clean and `systemd-analyze security --offline=yes` rates
//!   every unit at most 2.5.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cross::{BINARIES, DEFAULTS, UNITS, workspace_version};
use crate::recipe;
use crate::{setup, sh};

/// The oelint-adv version pinned in requirements-test.txt (installed into target/py-venv by
/// `cargo xtask setup`).
pub(crate) const OELINT_VERSION: &str = "9.11.2";

/// Rules suppressed for the whole layer, and why (also in meta-tolomeo-rust/README.md).
/// Single lines are suppressed in the recipes themselves with `# nooelint:` and a reason.
const SUPPRESSED: &[(&str, &str)] = &[
    ("oelint.vars.homepageping", "needs the network, which CI does not have"),
    (
        "oelint.vars.inconspaces",
        "the crates list is written in OE-core's own update_crates format (`SRC_URI += \" \\`)",
    ),
];

/// The highest `systemd-analyze security` exposure a unit may have.
const MAX_EXPOSURE: f64 = 2.5;

pub(crate) fn run() -> Result<()> {
    recipe_in_sync()?;
    everything_shipped()?;
    oelint()?;
    units()?;
    println!("xtask lint: layer and units are clean");
    Ok(())
}

fn recipe_in_sync() -> Result<()> {
    let want = recipe::crates_inc()?;
    let have = std::fs::read_to_string(recipe::crates_inc_path()).unwrap_or_default();
    if want != have {
        bail!(
            "{} is out of date with Cargo.lock: run `cargo xtask update-recipe`",
            recipe::crates_inc_path().display()
        );
    }
    let text = std::fs::read_to_string(recipe::recipe_path())?;
    let version = workspace_version()?;
    if recipe::with_version(&text, &version) != text {
        bail!(
            "the PV of {} is not {version}+git: run `cargo xtask update-recipe`",
            recipe::recipe_path().display()
        );
    }
    println!("recipe: crate list and version match Cargo.lock and Cargo.toml {version}");
    Ok(())
}

/// What packaging/ holds is listed in xtask (dist, this lint) and shipped by the recipe: a new
/// unit, environment file or binary cannot be left out of one of them.
fn everything_shipped() -> Result<()> {
    let mut problems = Vec::new();
    let on_disk = |dir: &str, suffix: &str| -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {dir}"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    };
    for unit in on_disk("packaging/systemd", ".service")? {
        if !UNITS.contains(&unit.as_str()) {
            problems.push(format!(
                "packaging/systemd/{unit}.service is not in UNITS (xtask/src/cross.rs): add it there, \
                 so that `cargo xtask dist` ships it and this lint checks it"
            ));
        }
    }
    for name in on_disk("packaging/default", "")? {
        if !DEFAULTS.contains(&name.as_str()) {
            problems.push(format!(
                "packaging/default/{name} is not in DEFAULTS (xtask/src/cross.rs): add it there, \
                 so that `cargo xtask dist` ships it"
            ));
        }
    }
    let path = recipe::recipe_path();
    let recipe = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let shipped = |what: &str| recipe.contains(what);
    for b in BINARIES {
        if !shipped(&format!("--package {}", b.package)) {
            problems.push(format!(
                "{}: CARGO_BUILD_FLAGS does not build the package {} (expected `--package {}`)",
                path.display(),
                b.package,
                b.package
            ));
        }
        if !shipped(&format!("${{bindir}}/{}", b.name)) {
            problems.push(format!(
                "{}: no package has {} (expected `${{bindir}}/{}` in a FILES:<package> line)",
                path.display(),
                b.name,
                b.name
            ));
        }
    }
    for unit in UNITS {
        // The services' units are installed by a loop over TOLOMEO_SERVICES, so look for the
        // SYSTEMD_SERVICE line, which every unit needs.
        if !recipe
            .lines()
            .any(|l| l.starts_with("SYSTEMD_SERVICE:") && l.contains(&format!("\"{unit}.service\"")))
        {
            problems.push(format!(
                "{}: {unit}.service is in no package (expected `SYSTEMD_SERVICE:<package> = \"{unit}.service\"`)",
                path.display()
            ));
        }
    }
    for name in DEFAULTS {
        if !shipped(&format!("${{sysconfdir}}/default/{name}")) {
            problems.push(format!(
                "{}: /etc/default/{name} is in no package (expected `${{sysconfdir}}/default/{name}` \
                 in a FILES:<package> line)",
                path.display()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("packaging and the recipe disagree:\n  {}", problems.join("\n  "));
    }
    println!(
        "packaging: {} units, {} environment files and {} binaries, each shipped by dist and the recipe",
        UNITS.len(),
        DEFAULTS.len(),
        BINARIES.len()
    );
    Ok(())
}

fn oelint() -> Result<()> {
    let oelint = setup::venv_bin("oelint-adv");
    let version = Command::new(&oelint)
        .arg("--version")
        .output()
        .map_err(|_| anyhow::anyhow!("{} is missing; make it with\n  cargo xtask setup", oelint.display()))?;
    let got = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if !got.ends_with(OELINT_VERSION) {
        bail!(
            "{} is `{got}`, expected {OELINT_VERSION} (requirements-test.txt): run `cargo xtask setup`",
            oelint.display()
        );
    }
    let mut recipes: Vec<String> = Vec::new();
    collect_recipes(Path::new("meta-tolomeo-rust"), &mut recipes)?;
    recipes.sort();
    let mut cmd = Command::new(&oelint);
    cmd.args(["--quiet", "--release", "wrynose", "--hide", "info"]);
    for (rule, _why) in SUPPRESSED {
        cmd.args(["--suppress", rule]);
    }
    cmd.args(&recipes);
    let out = cmd.output().context("cannot run oelint-adv")?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !report.trim().is_empty() {
        bail!("oelint-adv found problems:\n{report}");
    }
    println!("oelint-adv {OELINT_VERSION}: {} recipes clean", recipes.len());
    Ok(())
}

fn collect_recipes(dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_recipes(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "bb" || e == "bbappend") {
            out.push(path.display().to_string());
        }
    }
    Ok(())
}

fn units() -> Result<()> {
    // A throwaway root holding the units, stand-ins for the binaries, and the host's own units
    // (for targets such as sysinit.target), so `verify` checks our files and nothing else.
    let root = std::env::current_dir()?.join("target/lint-units");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("usr/bin"))?;
    std::fs::create_dir_all(root.join("etc/systemd/system"))?;
    std::fs::create_dir_all(root.join("lib/systemd"))?;
    sh(Command::new("cp")
        .args(["-r", "/lib/systemd/system"])
        .arg(root.join("lib/systemd/")))?;
    let mut names = Vec::new();
    for name in UNITS {
        let unit = format!("{name}.service");
        std::fs::copy(
            format!("packaging/systemd/{unit}"),
            root.join("etc/systemd/system").join(&unit),
        )?;
        let bin = root.join("usr/bin").join(name);
        std::fs::write(&bin, "#!/bin/sh\n")?;
        sh(Command::new("chmod").arg("+x").arg(&bin))?;
        names.push(unit);
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .args(&names)
        .output()
        .context("cannot run systemd-analyze (apt-get install systemd)")?;
    let report = String::from_utf8_lossy(&verify.stderr).to_string();
    if !verify.status.success() || !report.trim().is_empty() {
        bail!("systemd-analyze verify:\n{report}");
    }
    for unit in &names {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(root.join("etc/systemd/system").join(unit))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let level = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("no exposure level for {unit} in:\n{text}"))?;
        if level > MAX_EXPOSURE {
            bail!("{unit}: systemd-analyze security exposure {level} is above {MAX_EXPOSURE}");
        }
        println!("{unit}: verify clean, exposure {level}");
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
