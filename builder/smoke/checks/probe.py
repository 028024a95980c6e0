"""Containers that several checks of one image read: what the image holds, and the starts that change nothing.

A container start is most of a check's time (about 0.25 s of the machine on
amd64, several seconds under qemu), so everything that needs no options of
its own and leaves the container as it found it runs in one of two. The
image probe, which every image gets, is what the arch's binaries answer:
gosu read as a plain command, then the default start and the app's `uname
-m` through the entrypoint. The script probe, which the arch_independent
checks read: the account files as built, then the entrypoint once per
refused or root-by-opt-in case, the one start that may change something
last. Its `diff` afterwards shows whether any refusal changed anything. Each
check still judges its own cases and fails with its own words.
"""

from __future__ import annotations

import subprocess

from builder.smoke.checks.kit import IDS, Case, Ctx

GOSU = "/usr/local/bin/gosu"
ACCOUNTS = "grep -c '' /etc/passwd; grep -c '' /etc/group; grep -v '^ops:' /etc/passwd | md5sum"
BAD_VALUES = ("abc", "-1", "1e3", "1000;id", "", "4294967296", "010")
BAD = tuple((var, v) for var in ("USER_ID", "GROUP_ID") for v in BAD_VALUES)
IMAGE_PROBE, SCRIPT_PROBE = "image probe", "script probe"  # what kit.shared_only names

IMAGE: dict[str, Case] = {
    # gosu as built, before the entrypoint ran.
    "gosu --version": Case.as_built("gosu", "--version"),
    "sha256sum gosu": Case.as_built("sha256sum", GOSU),
    "stat gosu": Case.as_built("stat", "-c", "%a %U", GOSU),
    # Starts that change nothing. The app's uname is the one the entrypoint and gosu hand over to.
    "uname -m": Case.of("uname", "-m"),
    "default user": Case.of("sh", "-c", IDS),
}
SCRIPT: dict[str, Case] = {
    # The image as built, before the entrypoint ran.
    "/etc/passwd": Case.as_built("cat", "/etc/passwd"),
    "md5sum /etc/passwd /etc/group": Case.as_built("md5sum", "/etc/passwd", "/etc/group"),
    "accounts": Case.as_built("sh", "-c", ACCOUNTS),
    "/dev/null owner": Case.as_built("stat", "-c", "%U", "/dev/null"),
    # The refusals, and the starts as root.
    "GOSU_USER=root": Case.of("id", "-u", GOSU_USER="root"),
    "GOSU_USER=root USER_ID=3000": Case.of(GOSU_USER="root", ALLOW_ROOT_ID="1", USER_ID="3000"),
    "GOSU_USER=root ALLOW_ROOT_ID=1": Case.of("sh", "-c", f"{IDS}; md5sum /etc/passwd", GOSU_USER="root",
                                              ALLOW_ROOT_ID="1"),
    "MOUNT_CHECK=maybe": Case.of(MOUNT_CHECK="maybe"),
    **{f"{var}={v}": Case.of(**({"USER_ID": "1000"} if var == "GROUP_ID" else {}), **{var: v}) for var, v in BAD},
    "USER_ID=0": Case.of(USER_ID="0"),
    # Root by opt-in runs the app with the ids as given: last, in case it ever changes the accounts.
    "USER_ID=0 ALLOW_ROOT_ID=1": Case.of("id", "-u", USER_ID="0", ALLOW_ROOT_ID="1"),
}


def _image(c: Ctx) -> dict[str, subprocess.CompletedProcess]:
    return dict(zip(IMAGE, c.starts(list(IMAGE.values()))))


def _script(c: Ctx) -> tuple[dict[str, subprocess.CompletedProcess], set[str]]:
    results, changes = c.starts_and_changes(list(SCRIPT.values()))
    return dict(zip(SCRIPT, results)), changes


def result(c: Ctx, name: str) -> subprocess.CompletedProcess:
    """What case `name` printed and returned in the image's probe container that runs it."""
    if name in IMAGE:
        return c.once(IMAGE_PROBE, lambda: _image(c))[name]
    return c.once(SCRIPT_PROBE, lambda: _script(c))[0][name]


def changes(c: Ctx) -> set[str]:
    """The script probe's `diff`: what all its starts together changed."""
    return c.once(SCRIPT_PROBE, lambda: _script(c))[1]
