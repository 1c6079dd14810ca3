//! `tlm dashboard` runs the `tlm-dashboard` program beside it (or on PATH) with tlm's
//! connection flags and the rest of its command line. A stand-in script records what it got.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// A copy of the built tlm in a directory of its own, with `helper` (a shell script) beside it
/// as tlm-dashboard when given.
fn install(helper: Option<&str>) -> tolomeo_testkit::tempfile::TempDir {
    let dir = tolomeo_testkit::temp_dir();
    std::fs::copy(env!("CARGO_BIN_EXE_tlm"), dir.path().join("tlm")).unwrap();
    if let Some(script) = helper {
        let path = dir.path().join("tlm-dashboard");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn runs_the_dashboard_beside_it_with_the_connection_flags() {
    let dir = install(Some(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\nexit 7\n",
    ));
    let out = Command::new(dir.path().join("tlm"))
        .args([
            "-s",
            "nats://10.0.0.1:4222",
            "--creds",
            "/etc/x.creds",
            "dashboard",
            "--listen",
            "0.0.0.0:9",
            "--enable-commands",
        ])
        .env_remove("NATS_URL")
        .env("PATH", "")
        .output()
        .unwrap();
    // The program's own exit code: tlm is replaced by it.
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let args: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        args,
        [
            "--server",
            "nats://10.0.0.1:4222",
            "--creds",
            "/etc/x.creds",
            "--connect-timeout",
            "5",
            "--listen",
            "0.0.0.0:9",
            "--enable-commands"
        ]
    );
    // Its help is its own, without tlm's flags in front.
    let out = Command::new(dir.path().join("tlm"))
        .args(["dashboard", "--help"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "--help");
}

#[test]
fn says_what_to_install_when_the_dashboard_is_missing() {
    let dir = install(None);
    let out = Command::new(dir.path().join("tlm"))
        .args(["dashboard"])
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tlm-dashboard program") && stderr.contains("install the tlm-dashboard package"),
        "{stderr}"
    );
}
