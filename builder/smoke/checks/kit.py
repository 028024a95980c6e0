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
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.core.engine import Engine


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


@dataclass(frozen=True)
class Ctx:
    engine: Engine
    s: Subject

    @property
    def ops(self) -> str:
        return f"{self.s.ops_uid}:{self.s.ops_gid}:{self.s.ops_user}"

    def run(self, *cmd: str, opts: list[str] | None = None, timeout: float = 180):
        return self.engine.container(self.s.runs, *cmd, options=["--platform", self.s.platform, *(opts or [])],
                                     timeout=timeout)

    def starts(self, cases: list[dict[str, str]], *cmd: str, opts: list[str] | None = None) \
            -> list[subprocess.CompletedProcess]:
        """The entrypoint started once per case, each with that case's environment added, all inside one
        container started with `opts`: for cases that need no container of their own (the same mounts, and a
        start that is refused before it changes anything). Each result is what a `run` of that case alone
        returns."""
        step = (f'"$@" >/tmp/.case-out 2>/tmp/.case-err; printf "{_PART}%s{_PART}" "$?"; cat /tmp/.case-out; '
                f'printf "{_PART}"; cat /tmp/.case-err; printf "{_CASE}"')
        script = "\n".join(f"(set -- env {shlex.join(f'{k}={v}' for k, v in env.items())} "
                           f"{shlex.join([ENTRYPOINT, *cmd])}; {step})" for env in cases)
        p = self.run("-c", script, opts=["--entrypoint", "sh", *(opts or [])])
        parts = [chunk.split(_PART) for chunk in p.stdout.split(_CASE)[:-1]]
        if p.returncode != 0 or len(parts) != len(cases) or any(len(x) != 4 for x in parts):
            self.fail("cases in one container", f"exit {p.returncode}, {len(parts)} of {len(cases)} cases reported, "
                                                f"stdout {p.stdout[-300:]!r}, stderr {p.stderr.strip()[-300:]!r}")
        return [subprocess.CompletedProcess(cmd, int(rc), out, err) for _, rc, out, err in parts]

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

    def changes(self, *opts: str, cmd: tuple[str, ...] = ("true",)) -> set[str]:
        """`diff` of a container run once with opts and cmd: what it changed in the image's filesystem."""
        with self.named() as name:
            self.engine.run("create", "--name", name, "--network", "none", "--platform", self.s.platform, *opts,
                            self.s.runs, *cmd)
            self.engine.run("start", "-a", name, check=False)
            return set(self.engine.run("diff", name).stdout.split("\n")) - {""}

    def unchanged(self, check: str, *opts: str) -> None:
        """A refused start changed nothing: its diff equals one of a bare `--entrypoint true` (podman's own
        mount points show up in every diff)."""
        control = self.changes("--entrypoint", "true")
        seen = self.changes(*opts)
        if seen != control:
            self.fail(check, f"diff shows {sorted(seen - control)!r}")
