//! Bad configuration files end the binary with exit 78 and a message naming the key.

mod common;

use common::{binary, config_file};

fn check(name: &str, text: &str) -> (Option<i32>, String) {
    let path = config_file(name, text);
    let out = std::process::Command::new(binary())
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .env("DEVICE_SERIAL_NUMBER", "SN1")
        .output()
        .expect("run the binary");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_files_exit_78_naming_the_key() {
    let cases = [
        ("unknown", "[cpu]\npercore = false\n", "`cpu.percore`"),
        ("type", "[cpu]\nmem = \"yes\"\n", "`cpu.mem`"),
        ("nested", "[cpu.net]\nexcluded = [\"lo\"]\n", "`cpu.net.excluded`"),
        (
            "label",
            "[cpu.disk]\nmounts = [{ path = \"/\", label = \"my root\" }]\n",
            "`cpu.disk.mounts[0].label`",
        ),
        (
            "path",
            "[cpu.disk]\nmounts = [{ path = \"data\", label = \"d\" }]\n",
            "`cpu.disk.mounts[0].path`",
        ),
        ("pattern", "[cpu.temp]\nsensors = [\"a*b\"]\n", "`cpu.temp.sensors[0]`"),
    ];
    for (name, text, key) in cases {
        let (code, stderr) = check(name, text);
        assert_eq!(code, Some(78), "{name}: {stderr}");
        assert!(stderr.contains(key), "{name}: message names {key}: {stderr}");
        assert!(stderr.contains(".toml"), "{name}: message names the file: {stderr}");
    }
}

#[test]
fn the_default_and_packaged_configs_are_valid() {
    let (code, stderr) = check("empty", "");
    assert_eq!(code, Some(0), "{stderr}");
    for file in ["../../packaging/config/cpu-monitor.toml", "bench/footprint.toml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = std::process::Command::new(binary())
            .args(["--check-config", "--config", path.to_str().unwrap()])
            .env("DEVICE_SERIAL_NUMBER", "SN1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `--check-config` also checks what the configuration names, as the service would find it at
/// start: every unusable file and an unwritable spool directory, each with its key, at once.
#[test]
fn unusable_files_and_spool_dir_exit_78_naming_each_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tolomeo_testkit::temp_dir();
    let garbage = dir.path().join("seed.nk");
    std::fs::write(&garbage, "not a seed\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let text = format!(
        "[service]\nspool_dir = {:?}\n[nats]\ncreds_file = {:?}\ntls_ca_file = {:?}\n",
        blocker.join("spool").display().to_string(),
        dir.path().join("missing.creds").display().to_string(),
        dir.path().join("missing-ca.pem").display().to_string(),
    );
    let (code, stderr) = check("resources", &text);
    assert_eq!(code, Some(78), "{stderr}");
    for key in ["nats.creds_file", "nats.tls_ca_file", "service.spool_dir"] {
        assert!(stderr.contains(key), "names {key}: {stderr}");
    }
    // One way to authenticate at a time: the NKey seed on its own.
    let text = format!("[nats]\nnkey_seed_file = {:?}\n", garbage.display().to_string());
    let (code, stderr) = check("seed", &text);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("nats.nkey_seed_file") && stderr.contains("expected an NKey seed"),
        "{stderr}"
    );

    // A spool directory that could be made is fine, and the check leaves nothing behind:
    // neither the directory (the service makes it, as its own user) nor a probe file.
    let spool = dir.path().join("spool/deeper");
    let text = format!("[service]\nspool_dir = {:?}\n", spool.display().to_string());
    let (code, stderr) = check("spool-ok", &text);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!dir.path().join("spool").exists());
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only the test's own files: {left:?}");
}
