"""The embedded default: a local Docker engine, emulators and a loopback registry (seeded by local/seed.py).

Idempotent: every step first checks whether its job is already done. Nothing
here listens on, or sends to, anything but 127.0.0.1 (the Debian mirror used
by apt aside).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import requests

from builder.core import emulation
from builder.core.engine import Engine
from builder.core.host import SetupError, apt_install, say, start_daemon, wait_ready
from builder.core.registry import is_loopback
from builder.config.settings import LocalSettings


def ensure_engine(s: LocalSettings, engine: Engine, log) -> None:
    if engine.available():
        say(log, f"up: engine: using the running Docker engine ({engine.info().get('ServerVersion')})")
        return
    apt_install(["docker.io"], log)
    logfile = s.state_dir / "dockerd.log"
    pid = start_daemon(["dockerd"], s.state_dir / "dockerd.pid", logfile)
    wait_ready(engine.available, "dockerd", 90, logfile)
    say(log, f"up: engine: started dockerd (pid {pid}, log {logfile}); undo: invoke down")


def ensure_emulation(s: LocalSettings, log) -> None:
    enabled = emulation.ensure(s.arches, log, "up", install=lambda pkgs: apt_install(pkgs, log))
    if not enabled and emulation.foreign(s.arches):
        say(log, f"up: emulation: qemu binfmt handlers already enabled for {', '.join(emulation.foreign(s.arches))}")


def registry_answers(addr: str) -> bool:
    try:
        return requests.get(f"http://{addr}/v2/", timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def registry_up(s: LocalSettings) -> bool:
    return registry_answers(s.registry)


def start_registry(state: Path, addr: str, htpasswd: Path | None = None) -> int:
    """Run Debian's docker-registry on a loopback address with its data under `state`; returns the pid.

    `htpasswd` (bcrypt entries, `htpasswd -B`) turns on basic auth, as a
    private registry would have it.
    """
    if not is_loopback(addr):
        raise SetupError(f"refusing to serve a registry on {addr}: the local registry binds loopback only")
    (state / "data").mkdir(parents=True, exist_ok=True)
    auth = f"auth: {{htpasswd: {{realm: base-gosu, path: '{htpasswd}'}}}}\n" if htpasswd else ""
    config = state / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: '{state / 'data'}'}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{addr}'}}\n" + auth
    )
    logfile = state / "registry.log"
    pid = start_daemon(["docker-registry", "serve", str(config)], state / "registry.pid", logfile)
    wait_ready(lambda: registry_answers(addr), "docker-registry", 30, logfile)
    return pid


def ensure_registry(s: LocalSettings, log) -> None:
    if registry_up(s):
        say(log, f"up: registry: already answering on {s.registry}")
        return
    apt_install(["docker-registry"], log)
    d = s.state_dir / "registry"
    pid = start_registry(d, s.registry)
    say(log, f"up: registry: started docker-registry on {s.registry} (pid {pid}, data {d / 'data'}); "
             "undo: invoke down")


def down(s: LocalSettings, log) -> None:
    """Stop what `up` started (and only that); installed packages stay."""
    for name, pidfile in (("docker-registry", s.state_dir / "registry" / "registry.pid"),
                          ("dockerd", s.state_dir / "dockerd.pid")):
        if not pidfile.exists():
            say(log, f"down: {name}: not started by `invoke up`, left alone")
            continue
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        pidfile.unlink()
        say(log, f"down: {name}: stopped pid {pid}")
    say(log, "down: packages installed by `up` stay; remove with apt-get remove docker.io docker-registry "
             "qemu-user-static binfmt-support mmdebstrap debootstrap")


def up(s: LocalSettings, engine: Engine, log) -> None:
    """Engine, emulation and registry; the bases are seeded by builder/local/seed.py once the registry answers."""
    s.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_engine(s, engine, log)
    ensure_emulation(s, log)
    ensure_registry(s, log)
    say(log, "up: engine, emulation and registry ready. Undo with `invoke down` (stops what up started; "
             f"seeded data stays in {s.state_dir})")
