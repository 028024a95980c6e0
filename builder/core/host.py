"""This machine: Debian packages installed on demand, and daemons started in the background.

The ground floor for every stage that sets something up here (the local
environment, the alternative smoke engines, the test mirror).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

from builder.core.errors import BuilderError


class SetupError(BuilderError):
    pass


def say(log, text: str) -> None:
    log.write(text + "\n")
    log.flush()


# Two of our processes installing at once (two runs, or the test lanes) take turns here; apt itself waits
# for any other apt or dpkg instead of failing on its lock.
APT_LOCK = Path("/run/lock/base-gosu-apt.lock")
APT_WAITS = ["-o", "DPkg::Lock::Timeout=600"]


def _missing(packages: list[str]) -> list[str]:
    return [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("ok installed") < 0]


def apt_install(packages: list[str], log) -> list[str]:
    missing = _missing(packages)
    if not missing:
        return []
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        raise SetupError(f"need {', '.join(missing)}: install them (as root on Debian, `invoke up` does it)")
    APT_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(APT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = _missing(packages)  # what another process installed while this one waited is there now
        if missing:
            say(log, f"up: apt-get install {' '.join(missing)}")
            subprocess.run(["apt-get", *APT_WAITS, "update", "-qq"], check=True)
            subprocess.run(["apt-get", *APT_WAITS, "install", "-y", "-qq", *missing], check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return missing


def start_daemon(cmd: list[str], pidfile: Path, logfile: Path) -> int:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def wait_ready(ready, what: str, seconds: float, logfile: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    raise SetupError(f"{what} did not become ready in {seconds:.0f} s; see {logfile}")
