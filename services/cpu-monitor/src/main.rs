//! `tlm-cpu-monitor`: see the `cpu_monitor` crate.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cpu_monitor::main()
}
