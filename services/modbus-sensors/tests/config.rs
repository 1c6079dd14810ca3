//! Configuration errors: all refused at once, each naming the file and the key, exit 78.
//! And the shipped example configuration is valid.

use std::path::Path;
use std::process::Command;

const BAD: &str = r#"
[[modbus.devices]]
name = "plc"
host = "127.0.0.1"
[[modbus.devices.registers]]
name = "a"
data_type = "float16"
[[modbus.devices.registers]]
name = "b"
byte_order = "ABDC"
[[modbus.devices.registers]]
name = "c"
[[modbus.devices.registers]]
name = "c"
address = 1
[[modbus.devices.registers]]
name = "top"
address = 65535
data_type = "f32"
[[modbus.devices.registers]]
name = "flag"
data_type = "bool"
bit = 16
[[modbus.devices.registers]]
name = "old_style"
type = "counter"
[[modbus.devices.registers]]
name = "ro"
kind = "input"
writable = true
[[modbus.devices.registers]]
name = "label"
data_type = "string"
scale = 2.0
length = 4

[[modbus.devices]]
name = "bad name!"
host = "10.0.0.2"

[[modbus.devices]]
name = "m1"
path = "/dev/ttyUSB0"
baud = 9600
[[modbus.devices]]
name = "m2"
path = "/dev/ttyUSB0"
baud = 19200
"#;

fn check(config: &str) -> (Option<i32>, String, String) {
    let path = std::env::temp_dir().join(format!("tlm-modbus-cfg-{}-{}.toml", std::process::id(), config.len()));
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tlm-modbus-sensors"))
        .args(["--check-config", "--config", path.to_str().unwrap()])
        .env("DEVICE_SERIAL_NUMBER", "SN1")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

#[test]
fn every_error_is_reported_at_once_with_file_and_key() {
    let (code, err, file) = check(BAD);
    assert_eq!(code, Some(78), "{err}");
    let expected = [
        ("modbus.devices[0].registers[0].data_type", "float16"),
        ("modbus.devices[0].registers[1].byte_order", "ABCD, CDAB, BADC or DCBA"),
        ("modbus.devices[0].registers[3].name", "duplicate"),
        ("modbus.devices[0].registers[4].address", "beyond 65535"),
        ("modbus.devices[0].registers[5].bit", "expected 0 to 15"),
        (
            "modbus.devices[0].registers[6].type",
            "expected temporal or incremental",
        ),
        ("modbus.devices[0].registers[7].writable", "read-only"),
        ("modbus.devices[0].registers[8].scale", "not to a string"),
        ("modbus.devices[1].name", "not a valid device name"),
        ("modbus.devices[3].path", "same settings"),
    ];
    for (key, reason) in expected {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("`{key}`")))
            .unwrap_or_else(|| panic!("no line for {key} in:\n{err}"));
        assert!(line.contains(&file), "{line}");
        assert!(line.contains(reason), "{key}: expected {reason:?} in {line}");
    }
}

/// A value of the wrong type is refused when the file is read: the checks need typed values,
/// so it is reported alone, naming the file, the key, the value written and the type expected.
#[test]
fn a_wrong_type_is_reported_alone_with_file_key_and_value() {
    let config = BAD.replace("type = \"counter\"", "address = \"40001\"");
    assert_ne!(config, BAD);
    let (code, err, file) = check(&config);
    assert_eq!(code, Some(78), "{err}");
    let key = "modbus.devices[0].registers[6].address";
    let line = err
        .lines()
        .find(|l| l.contains(&format!("`{key}`")))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{err}"));
    assert!(line.contains(&file), "{line}");
    assert!(line.contains("\"40001\"") && line.contains("expected u16"), "{line}");
    let errors = err.lines().filter(|l| l.contains("configuration error")).count();
    assert_eq!(errors, 1, "{err}");
}

#[test]
fn unknown_keys_are_refused() {
    let (code, err, _) = check("[[modbus.devices]]\nname = \"a\"\nhost = \"h\"\nslave_id = 3\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("slave_id") && err.contains("unit_id"), "{err}");
}

#[test]
fn the_packaged_example_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/config/modbus-sensors.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let (code, err, _) = check(&text);
    assert_eq!(code, Some(0), "as shipped: {err}");
    // With its commented-out example enabled (`#key` lines; `# text` lines are explanations).
    let enabled: String = text
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(enabled.contains("\nname = \"meter\"") && enabled.contains("\nname = \"flowmeter\""));
    let (code, err, _) = check(&enabled);
    assert_eq!(code, Some(0), "example enabled: {err}");
}

/// A serial port that is absent now may appear later (a USB adapter plugged in): a warning
/// that names the key, not an error.
#[test]
fn an_absent_serial_port_is_a_warning() {
    let (code, err, file) = check(
        "[[modbus.devices]]\nname = \"m1\"\npath = \"/dev/ttyNOSUCHPORT7\"\n[[modbus.devices.registers]]\nname = \"t\"\naddress = 0\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning")
            && err.contains(&file)
            && err.contains("modbus.devices[0].path")
            && err.contains("/dev/ttyNOSUCHPORT7 does not exist now"),
        "{err}"
    );
}
