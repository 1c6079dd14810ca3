//! An xtask error is a message and exit code 1, never a backtrace, whatever `RUST_BACKTRACE`
//! says.

use std::process::Command;

#[test]
fn an_error_is_a_message_without_a_backtrace() {
    for backtrace in ["0", "1", "full"] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["fuzz", "no_such_target"])
            .env("RUST_BACKTRACE", backtrace)
            .env("RUST_LIB_BACKTRACE", backtrace)
            .output()
            .expect("run xtask");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "RUST_BACKTRACE={backtrace}: {stderr}");
        assert!(
            stderr.starts_with("error: no fuzz target `no_such_target`; there are: "),
            "RUST_BACKTRACE={backtrace}: {stderr}"
        );
        assert!(stderr.contains("spool_segment"), "the targets are listed: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("backtrace") && stderr.lines().count() == 1,
            "RUST_BACKTRACE={backtrace}: one line, no backtrace: {stderr}"
        );
    }
}
