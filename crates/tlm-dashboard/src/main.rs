//! `tlm-dashboard` (also started as `tlm dashboard`).

fn main() {}
