"""What every smoke check is written with: the image under test, the engine it runs in, and how to fail.

A check speaks in container ids; `Ctx.host` turns one into the host id that an
engine with a user namespace (rootless podman, dockerd --userns-remap) shows
on the host, so the same check holds under every engine.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from builder.core.engine import Engine


def alone(check: Callable) -> Callable:
    """Mark a check that must have the engine to itself."""
    check.alone = True
    return check


def shared_only(start: str) -> Callable[[Callable], Callable]:
    """Mark a check that starts nothing of its own and reads what its image's shared start `start` made (a
    probe container). The first check of each start goes first and makes it; the rest go last, so workers do
    not sit waiting on one start together while other checks could run."""
    def mark(check: Callable) -> Callable:
        check.shared_only = start
        return check
    return mark


def arch_independent(check: Callable) -> Callable:
    """Mark a check whose verdict is the script's and the engine's, not the arch's: refusals, advice, recipes,
    engine options. The arch's own binaries (gosu, nss_wrapper, the base's tools on each path the entrypoint
    takes) are run by the unmarked checks on every image; a marked one runs once per flavor, release and word
    size in a run, on an image the host runs without emulation where there is one (schedule.plan). Under
    qemu-user it would run the same script under the same shell's source against the same host kernel."""
    check.arch_independent = True
    return check


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
    # What containers are started from: the image ID where the engine that built the image runs it, so a
    # concurrent build that moves the tag cannot swap the image under the checks; else the tag.
    ref: str = ""
    # The image names a uid it has no account for (nss_wrapper, on glibc bases).
    names_any_uid: bool = False
    # Images of one family (flavor and release: the same base packages, script and accounts) and word size
    # need the arch_independent checks run on one of them only. Empty: unknown, every check runs.
    family: str = ""

    @property
    def runs(self) -> str:
        return self.ref or self.image


IDS = "echo $(id -u):$(id -g):$(id -un)"
# Where the image's config points (image.assembly.append.ENTRYPOINT, a stage this one does not import): were
# it moved, `starts` would run nothing and every case would fail with sh's "not found".
ENTRYPOINT = "/usr/local/bin/entrypoint"
# Between the cases `Ctx.starts` runs in one container: ASCII's group and record separators, which no
# message of the entrypoint or the tools it runs contains.
_CASE, _PART = "\x1d", "\x1e"
T = TypeVar("T")


@dataclass(frozen=True)
class Case:
    """One start among several in a shared container: `cmd` through the entrypoint with `env` added, or
    (plain) `cmd` alone, showing the image as it is before any entrypoint ran in that container."""
    cmd: tuple[str, ...] = ("true",)
    env: tuple[tuple[str, str], ...] = ()
    plain: bool = False

    @classmethod
    def of(cls, *cmd: str, **env: str) -> Case:
        return cls(cmd or ("true",), tuple(env.items()))

    @classmethod
    def as_built(cls, *cmd: str) -> Case:
        return cls(cmd, plain=True)

    @property
    def argv(self) -> list[str]:
        return list(self.cmd) if self.plain else ["env", *(f"{k}={v}" for k, v in self.env), ENTRYPOINT, *self.cmd]


def _script(cases: Sequence[Case]) -> str:
    """sh that runs each case in a subshell and frames its exit code, stdout and stderr. The outputs go
    through /dev/shm, a tmpfs under every engine, so they are no change a `diff` of the container shows."""
    step = (f'"$@" >/dev/shm/.case-out 2>/dev/shm/.case-err; printf "{_PART}%s{_PART}" "$?"; '
            f'cat /dev/shm/.case-out; printf "{_PART}"; cat /dev/shm/.case-err; printf "{_CASE}"')
    return "\n".join(f"(set -- {shlex.join(case.argv)}; {step})" for case in cases)


class Shared:
    """Results several checks of one run take from the same container start: each made once, by whichever
    check asks first, while the others asking for it wait."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[Any, _Once] = {}

    def once(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            cell = self._cells.setdefault(key, _Once())
        return cell.get(make)


class _Once:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: tuple[Any, BaseException | None] | None = None

    def get(self, make: Callable[[], T]) -> T:
        with self._lock:
            if self._made is None:
                try:
                    self._made = (make(), None)
                except Exception as e:  # every check that asks fails the same way, as each alone would
                    self._made = (None, e)
        value, error = self._made
        if error is not None:
            raise error
        return value


@dataclass(frozen=True)
class Ctx:
    engine: Engine
    s: Subject
    shared: Shared = field(default_factory=Shared, compare=False, repr=False)

    @property
    def ops(self) -> str:
        return f"{self.s.ops_uid}:{self.s.ops_gid}:{self.s.ops_user}"

    def run(self, *cmd: str, opts: list[str] | None = None, timeout: float = 180):
        return self.engine.container(self.s.runs, *cmd, options=["--platform", self.s.platform, *(opts or [])],
                                     timeout=timeout)

    def starts(self, cases: Sequence[Case], opts: list[str] | None = None) -> list[subprocess.CompletedProcess]:
        """Each case started in turn inside one container started with `opts` (for cases that need no container
        of their own: the same mounts, and no case changes what a later one sees). Each result is what a
        `run` of that case alone returns."""
        return self._parsed(cases, self.run("-c", _script(cases), opts=["--entrypoint", "sh", *(opts or [])]))

    def starts_and_changes(self, cases: Sequence[Case], opts: list[str] | None = None) \
            -> tuple[list[subprocess.CompletedProcess], set[str]]:
        """`starts`, and the container's `diff` afterwards: what all the cases together changed."""
        p, changed = self._diffed(["--entrypoint", "sh", *(opts or [])], ("-c", _script(cases)), timeout=180)
        return self._parsed(cases, p), changed

    def _parsed(self, cases: Sequence[Case], p: subprocess.CompletedProcess) -> list[subprocess.CompletedProcess]:
        parts = [chunk.split(_PART) for chunk in p.stdout.split(_CASE)[:-1]]
        if p.returncode != 0 or len(parts) != len(cases) or any(len(x) != 4 for x in parts):
            self.fail("cases in one container", f"exit {p.returncode}, {len(parts)} of {len(cases)} cases reported, "
                                                f"stdout {p.stdout[-300:]!r}, stderr {p.stderr.strip()[-300:]!r}")
        return [subprocess.CompletedProcess(case.argv, int(rc), out, err)
                for case, (_, rc, out, err) in zip(cases, parts)]

    def once(self, what: str, make: Callable[[], T]) -> T:
        """What several checks of one run read from the same container start, made by the first that asks."""
        return self.shared.once((self.s.runs, what), make)  # a run has one engine

    def fail(self, check: str, saw: str):
        raise SmokeFailure(self.s.image, check, saw)

    def expect(self, check: str, proc, want: str | None = None, rc: int = 0):
        out = proc.stdout.strip()
        if proc.returncode != rc or (want is not None and out != want):
            self.fail(check, f"exit {proc.returncode} (want {rc}), stdout {out[-300:]!r} (want {want!r}), "
                             f"stderr {proc.stderr.strip()[-300:]!r}")
        return proc

    def host(self, cid: int) -> int:
        return self.engine.host_id(cid)

    def chown(self, path: Path | str, uid: int, gid: int | None = None) -> None:
        """Give `path` to container ids uid:gid, as the host sees them."""
        os.chown(path, self.host(uid), self.host(uid if gid is None else gid))

    def owner(self, path: Path | str) -> tuple[int, int]:
        st = os.lstat(path)
        return st.st_uid, st.st_gid

    @contextmanager
    def host_dir(self, uid: int = 0, gid: int | None = None, mode: int = 0o755):
        """A fresh host directory owned by container ids uid:gid (reachable by a rootless engine's user)."""
        d = Path(tempfile.mkdtemp(prefix="smoke-vol-"))
        try:
            d.chmod(mode)
            self.chown(d, uid, gid)
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    @contextmanager
    def named(self, kind: str = "container"):
        """A unique container (or volume) name, removed afterwards."""
        name = f"smoke-{uuid.uuid4().hex[:12]}"
        try:
            yield name
        finally:
            # -v: a container's anonymous volumes go with it.
            self.engine.run(kind, "rm", "-f", *(["-v"] if kind == "container" else []), name, check=False)

    def _diffed(self, opts: Sequence[str], cmd: Sequence[str], timeout: float = 600) \
            -> tuple[subprocess.CompletedProcess, set[str]]:
        """A container run once with opts and cmd, and its `diff`: what it changed in the image's filesystem."""
        with self.named() as name:
            self.engine.run("create", "--name", name, "--network", "none", "--platform", self.s.platform, *opts,
                            self.s.runs, *cmd)
            p = self.engine.run("start", "-a", name, check=False, timeout=timeout)
            return p, set(self.engine.run("diff", name).stdout.split("\n")) - {""}

    def bare_changes(self) -> set[str]:
        """The `diff` of a bare `--entrypoint true` start: what every container of this engine shows (podman's
        own mount points), whatever ran in it."""
        return self.once("bare changes", lambda: self._diffed(["--entrypoint", "true"], ())[1])

    def unchanged(self, check: str, seen: set[str], mounts: Sequence[str] = ()) -> None:
        """A refused start changed nothing: its diff (less the mount points its options made) equals a bare
        start's."""
        seen = seen - {f"A {m}" for m in mounts}
        control = self.bare_changes()
        if seen != control:
            self.fail(check, f"diff shows {sorted(seen - control)!r}")
