//! `tlm-cpu-monitor`: see the `cpu_monitor` crate.

fn main() -> std::process::ExitCode {
    cpu_monitor::main()
}
