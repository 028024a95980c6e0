"""The one place that runs the container engine's CLI."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import BuilderError


class EngineError(BuilderError):
    pass


# A container uid/gid mapping as /proc/PID/uid_map has it: (inside, outside, count).
IDENTITY = ((0, 0, 4294967295),)


@dataclass(frozen=True)
class Engine:
    """A docker-compatible CLI: docker, a second dockerd (env DOCKER_HOST), podman, or rootless podman
    (run through `wrapper`, e.g. runuser -u USER -- env XDG_RUNTIME_DIR=...).

    `mode` names the setup (docker, docker-userns, podman, podman-rootless) so that checks can expect what
    differs between them; `idmap` is how container uids map to host uids.
    """
    binary: str = "docker"
    env: dict[str, str] = field(default_factory=dict)
    wrapper: tuple[str, ...] = ()
    mode: str = "docker"
    idmap: tuple[tuple[int, int, int], ...] = IDENTITY
    # KEY=VALUE put on every container and volume this engine makes (`sweep` removes them all by it).
    label: str = ""

    def run(self, *args: str, check: bool = True, timeout: float | None = 600, input: str | None = None,
            capture: bool = True) -> subprocess.CompletedProcess:
        if self.label and (args[:1] in (("run",), ("create",)) or args[:2] == ("volume", "create")):
            at = 2 if args[0] == "volume" else 1
            args = (*args[:at], "--label", self.label, *args[at:])
        try:
            proc = subprocess.run([*self.wrapper, self.binary, *args], capture_output=capture, text=True,
                                  timeout=timeout, input=input,
                                  env={**os.environ, **self.env} if self.env else None)
        except FileNotFoundError:
            raise EngineError(f"`{self.binary}` is not installed; run `invoke up` to set up the local engine") from None
        except subprocess.TimeoutExpired:
            raise EngineError(f"`{self.binary} {' '.join(args[:3])} ...` did not finish in {timeout} s") from None
        if check and proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-8:]
            raise EngineError(f"`{self.binary} {' '.join(args)}` failed ({proc.returncode}): " + " | ".join(tail))
        return proc

    def sweep(self) -> None:
        """Remove every container and volume made under this engine's label: also those of a check that
        timed out or was interrupted, whose `--rm` never ran."""
        if not self.label:
            return
        found = self.run("ps", "-aq", "--filter", f"label={self.label}", check=False, timeout=60).stdout.split()
        if found:
            self.run("rm", "-f", "-v", *found, check=False, timeout=120)
        volumes = self.run("volume", "ls", "-q", "--filter", f"label={self.label}", check=False, timeout=60)
        if volumes.stdout.split():
            self.run("volume", "rm", "-f", *volumes.stdout.split(), check=False, timeout=120)

    @property
    def rootless(self) -> bool:
        """Root in the container is an unprivileged host user (one-uid mapping of uid 0)."""
        return any(i == 0 and o != 0 and n == 1 for i, o, n in self.idmap)

    def host_id(self, cid: int) -> int:
        """The host uid (or gid: engines map both alike) behind container id `cid`."""
        for inside, outside, count in self.idmap:
            if inside <= cid < inside + count:
                return outside + cid - inside
        raise ValueError(f"container id {cid} is not mapped by {self.mode} ({self.idmap})")

    def top(self, name: str) -> str:
        """PID and command of each process in a running container (podman's top takes descriptors)."""
        args = ("pid", "comm") if self.binary == "podman" else ("-o", "pid,comm")
        return self.run("top", name, *args).stdout

    def available(self) -> bool:
        try:
            return self.run("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
        except EngineError:
            return False

    def info(self) -> dict:
        return json.loads(self.run("info", "--format", "{{json .}}").stdout)

    def build(self, context: Path, tag: str, platform: str, dockerfile: Path | None = None,
              build_args: dict[str, str] | None = None, labels: dict[str, str] | None = None,
              network: str = "none", no_cache: bool = False) -> None:
        args = ["build", "--network", network, "--platform", platform, "--tag", tag]
        if dockerfile:
            args += ["--file", str(dockerfile)]
        for k, v in (build_args or {}).items():
            args += ["--build-arg", f"{k}={v}"]
        for k, v in (labels or {}).items():
            args += ["--label", f"{k}={v}"]
        if no_cache:
            args.append("--no-cache")
        self.run(*args, str(context), timeout=1800)

    def image_ids(self, tags: list[str]) -> dict[str, str]:
        """tag -> image ID, for those of `tags` the engine has.

        Asked of the daemon's API socket when it is the local default one: the
        CLI's start-up (or a listing of every image) is most of what a build
        with nothing to do would cost.
        """
        path = self._local_socket()
        if path:
            try:
                out = {}
                for tag in tags:
                    body = _unix_get(path, f"/images/{urllib.parse.quote(tag, safe='/:')}/json")
                    if body is not None:
                        out[tag] = json.loads(body)["Id"]
                return out
            except (OSError, ValueError, KeyError):
                pass  # the CLI below answers the same question
        return {t: info["Id"] for t in tags if (info := self.inspect(t)) is not None}

    def _local_socket(self) -> str | None:
        env = {**os.environ, **self.env}
        host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if self.binary != "docker" or env.get("DOCKER_CONTEXT") or not host.startswith("unix://"):
            return None
        path = host[len("unix://"):]
        return path if os.path.exists(path) else None

    def inspect(self, ref: str) -> dict | None:
        proc = self.run("image", "inspect", ref, check=False)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None

    def tag(self, src: str, dest: str) -> None:
        self.run("tag", src, dest)

    def push(self, ref: str) -> str:
        """Push and return the manifest digest the registry stored."""
        out = self.run("push", ref, timeout=1800).stdout
        for line in out.splitlines():
            if "digest: sha256:" in line:
                return line.split("digest: ")[1].split()[0]
        raise EngineError(f"`docker push {ref}` printed no digest")

    def pull(self, ref: str, platform: str | None = None) -> None:
        self.run("pull", "--quiet", *(["--platform", platform] if platform else []), ref, timeout=900)

    def remove_image(self, ref: str) -> None:
        self.run("image", "rm", "--force", ref, check=False)

    def container(self, image: str, *cmd: str, options: list[str] | None = None, timeout: float = 120,
                  check: bool = False) -> subprocess.CompletedProcess:
        """`docker run --rm --network none` with the given options."""
        args = ("run", "--rm", "--network", "none", *(options or []), image, *cmd)
        proc = self.run(*args, check=check, timeout=timeout)
        if self.binary == "podman" and proc.returncode == 0 and not proc.stdout and not proc.stderr:
            # podman 4.3 now and then loses all output of a container that exits at once (seen rootless,
            # a few in a few hundred runs); a run that printed nothing at all is run once more.
            proc = self.run(*args, check=check, timeout=timeout)
        return proc

    def save(self, ref: str, dest: Path) -> Path:
        self.run("save", "--output", str(dest), ref, timeout=900)
        return dest


def _unix_get(path: str, url: str, timeout: float = 20) -> bytes | None:
    """The body of a GET to the engine's API on a unix socket; None for 404."""
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    conn.sock = sock
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise OSError(f"engine API {url} answered {resp.status}")
        return body
    finally:
        conn.close()
