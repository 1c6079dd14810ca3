SUMMARY = "All ToloMEO Rust telemetry services and the tlm tool"
DESCRIPTION = "Pulls cpu-monitor, can-engine, modbus-sensors (each with its systemd unit, \
               user and default configuration) and the tlm command-line tool into an image."
HOMEPAGE = "https://example.invalid/tolomeo-rust"
BUGTRACKER = "https://example.invalid/tolomeo-rust/issues"
SECTION = "console/network"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "\
    tlm \
    tlm-can-engine \
    tlm-cpu-monitor \
    tlm-modbus-sensors \
"
