"""Smoke checks for the ways clusters and engines start an image: added groups, devices, arbitrary uids.

Kubernetes gives a pod's groups with supplementalGroups and fsGroup (the
engine's --group-add), hands hardware in as device nodes (--device), and
OpenShift starts images as an arbitrary uid with gid 0 under a restricted
profile. Each must work after the entrypoint steps down, under every engine.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from builder.core.engine import IDENTITY
from builder.smoke.checks.kit import IDS, Case, Ctx, arch_independent

DEVICE = "/dev/dri/renderD128"
RESTRICTED = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
# The restricted profile's random uid: one every engine here maps (rootless podman maps 65536 ids).
ARBITRARY_UIDS = (20000, 60000)


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("entrypoint:")]


def groups_kept(c: Ctx):
    """Groups the engine adds (--group-add; Kubernetes supplementalGroups) stay the app's after the step down."""
    script = 'echo "$(id -un) $(id -G)"; grep "^group-add-4242:" /etc/group'
    adds = ["--group-add", "44", "--group-add", "4242"]
    for env, gid in (([], c.s.ops_gid), (["-e", "USER_ID=2000"], 2000)):
        p = c.run("sh", "-c", script, opts=[*adds, *env])
        first, _, entry = p.stdout.strip().partition("\n")
        name, *groups = first.split() or ["(nothing)"]
        if p.returncode != 0 or name != c.s.ops_user or set(groups) != {str(gid), "44", "4242"} \
                or entry != f"group-add-4242:x:4242:{c.s.ops_user}" or _lines(p.stderr):
            c.fail(f"--group-add kept {' '.join(env)}".strip(),
                   f"exit {p.returncode}, stdout {p.stdout.strip()!r}, stderr {p.stderr.strip()!r}")
    # --read-only: nothing can be written, so the one line names the start that needs no change.
    p = c.run("sh", "-c", IDS, opts=[*adds, "--read-only"])
    lines = _lines(p.stderr)
    if p.returncode != 0 or p.stdout.strip() != c.ops or len(lines) != 1 or "read-only" not in lines[0] \
            or f"--user {c.s.ops_uid}:{c.s.ops_gid} --group-add 44 --group-add 4242" not in lines[0]:
        c.fail("--group-add under --read-only", f"exit {p.returncode}, stdout {p.stdout.strip()!r}, "
                                                f"stderr {p.stderr.strip()!r}")


@contextmanager
def _device(gid: int):
    """A host character device like /dev/null (1:3), root:gid, mode 0660: a GPU render node's shape."""
    d = Path(tempfile.mkdtemp(prefix="smoke-dev-"))
    try:
        d.chmod(0o755)
        node = d / "render"
        os.mknod(node, 0o660 | 0o020000, os.makedev(1, 3))
        os.chown(node, 0, gid)
        node.chmod(0o660)
        yield node
    finally:
        shutil.rmtree(d, ignore_errors=True)


@arch_independent
def device_groups(c: Ctx):
    """A device passed in (--device) can be opened: the app joins its group, saying so; DEVICE_GROUPS=no stops it.
    Under a user namespace the host group shows unmapped and the line names the fix instead."""
    with _device(4711) as node:
        # dockerd --userns-remap binds a device from the host path it has inside (runc in a user namespace
        # cannot mknod): there it keeps its host path.
        path = str(node) if c.engine.mode == "docker-userns" else DEVICE
        write, dev = f"echo x > {path} && id -G", ["--device", f"{node}:{path}"]
        if c.engine.idmap != IDENTITY:
            p = c.run("sh", "-c", write, opts=dev)
            lines = _lines(p.stderr)
            if len(lines) != 1 or "host group this container cannot map" not in lines[0] or path not in lines[0]:
                c.fail("unmapped device group", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
        else:
            # DEVICE_GROUPS=no changes nothing, so the start that joins the group follows it in one container.
            off, p = c.starts([Case.of("sh", "-c", write, DEVICE_GROUPS="no"), Case.of("sh", "-c", write)],
                              opts=dev)
            lines = _lines(p.stderr)
            want = f"entrypoint: {path} (group device-4711, gid 4711): {c.s.ops_user} joins it to open the device"
            if p.returncode != 0 or "4711" not in p.stdout.split() or len(lines) != 1 \
                    or not lines[0].startswith(want):
                c.fail("device group joined", f"exit {p.returncode}, stdout {p.stdout.strip()!r}, "
                                              f"stderr {p.stderr.strip()!r}")
            if off.returncode == 0 or _lines(off.stderr):
                c.fail("DEVICE_GROUPS=no", f"exit {off.returncode}, stderr {off.stderr.strip()!r}")
    with _device(0) as node:
        path = str(node) if c.engine.mode == "docker-userns" else DEVICE
        p = c.run("id", "-G", opts=["--device", f"{node}:{path}"])
        lines = _lines(p.stderr)
        if p.returncode != 0 or "0" in p.stdout.split() or len(lines) != 1 or path not in lines[0]:
            c.fail("root-group device not granted", f"exit {p.returncode}, stdout {p.stdout.strip()!r}, "
                                                    f"stderr {p.stderr.strip()!r}")


def _as_uid(c: Ctx, check: str, user: str, *opts: str) -> list[str]:
    """(HOME, whoami or '-', id -un or '-', LD_PRELOAD or '-') of a start as `user`; it must write /app and HOME."""
    script = ('touch /app/.w "$HOME/.w" || exit 9; echo "$HOME"; '
              'for c in whoami "id -un"; do n=$($c 2>/dev/null) || n=-; echo "$n"; done; echo "${LD_PRELOAD:--}"')
    p = c.run("sh", "-c", script, opts=["--user", user, *opts])
    out = p.stdout.split()
    if p.returncode != 0 or len(out) != 4 or p.stderr.strip():
        c.fail(check, f"exit {p.returncode} (9: /app or HOME not writable), stdout {p.stdout.strip()!r}, "
                      f"stderr {p.stderr.strip()!r}")
    return out


def _arbitrary(c: Ctx, uid: int) -> list[str]:
    """What a start as uid:0 without an account must show: (HOME, the name whoami and id -un give). podman
    writes an account of its own for such a uid (named after it, home the workdir); docker leaves it to
    the image: the image user's home, and its name where nss_wrapper is in the image (glibc)."""
    if c.engine.binary == "podman":
        return ["/app", str(uid)]
    return [f"/home/{c.s.ops_user}", c.s.ops_user if c.s.names_any_uid else "-"]


def arbitrary_uid(c: Ctx):
    """--user <uid>:0 with no account (OpenShift): HOME is not /, /app and HOME are writable, whoami and
    id -un name the uid where the image can; --user 10001 runs exactly as before."""
    home, name = _arbitrary(c, 4242)
    got = _as_uid(c, "--user 4242:0", "4242:0")
    if got[:3] != [home, name, name]:
        c.fail("--user 4242:0", f"HOME, whoami, id -un: {got[:3]}, want {[home, name, name]}")
    if c.engine.binary != "podman":  # podman's own account needs no passwd of ours, and it mounts /tmp
        # --read-only with no writable /tmp: the app still starts, and the one line says what to mount.
        p = c.run("true", opts=["--user", "4242:0", "--read-only"])
        lines = _lines(p.stderr)
        if p.returncode != 0 or len(lines) != int(c.s.names_any_uid) \
                or (lines and "mount a writable /tmp" not in lines[0]):
            c.fail("--user 4242:0 --read-only", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    got = _as_uid(c, f"--user {c.s.ops_uid}", str(c.s.ops_uid))
    if got != [f"/home/{c.s.ops_user}", c.s.ops_user, c.s.ops_user, "-"]:
        c.fail(f"--user {c.s.ops_uid} unchanged", f"HOME, whoami, id -un, LD_PRELOAD: {got}")


def restricted_profile(c: Ctx):
    """Kubernetes' restricted Pod Security profile: runAsUser 10001, readOnlyRootFilesystem, no privilege
    escalation, every capability dropped; and OpenShift's random uid with gid 0 (a /tmp emptyDir), whose HOME
    must be writable."""
    c.expect("restricted profile, --user 10001:10001",
             c.run("sh", "-c", IDS, opts=["--user", f"{c.s.ops_uid}:{c.s.ops_gid}", *RESTRICTED]), c.ops)
    uid = random.randint(*ARBITRARY_UIDS)
    p = c.run("sh", "-c", 'n=$(id -un 2>/dev/null) || n=-; echo "$HOME $n"; echo x > /tmp/x; touch "$HOME/.w"',
              opts=["--user", f"{uid}:0", *RESTRICTED, "--tmpfs", "/tmp"])
    _, name = _arbitrary(c, uid)
    # The read-only root leaves the home docker (the image user's) or podman (the workdir) gives unwritable:
    # the entrypoint gives the writable /tmp under both.
    want = f"/tmp {name}"
    if p.returncode != 0 or p.stdout.strip() != want or p.stderr.strip():
        c.fail(f"restricted profile, --user {uid}:0", f"exit {p.returncode}, stdout {p.stdout.strip()!r} "
                                                      f"(want {want!r}), stderr {p.stderr.strip()!r}")


# The kernel marks an idmapped mount in its per-mount options (show_mnt_opts: ",idmapped"). The engines
# here cannot make one (podman needs crun on a pure cgroup v2 host), so the shipped entrypoint reads the
# container's own mountinfo with that option added to /data's line: every other byte is as it runs.
IDMAPPED = ('sed "s#^\\([^ ]* [^ ]* [^ ]* [^ ]* /data \\)\\([^ ]*\\)#\\1\\2,idmapped#" /proc/self/mountinfo >/tmp/mi; '
            'sed "s#/proc/self/mountinfo#/tmp/mi#" /usr/local/bin/entrypoint >/tmp/ep; '
            'grep -c " /data rw,[^ ]*,idmapped " /tmp/mi >/dev/null || exit 7; '
            'USER_ID=3000 CHOWN_PATHS=/data exec sh /tmp/ep stat -c %u /data/f')


@arch_independent
def idmapped_mount_left_alone(c: Ctx):
    """An idmapped mount already shows the app ids of its own: CHOWN_PATHS leaves it, saying so, and the
    mount check does not warn about it."""
    with c.host_dir(0) as d:
        (d / "f").write_text("x")
        c.chown(d / "f", 0)
        p = c.run("-c", IDMAPPED, opts=["--entrypoint", "sh", "-v", f"{d}:/data"])
        lines = _lines(p.stderr)
        want = "entrypoint: CHOWN_PATHS entry '/data' is on an idmapped mount (/data)"
        if p.returncode != 0 or p.stdout.strip() != "0" or len(lines) != 1 or not lines[0].startswith(want) \
                or c.owner(d / "f")[0] != c.host(0):
            c.fail("idmapped mount left alone", f"exit {p.returncode} (7: no /data line to mark), "
                                                f"stdout {p.stdout.strip()!r}, stderr {p.stderr.strip()!r}")


CHECKS = (groups_kept, device_groups, arbitrary_uid, restricted_profile, idmapped_mount_left_alone)
