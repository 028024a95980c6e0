"""How a Debian minbase tree is made for a base: mmdebstrap or debootstrap (`local.debian_bootstrap`), emulated
(the arch's own maintainer scripts, under qemu for a foreign arch) or chrootless (`local.debian_mode`: the host's
dpkg and /bin/sh with DPKG_ROOT set, then TARGET_STEPS by the tree's own programs). rootfs.py packs and caches the
tree as a layer.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from builder.core import emulation
from builder.core.host import SetupError, apt_install
from builder.config.settings import CHROOTLESS, EMULATED

TOOLS = ("mmdebstrap", "debootstrap")
# local.debian_mode. Emulated: the arch's own maintainer scripts run, under qemu for a foreign arch. Chrootless:
# the host's dpkg installs the tree with DPKG_ROOT set and the scripts run under the host's /bin/sh, with no
# emulator; Debian made its essential packages installable that way (bookworm and later; bullseye's are not).
# Who runs a chrootless bootstrap (nobody): see chrootless_tree.
UNPRIVILEGED = 65534
# What a chrootless install takes from the host's tools where the target's own would give another result: the
# host's `ldconfig -r` does not index a foreign arch's libraries (ld.so.cache is empty: the loader still finds
# minbase's libraries on its default path, but `ldconfig -p`, which ctypes.util.find_library reads, lists
# none), trixie's pam-auth-update --root reads the host's /usr/share/pam templates (no pam_umask line on a
# bookworm host), and the host's update-shells writes its own version's /etc/shells. Run once more by the
# tree's own programs, they give what an emulated bootstrap gives.
TARGET_STEPS = (("/sbin/ldconfig",), ("/usr/sbin/update-shells",), ("/usr/sbin/pam-auth-update", "--package"))
# What TARGET_STEPS leave besides their result, put back as it was: debconf's backup of its database (pam-auth-update
# rewrites the database unchanged) and ldconfig's aux cache (inodes and times; mmdebstrap removes it too).
STEPS_BOOKKEEPING = ("var/cache/debconf/config.dat-old", "var/cache/debconf/templates.dat-old",
                     "var/cache/ldconfig/aux-cache")
# apt's download directories: mmdebstrap's tar output has them owned by _apt, its root mode into a directory
# (emulated) by root; apt gives them to _apt on its first download either way. Root's, the trees are the same.
APT_PARTIAL = ("var/cache/apt/archives/partial", "var/lib/apt/lists/partial")
# Where _dev_date_hook notes the date of the tree's ./dev, beside the tar.
DEV_DATE = "dev-date"
# The host's packages a chrootless tree depends on: part of its layer's key.
HOST_TOOLS = ("mmdebstrap", "dpkg", "apt", "fakeroot", "debianutils", "base-passwd", "libpam-runtime", "debconf")

class Refused(SetupError):
    """A chrootless bootstrap cannot make this suite/arch: a maintainer script needs the target's own binaries."""


def bootstrap_command(tool: str, suite: str, arch: str, target: Path, mirror: str, mode: str = EMULATED) -> list[str]:
    if tool == "mmdebstrap":
        # Emulated: root mode, the tree written as root, as debootstrap does, so both tools do the same work.
        # Chrootless: `target` is a tar (see chrootless_tree). The hook merges /usr the way debootstrap does;
        # without it bookworm gets the usrmerge package and with it a full perl (13 MB more, compressed).
        return ["mmdebstrap", "--mode=chrootless" if mode == CHROOTLESS else "--mode=root", "--variant=minbase",
                f"--arch={arch}", "--hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr",
                *([_dev_date_hook(target)] if mode == CHROOTLESS else []), suite, str(target), mirror]
    if tool == "debootstrap":
        if mode == CHROOTLESS:
            raise SetupError("debootstrap has no chrootless mode: set local.debian_mode to emulated, or "
                             "local.debian_bootstrap to mmdebstrap")
        return ["debootstrap", "--variant=minbase", f"--arch={arch}", suite, str(target), mirror]
    raise SetupError(f"local.debian_bootstrap is {tool!r}: use one of {', '.join(TOOLS)}")


def _dev_date_hook(tar: Path) -> str:
    """mmdebstrap's tar leaves the tree's ./dev out and writes one of its own, dated SOURCE_DATE_EPOCH; the tree's
    date (base-files', which dpkg left on it, as an emulated bootstrap keeps it) is noted beside the tar."""
    return f"--customize-hook=stat -c %Y \"$1/dev\" > {shlex.quote(str(tar.parent / DEV_DATE))}"


def install_tools(tool: str, log, mode: str = EMULATED) -> None:
    """The bootstrap tool (and fakeroot, chrootless). Before a layer's key is read: it names their versions."""
    apt_install([tool, *(["fakeroot"] if mode == CHROOTLESS else [])], log)


def prepare(tool: str, arch_names: list[str], log, mode: str = EMULATED) -> None:
    """The bootstrap tool and the qemu handler of each arch, installed and switched on once, before bootstraps
    run side by side (each then finds them in place)."""
    install_tools(tool, log, mode)
    # Emulated, the arch's own maintainer scripts run; chrootless, only TARGET_STEPS do.
    emulation.ensure(arch_names, log, "seed", install=lambda pkgs: apt_install(pkgs, log))


def _fetch_options(tool: str, cmd: list[str]) -> list[str]:
    if tool == "mmdebstrap":
        # How packages are fetched and how much is said, not which: out of the layer's key (bootstrap_command).
        # apt retries a dropped connection to the mirror rather than failing the seed, and its error lines,
        # which --quiet would hide, name what failed.
        return [cmd[0], "--aptopt=Acquire::Retries \"3\"", *cmd[1:]]
    return cmd


def bootstrap(tool: str, suite: str, arch: str, mirror: str, target: Path, epoch: int, log) -> None:
    """A Debian minbase tree in `target` (which must not exist yet), built by `tool` with the arch's own
    maintainer scripts (under qemu for a foreign arch)."""
    cmd = _fetch_options(tool, bootstrap_command(tool, suite, arch, target, mirror))
    prepare(tool, [arch], log)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if p.returncode != 0:
        raise SetupError(bootstrap_failure(tool, suite, arch, mirror, p.returncode, p.stdout.decode(errors="replace")))


def chrootless_tree(suite: str, arch: str, mirror: str, work: Path, epoch: int, log) -> Path:
    """A Debian minbase tree in work/root, installed by the host's dpkg with DPKG_ROOT set: no emulator runs the
    maintainer scripts. Raises Refused when one of them cannot run that way."""
    prepare("mmdebstrap", [arch], log, CHROOTLESS)
    # In the system's temporary directory: nobody may be unable to reach `work` (a cache under a private one).
    unprivileged = Path(tempfile.mkdtemp(prefix=f"mmdebstrap-chrootless-{arch}-"))
    try:
        tar = _unprivileged_bootstrap(suite, arch, mirror, unprivileged, epoch)
        dev_date = int((unprivileged / DEV_DATE).read_text())
        root = work / "root"
        root.mkdir()
        # With its device nodes: TARGET_STEPS write to /dev/null (the layer leaves dev/ out).
        subprocess.run(["tar", "--numeric-owner", "--same-owner", "-xpf", str(tar), "-C", str(root)], check=True)
    finally:
        shutil.rmtree(unprivileged, ignore_errors=True)
    start = time.monotonic()
    run_target_steps(root, arch)
    os.utime(root / "dev", (dev_date, dev_date))
    log.write(f"seed: {suite} {arch}: the tree's own {', '.join(s[0].rsplit('/', 1)[1] for s in TARGET_STEPS)}: "
              f"{time.monotonic() - start:.1f} s\n")
    return root


def _unprivileged_bootstrap(suite: str, arch: str, mirror: str, work: Path, epoch: int) -> Path:
    """The chrootless tree as a tar in `work`, made by nobody under fakeroot."""
    tar = work / "root.tar"
    cmd = _fetch_options("mmdebstrap", bootstrap_command("mmdebstrap", suite, arch, tar, mirror, CHROOTLESS))
    # A maintainer script that ignores DPKG_ROOT acts on the host's / (bullseye's base-passwd rewrites
    # /etc/shadow): as nobody it fails on the host's files instead of changing them, and fakeroot records the
    # owners the tree should have in the tar, which root then unpacks as they are.
    os.chown(work, UNPRIVILEGED, UNPRIVILEGED)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "HOME": str(work), "TMPDIR": str(work)}
    p = subprocess.run(["setpriv", f"--reuid={UNPRIVILEGED}", f"--regid={UNPRIVILEGED}", "--clear-groups",
                        "fakeroot", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=work)
    output = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        scripts = failed_scripts(output)
        if scripts and not re.search(r"Failed to fetch \S+\s+404", output):
            raise Refused(refusal(suite, arch, scripts))
        raise SetupError(bootstrap_failure("mmdebstrap", suite, arch, mirror, p.returncode, output))
    return tar


def run_target_steps(root: Path, arch: str) -> None:
    """TARGET_STEPS, by the tree's own programs, chrooted (the binfmt handler runs a foreign arch's)."""
    kept = {path: (root / path).read_bytes() if (root / path).is_file() else None for path in STEPS_BOOKKEEPING}
    for step in TARGET_STEPS:
        if (root / step[0].lstrip("/")).exists():
            p = subprocess.run(["chroot", str(root), *step], capture_output=True, text=True,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})
            if p.returncode != 0:
                raise SetupError(f"seed: {' '.join(step)} in the chrootless {arch} tree failed (exit {p.returncode}): "
                                 f"{(p.stderr or p.stdout).strip()[-300:]}")
    _put_back(root, kept)
    for path in APT_PARTIAL:
        if (root / path).is_dir():
            os.chown(root / path, 0, 0)


def _put_back(root: Path, kept: dict[str, bytes | None]) -> None:
    for path, data in kept.items():
        if data is None:
            (root / path).unlink(missing_ok=True)
        else:
            (root / path).write_bytes(data)


def failed_scripts(output: str) -> list[tuple[str, str]]:
    """(package, which script) of each maintainer script dpkg reports failing, in order, once each."""
    found = re.findall(r"dpkg: error processing (?:archive|package) \S+ \(--\w+\):\n\s*(?:new |installed )?"
                       r"([^\s:]+)(?::\S+)? package (\S+) script", output)
    return list(dict.fromkeys(found))


def refusal(suite: str, arch: str, scripts: list[tuple[str, str]]) -> str:
    (package, script), more = scripts[0], list(dict.fromkeys(p for p, _ in scripts[1:] if p != scripts[0][0]))
    also = f"; so do {len(more)} more: {', '.join(more)}" if more else ""
    return (f"mmdebstrap --mode=chrootless cannot make Debian {suite} {arch}: the {script} script of {package} "
            f"fails without the target's own binaries (it is not DPKG_ROOT-safe){also}. Allow emulation for it "
            f"with local.emulation_fallback ({suite} or {suite}/{arch}), or set local.debian_mode to emulated")


def bootstrap_failure(tool: str, suite: str, arch: str, mirror: str, code: int, output: str) -> str:
    """What went wrong, in apt's own error lines rather than the tail of a long log."""
    head = f"{tool} of Debian {suite} {arch} failed (exit {code})"
    missing = re.findall(r"Failed to fetch (\S+)\s+404", output)
    if missing:
        # Seen on mirrors mid-sync or mirrored in part: the index names a point release whose files some
        # arches do not have yet. apt fails the same way; no retry helps until the mirror catches up.
        return (f"{head}: {mirror} lists {len(missing)} {suite} {arch} package(s) it does not serve (404), "
                f"e.g. {missing[0].rsplit('/', 1)[-1]}: the mirror lacks part of {suite} for {arch}. Point "
                f"local.debian_mirror at a complete mirror, or build a release whose stand-in suite it serves "
                f"(invoke releases)")
    errors = [line for line in output.splitlines() if line.startswith(("E:", "Err:"))]
    return f"{head}: " + ("\n".join(errors[-8:]) if errors else output[-600:])


def host_tools() -> str:
    """The host's packages whose programs shape a chrootless tree (dpkg unpacks it, the maintainer scripts run
    the host's helpers), as dpkg lists them now: read each time, since a run may install or upgrade them."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *HOST_TOOLS], capture_output=True,
                       text=True)
    return p.stdout
