//! The system tests' virtual machine: Debian's kernel under qemu (software emulation, one
//! vCPU), booted with the initramfs that `cargo xtask system-test` makes, which mounts this
//! machine's root file system read-only and runs `tests/guest/agent` in it.
//!
//! A test boots its own [`Vm`], runs shell scripts in it with [`Vm::sh`] / [`Vm::ok`], and
//! talks to the services in it through a [`NatsServer`](tolomeo_testkit::NatsServer) on this
//! machine, which the guest reaches at `10.0.2.2` (qemu's user network). The guest sees this
//! machine's files, so the services run from `target/debug` and the test data from the
//! workspace; files a test writes for the guest go in [`Vm::shared_dir`] (the guest's `/tmp` is
//! its own). When a test fails, the guest's console is printed.

#![forbid(unsafe_code)]

pub mod bench;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The environment variable naming the directory with `vmlinux` and `initramfs.cpio`;
/// `cargo xtask system-test` sets it. Default: `target/system-test` of the workspace.
pub const ASSETS_ENV: &str = "TOLOMEO_VM_DIR";

/// How long a boot may take until the agent answers (about 3 s on an idle machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A binary of the workspace, built by `cargo build` (`cargo xtask system-test` builds them).
pub fn binary(name: &str) -> PathBuf {
    let path = workspace().join("target/debug").join(name);
    assert!(
        path.exists(),
        "{} is not built; run the system tests with `cargo xtask system-test`",
        path.display()
    );
    path
}

fn assets() -> (PathBuf, PathBuf) {
    let dir = std::env::var_os(ASSETS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/system-test"));
    let kernel = dir.join("vmlinux");
    let initramfs = dir.join("initramfs.cpio");
    assert!(
        kernel.exists() && initramfs.exists(),
        "no kernel and initramfs in {}: run the system tests with `cargo xtask system-test`",
        dir.display()
    );
    (kernel, initramfs)
}

/// A booted guest.
pub struct Vm {
    child: tokio::process::Child,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    dir: tempfile::TempDir,
    shared: tempfile::TempDir,
    /// (guest port, this machine's port) of the systemd guest's forwarded TCP ports.
    forwards: Vec<(u16, u16)>,
    serial_pty: Option<PathBuf>,
}

/// The guest TCP ports that the systemd guest's network forwards from this machine: its
/// nats-server, and one more for a second broker a test may start.
const FORWARDED: [u16; 2] = [4222, 4223];

/// Which guest.
enum Guest {
    /// This machine's files, busybox's init, the agent as PID 1's child.
    Host,
    /// The Debian image with systemd as PID 1, the agent a unit of it; with a disk
    /// (`/dev/vda`, not formatted) throttled to this many I/O operations a second.
    Systemd { flash_iops: Option<u32> },
}

impl Vm {
    /// Boot a guest that sees this machine's files and wait until its agent answers.
    pub async fn boot() -> Vm {
        Self::start(Guest::Host).await
    }

    /// Boot the Debian image (`target/system-test/rootfs`) with systemd as PID 1, the
    /// services installed from `target/system-test/dist` as the packages install them, its
    /// nats-server reachable on this machine at [`Vm::broker_port`], and a second serial port
    /// (`/dev/ttyS1`) backed by a pty of this machine ([`Vm::serial_pty`]).
    pub async fn boot_systemd() -> Vm {
        Self::boot_systemd_with(None).await
    }

    /// [`Vm::boot_systemd`] with a disk, `/dev/vda` (64 MiB, not formatted), that qemu lets do
    /// only `iops` reads and writes a second: slow flash.
    pub async fn boot_systemd_with_flash(iops: u32) -> Vm {
        Self::boot_systemd_with(Some(iops)).await
    }

    async fn boot_systemd_with(flash_iops: Option<u32>) -> Vm {
        let mut vm = Self::start(Guest::Systemd { flash_iops }).await;
        // As a package manager unpacks: through /lib -> usr/lib of a merged-/usr system.
        vm.ok(
            "tar -C /mnt/dist -cf - . | tar -C / -xf - --keep-directory-symlink --no-same-owner
             systemd-sysusers && systemctl daemon-reload",
        )
        .await;
        vm
    }

    /// The port on this machine's loopback that reaches the systemd guest's nats-server.
    pub fn broker_port(&self) -> u16 {
        self.host_port(4222)
    }

    /// The port on this machine's loopback that reaches `guest_port` (4222 or 4223) of the
    /// systemd guest.
    pub fn host_port(&self, guest_port: u16) -> u16 {
        self.forwards
            .iter()
            .find(|(g, _)| *g == guest_port)
            .map(|(_, h)| *h)
            .unwrap_or_else(|| panic!("guest port {guest_port} is not forwarded (systemd guest: {FORWARDED:?})"))
    }

    /// The pty of this machine behind the systemd guest's `/dev/ttyS1`.
    pub fn serial_pty(&self) -> &Path {
        self.serial_pty
            .as_deref()
            .expect("only the systemd guest has a second serial port")
    }

    async fn start(guest: Guest) -> Vm {
        let (kernel, initramfs) = assets();
        let dir = tolomeo_testkit::temp_dir();
        let shared_root = workspace().join("target/system-test/shared");
        std::fs::create_dir_all(&shared_root).expect("create target/system-test/shared");
        let shared = tempfile::Builder::new()
            .prefix("vm-")
            .tempdir_in(&shared_root)
            .expect("a shared directory");
        let socket = dir.path().join("ctl.sock");
        let listener = UnixListener::bind(&socket).expect("bind the control socket");
        let console = dir.path().join("console.log");
        let qemu_log = std::fs::File::create(dir.path().join("qemu.log")).expect("qemu.log");
        let mut cmd = tokio::process::Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-no-reboot", "-display", "none", "-accel", "tcg"])
            .args(["-smp", "1", "-m", "768"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .arg("-serial")
            .arg(format!("file:{}", console.display()));
        let mut append = format!(
            "console=ttyS0 quiet panic=-1 rdinit=/init TOLOMEO_SHARED={}",
            shared.path().display()
        );
        let mut netdev = "user,id=n0".to_string();
        let mut forwards = Vec::new();
        match guest {
            Guest::Host => {
                cmd.args([
                    "-virtfs",
                    "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
                ]);
            }
            Guest::Systemd { flash_iops } => {
                let rootfs = kernel.with_file_name("rootfs");
                let dist = kernel.with_file_name("dist");
                assert!(
                    rootfs.join("sbin/init").exists() && dist.exists(),
                    "no image or dist in {}: run the system tests with `cargo xtask system-test`",
                    rootfs.display()
                );
                cmd.arg("-virtfs").arg(format!(
                    "local,path={},mount_tag=root,security_model=none,readonly=on,multidevs=remap",
                    rootfs.display()
                ));
                cmd.arg("-virtfs").arg(format!(
                    "local,path={},mount_tag=dist,security_model=none,readonly=on",
                    dist.display()
                ));
                cmd.args(["-chardev", "pty,id=rtu", "-device", "isa-serial,chardev=rtu"]);
                append.push_str(" TOLOMEO_MODE=systemd net.ifnames=0 systemd.show_status=false");
                for guest_port in FORWARDED {
                    let port = tolomeo_testkit::free_port();
                    netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{port}-10.0.2.15:{guest_port}"));
                    forwards.push((guest_port, port));
                }
                if let Some(iops) = flash_iops {
                    let image = dir.path().join("flash.img");
                    std::fs::File::create(&image)
                        .and_then(|f| f.set_len(64 << 20))
                        .expect("create the flash image");
                    cmd.arg("-drive")
                        .arg(format!(
                            "file={},format=raw,if=none,id=flash,throttling.iops-total={iops}",
                            image.display()
                        ))
                        .args(["-device", "virtio-blk-pci,drive=flash"]);
                }
            }
        }
        cmd.arg("-append")
            .arg(append)
            .args(["-netdev", &netdev, "-device", "virtio-net-pci,netdev=n0"])
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=shared,security_model=none",
                shared.path().display()
            ))
            .args(["-device", "virtio-serial-pci", "-chardev"])
            .arg(format!("socket,id=ctl,path={}", socket.display()))
            .args(["-device", "virtserialport,chardev=ctl,name=ctl"])
            .stdin(Stdio::null())
            .stdout(qemu_log.try_clone().expect("qemu.log"))
            .stderr(qemu_log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run qemu-system-x86_64 ({e}); `cargo xtask system-test` installs it"));
        let accepted = tokio::select! {
            a = tokio::time::timeout(BOOT_TIMEOUT, listener.accept()) => a,
            status = child.wait() => panic!("qemu exited ({status:?}):\n{}", read(&dir.path().join("qemu.log"))),
        };
        let (stream, _) = accepted
            .unwrap_or_else(|_| panic!("qemu did not connect to the control socket"))
            .expect("accept the control connection");
        let (r, writer) = stream.into_split();
        // qemu says which pty it made: "char device redirected to /dev/pts/N (label rtu)".
        let serial_pty = read(&dir.path().join("qemu.log"))
            .lines()
            .find(|l| l.contains("(label rtu)"))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("/dev/pts/")))
            .map(PathBuf::from);
        let mut vm = Vm {
            child,
            reader: BufReader::new(r),
            writer,
            dir,
            shared,
            forwards,
            serial_pty,
        };
        let mut line = String::new();
        let started = Instant::now();
        let ready = tokio::time::timeout(BOOT_TIMEOUT, vm.reader.read_line(&mut line)).await;
        if !matches!(ready, Ok(Ok(n)) if n > 0) || line.trim() != "ready" {
            panic!(
                "the guest's agent did not start within {BOOT_TIMEOUT:?} (got {line:?}); console:\n{}",
                vm.console()
            );
        }
        eprintln!("vm: booted in {:.1} s", started.elapsed().as_secs_f64());
        vm
    }

    /// A directory of this machine that the guest sees at the same path and can write to
    /// (removed afterwards). When a test fails, every `*.log` file in it is printed: the
    /// services in the guest log there, and the systemd guest copies its journal there
    /// (`journal.log`).
    pub fn shared_dir(&self) -> &Path {
        self.shared.path()
    }

    /// Run a shell script in the guest (as root, `/bin/sh`); its exit status and output.
    pub async fn sh(&mut self, script: &str) -> (i32, String) {
        self.sh_timeout(script, Duration::from_secs(120)).await
    }

    /// [`Vm::sh`] with a time limit other than 120 s.
    pub async fn sh_timeout(&mut self, script: &str, limit: Duration) -> (i32, String) {
        let mut line = base64::engine::general_purpose::STANDARD.encode(script);
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .expect("write to the control port");
        let mut out = Vec::new();
        let mut status = String::new();
        let got = tokio::time::timeout(limit, async {
            self.reader.read_until(0x1e, &mut out).await?;
            self.reader.read_line(&mut status).await
        })
        .await;
        match got {
            Ok(Ok(_)) if out.last() == Some(&0x1e) => {}
            Ok(r) => panic!(
                "the guest's agent stopped answering ({r:?}) while running:\n{script}\nconsole:\n{}",
                self.console()
            ),
            Err(_) => panic!(
                "the guest did not finish within {limit:?}:\n{script}\noutput so far:\n{}",
                String::from_utf8_lossy(&out)
            ),
        }
        out.pop();
        let rc = status.trim().parse().unwrap_or(-1);
        (rc, String::from_utf8_lossy(&out).into_owned())
    }

    /// Run a script that must succeed; its output.
    pub async fn ok(&mut self, script: &str) -> String {
        let (rc, out) = self.sh(script).await;
        assert_eq!(rc, 0, "in the guest, exit status {rc}:\n{script}\noutput:\n{out}");
        out
    }

    /// What the guest's kernel and init printed so far.
    pub fn console(&self) -> String {
        read(&self.dir.path().join("console.log"))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let console = self.console();
            let lines: Vec<&str> = console.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- the guest's console (last {} lines) ---", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
            let mut logs: Vec<PathBuf> = std::fs::read_dir(self.shared.path())
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
            logs.sort();
            for log in logs {
                let text = read(&log);
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(200)..];
                eprintln!("--- {} (in the guest; last {} lines) ---", log.display(), tail.len());
                for l in tail {
                    eprintln!("{l}");
                }
            }
            let qemu = read(&self.dir.path().join("qemu.log"));
            if !qemu.trim().is_empty() {
                eprintln!("--- qemu ---\n{qemu}");
            }
        }
        let _ = self.child.start_kill();
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

/// The URL of a broker on this machine's loopback port `port`, as the guest reaches it.
pub fn guest_url(port: u16) -> String {
    format!("nats://10.0.2.2:{port}")
}
