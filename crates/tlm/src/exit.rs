//! Exit codes and the one place that prints a failure.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | the service answered with an error, or the pack is not valid |
//! | 2 | bad usage: a flag, an argument or an input file (clap uses 2 as well) |
//! | 3 | nothing answered: no responder, or no reply within `--timeout` |
//! | 4 | the broker is unreachable, or another I/O failure |

use std::process::ExitCode;

/// Success.
pub(crate) const OK: u8 = 0;
/// An error reply, or an invalid pack.
pub(crate) const FAILED: u8 = 1;
/// Bad usage or input.
pub(crate) const USAGE: u8 = 2;
/// Nothing answered.
pub(crate) const NO_ANSWER: u8 = 3;
/// The broker is unreachable, or I/O failed.
pub(crate) const UNAVAILABLE: u8 = 4;

/// Why `tlm` stops with a non-zero exit code. `message` is printed on stderr as it is.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The exit code.
    pub code: u8,
    /// What went wrong, where, and what was expected.
    pub message: String,
}

impl From<tolomeo_proto::client::ConnectError> for Failure {
    fn from(e: tolomeo_proto::client::ConnectError) -> Self {
        match e {
            tolomeo_proto::client::ConnectError::Usage(m) => Failure::usage(m),
            tolomeo_proto::client::ConnectError::Unreachable(m) => Failure::io(m),
        }
    }
}

impl Failure {
    /// Exit 1 with a message.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Failure {
            code: FAILED,
            message: message.into(),
        }
    }
    /// Exit 2 with a message.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: USAGE,
            message: message.into(),
        }
    }
    /// Exit 3 with a message.
    pub(crate) fn no_answer(message: impl Into<String>) -> Self {
        Failure {
            code: NO_ANSWER,
            message: message.into(),
        }
    }
    /// Exit 4 with a message.
    pub(crate) fn io(message: impl Into<String>) -> Self {
        Failure {
            code: UNAVAILABLE,
            message: message.into(),
        }
    }
}

/// The result of a subcommand.
pub(crate) type Outcome = Result<(), Failure>;

/// Prints the failure, if any, and turns the outcome into the process exit code.
pub(crate) fn report(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::from(OK),
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}
