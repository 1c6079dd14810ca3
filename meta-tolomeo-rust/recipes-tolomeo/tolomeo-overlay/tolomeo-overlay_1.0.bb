SUMMARY = "Persistent, writable state and configuration for the ToloMEO services"
DESCRIPTION = "Puts /var/lib/tolomeo (the services' state and spool) and /etc/tolomeo (their \
               configuration) on an overlay whose upper layer is on the device's persistent \
               partition, so they survive reboots on a read-only root file system."
HOMEPAGE = "https://example.invalid/tolomeo-rust"
BUGTRACKER = "https://example.invalid/tolomeo-rust/issues"
SECTION = "base"
LICENSE = "MIT"
# nooelint: oelint.var.licenseremotefile - no sources: the recipe only configures mounts
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"
CVE_PRODUCT = ""

# Nothing to fetch: the recipe only configures mounts.
SRC_URI = ""

inherit overlayfs

# The machine configuration names the persistent mount point, e.g. in conf/machine/<machine>.conf:
#   OVERLAYFS_MOUNT_POINT[data] = "/data"
# and provides the systemd mount unit for it (data.mount). The generated overlay mount units
# are ordered before the services by their RequiresMountsFor=/var/lib/tolomeo /etc/tolomeo.
# nooelint: oelint.vars.mispell.unknown - a variable of OE-core's overlayfs class
OVERLAYFS_WRITABLE_PATHS[data] = "/var/lib/tolomeo /etc/tolomeo"

do_install() {
    install -d ${D}${localstatedir}/lib/tolomeo ${D}${sysconfdir}/tolomeo
}

FILES:${PN} += "${localstatedir}/lib/tolomeo ${sysconfdir}/tolomeo"
