"""This machine: Debian packages installed on demand, and daemons started in the background.

The ground floor for every stage that sets something up here (the local
environment, the alternative smoke engines, the test mirror).
"""

from __future__ import annotations

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


def apt_install(packages: list[str], log) -> list[str]:
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("ok installed") < 0]
    if not missing:
        return []
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        raise SetupError(f"need {', '.join(missing)}: install them (as root on Debian, `invoke up` does it)")
    say(log, f"up: apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
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
