//! `cargo xtask system-test`: the tests in `tests/` that need a real Linux kernel (SocketCAN)
//! or a real systemd, in a virtual machine.
//!
//! This machine's kernel has no CAN, so the tests boot Debian's own kernel under qemu
//! (software emulation: the machine's KVM cannot run a stock kernel). What the guest needs:
//!
//! - `target/system-test/vmlinux`: the uncompressed kernel of the newest `linux-image-amd64`
//!   in /boot (qemu starts it directly through its PVH entry: boot to the agent takes 3.0 s
//!   instead of 6.2 to 7.1 s with the compressed kernel unpacking itself under emulation, for
//!   each of the tests' VMs). Extracted once per kernel.
//! - `target/system-test/initramfs.cpio`: busybox, the modules for virtio, 9p and CAN (with
//!   their dependencies, from `modules.dep`), and `tests/guest/init`, which mounts this
//!   machine's root read-only and runs `tests/guest/agent`. Made on every run (a second).
//!
//! - `target/system-test/rootfs`: Debian bookworm made by `debootstrap` with systemd, udev,
//!   Debian's nats-server, iproute2, can-utils and socat, for the tests under systemd. Made
//!   once (about 30 s plus downloads); made anew when [`IMAGE_PACKAGES`] change or it is removed.
//! - `target/system-test/dist`: the device's layout of `cargo xtask dist` (units, users,
//!   configurations, `/etc/default/tolomeo`), which the systemd guest installs as the packages
//!   would. Around the debug binaries that `cargo build` made (without their debug
//!   information); with `--release`, around the release binaries of `cargo xtask dist
//!   x86_64-unknown-linux-gnu`, exactly what dist ships (3.5 min more on 2 cores for a first
//!   build, so CI uses the debug build: the units, users and files are the same).
//!
//! Then `cargo test -p tolomeo-system-tests -- --ignored`, whose tests boot one guest each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, sh};

/// Where the kernel and initramfs go (the tests find them through `TOLOMEO_VM_DIR`).
const DIR: &str = "target/system-test";

/// The modules the guest loads (their dependencies are added from `modules.dep`).
const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_console",
    "9pnet_virtio",
    "9p",
    "vcan",
    "can-raw",
    "overlay",
    // The systemd guest's slow flash disk.
    "virtio_blk",
    "ext4",
    "crc32c_generic",
];

/// Debian packages: the command each step runs, and its package.
pub(crate) const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("cpio", "cpio"),
    ("xz", "xz-utils"),
    ("candump", "can-utils"),
    ("ip", "iproute2"),
    ("debootstrap", "debootstrap"),
];

/// What the systemd guest's image holds besides the minimal base.
pub(crate) const IMAGE_PACKAGES: &str = "systemd,systemd-sysv,udev,dbus,nats-server,iproute2,can-utils,kmod,socat";
/// The image's Debian release and where its packages come from.
const IMAGE_SUITE: &str = "bookworm";
const IMAGE_MIRROR: &str = "http://deb.debian.org/debian";

/// The busybox the initramfs needs: static, from `busybox-static`.
const BUSYBOX: &str = "/bin/busybox";

/// Why the system tests cannot run on this machine, if they cannot.
pub(crate) fn unsupported() -> Option<String> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Some("the system tests boot an x86_64 Debian kernel: they need an x86_64 Linux machine".into());
    }
    None
}

/// Debian packages the system tests need that are missing here.
pub(crate) fn missing_packages() -> Vec<&'static str> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(c, _)| !crate::have(c) && !Path::new("/usr/sbin").join(c).exists())
        .map(|(_, p)| *p)
        .collect();
    if !busybox_is_static() {
        missing.push("busybox-static");
    }
    if newest_kernel().is_err() {
        missing.push("linux-image-amd64");
    }
    if !Path::new("/usr/bin/python3").exists() {
        missing.push("python3");
    }
    missing
}

/// `/bin/busybox` is Debian's static build (the dynamic `busybox` package would need its
/// libraries in the initramfs too).
fn busybox_is_static() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "busybox-static"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout) == "install ok installed")
}

/// The system tests (those whose names contain `filter`), without the benchmarks.
pub(crate) fn run(filter: Option<&str>, release: bool) -> Result<()> {
    let Some(dir) = prepare(release)? else {
        return Ok(());
    };
    let mut test = cargo();
    test.args(["test", "-p", "tolomeo-system-tests", "--"]);
    if let Some(f) = filter {
        test.arg(f);
    }
    test.args(["--ignored", "--skip", "bench_", "--test-threads=2"])
        .env("TOLOMEO_VM_DIR", &dir);
    sh(&mut test)
}

/// `cargo xtask bench flash`: tests/flash.rs, heartbeats and Ping round trips with the spool
/// on a throttled disk and without a spool, for `seconds`.
pub(crate) fn bench_flash(seconds: u64) -> Result<()> {
    let Some(dir) = prepare(true)? else {
        return Ok(());
    };
    bench("flash", seconds, Some(&dir))
}

/// Run the benchmark `tests/<name>.rs` for `seconds` (with the VM's assets in `vm_dir`).
pub(crate) fn bench(name: &str, seconds: u64, vm_dir: Option<&Path>) -> Result<()> {
    let mut test = cargo();
    test.args([
        "test",
        "-p",
        "tolomeo-system-tests",
        "--test",
        name,
        "--",
        "--ignored",
        "--nocapture",
    ])
    .env("TOLOMEO_BENCH_SECONDS", seconds.to_string());
    if let Some(dir) = vm_dir {
        test.env("TOLOMEO_VM_DIR", dir);
    }
    sh(&mut test)
}

/// Kernel, initramfs, image and dist in `target/system-test`; None where the VMs cannot run.
/// `release`: the systemd guest gets dist's release build.
fn prepare(release: bool) -> Result<Option<PathBuf>> {
    if let Some(why) = unsupported() {
        eprintln!("system-test: skipped: {why}");
        return Ok(None);
    }
    let missing = missing_packages();
    if !missing.is_empty() {
        bail!(
            "the system tests need these Debian packages: {}\ninstall them with `cargo xtask setup` (as root) or\n  \
             sudo apt-get install -y {}",
            missing.join(", "),
            missing.join(" ")
        );
    }
    sh(cargo().args(["build", "--bins"]))?;
    let dir = std::env::current_dir()?.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (version, vmlinuz) = newest_kernel()?;
    kernel(&dir, &version, &vmlinuz)?;
    initramfs(&dir, &version)?;
    image(&dir)?;
    dist(&dir.join("dist"), release)?;
    Ok(Some(dir))
}

/// The newest kernel in /boot that has its modules: its version and the vmlinuz.
fn newest_kernel() -> Result<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
        .context("cannot read /boot")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            Path::new("/lib/modules")
                .join(&version)
                .join("modules.dep")
                .exists()
                .then(|| (version, e.path()))
        })
        .collect();
    found.sort_by_key(|a| natural(&a.0));
    found
        .pop()
        .context("no kernel with modules in /boot and /lib/modules (package linux-image-amd64)")
}

/// A version string as numbers and words, so that 6.1.0-10 sorts after 6.1.0-9.
fn natural(v: &str) -> Vec<(u64, String)> {
    v.split(|c: char| !c.is_ascii_alphanumeric())
        .map(|p| (p.parse().unwrap_or(0), p.to_string()))
        .collect()
}

/// `vmlinux` from `vmlinuz`: the kernel's payload is an xz (or zstd, gzip) stream after the
/// boot code; unpack the first one that gives an ELF file, as the kernel's own
/// scripts/extract-vmlinux does.
fn kernel(dir: &Path, version: &str, vmlinuz: &Path) -> Result<()> {
    let out = dir.join("vmlinux");
    let stamp = dir.join("vmlinux.version");
    if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|v| v == version) {
        return Ok(());
    }
    let image = std::fs::read(vmlinuz).with_context(|| format!("cannot read {}", vmlinuz.display()))?;
    let formats: [(&[u8], &str, &[&str]); 3] = [
        (b"\xfd7zXZ\x00", "xz", &["-dc", "--single-stream"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["-dc"]),
        (b"\x1f\x8b\x08\x00", "gzip", &["-dc"]),
    ];
    for (magic, tool, args) in formats {
        for (offset, _) in image.windows(magic.len()).enumerate().filter(|(_, w)| *w == magic) {
            let Ok(mut child) = Command::new(tool)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            else {
                break;
            };
            let payload = image[offset..].to_vec();
            let mut stdin = child.stdin.take().context("stdin")?;
            let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &payload));
            let output = child.wait_with_output()?;
            let _ = writer.join();
            if output.stdout.starts_with(b"\x7fELF") {
                std::fs::write(&out, &output.stdout).with_context(|| format!("cannot write {}", out.display()))?;
                std::fs::write(&stamp, version)?;
                eprintln!("system-test: {} from {}", out.display(), vmlinuz.display());
                return Ok(());
            }
        }
    }
    bail!("found no compressed ELF kernel in {}", vmlinuz.display())
}

/// The initramfs: busybox, the modules in load order, init, and where the agent is.
fn initramfs(dir: &Path, version: &str) -> Result<()> {
    let stage = dir.join("initramfs");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    for d in ["bin", "modules", "proc", "sys", "dev"] {
        std::fs::create_dir_all(stage.join(d))?;
    }
    std::fs::copy(BUSYBOX, stage.join("bin/busybox")).context("cannot copy busybox")?;
    let modules = Path::new("/lib/modules").join(version);
    let order = load_order(&modules, MODULES)?;
    for (i, module) in order.iter().enumerate() {
        let name = module
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (base, unpack): (&str, Option<&str>) = if let Some(b) = name.strip_suffix(".xz") {
            (b, Some("xz"))
        } else if let Some(b) = name.strip_suffix(".zst") {
            (b, Some("zstd"))
        } else {
            (&name, None)
        };
        let target = stage.join("modules").join(format!("{:02}-{base}", i + 10));
        let source = modules.join(module);
        match unpack {
            None => {
                std::fs::copy(&source, &target).with_context(|| format!("cannot copy {}", source.display()))?;
            }
            Some(tool) => {
                let out = Command::new(tool).arg("-dc").arg(&source).output()?;
                if !out.status.success() {
                    bail!("cannot unpack {}", source.display());
                }
                std::fs::write(&target, out.stdout)?;
            }
        }
    }
    let init = Path::new("tests/guest/init");
    std::fs::copy(init, stage.join("init")).with_context(|| format!("cannot copy {}", init.display()))?;
    let agent = std::env::current_dir()?.join("tests/guest/agent");
    std::fs::write(stage.join("agent-path"), agent.display().to_string())?;
    // For the systemd guest, which does not see this machine's files.
    std::fs::copy(&agent, stage.join("agent"))?;
    std::fs::copy("tests/guest/agent.service", stage.join("agent.service"))?;
    let cpio = std::fs::File::create(dir.join("initramfs.cpio"))?;
    let status = Command::new("sh")
        .args(["-c", "find . -print | LC_ALL=C sort | cpio -o -H newc --quiet"])
        .current_dir(&stage)
        .stdout(cpio)
        .status()?;
    if !status.success() {
        bail!("cpio failed: {status}");
    }
    std::fs::remove_dir_all(&stage)?;
    Ok(())
}

/// `wanted` and everything they need, each after what it needs (paths relative to `modules`).
fn load_order(modules: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let dep_file = modules.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).with_context(|| format!("cannot read {}", dep_file.display()))?;
    let mut deps: BTreeMap<String, (PathBuf, Vec<String>)> = BTreeMap::new();
    let name_of = |p: &str| {
        let file = p.rsplit('/').next().unwrap_or(p);
        file.split(".ko").next().unwrap_or(file).replace('_', "-")
    };
    for line in text.lines() {
        let Some((module, needs)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(module),
            (PathBuf::from(module), needs.split_whitespace().map(name_of).collect()),
        );
    }
    // Built into this kernel: nothing to load (another kernel may build in what Debian's loads).
    let builtin = std::fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let mut seen: BTreeSet<String> = builtin.lines().map(name_of).collect();
    let mut order = Vec::new();
    fn visit(
        name: &str,
        deps: &BTreeMap<String, (PathBuf, Vec<String>)>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<PathBuf>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let (path, needs) = deps
            .get(name)
            .with_context(|| format!("kernel module {name} is not in modules.dep (built into the kernel?)"))?;
        for n in needs {
            visit(n, deps, seen, order)?;
        }
        order.push(path.clone());
        Ok(())
    }
    for w in wanted {
        visit(&w.replace('_', "-"), &deps, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// The Debian image of the systemd guest (see the module's documentation).
fn image(dir: &Path) -> Result<()> {
    let root = dir.join("rootfs");
    let stamp = dir.join("rootfs.packages");
    let want = format!("{IMAGE_SUITE} {IMAGE_PACKAGES}");
    if root.join("sbin/init").exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "making the systemd guest's image with debootstrap needs root (it is made once, in {})",
            root.display()
        );
    }
    let partial = dir.join("rootfs.partial");
    for d in [&root, &partial] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("cannot remove {}", d.display()))?;
        }
    }
    eprintln!("system-test: making the systemd guest's image (debootstrap {IMAGE_SUITE}, once)");
    sh(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={IMAGE_PACKAGES}"), IMAGE_SUITE])
        .arg(&partial)
        .arg(IMAGE_MIRROR))?;
    let write = |path: &str, text: &str| -> Result<()> {
        let p = partial.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))
    };
    write("etc/hostname", "tolomeo-test\n")?;
    // The broker is reached from the host through qemu's port forward to the guest's address.
    write(
        "etc/nats-server.conf",
        "# The system tests' guest: reachable from the host through qemu's port forward.\nhost: 0.0.0.0\nport: 4222\n",
    )?;
    // Nothing that only slows the boot down or waits for a terminal.
    for unit in [
        "e2scrub_reap.service",
        "serial-getty@ttyS0.service",
        "getty@tty1.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "systemd-timesyncd.service",
    ] {
        let link = partial.join("etc/systemd/system").join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).with_context(|| format!("cannot mask {unit}"))?;
    }
    std::fs::rename(&partial, &root)?;
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// The device's layout around dist's release binaries (`release`) or the debug binaries
/// without their debug information (the guest's writable layer is memory, and they are
/// copied into it).
fn dist(stage: &Path, release: bool) -> Result<()> {
    if release {
        let bins = crate::cross::cross_build("x86_64-unknown-linux-gnu", false)?;
        return crate::cross::layout(&bins, stage);
    }
    crate::cross::layout(Path::new("target/debug"), stage)?;
    for b in crate::cross::BINARIES {
        sh(Command::new("strip")
            .arg("--strip-debug")
            .arg(stage.join("usr/bin").join(b.name)))?;
    }
    Ok(())
}
