"""The engines smoke checks also run under: podman (rootful, rootless) and a dockerd with --userns-remap.

Each is set up idempotently by the project itself (Debian's podman and uidmap
through apt), next to the main engine and never touching it: podman keeps its
own storage, and the second dockerd has its own socket, data root, exec root,
pidfile and network namespace (dockerd deletes the host's docker0 when
started with --bridge=none in the host's namespace).
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from builder.core.engine import Engine, EngineError
from builder.core.host import SetupError, apt_install, start_daemon, wait_ready
from builder.config.settings import ENGINE_KINDS, EngineSettings

SUBID_COUNT = 65536


def _containers_conf(state: Path) -> Path:
    """Settings for every podman run here. podman's default ulimits (nofile and nproc up to 1M and 4M) exceed what a container host may grant
    (runc then fails with "error setting rlimit ... operation not permitted"): ask for what we have."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 16384)
    state.mkdir(parents=True, exist_ok=True)
    conf = state / "containers.conf"
    # No network unless asked: the checks need none, and podman's default one would add a bridge and
    # firewall rules beside the main engine's (rootless, it needs /dev/net/tun, which a host may not give).
    conf.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
                    'netns = "none"\n')
    conf.chmod(0o644)
    return conf


def podman(s: EngineSettings, log) -> Engine:
    apt_install(["podman", "uidmap"], log)
    return Engine("podman", env={"CONTAINERS_CONF": str(_containers_conf(s.state_dir))}, mode="podman")


def _subid_start(path: Path, user: str) -> int | None:
    for line in path.read_text().splitlines() if path.exists() else []:
        name, start, count = (line.split(":") + ["", ""])[:3]
        if name == user and int(count or 0) >= SUBID_COUNT:
            return int(start)
    return None


def _ensure_subids(user: str) -> int:
    """The user's subordinate uid and gid range, added past every range already given out if missing."""
    starts = []
    for path in (Path("/etc/subuid"), Path("/etc/subgid")):
        start = _subid_start(path, user)
        if start is None:
            taken = [int(a) + int(b) for _, a, b in (l.split(":") for l in
                                                     (path.read_text().splitlines() if path.exists() else [])
                                                     if l.count(":") == 2)]
            start = max([100000, *taken])
            with open(path, "a") as f:
                f.write(f"{user}:{start}:{SUBID_COUNT}\n")
        starts.append(start)
    if starts[0] != starts[1]:
        raise SetupError(f"{user}'s subuid ({starts[0]}) and subgid ({starts[1]}) ranges differ; the checks assume "
                         "one mapping for both: fix /etc/subuid and /etc/subgid")
    return starts[0]


def rootless_podman(s: EngineSettings, log) -> Engine:
    """podman run by an unprivileged user with subuid/subgid ranges, as a developer would run it."""
    apt_install(["podman", "uidmap"], log)
    user = s.rootless_user
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", user], check=True)
        log.write(f"engines: created user {user} for rootless podman\n")
        pw = pwd.getpwnam(user)
    start = _ensure_subids(user)
    # No systemd session here: a private runtime directory, as pam_systemd would make it.
    runtime = Path(f"/tmp/base-gosu-runtime-{pw.pw_uid}")
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime, pw.pw_uid, pw.pw_gid)
    runtime.chmod(0o700)
    conf = _containers_conf(s.state_dir)
    wrapper = ("runuser", "-u", user, "--", "env", f"XDG_RUNTIME_DIR={runtime}", f"HOME={pw.pw_dir}",
               f"CONTAINERS_CONF={conf}")
    engine = Engine("podman", wrapper=wrapper, mode="podman-rootless",
                    idmap=((0, pw.pw_uid, 1), (1, start, SUBID_COUNT)))
    _overlay_storage(engine, pw, log)
    return engine


def _overlay_storage(engine: Engine, pw: pwd.struct_passwd, log) -> None:
    """Rootless podman may start on vfs, which copies the whole image for every container (minutes for the
    smoke list); the kernel's own overlay works rootless since 5.13. The user is ours, so is its storage."""
    conf = Path(pw.pw_dir) / ".config" / "containers" / "storage.conf"
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text('[storage]\ndriver = "overlay"\n')
        for p in (conf.parent.parent, conf.parent, conf):
            os.chown(p, pw.pw_uid, pw.pw_gid)

    def driver() -> str:
        return engine.run("info", "--format", "{{.Store.GraphDriverName}}", timeout=120).stdout.strip()

    if driver() != "overlay":
        engine.run("system", "reset", "--force", timeout=300)
        log.write(f"engines: reset {pw.pw_name}'s podman storage to use overlay (now: {driver()})\n")


@contextmanager
def userns_docker(s: EngineSettings, log):
    """A second dockerd with --userns-remap=default on its own socket and data root, stopped on exit."""
    # dockerd comes with the main engine (Debian's docker.io, or docker-ce elsewhere); uidmap for the ranges.
    apt_install(["uidmap"] if shutil.which("dockerd") else ["docker.io", "uidmap"], log)
    d = s.userns_dir
    d.mkdir(parents=True, exist_ok=True)
    sock = d / "docker.sock"
    engine = Engine(env={"DOCKER_HOST": f"unix://{sock}"}, mode="docker-userns")
    pidfile = d / "docker.pid"
    if pidfile.exists() and engine.available():
        raise SetupError(f"a dockerd already answers on {sock} (pid {pidfile.read_text().strip()}); another run is "
                         "using it; stop that run first")
    logfile = s.state_dir / "userns-dockerd.log"
    s.state_dir.mkdir(parents=True, exist_ok=True)
    pid = start_daemon(["unshare", "--net", "--", "dockerd", "--userns-remap=default", "-H", f"unix://{sock}",
                        "--data-root", str(s.userns_data), "--exec-root", str(d / "exec"), "--pidfile", str(pidfile),
                        "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
                        "--containerd-namespace", "bg-userns", "--containerd-plugins-namespace", "bg-userns-plugins",
                        "--cgroup-parent", "bg-userns"], d / "launcher.pid", logfile)
    try:
        wait_ready(engine.available, "the userns-remap dockerd", 90, logfile)
        start = _subid_start(Path("/etc/subuid"), "dockremap")
        if start is None:
            raise SetupError("dockerd --userns-remap=default made no /etc/subuid range for dockremap")
        log.write(f"engines: started dockerd --userns-remap=default on {sock} (pid {pid}, log {logfile})\n")
        yield Engine(env=engine.env, mode="docker-userns", idmap=((0, start, SUBID_COUNT),))
    finally:
        _stop(pid)


def _stop(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
        for _ in range(150):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def opened(s: EngineSettings, log):
    """The engine `s.kind` names, ready to run images copied into it."""
    if s.kind not in ENGINE_KINDS:
        raise ValueError(f"engine {s.kind!r} is not one of {', '.join(ENGINE_KINDS)}")
    if s.kind == "docker-userns":
        with userns_docker(s, log) as engine:
            yield engine
    elif s.kind == "podman":
        yield podman(s, log)
    elif s.kind == "podman-rootless":
        yield rootless_podman(s, log)
    else:
        yield Engine()


def copy_image(src: Engine, dest: Engine, ref: str) -> None:
    """docker save | load: the image enters the other engine's storage with the same name and id."""
    if dest == src:
        return
    tmp = Path(tempfile.mkdtemp(prefix="base-gosu-copy-"))
    try:
        tmp.chmod(0o755)  # the rootless engine's user reads the archive
        archive = src.save(ref, tmp / "image.tar")
        archive.chmod(0o644)
        dest.run("load", "--input", str(archive), timeout=900)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if dest.run("image", "inspect", ref, check=False).returncode != 0:
        raise EngineError(f"{ref} is not in {dest.mode} after loading it")
