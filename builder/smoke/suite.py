"""The smoke stage: prove in real containers that each image behaves.

Every check runs the image with --network none and raises SmokeFailure naming
the image, the check and what it saw. `invoke smoke` and the pytest suite run
this same list, under docker and, where they apply, podman (rootful and
rootless) and a user-namespaced dockerd: CHECKS everywhere, USERNS_CHECKS
where the engine has a user namespace.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from builder.smoke import schedule
from builder.smoke.checks import probe, runtime as smoke_runtime, userns as smoke_userns, volumes as smoke_volumes
from builder.core import emulation
from builder.core.arches import GOARCH, UNAME
from builder.core.engine import IDENTITY, Engine
from builder.smoke.checks.kit import IDS, Case, Ctx, SmokeFailure, Subject, alone, arch_independent, shared_only

__all__ = ["CHECKS", "USERNS_CHECKS", "IDS", "Case", "Ctx", "SmokeFailure", "Subject", "run_all", "checks_for"]


@shared_only(probe.IMAGE_PROBE)
def gosu_version(c: Ctx):
    """gosu runs, is the verified version, and was built for the image's arch (Go names its target)."""
    p = probe.result(c, "gosu --version")
    want = c.s.gosu_version.split("-")[0]
    if p.returncode != 0 or p.stdout.split()[:1] != [want]:
        c.fail("gosu version", f"`gosu --version` said {p.stdout.strip()!r}, want {want}")
    target = f"linux/{GOARCH[c.s.arch]};"
    if target not in p.stdout.split():
        c.fail("gosu's target", f"`gosu --version` said {p.stdout.strip()!r}, want a build for {target.rstrip(';')}")


@shared_only(probe.IMAGE_PROBE)
def gosu_sha256(c: Ctx):
    p = probe.result(c, "sha256sum gosu")
    if p.stdout.split()[:1] != [c.s.gosu_sha256]:
        c.fail("gosu sha256", f"image has {p.stdout.strip()[:64]!r}, verified binary is {c.s.gosu_sha256}")


@shared_only(probe.IMAGE_PROBE)
def gosu_not_setuid(c: Ctx):
    c.expect("gosu mode 0755, not setuid", probe.result(c, "stat gosu"), "755 root")


@shared_only(probe.IMAGE_PROBE)
def default_user(c: Ctx):
    c.expect("default user", probe.result(c, "default user"), f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


@shared_only(probe.IMAGE_PROBE)
def uname_matches_arch(c: Ctx):
    """The container runs as its arch: the kernel (or qemu) reports that machine. An arch this host runs
    without emulation (i386 on x86-64) reports the host's own machine: engines set no 32-bit personality."""
    native = c.s.arch in emulation.ALSO_NATIVE.get(emulation.native_arch(), ())
    c.expect("uname -m", probe.result(c, "uname -m"), UNAME[emulation.native_arch()] if native else UNAME[c.s.arch])


def user_id_remap(c: Ctx):
    c.expect("USER_ID/GROUP_ID remap", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=2345", "-e", "GROUP_ID=3456"]),
             f"2345:3456:{c.s.ops_user}")
    c.expect("GROUP_ID defaults to USER_ID", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=2345"]),
             f"2345:2345:{c.s.ops_user}")


def mount_owner_remap(c: Ctx):
    with c.host_dir(4321, 4322, 0o700) as d:
        c.expect("remap to mount owner", c.run("sh", "-c", f"{IDS}; echo hi > /app/made; mkdir /app/sub",
                                               opts=["-v", f"{d}:/app"]), f"4321:4322:{c.s.ops_user}")
        want = (c.host(4321), c.host(4322))
        for name in ("made", "sub"):
            if c.owner(d / name) != want:
                c.fail("files on the volume", f"{name} is owned by {c.owner(d / name)} on the host, want {want}")
        c.expect("MAP_NODE_UID=no", c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app", "-e", "MAP_NODE_UID=no"]),
                 c.ops)


@arch_independent
def root_owned_mount_keeps_default(c: Ctx):
    with c.host_dir(0) as d:
        p = c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app"])
        if c.engine.rootless:
            # Root here is the invoking host user: /app is theirs, ops could not write it, so the start stops.
            if p.returncode == 0 or "--userns=keep-id:uid=" not in p.stderr:
                c.fail("rootless: your own directory at /app", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
        else:
            c.expect("root-owned mount", p, c.ops)


@arch_independent
def user_flag(c: Ctx):
    p = c.expect("--user start", c.run("sh", "-c", "id -u; id -g", opts=["--user", "1000:1000"]), "1000\n1000")
    if p.stderr.strip():
        c.fail("--user start", f"unexpected stderr {p.stderr.strip()!r}")


@arch_independent
@shared_only(probe.SCRIPT_PROBE)
def bad_values_refused(c: Ctx):
    """Each refused before it changes anything, so the refusals share the probe container."""
    for var, v in probe.BAD:
        p = probe.result(c, f"{var}={v}")
        if p.returncode == 0 or f"{var}='{v}'" not in p.stderr:
            c.fail("bad value refused", f"{var}={v!r}: exit {p.returncode}, stderr {p.stderr.strip()!r}")
    root = probe.result(c, "USER_ID=0")
    if root.returncode == 0 or "ALLOW_ROOT_ID=1" not in root.stderr:
        c.fail("uid 0 refused", f"exit {root.returncode}, stderr {root.stderr.strip()!r}")
    c.expect("uid 0 with ALLOW_ROOT_ID=1", probe.result(c, "USER_ID=0 ALLOW_ROOT_ID=1"), "0")
    # Refused before anything changed: the container's filesystem diff is a bare start's.
    c.unchanged("nothing changed on refusal", probe.changes(c))


@arch_independent
def id_collisions(c: Ctx):
    # ubuntu:24.04 ships ubuntu 1000:1000; alpine has guest 405 and group users 100.
    p = c.run("sh", "-c", f"{IDS}; {probe.ACCOUNTS}", opts=["-e", "USER_ID=1000"])
    ids, _, accounts = p.stdout.partition("\n")
    c.expect("uid 1000 collision", subprocess.CompletedProcess(p.args, p.returncode, ids, p.stderr),
             f"1000:1000:{c.s.ops_user}")
    c.expect("uid 405/gid 100 collision", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=405", "-e", "GROUP_ID=100"]),
             f"405:100:{c.s.ops_user}")
    c.expect("other accounts intact", subprocess.CompletedProcess(p.args, p.returncode, accounts, p.stderr),
             probe.result(c, "accounts").stdout.strip())


@arch_independent
def restart_idempotent(c: Ctx):
    with c.named() as name:
        c.engine.run("create", "--name", name, "--network", "none", "--platform", c.s.platform, "-e", "USER_ID=2000",
                     c.s.runs, "sh", "-c",
                     f"{IDS}; grep -c '^{c.s.ops_user}:' /etc/passwd; md5sum /etc/passwd /etc/group")
        outs = [c.engine.run("start", "-a", name).stdout.strip() for _ in range(2)]
        if outs[0] != outs[1] or not outs[0].startswith(f"2000:2000:{c.s.ops_user}\n1\n"):
            c.fail("restart idempotency", f"first start {outs[0]!r}, second {outs[1]!r}")


@arch_independent
def read_only_root(c: Ctx):
    """On a read-only root nothing can change, so both starts share one container."""
    p, plain = c.starts([Case.of("sh", "-c", 'echo "$(id -u):$(id -g) $HOME"', USER_ID="1234"),
                         Case.of("sh", "-c", IDS)], opts=["--read-only"])
    warnings = [l for l in p.stderr.splitlines() if "warning" in l]
    if p.returncode != 0 or p.stdout.strip() != f"1234:1234 /home/{c.s.ops_user}" or len(warnings) != 1 \
            or "read-only" not in warnings[0]:
        c.fail("--read-only", f"exit {p.returncode}, stdout {p.stdout.strip()!r}, stderr {p.stderr.strip()!r}")
    p = c.expect("--read-only, no remap", plain, f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")
    if p.stderr.strip():
        c.fail("--read-only, no remap", f"unexpected stderr {p.stderr.strip()!r}")


@arch_independent
def cap_drop_all(c: Ctx):
    p = c.run("true", opts=["--cap-drop", "ALL"])
    if p.returncode == 0 or "--cap-add SETUID --cap-add SETGID" not in p.stderr or "--user" not in p.stderr:
        c.fail("--cap-drop ALL", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")


@arch_independent
def no_new_privileges(c: Ctx):
    c.expect("no-new-privileges", c.run("sh", "-c", IDS, opts=["--security-opt", "no-new-privileges"]),
             f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


@arch_independent
def stdio_writable(c: Ctx):
    p = c.run("sh", "-c", "echo out > /dev/stdout && echo err > /dev/stderr && stat -c %U /dev/null")
    out, _, null_owner = p.stdout.strip().partition("\n")
    if p.returncode != 0 or out != "out" or p.stderr.strip() != "err":
        c.fail("/dev/stdout and /dev/stderr writable", f"exit {p.returncode}, {p.stdout!r}, {p.stderr!r}")
    p = c.run("sh", "-c", 'echo tty > "$(tty)"', opts=["-t"])
    if p.returncode != 0 or p.stdout.strip() != "tty":
        c.fail("tty writable", f"exit {p.returncode}, {p.stdout!r}")
    # Rootless engines bind the host's /dev/null, which shows as nobody: compare with the image's view of it.
    want = probe.result(c, "/dev/null owner").stdout.strip()
    if null_owner != want:
        c.fail("/dev/null untouched", f"/dev/null owner {null_owner!r}, want {want!r}")


@alone  # `stop --time 2` on a busy host can outlast the grace period: a verdict about timing
def pid1_and_stop(c: Ctx):
    """The app is PID 1 and gets SIGTERM: with --time 2, only a handled TERM exits 42 (SIGKILL gives 137)."""
    app = 'trap "exit 42" TERM; echo "pid $$"; while :; do sleep 0.1; done'
    with c.named() as name:
        c.engine.run("run", "-d", "--name", name, "--network", "none", "--platform", c.s.platform, c.s.runs,
                     "sh", "-c", app)
        deadline = time.monotonic() + 60
        while "pid" not in (logs := c.engine.run("logs", name).stdout) and time.monotonic() < deadline:
            time.sleep(0.2)
        if logs.strip() != "pid 1":
            c.fail("app is PID 1", f"app reported {logs.strip()!r}")
        procs = c.engine.top(name)
        if "gosu" in procs:
            c.fail("gosu is gone", procs)
        c.engine.run("stop", "--time", "2", name)
        code = c.engine.run("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        if code != "42":
            c.fail("docker stop delivers SIGTERM", f"exit code {code} (137 means it was killed after 2 s)")


def chown_paths(c: Ctx):
    with c.host_dir(0) as d:
        os.makedirs(d / "a" / "b")
        (d / "a" / "b" / "f").write_text("x")
        os.symlink("/etc/passwd", d / "a" / "link")
        for p in d.rglob("*"):
            os.lchown(p, c.host(0), c.host(0))
        c.expect("CHOWN_PATHS", c.run("true", opts=["-v", f"{d}:/data", "-e", "USER_ID=3000",
                                                    "-e", "CHOWN_PATHS=/data"]))
        owners = {p.name: c.owner(p) for p in [d, *d.rglob("*")]}
        if set(owners.values()) != {(c.host(3000), c.host(3000))}:
            c.fail("CHOWN_PATHS", f"owners after chown: {owners}")
        if os.stat("/etc/passwd").st_uid != 0:
            c.fail("CHOWN_PATHS never follows symlinks", "host /etc/passwd changed owner")
    with c.host_dir(0) as d:
        (d / "f").write_text("x")
        os.chown(d / "f", c.host(0), c.host(0))
        c.expect("no recursive chown unasked", c.run("true", opts=["-v", f"{d}:/data", "-e", "USER_ID=3000"]))
        if c.owner(d / "f")[0] != c.host(0):
            c.fail("no recursive chown unasked", "a file in an unlisted volume changed owner")


CHECKS: dict[str, Callable[[Ctx], None]] = {f.__name__: f for f in (
    uname_matches_arch, gosu_version, gosu_sha256, gosu_not_setuid, default_user, user_id_remap,
    mount_owner_remap, root_owned_mount_keeps_default, user_flag, bad_values_refused, id_collisions,
    restart_idempotent, read_only_root, cap_drop_all, no_new_privileges, stdio_writable, pid1_and_stop,
    chown_paths, *smoke_volumes.CHECKS, *smoke_runtime.CHECKS,
)}
# Only where the engine has a user namespace (rootless podman, dockerd --userns-remap).
USERNS_CHECKS: dict[str, Callable[[Ctx], None]] = {f.__name__: f for f in smoke_userns.CHECKS}


def checks_for(engine: Engine) -> dict[str, Callable[[Ctx], None]]:
    return {**CHECKS, **(USERNS_CHECKS if engine.idmap != IDENTITY else {})}


def run_all(engine: Engine, subject: Subject, log=None, checks: dict[str, Callable[[Ctx], None]] | None = None,
            jobs: int = 1) -> list[SmokeFailure]:
    """Every check on one image (schedule.run_many runs many images at once)."""
    return schedule.run_many(engine, [subject], checks or checks_for(engine), jobs, log)
