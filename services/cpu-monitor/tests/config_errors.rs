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
