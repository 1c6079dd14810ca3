SUMMARY = "All ToloMEO Rust telemetry services and the tlm tool"
DESCRIPTION = "Pulls cpu-monitor, can-engine, modbus-sensors (each with its systemd unit, \
               user and default configuration) and the tlm command-line tool into an image."
HOMEPAGE = "https://example.invalid/tolomeo-rust"
BUGTRACKER = "https://example.invalid/tolomeo-rust/issues"
SECTION = "console/network"
LICENSE = "MIT"

inherit packagegroup tolomeo_rust_source

# In world only when tolomeo-rust has a source: without one (the layer copied out of the
# repository, nothing configured) tolomeo-rust is skipped, and world would fail on the RDEPENDS
# below. Building this group, or an image with it, still says why tolomeo-rust was skipped.
EXCLUDE_FROM_WORLD = "${@'0' if tolomeo_rust_source_configured(d) else '1'}"

# Not tlm-dashboard: a web server for developers and technicians, which an image asks for by
# name (IMAGE_INSTALL:append = " tlm-dashboard"; meta-tolomeo-rust/README.md, "The dashboard").
RDEPENDS:${PN} = "\
    tlm \
    tlm-can-engine \
    tlm-cpu-monitor \
    tlm-modbus-sensors \
"
