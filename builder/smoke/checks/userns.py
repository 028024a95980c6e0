"""Smoke checks that only mean something under a user namespace: rootless podman, dockerd --userns-remap.

The invoking host user's own directory, mounted as /app, is the case that
failed with "Permission denied": the app must be able to write it with files
staying that user's on the host, or the start stops with the one line that
names the fix.
"""

from __future__ import annotations

import os

from builder.smoke.checks.kit import IDS, Ctx, arch_independent

MARK = "echo started > /app/started"


def _stopped_with(c: Ctx, check: str, p, d, *wants: str) -> None:
    if p.returncode == 0 or (d / "started").exists() or any(w not in p.stderr for w in wants):
        c.fail(check, f"exit {p.returncode}, want {wants} in stderr {p.stderr.strip()!r}")


def _wrote_as(c: Ctx, check: str, p, d, want_ids: str, host_owner: int) -> None:
    c.expect(check, p, want_ids)
    owner = c.owner(d / "started")
    if owner[0] != host_owner:
        c.fail(check, f"/app/started belongs to {owner} on the host, want uid {host_owner}")


@arch_independent
def own_directory_at_app(c: Ctx):
    if c.engine.rootless:
        _rootless_own_directory(c)
    else:
        _remapped_own_directory(c)


def _rootless_own_directory(c: Ctx):
    """Rootless podman: the user's directory shows as root's; keep-id (or root here, which is the user) fixes it."""
    me = c.host(0)
    with c.host_dir(0) as d:
        app = f"{IDS}; {MARK}"
        p = c.run("sh", "-c", app, opts=["-v", f"{d}:/app"])
        _stopped_with(c, "rootless: own directory without keep-id", p, d,
                      f"--userns=keep-id:uid={c.s.ops_uid},gid={c.s.ops_gid}", f"host uid {me}")
        p = c.run("sh", "-c", app, opts=["-v", f"{d}:/app", f"--userns=keep-id:uid={c.s.ops_uid},gid={c.s.ops_gid}"])
        _wrote_as(c, "rootless: --userns=keep-id:uid=..,gid=..", p, d, c.ops, me)
        os.unlink(d / "started")
        p = c.run("sh", "-c", f"echo $(id -u):$(id -g); {MARK}", opts=["-v", f"{d}:/app", "--userns=keep-id"])
        _wrote_as(c, "rootless: --userns=keep-id", p, d, f"{me}:{os.stat(d).st_gid}", me)
        os.unlink(d / "started")
        p = c.run("sh", "-c", f"id -u; {MARK}", opts=["-v", f"{d}:/app", "-e", "USER_ID=0", "-e", "ALLOW_ROOT_ID=1"])
        _wrote_as(c, "rootless: USER_ID=0 ALLOW_ROOT_ID=1", p, d, "0", me)


def _remapped_own_directory(c: Ctx):
    """dockerd --userns-remap: a host user's directory is unmapped; chown to ops's mapped ids, or --userns=host."""
    ops_host = c.host(c.s.ops_uid)
    with c.host_dir(0) as d:
        os.chown(d, 1000, 1000)  # a real host user's, outside the daemon's subuid range
        p = c.run("sh", "-c", MARK, opts=["-v", f"{d}:/app"])
        _stopped_with(c, "userns-remap: a host user's directory", p, d, f"chown it to {ops_host}:", "--userns=host")
        p = c.run("sh", "-c", f"{IDS}; {MARK}", opts=["-v", f"{d}:/app", "--userns=host"])
        _wrote_as(c, "userns-remap: --userns=host", p, d, f"1000:1000:{c.s.ops_user}", 1000)
        os.unlink(d / "started")
        os.chown(d, ops_host, c.host(c.s.ops_gid))
        p = c.run("sh", "-c", f"{IDS}; {MARK}", opts=["-v", f"{d}:/app"])
        _wrote_as(c, "userns-remap: directory chowned to ops's mapped ids", p, d, c.ops, ops_host)


@arch_independent
def overflow_owner_refused(c: Ctx):
    """Files of unmapped host users (overflow uid) are never adopted; read-only they are no reason to stop."""
    with c.host_dir(0) as d:
        os.chown(d, 0, 0) if c.engine.rootless else os.chown(d, 1000, 1000)
        p = c.expect("overflow owner, read-only mount", c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app:ro"]), c.ops)
        if "overflow uid" not in p.stderr:
            c.fail("overflow owner, read-only mount", f"want the overflow warning, stderr {p.stderr.strip()!r}")
        p = c.expect("overflow owner, MAP_NODE_UID=no", c.run("sh", "-c", IDS, opts=["-v", f"{d}:/app", "-e",
                                                                                    "MAP_NODE_UID=no"]), c.ops)


CHECKS = (own_directory_at_app, overflow_owner_refused)
