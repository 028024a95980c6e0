"""The smoke stage: prove in real containers that each image behaves.

Every check runs the image with --network none and raises SmokeFailure naming
the image, the check and what it saw. `invoke smoke` and the pytest suite run
this same list.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .arches import UNAME
from .engine import Engine, EngineError

BAD_VALUES = ("abc", "-1", "1e3", "1000;id", "", "4294967296", "010")


class SmokeFailure(AssertionError):
    def __init__(self, image: str, check: str, saw: str):
        super().__init__(f"{image}: {check}: {saw}")
        self.image, self.check, self.saw = image, check, saw


@dataclass(frozen=True)
class Subject:
    image: str
    arch: str
    platform: str
    gosu_version: str
    gosu_sha256: str
    ops_user: str = "ops"
    ops_uid: int = 10001
    ops_gid: int = 10001


@dataclass(frozen=True)
class Ctx:
    engine: Engine
    s: Subject

    def run(self, *cmd: str, opts: list[str] | None = None, timeout: float = 180):
        return self.engine.container(self.s.image, *cmd, options=["--platform", self.s.platform, *(opts or [])],
                                     timeout=timeout)

    def fail(self, check: str, saw: str):
        raise SmokeFailure(self.s.image, check, saw)

    def expect(self, check: str, proc, want: str | None = None, rc: int = 0):
        out = proc.stdout.strip()
        if proc.returncode != rc or (want is not None and out != want):
            self.fail(check, f"exit {proc.returncode} (want {rc}), stdout {out[-300:]!r} (want {want!r}), "
                             f"stderr {proc.stderr.strip()[-300:]!r}")
        return proc


IDS = "echo $(id -u):$(id -g):$(id -un)"


def gosu_version(c: Ctx):
    p = c.run("--version", opts=["--entrypoint", "gosu"])
    want = c.s.gosu_version.split("-")[0]
    if p.returncode != 0 or p.stdout.split()[:1] != [want]:
        c.fail("gosu version", f"`gosu --version` said {p.stdout.strip()!r}, want {want}")


def gosu_sha256(c: Ctx):
    p = c.run("/usr/local/bin/gosu", opts=["--entrypoint", "sha256sum"])
    if p.stdout.split()[:1] != [c.s.gosu_sha256]:
        c.fail("gosu sha256", f"image has {p.stdout.strip()[:64]!r}, verified binary is {c.s.gosu_sha256}")


def gosu_not_setuid(c: Ctx):
    c.expect("gosu mode 0755, not setuid", c.run("-c", "%a %U", "/usr/local/bin/gosu", opts=["--entrypoint", "stat"]),
             "755 root")


def default_user(c: Ctx):
    c.expect("default user", c.run("sh", "-c", IDS), f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


def uname_matches_arch(c: Ctx):
    c.expect("uname -m", c.run("uname", "-m"), UNAME[c.s.arch])


def user_id_remap(c: Ctx):
    c.expect("USER_ID/GROUP_ID remap", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=2345", "-e", "GROUP_ID=3456"]),
             f"2345:3456:{c.s.ops_user}")
    c.expect("GROUP_ID defaults to USER_ID", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=2345"]),
             f"2345:2345:{c.s.ops_user}")


def mount_owner_remap(c: Ctx):
    with tempfile.TemporaryDirectory(prefix="smoke-vol-") as d:
        os.chown(d, 4321, 4322)
        c.expect("remap to mount owner", c.run("sh", "-c", f"{IDS}; echo hi > /app/made; mkdir /app/sub",
                                               opts=["-v", f"{d}:/app"]), f"4321:4322:{c.s.ops_user}")
        for name in ("made", "sub"):
            st = os.stat(Path(d) / name)
            if (st.st_uid, st.st_gid) != (4321, 4322):
                c.fail("files on the volume", f"{name} is owned by {st.st_uid}:{st.st_gid} on the host, want 4321:4322")
        c.expect("MAP_NODE_UID=no", c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app", "-e", "MAP_NODE_UID=no"]),
                 f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


def root_owned_mount_keeps_default(c: Ctx):
    with tempfile.TemporaryDirectory(prefix="smoke-vol-") as d:
        c.expect("root-owned mount", c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app"]),
                 f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


def user_flag(c: Ctx):
    p = c.expect("--user start", c.run("sh", "-c", "id -u; id -g", opts=["--user", "1000:1000"]), "1000\n1000")
    if p.stderr.strip():
        c.fail("--user start", f"unexpected stderr {p.stderr.strip()!r}")


def bad_values_refused(c: Ctx):
    for var in ("USER_ID", "GROUP_ID"):
        for v in BAD_VALUES:
            p = c.run("true", opts=["-e", f"{var}={v}"] + (["-e", "USER_ID=1000"] if var == "GROUP_ID" else []))
            if p.returncode == 0 or f"{var}='{v}'" not in p.stderr:
                c.fail("bad value refused", f"{var}={v!r}: exit {p.returncode}, stderr {p.stderr.strip()!r}")
    p = c.run("true", opts=["-e", "USER_ID=0"])
    if p.returncode == 0 or "ALLOW_ROOT_ID=1" not in p.stderr:
        c.fail("uid 0 refused", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    c.expect("uid 0 with ALLOW_ROOT_ID=1", c.run("id", "-u", opts=["-e", "USER_ID=0", "-e", "ALLOW_ROOT_ID=1"]), "0")
    # Refused before anything changed: the container's filesystem diff is empty.
    name = f"smoke-{uuid.uuid4().hex[:12]}"
    c.engine.run("create", "--name", name, "--network", "none", "--platform", c.s.platform, "-e", "USER_ID=1000;id",
                 c.s.image, "true")
    try:
        c.engine.run("start", "-a", name, check=False)
        diff = c.engine.run("diff", name).stdout.strip()
        if diff:
            c.fail("nothing changed on refusal", f"docker diff shows {diff!r}")
    finally:
        c.engine.run("rm", "-f", name, check=False)


def id_collisions(c: Ctx):
    # ubuntu:24.04 ships ubuntu 1000:1000; alpine has guest 405 and group users 100.
    c.expect("uid 1000 collision", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=1000"]), f"1000:1000:{c.s.ops_user}")
    c.expect("uid 405/gid 100 collision", c.run("sh", "-c", IDS, opts=["-e", "USER_ID=405", "-e", "GROUP_ID=100"]),
             f"405:100:{c.s.ops_user}")
    c.expect("other accounts intact", c.run("sh", "-c", "grep -c '' /etc/passwd; grep -c '' /etc/group; "
                                            "grep -v '^ops:' /etc/passwd | md5sum",
                                            opts=["-e", "USER_ID=1000"]),
             c.run("sh", "-c", "grep -c '' /etc/passwd; grep -c '' /etc/group; grep -v '^ops:' /etc/passwd | md5sum")
             .stdout.strip())


def restart_idempotent(c: Ctx):
    name = f"smoke-{uuid.uuid4().hex[:12]}"
    c.engine.run("create", "--name", name, "--network", "none", "--platform", c.s.platform, "-e", "USER_ID=2000",
                 c.s.image, "sh", "-c", f"{IDS}; grep -c '^{c.s.ops_user}:' /etc/passwd; md5sum /etc/passwd /etc/group")
    try:
        outs = [c.engine.run("start", "-a", name).stdout.strip() for _ in range(2)]
        if outs[0] != outs[1] or not outs[0].startswith(f"2000:2000:{c.s.ops_user}\n1\n"):
            c.fail("restart idempotency", f"first start {outs[0]!r}, second {outs[1]!r}")
    finally:
        c.engine.run("rm", "-f", name, check=False)


def read_only_root(c: Ctx):
    p = c.run("sh", "-c", 'echo "$(id -u):$(id -g) $HOME"', opts=["--read-only", "-e", "USER_ID=1234"])
    warnings = [l for l in p.stderr.splitlines() if "warning" in l]
    if p.returncode != 0 or p.stdout.strip() != f"1234:1234 /home/{c.s.ops_user}" or len(warnings) != 1:
        c.fail("--read-only", f"exit {p.returncode}, stdout {p.stdout.strip()!r}, stderr {p.stderr.strip()!r}")
    p = c.expect("--read-only, no remap", c.run("sh", "-c", IDS, opts=["--read-only"]),
                 f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")
    if p.stderr.strip():
        c.fail("--read-only, no remap", f"unexpected stderr {p.stderr.strip()!r}")


def cap_drop_all(c: Ctx):
    p = c.run("true", opts=["--cap-drop", "ALL"])
    if p.returncode == 0 or "--cap-add SETUID --cap-add SETGID" not in p.stderr or "--user" not in p.stderr:
        c.fail("--cap-drop ALL", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")


def no_new_privileges(c: Ctx):
    c.expect("no-new-privileges", c.run("sh", "-c", IDS, opts=["--security-opt", "no-new-privileges"]),
             f"{c.s.ops_uid}:{c.s.ops_gid}:{c.s.ops_user}")


def stdio_writable(c: Ctx):
    p = c.run("sh", "-c", "echo out > /dev/stdout && echo err > /dev/stderr")
    if p.returncode != 0 or p.stdout.strip() != "out" or p.stderr.strip() != "err":
        c.fail("/dev/stdout and /dev/stderr writable", f"exit {p.returncode}, {p.stdout!r}, {p.stderr!r}")
    p = c.run("sh", "-c", 'echo tty > "$(tty)"', opts=["-t"])
    if p.returncode != 0 or p.stdout.strip() != "tty":
        c.fail("tty writable", f"exit {p.returncode}, {p.stdout!r}")
    p = c.run("sh", "-c", "stat -c %U /dev/null")
    if p.stdout.strip() != "root":
        c.fail("/dev/null untouched", f"/dev/null owner {p.stdout.strip()!r}")


def pid1_and_stop(c: Ctx):
    """The app is PID 1 and gets SIGTERM: with --time 2, only a handled TERM exits 42 (SIGKILL gives 137)."""
    name = f"smoke-{uuid.uuid4().hex[:12]}"
    app = 'trap "exit 42" TERM; echo "pid $$"; while :; do sleep 0.1; done'
    c.engine.run("run", "-d", "--name", name, "--network", "none", "--platform", c.s.platform, c.s.image,
                 "sh", "-c", app)
    try:
        deadline = time.monotonic() + 60
        while "pid" not in (logs := c.engine.run("logs", name).stdout) and time.monotonic() < deadline:
            time.sleep(0.2)
        if logs.strip() != "pid 1":
            c.fail("app is PID 1", f"app reported {logs.strip()!r}")
        procs = c.engine.run("top", name, "-o", "pid,comm").stdout
        if "gosu" in procs:
            c.fail("gosu is gone", procs)
        c.engine.run("stop", "--time", "2", name)
        code = c.engine.run("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        if code != "42":
            c.fail("docker stop delivers SIGTERM", f"exit code {code} (137 means it was killed after 2 s)")
    finally:
        c.engine.run("rm", "-f", name, check=False)


def chown_paths(c: Ctx):
    with tempfile.TemporaryDirectory(prefix="smoke-vol-") as d:
        os.makedirs(Path(d) / "a" / "b")
        (Path(d) / "a" / "b" / "f").write_text("x")
        os.symlink("/etc/passwd", Path(d) / "a" / "link")
        c.expect("CHOWN_PATHS", c.run("true", opts=["-v", f"{d}:/data", "-e", "USER_ID=3000",
                                                    "-e", "CHOWN_PATHS=/data"]))
        owners = {p.name: (os.lstat(p).st_uid, os.lstat(p).st_gid) for p in Path(d).rglob("*")}
        if set(owners.values()) != {(3000, 3000)}:
            c.fail("CHOWN_PATHS", f"owners after chown: {owners}")
        if os.stat("/etc/passwd").st_uid != 0:
            c.fail("CHOWN_PATHS never follows symlinks", "host /etc/passwd changed owner")
    with tempfile.TemporaryDirectory(prefix="smoke-vol-") as d:
        (Path(d) / "f").write_text("x")
        c.expect("no recursive chown unasked", c.run("true", opts=["-v", f"{d}:/data", "-e", "USER_ID=3000"]))
        if os.stat(Path(d) / "f").st_uid != 0:
            c.fail("no recursive chown unasked", "a file in an unlisted volume changed owner")


CHECKS: dict[str, Callable[[Ctx], None]] = {f.__name__: f for f in (
    uname_matches_arch, gosu_version, gosu_sha256, gosu_not_setuid, default_user, user_id_remap,
    mount_owner_remap, root_owned_mount_keeps_default, user_flag, bad_values_refused, id_collisions,
    restart_idempotent, read_only_root, cap_drop_all, no_new_privileges, stdio_writable, pid1_and_stop,
    chown_paths,
)}


def run_all(engine: Engine, subject: Subject, log=None) -> list[SmokeFailure]:
    failures = []
    for name, check in CHECKS.items():
        start = time.monotonic()
        try:
            check(Ctx(engine, subject))
            status = "ok"
        except SmokeFailure as f:
            failures.append(f)
            status = f"FAILED: {f.saw}"
        except EngineError as e:
            # An image that cannot even start (wrong arch, broken emulation) fails
            # the check like any other, so every failure is reported together.
            failures.append(SmokeFailure(subject.image, name, str(e)))
            status = f"FAILED: {e}"
        if log:
            log.write(f"smoke {subject.image} {name}: {status} ({time.monotonic() - start:.1f} s)\n")
            log.flush()
    return failures
