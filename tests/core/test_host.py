"""Debian packages installed on demand: from Debian's mirror, as apt does, one installing process at a time."""

import fcntl
import io
import os
import subprocess
import threading

import pytest

from builder.core.host import APT_LOCK, APT_WAITS, apt_install

PACKAGE = "hello"  # GNU hello: small, and nothing here depends on it


def installed(package: str) -> bool:
    return "ok installed" in subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                                            text=True).stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root")
def test_two_installs_at_once_take_turns_and_the_second_finds_it_there():
    """Two test lanes (or two runs) asking for one package at once: apt's lock refused the second outright."""
    if installed(PACKAGE):
        pytest.skip(f"{PACKAGE} is installed already: nothing to install")
    logs, errors = [io.StringIO(), io.StringIO()], []

    def install(log):
        try:
            apt_install([PACKAGE], log)
        except Exception as e:  # noqa: BLE001 - reported below, whatever it is
            errors.append(e)
    threads = [threading.Thread(target=install, args=(log,)) for log in logs]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert errors == [] and installed(PACKAGE)
        assert sorted(log.getvalue() for log in logs) == ["", f"up: apt-get install {PACKAGE}\n"]
    finally:
        with open(APT_LOCK, "a") as lock:  # another lane may be installing: purge when it is done
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run(["apt-get", *APT_WAITS, "purge", "-y", "-qq", PACKAGE], capture_output=True)
