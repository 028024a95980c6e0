"""Smoke checks for accounts, CHOWN_PATHS, the mount check and Docker's data-volume recipes.

Run under every engine: they speak in container ids, and `Ctx.host` says what
the host sees.
"""

from __future__ import annotations

import os

from builder.smoke.checks import probe
from builder.smoke.checks.kit import IDS, Case, Ctx, arch_independent, shared_only

# What CHOWN_PATHS must refuse, however it is spelled.
SYSTEM_PATHS = ("/", "/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/usr/local/bin",
                "/app/../etc", "//etc/")


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("entrypoint: warning:")]


def fix_line(c: Ctx, p, path: str) -> str:
    """The one mount-check line about `path` (fails unless there is exactly one)."""
    lines = [w for w in warnings(p.stderr) if w.startswith(f"entrypoint: warning: {path} is mounted read-write")]
    if len(lines) != 1:
        c.fail(f"mount check line for {path}", f"want one line about {path}, stderr {p.stderr.strip()!r}")
    return lines[0]


def expect_fix_before_failure(c: Ctx, check: str, p, path: str, *wants: str) -> None:
    """A recipe that fails: its fix line is printed first, then the app's own error."""
    line = fix_line(c, p, path)
    missing = [w for w in wants if w not in line]
    err = p.stderr.splitlines()
    denied = [i for i, l in enumerate(err) if "ermission denied" in l or "can't create" in l or "Cannot open" in l]
    if p.returncode == 0 or missing or not denied or err.index(line) > denied[0]:
        c.fail(check, f"exit {p.returncode}, missing {missing} in the fix line; stderr {p.stderr.strip()!r}")


@arch_independent
@shared_only(probe.SCRIPT_PROBE)
def root_account(c: Ctx):
    """Its starts change nothing, so they run in the probe container."""
    p = probe.result(c, "GOSU_USER=root")
    if p.returncode == 0 or "GOSU_USER='root' has uid 0" not in p.stderr or "ALLOW_ROOT_ID=1" not in p.stderr:
        c.fail("GOSU_USER=root refused", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")
    image_passwd = probe.result(c, "md5sum /etc/passwd /etc/group").stdout.split()[:1]
    p = c.expect("GOSU_USER=root with ALLOW_ROOT_ID=1", probe.result(c, "GOSU_USER=root ALLOW_ROOT_ID=1"))
    lines = p.stdout.split("\n")
    if lines[0] != "0:0:root" or lines[1].split()[:1] != image_passwd:
        c.fail("GOSU_USER=root runs as root, passwd untouched", f"stdout {p.stdout!r}, image passwd {image_passwd}")
    p = probe.result(c, "GOSU_USER=root USER_ID=3000")
    if p.returncode == 0 or "USER_ID='3000' cannot remap GOSU_USER='root'" not in p.stderr:
        c.fail("a root account is never remapped", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")


@arch_independent
def account_without_own_group(c: Ctx):
    """Debian's nobody has group nogroup: the remap goes through the primary group's gid. Alpine's nobody
    lives in /, which is no home of its own to hand over: nothing in the image changes owner."""
    p = c.expect("GOSU_USER=nobody USER_ID=3000",
                 c.run("sh", "-c", f"{IDS}; find / -xdev -user 3000 -print 2>/dev/null | head -3",
                       opts=["-e", "GOSU_USER=nobody", "-e", "USER_ID=3000"]),
                 "3000:3000:nobody")
    if p.stderr.strip():
        c.fail("GOSU_USER=nobody USER_ID=3000", f"unexpected stderr {p.stderr.strip()!r}")


@arch_independent
def chown_paths_refuses_system_paths(c: Ctx):
    """Each path is refused before the entrypoint changes anything, so the starts share one container, and its
    diff shows that nothing changed (a list that names /app first included)."""
    with c.host_dir(0) as d:
        os.symlink("/etc", d / "etc-link")
        os.lchown(d / "etc-link", c.host(0), c.host(0))
        paths = (*SYSTEM_PATHS, "/data/etc-link", "/app:/etc")
        starts, changed = c.starts_and_changes([Case.of(CHOWN_PATHS=path, USER_ID="3000") for path in paths],
                                               opts=["-v", f"{d}:/data"])
    for path, p in zip(paths, starts):
        if p.returncode != 2 or f"CHOWN_PATHS entry '{path.rpartition(':')[2]}'" not in p.stderr:
            c.fail("CHOWN_PATHS refuses system paths", f"{path}: exit {p.returncode}, stdout {p.stdout!r}, "
                                                       f"stderr {p.stderr[-600:]!r}")
    if "'/data/etc-link' (that is, /etc) is a system path" not in starts[-2].stderr:
        c.fail("CHOWN_PATHS resolves symlinks", starts[-2].stderr[-400:])
    c.unchanged("CHOWN_PATHS refused before any change", changed, mounts=["/data"])


@arch_independent
def remap_failure_says_why(c: Ctx):
    """A passwd file the engine mounts cannot be replaced: the warning says that, not "read-only"."""
    passwd = probe.result(c, "/etc/passwd").stdout
    group_sum = probe.result(c, "md5sum /etc/passwd /etc/group").stdout.split("\n")[1].split()[:1]
    with c.host_dir(0) as d:
        (d / "passwd").write_text(passwd)
        c.chown(d / "passwd", 0)
        p = c.run("sh", "-c", 'echo "$(id -u):$(id -g)"; md5sum /etc/group',
                  opts=["-v", f"{d / 'passwd'}:/etc/passwd:ro", "-e", "USER_ID=3000"])
    w = warnings(p.stderr)
    lines = p.stdout.split("\n")
    if (p.returncode != 0 or lines[0] != "3000:3000" or lines[1].split()[:1] != group_sum or len(w) != 1
            or "cannot replace /etc/passwd" not in w[0] or "read-only" in w[0]):
        c.fail("a failed remap says why", f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr.strip()!r}")


@arch_independent
def mount_check_warns(c: Ctx):
    with c.host_dir(0) as root_dir, c.host_dir(4321, 4321, 0o700) as user_dir:
        mounts = ["-v", f"{root_dir}:/data", "-v", f"{user_dir}:/more"]
        # Neither start changes anything: they share one container.
        p, quiet = c.starts([Case.of("sh", "-c", IDS), Case.of(MOUNT_CHECK="no")], opts=mounts)
        c.expect("mount check: the app still runs", p, c.ops)
        line = fix_line(c, p, "/data")
        wants = ["owner 0:0", "CHOWN_PATHS=/data"] + (
            ["--userns=keep-id:uid=", "USER_ID=0 ALLOW_ROOT_ID=1"] if c.engine.rootless else
            ["USER_ID=0 ALLOW_ROOT_ID=1", "--user 0"])
        if any(w not in line for w in wants) or "MAP_NODE_UID" in line:
            c.fail("mount check: root-owned mount", f"want {wants} and no MAP_NODE_UID in {line!r}")
        line = fix_line(c, p, "/more")
        if any(w not in line for w in ("owner 4321:4321", "CHOWN_PATHS=/more", "MAP_NODE_UID=/more")):
            c.fail("mount check: mount owned by another user", line)
        if len(warnings(p.stderr)) != 2:
            c.fail("mount check: one line per mount", p.stderr.strip())
        p = c.expect("MOUNT_CHECK=no", quiet)
        if p.stderr.strip():
            c.fail("MOUNT_CHECK=no silences it", p.stderr.strip())


@arch_independent
def mount_check_quiet(c: Ctx):
    """No line where the app can write, for read-only mounts, or for a fresh tmpfs."""
    with c.host_dir(c.s.ops_uid, c.s.ops_gid) as mine, c.host_dir(0, mode=0o1777) as shared, \
            c.host_dir(0) as ro:
        p = c.expect("mount check: nothing to say", c.run("true", opts=[
            "-v", f"{mine}:/data", "-v", f"{shared}:/shared", "-v", f"{ro}:/ro:ro", "--tmpfs", "/scratch"]))
        if p.stderr.strip():
            c.fail("mount check: nothing to say", f"unexpected stderr {p.stderr.strip()!r}")
    p = probe.result(c, "MOUNT_CHECK=maybe")
    if p.returncode == 0 or "MOUNT_CHECK='maybe'" not in p.stderr:
        c.fail("MOUNT_CHECK=maybe refused", f"exit {p.returncode}, stderr {p.stderr.strip()!r}")


@arch_independent
def data_volume_recipes(c: Ctx):
    """Docker's data-volume container recipe: on a path the image lacks it needs CHOWN_PATHS; on /app it works."""
    with c.named() as dbdata, c.named() as appdata:
        for name, path in ((dbdata, "/dbdata"), (appdata, "/app")):
            c.engine.run("run", "-d", "--name", name, "--network", "none", "--platform", c.s.platform, "-v", path,
                         c.s.runs)
        # The first start fails before it writes: the second, which fixes it, can follow in the same container.
        p, fixed = c.starts([Case.of("sh", "-c", "echo x > /dbdata/f"),
                             Case.of("sh", "-c", "echo x > /dbdata/f && stat -c %u:%g /dbdata/f",
                                     CHOWN_PATHS="/dbdata")], opts=["--volumes-from", dbdata])
        expect_fix_before_failure(c, "data container on /dbdata", p, "/dbdata", "CHOWN_PATHS=/dbdata",
                                  "USER_ID=0 ALLOW_ROOT_ID=1")
        p = c.expect("data container on /dbdata with CHOWN_PATHS", fixed, f"{c.s.ops_uid}:{c.s.ops_gid}")
        if p.stderr.strip():
            c.fail("data container on /dbdata with CHOWN_PATHS", f"unexpected stderr {p.stderr.strip()!r}")
        p = c.expect("data container on /app", c.run("sh", "-c", "echo x > /app/f && stat -c %u /app/f",
                                                      opts=["--volumes-from", appdata]), str(c.s.ops_uid))
        if p.stderr.strip():
            c.fail("data container on /app", f"unexpected stderr {p.stderr.strip()!r}")


@arch_independent
def backup_restore_recipes(c: Ctx):
    """Backup to a directory you own (MAP_NODE_UID) or as root (an admin job); restore; files belong to ops."""
    fill = "echo data > /dbdata/f && mkdir /dbdata/sub && echo more > /dbdata/sub/g"
    show = "cat /dbdata/f /dbdata/sub/g; stat -c '%u:%g' /dbdata/f /dbdata/sub /dbdata/sub/g"
    with c.named() as dbdata, c.named() as dbdata2, c.host_dir(0) as root_dir, c.host_dir(1000) as mine:
        c.engine.run("run", "--name", dbdata, "--network", "none", "--platform", c.s.platform, "-v", "/dbdata",
                     "-e", "CHOWN_PATHS=/dbdata", c.s.runs, "sh", "-c", fill)
        backup = ("tar", "cvf", "/backup/backup.tar", "/dbdata")
        # The refused backup writes nothing: the admin job's, which follows its advice, shares its container.
        p, as_root = c.starts([Case.of(*backup), Case.of(*backup, USER_ID="0", ALLOW_ROOT_ID="1")],
                              opts=["--volumes-from", f"{dbdata}:ro", "-v", f"{root_dir}:/backup"])
        expect_fix_before_failure(c, "backup into a root-owned directory", p, "/backup", "CHOWN_PATHS=/backup",
                                  "USER_ID=0 ALLOW_ROOT_ID=1")
        c.expect("backup with MAP_NODE_UID=/backup", c.run(*backup, opts=[
            "--volumes-from", f"{dbdata}:ro", "-v", f"{mine}:/backup", "-e", "MAP_NODE_UID=/backup"]))
        if c.owner(mine / "backup.tar") != (c.host(1000), c.host(1000)):
            c.fail("backup belongs to you", f"backup.tar is owned by {c.owner(mine / 'backup.tar')} on the host")
        c.expect("backup as root (admin job)", as_root)
        if c.owner(root_dir / "backup.tar")[0] != c.host(0):
            c.fail("backup as root", f"backup.tar is owned by {c.owner(root_dir / 'backup.tar')} on the host")
        c.engine.run("create", "--name", dbdata2, "--network", "none", "--platform", c.s.platform, "-v", "/dbdata",
                     c.s.runs)
        p = c.expect("restore into a new data container", c.run("sh", "-c", "cd /dbdata && tar xvf "
                                                                "/backup/backup.tar --strip-components 1 && " + show,
                                                                opts=["--volumes-from", dbdata2, "-v",
                                                                      f"{mine}:/backup:ro", "-e",
                                                                      "CHOWN_PATHS=/dbdata"]))
        ops = f"{c.s.ops_uid}:{c.s.ops_gid}"
        if p.stdout.strip().split("\n")[-5:] != ["data", "more", ops, ops, ops]:
            c.fail("restored files belong to ops", f"stdout {p.stdout!r}")


CHECKS = (root_account, account_without_own_group, chown_paths_refuses_system_paths, remap_failure_says_why,
          mount_check_warns, mount_check_quiet, data_volume_recipes, backup_restore_recipes)
