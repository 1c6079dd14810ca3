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

# The machine configuration names the persistent mount point, e.g. in conf/machine/<machine>.conf:
#   OVERLAYFS_MOUNT_POINT[data] = "/data"
# and provides the systemd mount unit for it (data.mount); the distro has "overlayfs" (and
# "systemd") in DISTRO_FEATURES. The generated overlay mount units are ordered before the
# services by their RequiresMountsFor=/var/lib/tolomeo /etc/tolomeo.
#
# Adding the layer must not break a build that has no overlayfs configured: the class stops the
# whole parse with bb.fatal when OVERLAYFS_MOUNT_POINT is missing, so skip this recipe first,
# saying why (`bitbake tolomeo-overlay` shows the reason). This function runs before the class's
# own anonymous function because it comes before the inherit.
# nooelint: oelint.task.noanonpython - skipping needs it, and it must run before the class's own
python () {
    if not d.getVarFlag("OVERLAYFS_MOUNT_POINT", "data"):
        todo = ["OVERLAYFS_MOUNT_POINT[data] (e.g. \"/data\") in the MACHINE configuration"]
        missing = [f for f in ("systemd", "overlayfs") if f not in d.getVar("DISTRO_FEATURES").split()]
        if missing:
            todo.append("\"%s\" in DISTRO_FEATURES" % " ".join(missing))
        raise bb.parse.SkipRecipe("overlayfs is not configured: needs %s" % " and ".join(todo))
}

inherit overlayfs

# nooelint: oelint.vars.mispell.unknown - a variable of OE-core's overlayfs class
OVERLAYFS_WRITABLE_PATHS[data] = "/var/lib/tolomeo /etc/tolomeo"

do_install() {
    install -d ${D}${localstatedir}/lib/tolomeo ${D}${sysconfdir}/tolomeo
}

FILES:${PN} += "${localstatedir}/lib/tolomeo ${sysconfdir}/tolomeo"
