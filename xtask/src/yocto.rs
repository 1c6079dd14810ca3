//! `cargo xtask yocto`: the Yocto layer read by the real BitBake, offline, as a Yocto user's
//! build reads it: OE-core wrynose and BitBake 2.18 from the source snapshots in
//! `../shared/yocto` (or `TOLOMEO_YOCTO_SOURCES`), unpacked into `target/yocto`, whose build
//! directories keep BitBake's parse cache between runs.
//!
//! Every run:
//! 1. The parse with `BB_NO_NETWORK = "1"` and no overlayfs configured (`bitbake -n
//!    tolomeo-overlay`): no WARNING, and no ERROR but that nothing provides tolomeo-overlay,
//!    which is skipped, saying why.
//! 2. With `OVERLAYFS_MOUNT_POINT[data]` set (`conf/overlay.conf`): `bitbake -n` of
//!    `packagegroup-tolomeo-rust` and `tolomeo-overlay`, a complete task graph.
//! 3. The crate list: every crate of `tolomeo-rust-crates.inc` downloaded from the crate
//!    registry into `DL_DIR`, `bitbake -c unpack tolomeo-rust` offline (BitBake checks each
//!    file against the recipe's sha256 and vendors them as OE-core's cargo classes do), then
//!    `cargo build --offline --frozen` of the device's binaries (`cross::BINARIES`) against that
//!    vendor directory only.
//!
//! When the layer, the systemd units or `Cargo.lock` changed since the last pass (or with
//! `--check-layer`): OE-core's `yocto-check-layer`, in a build directory of its own.
//!
//! BitBake refuses to run as root: as root, it runs in a user namespace where this user is
//! uid 1000 (`unshare --map-user`), which needs no user account and leaves every file owned
//! by whoever ran the command.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, cross, have, is_root, sh};

/// Where the work goes (BitBake's build directories, downloads, logs).
const WORK: &str = "target/yocto";
const LAYER: &str = "meta-tolomeo-rust";
const CRATES_INC: &str = "meta-tolomeo-rust/recipes-tolomeo/tolomeo-rust/tolomeo-rust-crates.inc";

/// When to run yocto-check-layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckLayer {
    /// When the layer, the units or Cargo.lock changed since the last pass.
    WhenChanged,
    Always,
    Never,
}

/// The host tools BitBake checks for (and what has them in Debian).
pub(crate) const HOST_TOOLS: &[(&str, &str)] = &[
    ("chrpath", "chrpath"),
    ("diffstat", "diffstat"),
    ("lz4c", "lz4"),
    ("zstd", "zstd"),
    ("file", "file"),
    ("gawk", "gawk"),
    ("cpio", "cpio"),
    ("patch", "patch"),
    ("make", "make"),
    ("g++", "g++"),
    ("curl", "curl"),
    ("unshare", "util-linux"),
];

/// The OE-core and BitBake archives, or why they are not there.
pub(crate) fn sources() -> std::result::Result<(PathBuf, PathBuf), String> {
    let dir = std::env::var_os("TOLOMEO_YOCTO_SOURCES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/yocto"));
    let find = |prefix: &str| -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".tar.xz"))
            })
            .collect();
        found.sort();
        found.pop()
    };
    match (find("openembedded-core-"), find("bitbake-")) {
        (Some(oe), Some(bb)) => Ok((oe, bb)),
        _ => Err(format!(
            "no OE-core and BitBake source archives in {} (openembedded-core-*.tar.xz and \
             bitbake-*.tar.xz; TOLOMEO_YOCTO_SOURCES names another folder)",
            dir.display()
        )),
    }
}

/// Paths of one run.
struct Yocto {
    work: PathBuf,
    oe: PathBuf,
    layer: PathBuf,
    logs: PathBuf,
}

pub(crate) fn run(check: CheckLayer) -> Result<()> {
    let (oe_tar, bb_tar) = match sources() {
        Ok(s) => s,
        Err(why) => {
            println!("yocto: skipped: {why}");
            return Ok(());
        }
    };
    let missing: Vec<&str> = HOST_TOOLS.iter().filter(|(c, _)| !have(c)).map(|(_, p)| *p).collect();
    if !missing.is_empty() {
        bail!(
            "BitBake needs host tools that are missing; install them with\n  sudo apt-get install -y {}\n\
             (cargo xtask setup does, as root)",
            missing.join(" ")
        );
    }
    let root = std::env::current_dir()?;
    let work = root.join(WORK);
    let y = Yocto {
        oe: work.join("openembedded-core"),
        layer: root.join(LAYER),
        logs: work.join("logs"),
        work,
    };
    std::fs::create_dir_all(&y.logs)?;
    y.unpack(&oe_tar, &bb_tar)?;
    let build = y.work.join("build");
    y.configure(&build, true)?;

    // 1. The parse, offline, without overlayfs configured: one `bitbake -n tolomeo-overlay`
    //    parses everything (as `bitbake -p` would) and then must say why the recipe is
    //    skipped; its only ERROR is that nothing provides it, and nothing warns.
    let (ok, out) = y.bitbake("parse", &build, "bitbake -n tolomeo-overlay")?;
    let expected = "ERROR: Nothing PROVIDES 'tolomeo-overlay'";
    let problems: Vec<&str> = out
        .lines()
        .filter(|l| (l.starts_with("ERROR") || l.starts_with("WARNING")) && *l != expected)
        .collect();
    if ok || !problems.is_empty() || !out.contains("Parsing of ") {
        bail!(
            "the parse without overlayfs configured is not clean:\n{}\nsee {}",
            problems.join("\n"),
            y.log("parse").display()
        );
    }
    if !out.contains("tolomeo-overlay was skipped: overlayfs is not configured") {
        bail!(
            "without overlayfs configured, `bitbake -n tolomeo-overlay` does not say why the recipe is skipped; see {}",
            y.log("parse").display()
        );
    }
    println!("yocto: the parse is clean offline; without overlayfs, tolomeo-overlay is skipped and says why");

    // 2. The task graph, with overlayfs configured.
    let graph = y.clean(
        "dry-run",
        &build,
        "bitbake -R conf/overlay.conf -n packagegroup-tolomeo-rust tolomeo-overlay",
    )?;
    // (do_fetch and do_unpack are not listed once step 3 has run them: their stamps are valid.)
    for task in [
        "tolomeo-rust_git.bb:do_configure",
        "tolomeo-rust_git.bb:do_compile",
        "tolomeo-rust_git.bb:do_package_write_ipk",
        "tolomeo-overlay_1.0.bb:do_install",
        "packagegroup-tolomeo-rust.bb:do_build",
    ] {
        if !graph.contains(task) {
            bail!("the task graph has no {task}; see {}", y.log("dry-run").display());
        }
    }
    println!(
        "yocto: bitbake -n: {} tasks, tolomeo-rust's do_configure..do_package_write_ipk and tolomeo-overlay included",
        graph.matches("NOTE: Running ").count()
    );

    // 3. The crate list, fetched, checked by BitBake, vendored, and built from.
    y.crates(&build)?;

    // 4. OE-core's compatibility test, when something it looks at changed.
    let stamp = y.work.join("check-layer.passed");
    let inputs = inputs_hash(&oe_tar)?;
    let passed_before = std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == inputs);
    let run_check = match check {
        CheckLayer::Always => true,
        CheckLayer::Never => false,
        CheckLayer::WhenChanged => !passed_before,
    };
    if run_check {
        let _ = std::fs::remove_file(&stamp);
        let check_build = y.work.join("build-check");
        y.configure(&check_build, false)?;
        let (ok, out) = y.bitbake(
            "check-layer",
            &check_build,
            &format!("yocto-check-layer {}", y.layer.display()),
        )?;
        let summary: Vec<&str> = out
            .lines()
            .filter(|l| l.contains(" ... ") || l.contains("INFO: Ran ") || l.contains("FAIL"))
            .collect();
        if !ok || !out.contains("meta-tolomeo-rust ... PASS") {
            bail!(
                "yocto-check-layer failed:\n{}\nsee {}",
                summary.join("\n"),
                y.log("check-layer").display()
            );
        }
        std::fs::write(&stamp, &inputs)?;
        println!("yocto: yocto-check-layer passed ({} lines of results)", summary.len());
    } else if check == CheckLayer::Never {
        println!("yocto: yocto-check-layer not run (--no-check-layer)");
    } else {
        println!(
            "yocto: yocto-check-layer passed before on this layer, these units and this Cargo.lock; \
             not run again (--check-layer runs it)"
        );
    }
    Ok(())
}

impl Yocto {
    fn log(&self, step: &str) -> PathBuf {
        self.logs.join(format!("{step}.log"))
    }

    /// OE-core with BitBake in bitbake/, once per pair of archives.
    fn unpack(&self, oe_tar: &Path, bb_tar: &Path) -> Result<()> {
        let stamp = self.oe.join(".unpacked-from");
        let want = format!("{}\n{}\n", oe_tar.display(), bb_tar.display());
        if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
            return Ok(());
        }
        if self.oe.exists() {
            std::fs::remove_dir_all(&self.oe)?;
        }
        std::fs::create_dir_all(self.oe.join("bitbake"))?;
        eprintln!("yocto: unpacking {} and {}", oe_tar.display(), bb_tar.display());
        sh(Command::new("tar").arg("-xJf").arg(oe_tar).arg("-C").arg(&self.oe))?;
        sh(Command::new("tar")
            .arg("-xJf")
            .arg(bb_tar)
            .arg("-C")
            .arg(self.oe.join("bitbake")))?;
        std::fs::write(stamp, want)?;
        Ok(())
    }

    /// A build directory: OE-core's default local.conf plus the settings of a Yocto user's
    /// offline build, and `bblayers.conf` with OE-core (and the layer, `with_layer`). Files are
    /// only rewritten when their content changes, so the parse cache stays valid.
    fn configure(&self, build: &Path, with_layer: bool) -> Result<()> {
        let conf = build.join("conf");
        std::fs::create_dir_all(&conf)?;
        let template = self.oe.join("meta/conf/templates/default");
        let mut local =
            std::fs::read_to_string(template.join("local.conf.sample")).context("OE-core's local.conf.sample")?;
        local.push_str(&format!(
            r#"
# --- cargo xtask yocto ---
MACHINE = "qemuarm64"
INIT_MANAGER = "systemd"
BB_NO_NETWORK = "1"
DL_DIR = "{work}/downloads"
# The uninative tarball is a download; without the network the build uses the host's libc.
INHERIT:remove = "uninative"
"#,
            work = self.work.display()
        ));
        write_if_changed(&conf.join("local.conf"), &local)?;
        write_if_changed(
            &conf.join("overlay.conf"),
            "# What a machine with a persistent partition sets (bitbake -R conf/overlay.conf).\n\
             OVERLAYFS_MOUNT_POINT[data] = \"/data\"\n\
             DISTRO_FEATURES:append = \" overlayfs\"\n",
        )?;
        let mut layers = format!("  {}/meta \\\n", self.oe.display());
        if with_layer {
            layers.push_str(&format!("  {} \\\n", self.layer.display()));
        }
        write_if_changed(
            &conf.join("bblayers.conf"),
            &format!(
                "# Written by cargo xtask yocto\nLCONF_VERSION = \"7\"\nBBPATH = \"${{TOPDIR}}\"\nBBFILES ?= \"\"\n\
                 BBLAYERS ?= \" \\\n{layers}  \"\n"
            ),
        )?;
        // A yocto-check-layer run that was stopped leaves its backup behind.
        let _ = std::fs::remove_file(conf.join("bblayers.conf.backup"));
        Ok(())
    }

    /// Run `cmd` in the BitBake environment of `build`; its output goes to logs/<step>.log.
    /// Returns whether it succeeded, and the output.
    fn bitbake(&self, step: &str, build: &Path, cmd: &str) -> Result<(bool, String)> {
        let script = format!(
            "cd {oe} && . ./oe-init-build-env {build} >/dev/null && {cmd}",
            oe = self.oe.display(),
            build = build.display()
        );
        let mut command = if is_root() {
            let mut c = Command::new("unshare");
            c.args([
                "--user",
                "--map-user=1000",
                "--map-group=1000",
                "--",
                "bash",
                "-c",
                &script,
            ]);
            c
        } else {
            let mut c = Command::new("bash");
            c.args(["-c", &script]);
            c
        };
        let log = self.log(step);
        let file = std::fs::File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        let started = Instant::now();
        let status = command
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .with_context(|| format!("cannot run {cmd}"))?;
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "yocto: {step}: `{cmd}`: {:.0} s, {}",
            started.elapsed().as_secs_f64(),
            if status.success() { "ok" } else { "failed" }
        );
        Ok((status.success(), out))
    }

    /// [`Yocto::bitbake`] that must succeed without an ERROR or WARNING line.
    fn clean(&self, step: &str, build: &Path, cmd: &str) -> Result<String> {
        let (ok, out) = self.bitbake(step, build, cmd)?;
        let problems: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("WARNING"))
            .collect();
        if !ok || !problems.is_empty() {
            bail!(
                "`{cmd}` {}:\n{}\nsee {}",
                if ok { "warned" } else { "failed" },
                if problems.is_empty() {
                    out.lines()
                        .rev()
                        .take(20)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join("\n")
                } else {
                    problems.join("\n")
                },
                self.log(step).display()
            );
        }
        Ok(out)
    }

    /// Deliverable of the crate list: download, BitBake's checksum check and unpack, and an
    /// offline, frozen cargo build against nothing but that vendor directory.
    fn crates(&self, build: &Path) -> Result<()> {
        let crates = crate_list()?;
        let dl = self.work.join("downloads");
        std::fs::create_dir_all(&dl)?;
        let missing: Vec<&(String, String)> = crates
            .iter()
            .filter(|(n, v)| !dl.join(format!("{n}-{v}.crate")).exists())
            .collect();
        if !missing.is_empty() {
            // The files BitBake's crate fetcher downloads (same names in DL_DIR); BitBake
            // checks each against the recipe's sha256sum when it unpacks them below.
            let mut config = String::new();
            for (n, v) in &missing {
                config.push_str(&format!(
                    "url = \"https://static.crates.io/crates/{n}/{n}-{v}.crate\"\noutput = \"{}\"\n",
                    dl.join(format!("{n}-{v}.crate")).display()
                ));
            }
            let list = self.work.join("crates.curl");
            std::fs::write(&list, config)?;
            eprintln!("yocto: downloading {} crates into {}", missing.len(), dl.display());
            sh(Command::new("curl")
                .args(["--fail", "--no-progress-meter", "--location", "--parallel"])
                .args(["--parallel-max", "8", "--retry", "2", "--config"])
                .arg(&list))?;
        }
        self.clean("unpack", build, "bitbake -c unpack tolomeo-rust")?;
        let (_, vars) = self.bitbake(
            "unpack-vars",
            build,
            "bitbake-getvar -r tolomeo-rust --value S && bitbake-getvar -r tolomeo-rust --value CARGO_VENDORING_DIRECTORY",
        )?;
        let mut values = vars.lines().filter(|l| l.starts_with('/')).map(PathBuf::from);
        let (Some(source), Some(vendor)) = (values.next(), values.next()) else {
            bail!(
                "no S and CARGO_VENDORING_DIRECTORY from bitbake-getvar; see {}",
                self.log("unpack-vars").display()
            );
        };
        let vendored = std::fs::read_dir(&vendor)
            .with_context(|| format!("cannot read the vendor directory {}", vendor.display()))?
            .count();
        if vendored != crates.len() {
            bail!(
                "{} holds {vendored} crates, the recipe lists {}",
                vendor.display(),
                crates.len()
            );
        }
        // The [source] tables OE-core's cargo_common_do_configure writes into CARGO_HOME.
        let cargo_home = self.work.join("cargo-home");
        std::fs::create_dir_all(&cargo_home)?;
        std::fs::write(
            cargo_home.join("config.toml"),
            format!(
                "[source.bitbake]\ndirectory = \"{}\"\n\n[source.crates-io]\nreplace-with = \"bitbake\"\nlocal-registry = \"/nonexistent\"\n",
                vendor.display()
            ),
        )?;
        let mut cmd = cargo();
        cmd.current_dir(&source)
            .args(["build", "--offline", "--frozen", "--bins"])
            .env("CARGO_HOME", &cargo_home)
            .env("CARGO_TARGET_DIR", self.work.join("cargo-target"));
        for b in cross::BINARIES {
            cmd.args(["--package", b.package]);
        }
        // Into a log, not the console: cargo xtask ci runs this beside other stages.
        let log = self.log("crates-build");
        let file = std::fs::File::create(&log).with_context(|| format!("cannot write {}", log.display()))?;
        eprintln!(
            "yocto: crates-build: `{}` in {}",
            crate::describe(&cmd),
            source.display()
        );
        let status = cmd
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error")).take(10).collect();
            bail!(
                "the workspace does not build from the recipe's crates alone (a crate missing from \
                 tolomeo-rust-crates.inc? run cargo xtask update-recipe):\n{}\nsee {}",
                errors.join("\n"),
                log.display()
            );
        }
        println!(
            "yocto: {} crates fetched, checked by BitBake against the recipe and vendored; the {} binaries build offline from them",
            crates.len(),
            cross::BINARIES.len()
        );
        Ok(())
    }
}

/// (name, version) of every `crate://` line of the recipe's crate list, once each (the list
/// has a section per Cargo.lock of the source, as OE-core's update_crates writes it).
fn crate_list() -> Result<std::collections::BTreeSet<(String, String)>> {
    let text = std::fs::read_to_string(CRATES_INC).with_context(|| format!("cannot read {CRATES_INC}"))?;
    let crates: std::collections::BTreeSet<(String, String)> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("crate://crates.io/"))
        .filter_map(|rest| {
            let mut parts = rest.split(';').next()?.split('/');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    if crates.is_empty() {
        bail!("{CRATES_INC} lists no crate://crates.io/ entries");
    }
    Ok(crates)
}

/// A digest of what yocto-check-layer looks at: the layer, the units, Cargo.lock, OE-core.
fn inputs_hash(oe_tar: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(Path::new(LAYER), &mut files)?;
    collect(Path::new("packaging/systemd"), &mut files)?;
    files.push(PathBuf::from("Cargo.lock"));
    files.sort();
    let mut h = DefaultHasher::new();
    oe_tar.file_name().hash(&mut h);
    for f in &files {
        f.hash(&mut h);
        std::fs::read(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .hash(&mut h);
    }
    Ok(format!("{:016x} ({} files)", h.finish(), files.len()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
