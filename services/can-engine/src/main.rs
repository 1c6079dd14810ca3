//! `tlm-can-engine`: see the `can_engine` crate.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tolomeo_core::cli::main(can_engine::SPEC, can_engine::CanEngine::new)
}
