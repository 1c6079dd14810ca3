SUMMARY = "ToloMEO telemetry services in Rust, the tlm tool and its dashboard"
SUMMARY:tlm-dashboard = "ToloMEO dashboard: the device's telemetry in a browser"
DESCRIPTION = "Telemetry services for ToloMEO edge devices: cpu-monitor, can-engine and \
               modbus-sensors publish SenML on the device-local NATS broker and run under \
               systemd with Type=notify, a watchdog and hardening; tlm watches and commands them; \
               tlm-dashboard shows their telemetry in a browser."
# nooelint: oelint.vars.homepageping - placeholder address, and CI has no network
HOMEPAGE = "https://example.invalid/tolomeo-rust"
BUGTRACKER = "https://example.invalid/tolomeo-rust/issues"
SECTION = "console/network"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"
CVE_PRODUCT = "tolomeo-rust"

# The workspace version, kept in step with Cargo.toml by `cargo xtask update-recipe`.
PV = "0.1.0+git"

# Where the sources come from (README.md, "Where the sources come from"):
# - by default the git checkout this layer is part of (meta-tolomeo-rust/..), at the commit it
#   has checked out, fetched offline with the git fetcher: the recipe, its crate list and the
#   code it builds are always the same commit (uncommitted changes are not built);
# - a product pins its own server and commit in a bbappend or local.conf:
#     TOLOMEO_RUST_GIT_URI = "git://git.example.com/tolomeo-rust.git;protocol=https;branch=main"
#     SRCREV:pn-tolomeo-rust = "<commit>"
#   (SRCREV:pn-tolomeo-rust = "${AUTOREV}" follows the branch head, with network access only);
# - development with uncommitted changes: externalsrc (README.md).
# Without any of these (the layer copied out of the repository) the recipe is skipped, saying why.
inherit tolomeo_rust_source

TOLOMEO_RUST_GIT_URI ?= "git://${TOLOMEO_RUST_CHECKOUT};protocol=file;nobranch=1"
SRC_URI = "${TOLOMEO_RUST_GIT_URI}"
SRCREV ?= "${@tolomeo_checkout_rev(d)[0]}"

# nooelint: oelint.task.noanonpython - skipping and the parse-cache dependency on the checkout need it
python () {
    rev, files, why = tolomeo_checkout_rev(d)
    # Parse again when the checkout moves to another commit (the parse cache keeps SRCREV).
    for f in files:
        bb.parse.mark_dependency(d, f)
    if not d.getVar("SRCREV") or d.getVar("SRCREV") == "INVALID":
        raise bb.parse.SkipRecipe("no source: %s; set TOLOMEO_RUST_CHECKOUT to a checkout, or "
                                  "TOLOMEO_RUST_GIT_URI and SRCREV:pn-tolomeo-rust "
                                  "(see meta-tolomeo-rust/README.md)" % why)
    # A SRCREV that cannot be resolved here (AUTOREV asked for without the network, or without a
    # branch= to follow) skips the recipe with the fetcher's reason instead of stopping the parse.
    try:
        bb.fetch2.get_srcrev(d)
    except bb.fetch2.BBFetchException as e:
        raise bb.parse.SkipRecipe("cannot resolve SRCREV %s of %s: %s"
                                  % (d.getVar("SRCREV"), d.getVar("TOLOMEO_RUST_GIT_URI"), e))
}

inherit cargo cargo-update-recipe-crates systemd useradd

require ${BPN}-crates.inc

# Build only the shipped binaries, not the test kit or xtask.
CARGO_BUILD_FLAGS += "--package cpu-monitor --package can-engine --package modbus-sensors --package tlm \
                      --package tlm-dashboard"

# As .cargo/config.toml does for builds outside Yocto (cargo ignores it when RUSTFLAGS is set):
# packed relative relocations keep 260 KiB of relocation data out of every executable and out
# of every service's resident memory. Needs glibc >= 2.36, which every supported release has;
# a GNU ld too old to pack them for the target (2.40 on aarch64) ignores the flag with a warning.
RUSTFLAGS:append = " -Clink-arg=-Wl,-z,pack-relative-relocs"

TOLOMEO_SERVICES = "cpu-monitor can-engine modbus-sensors"

# tlm-dashboard (package tlm-dashboard, not in packagegroup-tolomeo-rust) is a developer's and
# service technician's tool: it listens on a TCP port (127.0.0.1:8088) and keeps a history
# on the persistent partition, so an image has it only when it asks for it
# (IMAGE_INSTALL:append = " tlm-dashboard"), and it is installed but not started at boot.
# In conf/local.conf or a bbappend:
#   TOLOMEO_DASHBOARD_AUTO_ENABLE = "enable"           start it at every boot
#   TOLOMEO_DASHBOARD_ARGS = "--max-size 64MiB"        its flags, into /etc/default/tlm-dashboard
TOLOMEO_DASHBOARD_AUTO_ENABLE ??= "disable"
TOLOMEO_DASHBOARD_ARGS ??= ""

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${sysconfdir}/tolomeo ${D}${sysconfdir}/default
    for s in ${TOLOMEO_SERVICES}; do
        install -m 0644 ${S}/packaging/systemd/tlm-$s.service ${D}${systemd_system_unitdir}/
        install -m 0644 ${S}/packaging/config/$s.toml ${D}${sysconfdir}/tolomeo/
    done
    install -m 0644 ${S}/packaging/default/tolomeo ${D}${sysconfdir}/default/tolomeo

    install -m 0644 ${S}/packaging/systemd/tlm-dashboard.service ${D}${systemd_system_unitdir}/
    install -m 0644 ${S}/packaging/default/tlm-dashboard ${D}${sysconfdir}/default/tlm-dashboard
    sed -i -e 's|^TLM_DASHBOARD_ARGS=.*|TLM_DASHBOARD_ARGS=${TOLOMEO_DASHBOARD_ARGS}|' \
        ${D}${sysconfdir}/default/tlm-dashboard
}

PACKAGES =+ "tlm-cpu-monitor tlm-can-engine tlm-modbus-sensors tlm tlm-dashboard ${PN}-common"

FILES:${PN}-common += "${sysconfdir}/default/tolomeo"
FILES:tlm += "${bindir}/tlm"
FILES:tlm-cpu-monitor += "${bindir}/tlm-cpu-monitor ${systemd_system_unitdir}/tlm-cpu-monitor.service \
                          ${sysconfdir}/tolomeo/cpu-monitor.toml"
FILES:tlm-can-engine += "${bindir}/tlm-can-engine ${systemd_system_unitdir}/tlm-can-engine.service \
                         ${sysconfdir}/tolomeo/can-engine.toml"
FILES:tlm-modbus-sensors += "${bindir}/tlm-modbus-sensors ${systemd_system_unitdir}/tlm-modbus-sensors.service \
                             ${sysconfdir}/tolomeo/modbus-sensors.toml"
FILES:tlm-dashboard += "${bindir}/tlm-dashboard ${systemd_system_unitdir}/tlm-dashboard.service \
                        ${sysconfdir}/default/tlm-dashboard"

CONFFILES:${PN}-common = "${sysconfdir}/default/tolomeo"
CONFFILES:tlm-cpu-monitor = "${sysconfdir}/tolomeo/cpu-monitor.toml"
CONFFILES:tlm-can-engine = "${sysconfdir}/tolomeo/can-engine.toml"
CONFFILES:tlm-modbus-sensors = "${sysconfdir}/tolomeo/modbus-sensors.toml"
CONFFILES:tlm-dashboard = "${sysconfdir}/default/tlm-dashboard"

RDEPENDS:tlm-cpu-monitor = "${PN}-common"
RDEPENDS:tlm-can-engine = "${PN}-common"
RDEPENDS:tlm-modbus-sensors = "${PN}-common"
# NATS_URL from /etc/default/tolomeo.
RDEPENDS:tlm-dashboard = "${PN}-common"

SYSTEMD_PACKAGES = "tlm-cpu-monitor tlm-can-engine tlm-modbus-sensors tlm-dashboard"
SYSTEMD_SERVICE:tlm-cpu-monitor = "tlm-cpu-monitor.service"
SYSTEMD_SERVICE:tlm-can-engine = "tlm-can-engine.service"
SYSTEMD_SERVICE:tlm-modbus-sensors = "tlm-modbus-sensors.service"
SYSTEMD_SERVICE:tlm-dashboard = "tlm-dashboard.service"
SYSTEMD_AUTO_ENABLE = "enable"
# Not started at boot unless asked for (above): `systemctl start tlm-dashboard` when needed.
SYSTEMD_AUTO_ENABLE:tlm-dashboard = "${TOLOMEO_DASHBOARD_AUTO_ENABLE}"

# One unprivileged system user per service (the units run as User=tlm-<service>).
USERADD_PACKAGES = "tlm-cpu-monitor tlm-can-engine tlm-modbus-sensors tlm-dashboard"
USERADD_PARAM:tlm-cpu-monitor = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group tlm-cpu-monitor"
USERADD_PARAM:tlm-can-engine = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group tlm-can-engine"
USERADD_PARAM:tlm-modbus-sensors = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group tlm-modbus-sensors"
USERADD_PARAM:tlm-dashboard = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group tlm-dashboard"
