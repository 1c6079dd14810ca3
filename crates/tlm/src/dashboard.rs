//! `tlm dashboard`: runs the `tlm-dashboard` program with the rest of the command line, as
//! `git` runs `git-<name>`. The dashboard is a package of its own, so that `tlm` stays within
//! its size budget on a device that does not want a web server.
//!
//! The program is looked for beside `tlm` first (the same installation), then on `PATH`. The
//! connection flags given to `tlm` before `dashboard` are passed on.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use tolomeo_proto::client::ConnArgs;

use crate::exit::{Failure, Outcome};

/// `tlm dashboard` arguments: everything after it goes to `tlm-dashboard`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct Args {
    /// The arguments of tlm-dashboard (`tlm dashboard --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

/// The program's name.
const PROGRAM: &str = "tlm-dashboard";

/// The connection flags of `tlm`, as `tlm-dashboard` takes them.
fn conn_flags(conn: &ConnArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["--server".into(), conn.server.clone().into()];
    let mut pair = |flag: &str, value: Option<OsString>| {
        if let Some(v) = value {
            out.push(flag.into());
            out.push(v);
        }
    };
    pair("--user", conn.user.clone().map(Into::into));
    pair("--password", conn.password.clone().map(Into::into));
    pair("--token", conn.token.clone().map(Into::into));
    pair("--creds", conn.creds.clone().map(Into::into));
    pair("--nkey", conn.nkey.clone().map(Into::into));
    pair("--tlscacert", conn.tlscacert.clone().map(Into::into));
    pair("--tlscert", conn.tlscert.clone().map(Into::into));
    pair("--tlskey", conn.tlskey.clone().map(Into::into));
    pair("--connect-timeout", Some(conn.connect_timeout.to_string().into()));
    out
}

/// Replaces this process with `tlm-dashboard`; returns only when it could not be started.
pub(crate) fn run(conn: &ConnArgs, args: &Args) -> Outcome {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(PROGRAM)))
        .filter(|p| p.is_file());
    let program = beside.clone().unwrap_or_else(|| PathBuf::from(PROGRAM));
    let mut command = Command::new(&program);
    // `tlm dashboard --help` shows the dashboard's own help, without tlm's flags in front.
    let wants_help = args
        .args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "--version" || a == "-V");
    if !wants_help {
        command.args(conn_flags(conn));
    }
    command.args(&args.args);
    let error = command.exec();
    Err(if error.kind() == std::io::ErrorKind::NotFound {
        Failure::usage(format!(
            "tlm dashboard runs the {PROGRAM} program, which is neither beside tlm nor on PATH: install the tlm-dashboard package (or `cargo build -p tlm-dashboard`)"
        ))
    } else {
        Failure::io(format!("cannot run {}: {error}", program.display()))
    })
}
