# Where tolomeo-rust's sources are by default: the git checkout of the tolomeo-rust repository that
# this layer is part of (meta-tolomeo-rust/..), at the commit it has checked out. Inherited by
# tolomeo-rust (SRC_URI, SRCREV) and packagegroup-tolomeo-rust (in world only with a source).
# See README.md, "Where the sources come from".

TOLOMEO_RUST_CHECKOUT ?= "${@os.path.dirname(d.getVar('TOLOMEO_RUST_LAYERDIR') or '')}"
# Where the checkout is does not change what is built (the commit does): keep the path out of the
# task signatures, so that every checkout of the same commit shares sstate.
TOLOMEO_RUST_CHECKOUT[vardepvalue] = "the tolomeo-rust checkout"

def tolomeo_checkout_rev(d):
    """(commit, files that change when HEAD moves, why there is none) of TOLOMEO_RUST_CHECKOUT."""
    import subprocess
    top = d.getVar("TOLOMEO_RUST_CHECKOUT")
    if not top or not os.path.isfile(os.path.join(top, "Cargo.lock")):
        return ("", [], "%s is not the tolomeo-rust workspace (no Cargo.lock)" % top)

    def git(*args):
        return subprocess.run(["git", "-C", top, "rev-parse"] + list(args), check=True,
                              capture_output=True, text=True).stdout.split("\n")
    try:
        toplevel, gitdir, common, ref = git("--show-toplevel", "--absolute-git-dir",
                                            "--git-common-dir", "--symbolic-full-name", "HEAD")[:4]
        rev = git("--verify", "HEAD^{commit}")[0]
    except (OSError, subprocess.CalledProcessError) as e:
        return ("", [], "%s is not a git checkout: %s"
                % (top, (getattr(e, "stderr", None) or str(e)).strip()))
    if os.path.realpath(toplevel) != os.path.realpath(top):
        return ("", [], "%s is not the top of a git checkout (%s is)" % (top, toplevel))
    common = os.path.join(top, common)
    files = [os.path.join(gitdir, "HEAD"), os.path.join(common, "packed-refs")]
    if ref.startswith("refs/"):
        files.append(os.path.join(common, ref))
    return (rev, files, "")

def tolomeo_rust_source_configured(d):
    """Whether the configuration gives tolomeo-rust a source: the checkout, or a server set in
    the configuration (a bbappend of tolomeo-rust is not visible from other recipes)."""
    return bool(d.getVar("TOLOMEO_RUST_GIT_URI") or d.getVar("SRCREV:pn-tolomeo-rust")
                or tolomeo_checkout_rev(d)[0])
