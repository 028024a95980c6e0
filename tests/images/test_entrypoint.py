"""images/entrypoint.sh and the files it sources, run against a root of their own: no engine.

Each case builds a small container root (etc/passwd, etc/group, proc/self/status, a mountinfo, device
nodes), runs the entrypoint on it under dash, bash and busybox ash with ENTRYPOINT_ROOT pointing there and
ENTRYPOINT_DRY_RUN=1 (the chown and exec commands are printed, not run), and checks the decision: the exit
code, the exec line, the lines on stderr and the account files. ENTRYPOINT_UNDER_TEST names another
directory holding the shell files (benchmarks/entrypoint_mutants.py points it at mutants), ENTRYPOINT_SHELLS
the shells to run under (default dash,bash,ash).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPTS = Path(os.environ.get("ENTRYPOINT_UNDER_TEST") or ROOT / "images")
SHELLS = {"dash": ["dash"], "bash": ["bash", "--posix"], "ash": ["busybox", "ash"]}
# ENTRYPOINT_SHELLS=dash (comma-separated) runs the cases under those shells only.
SHELLS = {k: v for k, v in SHELLS.items() if k in (os.environ.get("ENTRYPOINT_SHELLS") or ",".join(SHELLS)).split(",")}

PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
ops:x:10001:10001::/home/ops:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
video:x:44:
users:x:100:
render:x:105:
nogroup:x:65534:
ops:x:10001:
"""
OPS = "ops:x:10001:10001::/home/ops:/bin/sh"
DOCKER_CAPS = "00000000a80425fb"
MOUNT_ROOT = "100 90 0:50 / / {opts},relatime - overlay overlay rw,lowerdir=/l"
ENGINE_MOUNTS = ["101 100 0:52 / /proc rw,nosuid - proc proc rw",
                 "102 100 0:53 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755",
                 "103 100 8:1 /var/lib/docker/containers/x/hosts /etc/hosts rw,relatime - ext4 /dev/sda1 rw"]


@dataclass
class Given:
    """A container as the engine starts it. Ids are "uid:gid"; a path spec is "PATH UID:GID MODE"."""
    env: dict = field(default_factory=dict)
    user: str = "0:0"                     # the uid:gid the entrypoint starts as
    groups: str = "0"                     # root's groups, as the engine computed them
    caps: str = DOCKER_CAPS
    app: str = "10001:0 775"              # the workdir, /app
    mounts: tuple = ()                    # bind mounts ("PATH UID:GID MODE[ OPTS]"; tmpfs: a fresh one, gone: vanished)
    files: tuple = ()                     # plain paths made in the root ("PATH UID:GID MODE")
    devices: tuple = ()                   # device nodes ("PATH UID:GID MODE")
    bound_devices: tuple = ()             # device nodes bound as mounts (--device under userns-remap)
    links: tuple = ()                     # symlinks ("PATH TARGET")
    read_only: bool = False               # --read-only
    uid_map: str = "0 0 4294967295"
    overflow: str = "65534:65534"         # the kernel's overflowuid:overflowgid
    passwd: str = PASSWD
    group: str = GROUP
    home: str = "10001:10001 2755"
    tmp: str = "0:0 1777"
    nss: bool = False                     # the image carries nss_wrapper (glibc flavors)
    fail: str = ""                        # "mv:passwd": mv onto etc/passwd fails; "chown:*/fd/*": a glob of its args
    pipes: str = ""                       # the stdio fds that are pipes, e.g. "12" (as a container's stdout, stderr)
    real: bool = False                    # run the chowns for real in the root, a stand-in gosu printing the exec


@dataclass
class Ran:
    rc: int
    out: list          # the printed commands, root removed
    err: list          # stderr lines, root removed
    passwd: str
    group: str
    etc: list          # the names in etc/ afterwards: no staged or backup file may stay
    nss_passwd: str    # the passwd written for nss_wrapper, if any
    rewrote: set       # the account files replaced (a new inode), e.g. {"group"}

    @property
    def exec(self):
        return next((line[5:] for line in self.out if line.startswith("exec ")), None)

    @property
    def home(self):
        return next((line[5:] for line in self.out if line.startswith("HOME=")), None)


def _spec(spec: str):
    path, ids, mode, *opts = spec.split()
    uid, gid = ids.split(":")
    return path, int(uid), int(gid), int(mode, 8), opts


def _make(root: Path, spec: str, kind: str = "dir"):
    path, uid, gid, mode, _ = _spec(spec)
    p = root / path.replace("\\040", " ").lstrip("/")  # mountinfo's escape for a space
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        p.mkdir(exist_ok=True)
    elif kind == "dev":
        os.mknod(p, mode | stat.S_IFCHR, os.makedev(1, 3))
    else:
        p.write_text("x")
    os.chown(p, uid, gid)
    os.chmod(p, mode)
    return path


def build(root: Path, g: Given):
    """The container root `g` describes."""
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text(g.passwd)
    (root / "etc/group").write_text(g.group)
    uid, gid = g.user.split(":")
    proc = root / "proc/self"
    proc.mkdir(parents=True)
    (proc / "status").write_text(f"Name:\tsh\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\n"
                                 f"Groups:\t{g.groups}\nCapEff:\t{g.caps}\n")
    (proc / "uid_map").write_text(g.uid_map + "\n")
    (root / "proc/sys/kernel").mkdir(parents=True)
    for f, value in zip(("overflowuid", "overflowgid"), g.overflow.split(":")):
        (root / "proc/sys/kernel" / f).write_text(value + "\n")
    # The image's own directories first: a mount over one of them gives it the mount's owner and mode.
    _make(root, f"/app {g.app}")
    _make(root, f"/home/ops {g.home}")
    _make(root, f"/tmp {g.tmp}")
    lines = [MOUNT_ROOT.format(opts="ro" if g.read_only else "rw"), *ENGINE_MOUNTS]
    for i, spec in enumerate(g.mounts):
        path, *_, opts = _spec(spec)
        _make(root, spec)
        source = "/ - tmpfs tmpfs" if "tmpfs" in opts else f"/srv{path} - ext4 /dev/sda1"
        if "gone" in opts:  # listed, but no longer there to stat
            (root / path.lstrip("/")).rmdir()
        opts = ",".join(["rw", *(o for o in opts if o not in ("tmpfs", "gone"))])
        # An optional field (propagation) before the separator, as bind mounts often have.
        lines.append(f"{200 + i} 100 8:1 {source.split(' - ')[0]} {path} {opts} master:1 - {source.split(' - ')[1]} rw")
    for i, spec in enumerate(g.bound_devices):
        lines.append(f"{300 + i} 100 0:5 /render {_make(root, spec, 'dev')} rw,nosuid - devtmpfs udev rw")
    (proc / "mountinfo").write_text("\n".join(lines) + "\n")
    # The engine's standard nodes, as docker makes them: /dev/console's group may write, other may not.
    for spec in ("null 0:0 666", "zero 0:0 666", "tty 0:0 666", "urandom 0:0 666", "console 0:5 620"):
        _make(root, f"/dev/{spec}", "dev")
    for spec in g.devices:
        _make(root, spec, "dev")
    for spec in g.files:
        _make(root, spec, "file")
    for spec in g.links:
        path, target = spec.split()
        (root / path.lstrip("/")).symlink_to(target)
    lib = root / "usr/local/lib/base-gosu"
    lib.mkdir(parents=True)
    for f in SCRIPTS.glob("entrypoint-*.sh"):
        shutil.copy(f, lib / f.name)
    if g.nss:
        (lib / "libnss_wrapper.so").write_text("")


def _path(root: Path, g: Given) -> str:
    """PATH with a stand-in gosu that prints what it was given (a real run), and, for g.fail ("mv:passwd"),
    a tool that fails when its target is the named file under etc/."""
    bin_dir = root.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gosu").write_text('#!/bin/sh\necho "exec gosu $*"\n')
    (bin_dir / "gosu").chmod(0o755)
    if not g.fail:
        return f"{bin_dir}:{os.environ['PATH']}"
    tool, target = g.fail.split(":")
    real = shutil.which(tool)
    pattern = target if "*" in target else f"*etc/{target}"  # a glob as given, else a file under etc/
    (bin_dir / tool).write_text(f'#!/bin/sh\ncase "$*" in {pattern}) echo "{tool}: injected failure" >&2; '
                                f'exit 1 ;; esac\nexec {real} "$@"\n')
    (bin_dir / tool).chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def run_alone(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """argv in a session of its own, ended whole when it returns or times out: a subshell of a mutant that
    loops (benchmarks/entrypoint_mutants.py) would otherwise outlive the shell that started it."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kw) as p:
        try:
            out, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def start(shell: str, g: Given, *cmd: str) -> Ran:
    base = Path(tempfile.mkdtemp(prefix="ep-"))
    base.chmod(0o755)  # an arbitrary uid must reach the root
    try:
        root = base / "root"
        root.mkdir()
        build(root, g)
        inodes = {f: os.stat(root / "etc" / f).st_ino for f in ("passwd", "group")}
        env = {"PATH": _path(root, g), "ENTRYPOINT_ROOT": str(root), "PWD": str(root / "app"), "HOME": "/root",
               **({} if g.real else {"ENTRYPOINT_DRY_RUN": "1"}), **g.env}
        uid, gid = map(int, g.user.split(":"))
        who = {} if uid == 0 else {"user": uid, "group": gid, "extra_groups": []}
        argv = [*SHELLS[shell], str(SCRIPTS / "entrypoint.sh"), *(cmd or ("true",))]
        if g.pipes:  # stand-ins at proc/PID/fd/N: a shell makes them, then execs the entrypoint as the same PID
            argv = ["sh", "-c", 'mkdir -p "$R/proc/$$/fd" && for n in $P; do mkfifo "$R/proc/$$/fd/$n"; done && '
                    'exec "$@"', "sh", *argv]
            env.update(R=str(root), P=" ".join(g.pipes))
        p = run_alone(argv, env=env, cwd=root / "app", **who)

        def clean(text):
            return [re.sub(r"/proc/[0-9]+/", "/proc/PID/", line.replace(str(root), "")) for line in text.splitlines()]
        out = clean(p.stdout)
        nss = next((line[19:] for line in out if line.startswith("NSS_WRAPPER_PASSWD=/")), "/nonexistent")
        return Ran(p.returncode, out, clean(p.stderr), (root / "etc/passwd").read_text(),
                   (root / "etc/group").read_text(), sorted(os.listdir(root / "etc")),
                   (root / nss.lstrip("/")).read_text() if (root / nss.lstrip("/")).is_file() else "",
                   {f for f, ino in inodes.items() if os.stat(root / "etc" / f).st_ino != ino})
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=list(SHELLS))
def shell(request):
    if not shutil.which(SHELLS[request.param][0]):
        pytest.fail(f"{SHELLS[request.param][0]} is not installed; ./run installs it")
    return request.param


def ops_line(passwd: str) -> str:
    return next(line for line in passwd.splitlines() if line.startswith("ops:"))


def group_line(group: str, gid: int) -> str:
    return next((line for line in group.splitlines() if line.split(":")[2] == str(gid)), "")


def case(id, given=None, *, rc=0, run="gosu ops true", err=(), ops=OPS, acts=(), **kw):
    """One row: the container, then what the start must do (`run`: the exec line, None when refused)."""
    return pytest.param(given or Given(**kw), rc, run if rc == 0 else None, list(err), ops, list(acts), id=id)


E = "entrypoint: error: "
W = "entrypoint: warning: "
HOME_CHOWN = "find /home/ops -xdev ( -user 10001 -o -group 10001 ) -exec chown -h {ids} {{}} +"
APP_CHOWN = "chown -h {ids} /app"


def remapped(ids):
    return [HOME_CHOWN.format(ids=ids), APP_CHOWN.format(ids=ids)]


IDS = [
    case("nothing-to-change"),
    case("USER_ID=2000", env={"USER_ID": "2000"}, ops="ops:x:2000:2000::/home/ops:/bin/sh", acts=remapped("2000:2000")),
    case("USER_ID=2000,GROUP_ID=3000", env={"USER_ID": "2000", "GROUP_ID": "3000"},
         ops="ops:x:2000:3000::/home/ops:/bin/sh", acts=remapped("2000:3000")),
    case("GROUP_ID=3000", env={"GROUP_ID": "3000"}, ops="ops:x:10001:3000::/home/ops:/bin/sh",
         acts=remapped("10001:3000")),
    case("USER_ID=10001-same-ids", env={"USER_ID": "10001"}),
    case("USER_ID=4294967294-max", env={"USER_ID": "4294967294"},
         ops="ops:x:4294967294:4294967294::/home/ops:/bin/sh", acts=remapped("4294967294:4294967294")),
    case("USER_ID=abc", env={"USER_ID": "abc"}, rc=2,
         err=[E + "USER_ID='abc' is not a decimal number; use e.g. USER_ID=1000"]),
    case("USER_ID=-1", env={"USER_ID": "-1"}, rc=2,
         err=[E + "USER_ID='-1' is not a decimal number; use e.g. USER_ID=1000"]),
    case("USER_ID=1e3", env={"USER_ID": "1e3"}, rc=2,
         err=[E + "USER_ID='1e3' is not a decimal number; use e.g. USER_ID=1000"]),
    case("USER_ID=1000;id", env={"USER_ID": "1000;id"}, rc=2,
         err=[E + "USER_ID='1000;id' is not a decimal number; use e.g. USER_ID=1000"]),
    case("USER_ID=empty", env={"USER_ID": ""}, rc=2,
         err=[E + "USER_ID='' is not a decimal number; use e.g. USER_ID=1000"]),
    case("USER_ID=010-leading-zero", env={"USER_ID": "010"}, rc=2,
         err=[E + "USER_ID='010' has a leading zero; write it without one"]),
    case("USER_ID=4294967295-overflow", env={"USER_ID": "4294967295"}, rc=2,
         err=[E + "USER_ID='4294967295' is out of range (0-4294967294)"]),
    case("USER_ID=99999999999-eleven-digits", env={"USER_ID": "99999999999"}, rc=2,
         err=[E + "USER_ID='99999999999' is out of range (0-4294967294)"]),
    case("GROUP_ID=x-with-USER_ID", env={"USER_ID": "2000", "GROUP_ID": "x"}, rc=2,
         err=[E + "GROUP_ID='x' is not a decimal number; use e.g. GROUP_ID=1000"]),
    case("GROUP_ID=07-alone", env={"GROUP_ID": "07"}, rc=2,
         err=[E + "GROUP_ID='07' has a leading zero; write it without one"]),
    case("USER_ID=0-refused", env={"USER_ID": "0"}, rc=2,
         err=[E + "USER_ID=0 would run the app as root; set ALLOW_ROOT_ID=1 if you really mean it"]),
    case("GROUP_ID=0-refused", env={"USER_ID": "2000", "GROUP_ID": "0"}, rc=2,
         err=[E + "GROUP_ID=0 would run the app as root; set ALLOW_ROOT_ID=1 if you really mean it"]),
    case("ALLOW_ROOT_ID=2-is-not-1", env={"USER_ID": "0", "ALLOW_ROOT_ID": "2"}, rc=2,
         err=[E + "USER_ID=0 would run the app as root; set ALLOW_ROOT_ID=1 if you really mean it"]),
    case("USER_ID=0,ALLOW_ROOT_ID=1", env={"USER_ID": "0", "ALLOW_ROOT_ID": "1"}, run="gosu 0:0 true"),
    case("GROUP_ID=0,ALLOW_ROOT_ID=1", env={"USER_ID": "2000", "GROUP_ID": "0", "ALLOW_ROOT_ID": "1"},
         ops="ops:x:2000:0::/home/ops:/bin/sh", acts=remapped("2000:0")),
    case("USER_ID=1-collides-with-daemon", env={"USER_ID": "1", "GROUP_ID": "1"},
         ops="ops:x:1:1::/home/ops:/bin/sh", acts=remapped("1:1")),
    case("USER_ID=65534-overflow-uid-asked", env={"USER_ID": "65534"},
         ops="ops:x:65534:65534::/home/ops:/bin/sh", acts=remapped("65534:65534")),
    case("GOSU_USER=missing", env={"GOSU_USER": "missing"}, rc=2,
         err=[E + "user 'missing' is not in /etc/passwd; set GOSU_USER to the account to run as"]),
    case("GOSU_USER=root-refused", env={"GOSU_USER": "root"}, rc=2,
         err=[E + "GOSU_USER='root' has uid 0, so the app would run as root; set ALLOW_ROOT_ID=1 if you really "
              "mean it, or name an unprivileged account (the image's is ops)"]),
    case("GOSU_USER=root,ALLOW_ROOT_ID=1", env={"GOSU_USER": "root", "ALLOW_ROOT_ID": "1"}, run="gosu root true"),
    case("GOSU_USER=root,USER_ID=0,GROUP_ID=0", env={"GOSU_USER": "root", "ALLOW_ROOT_ID": "1", "USER_ID": "0",
                                                    "GROUP_ID": "0"}, run="gosu root true"),
    case("GOSU_USER=root,USER_ID=5", env={"GOSU_USER": "root", "ALLOW_ROOT_ID": "1", "USER_ID": "5"}, rc=2,
         err=[E + "USER_ID='5' cannot remap GOSU_USER='root' (uid 0); drop it, or name an unprivileged account"]),
    case("GOSU_USER=root,GROUP_ID=7", env={"GOSU_USER": "root", "ALLOW_ROOT_ID": "1", "GROUP_ID": "7"}, rc=2,
         err=[E + "GROUP_ID='7' cannot remap GOSU_USER='root' (uid 0); drop it, or name an unprivileged account"]),
    case("MAP_NODE_UID-default-app-owner-1500", app="1500:1500 775", ops="ops:x:1500:1500::/home/ops:/bin/sh",
         acts=[HOME_CHOWN.format(ids="1500:1500")]),
    case("MAP_NODE_UID-app-gid-0-keeps-gid", app="1500:0 775", ops="ops:x:1500:10001::/home/ops:/bin/sh",
         acts=[HOME_CHOWN.format(ids="1500:10001")]),
    case("MAP_NODE_UID-app-overflow-gid-kept", app="1500:65534 775", ops="ops:x:1500:10001::/home/ops:/bin/sh",
         acts=[HOME_CHOWN.format(ids="1500:10001")]),
    case("MAP_NODE_UID-root-owner-not-adopted", app="0:0 755"),
    case("MAP_NODE_UID-overflow-owner-not-adopted", app="65534:65534 755",
         err=[W + "/app is owned by the overflow uid 65534 (a host user this container cannot map); keeping ops at "
              "10001:10001"]),
    case("MAP_NODE_UID=no", env={"MAP_NODE_UID": "no"}, app="1500:1500 775"),
    case("MAP_NODE_UID=/data", env={"MAP_NODE_UID": "/data"}, mounts=("/data 1600:1700 775",),
         ops="ops:x:1600:1700::/home/ops:/bin/sh", acts=remapped("1600:1700")),
    case("MAP_NODE_UID=/missing", env={"MAP_NODE_UID": "/missing"}, rc=2,
         err=[E + "MAP_NODE_UID='/missing' does not exist; point it at a mounted path or set MAP_NODE_UID=no"]),
    case("USER_ID-wins-over-MAP_NODE_UID", env={"USER_ID": "2000"}, app="1500:1500 775",
         ops="ops:x:2000:2000::/home/ops:/bin/sh", acts=[HOME_CHOWN.format(ids="2000:2000")]),
    case("nogroup-account-remapped", env={"GOSU_USER": "nobody", "USER_ID": "3000"},
         ops="ops:x:10001:10001::/home/ops:/bin/sh", run="gosu nobody true"),
    case("USER_ID=100-gid-of-users-group", env={"USER_ID": "100"}, ops="ops:x:100:100::/home/ops:/bin/sh",
         acts=remapped("100:100")),
    case("MOUNT_CHECK=maybe", env={"MOUNT_CHECK": "maybe"}, rc=2,
         err=[E + "MOUNT_CHECK='maybe' is neither yes nor no; MOUNT_CHECK=no silences the mount check"]),
    case("DEVICE_GROUPS=off", env={"DEVICE_GROUPS": "off"}, rc=2,
         err=[E + "DEVICE_GROUPS='off' is neither yes nor no; DEVICE_GROUPS=no keeps the app out of device groups"]),
    case("cap-drop-ALL", caps="0000000000000000", rc=2,
         err=[E + "this container lacks the SETUID/SETGID capabilities (--cap-drop ALL?), so it cannot step down "
              "from root to ops. Add them back with --cap-add SETUID --cap-add SETGID, or start as the user "
              "directly with --user 10001:10001"]),
    case("cap-drop-SETGID-only", caps="00000000a80425bb", rc=2, env={"USER_ID": "2000"},
         err=[E + "this container lacks the SETUID/SETGID capabilities (--cap-drop ALL?), so it cannot step down "
              "from root to ops. Add them back with --cap-add SETUID --cap-add SETGID, or start as the user "
              "directly with --user 2000:2000"]),
]


@pytest.mark.parametrize("given,rc,run,err,ops,acts", IDS)
def test_ids(shell, given, rc, run, err, ops, acts):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert ops_line(r.passwd) == (ops if rc == 0 else OPS)
    assert [a for a in r.out if not a.startswith(("HOME=", "NSS_WRAPPER_PASSWD=", "exec "))] == acts
    assert r.etc == ["group", "passwd"]
    if rc:
        assert (r.passwd, r.group) == (PASSWD, GROUP), "a refused start changed the account files"


def test_no_command(shell):
    p = subprocess.run([*SHELLS[shell], str(SCRIPTS / "entrypoint.sh")], capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], "ENTRYPOINT_ROOT": "/nonexistent"})
    assert (p.returncode, p.stderr) == (2, E + "no command given; pass one, e.g. docker run IMAGE sh\n")


def test_remap_keeps_every_other_line_and_moves_ops_first_for_its_uid(shell):
    r = start(shell, Given(env={"USER_ID": "1", "GROUP_ID": "1"}))
    assert r.passwd.splitlines() == ["root:x:0:0:root:/root:/bin/bash", "ops:x:1:1::/home/ops:/bin/sh",
                                     "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
                                     "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"]
    assert r.group == GROUP  # gid 1 is daemon's: used as is, no second group, ops's own group unmoved


def test_remap_moves_the_own_group_to_a_new_gid(shell):
    r = start(shell, Given(env={"USER_ID": "2000", "GROUP_ID": "3000"}))
    assert r.group == GROUP.replace("ops:x:10001:", "ops:x:3000:")


def test_nogroup_account_moves_its_primary_group(shell):
    r = start(shell, Given(env={"GOSU_USER": "nobody", "USER_ID": "3000"}))
    assert "nobody:x:3000:3000:nobody:/nonexistent:/usr/sbin/nologin" in r.passwd.splitlines()
    assert group_line(r.group, 3000) == "nogroup:x:3000:"
    assert r.exec == "gosu nobody true"


def test_restart_after_remap_changes_nothing(shell):
    done = PASSWD.replace(OPS, "ops:x:2000:2000::/home/ops:/bin/sh")
    r = start(shell, Given(env={"USER_ID": "2000"}, passwd=done, app="2000:0 775", home="2000:2000 2755"))
    assert (r.rc, r.exec, r.err, r.passwd, r.group) == (0, "gosu ops true", [], done, GROUP)
    assert r.out == ["HOME=/root", "NSS_WRAPPER_PASSWD=", "exec gosu ops true"]


CHOWN = [
    case("CHOWN_PATHS=/", env={"USER_ID": "2000", "CHOWN_PATHS": "/"}, rc=2, err=[
        E + "CHOWN_PATHS entry '/' is a system path (/, /bin, /boot, /dev, /etc, /lib*, /proc, /sbin, /sys, /usr and "
        "what is under them; /home, /root, /run, /tmp, /var themselves); list your data's own directory instead"]),
    *[case(f"CHOWN_PATHS={p}", env={"USER_ID": "2000", "CHOWN_PATHS": p}, files=(f"{p}/f 0:0 644",), rc=2, err=[
        E + f"CHOWN_PATHS entry '{p}' is a system path (/, /bin, /boot, /dev, /etc, /lib*, /proc, /sbin, /sys, /usr "
        "and what is under them; /home, /root, /run, /tmp, /var themselves); list your data's own directory "
        "instead"]) for p in ("/etc", "/usr/lib", "/var", "/home", "/tmp", "/lib64/x", "/proc/1")],
    case("CHOWN_PATHS=/data/../etc", env={"USER_ID": "2000", "CHOWN_PATHS": "/data/../etc"},
         mounts=("/data 0:0 755",), rc=2, err=[
        E + "CHOWN_PATHS entry '/data/../etc' (that is, /etc) is a system path (/, /bin, /boot, /dev, /etc, /lib*, "
        "/proc, /sbin, /sys, /usr and what is under them; /home, /root, /run, /tmp, /var themselves); list your "
        "data's own directory instead"]),
    case("CHOWN_PATHS=//etc//-slashes", env={"USER_ID": "2000", "CHOWN_PATHS": "//etc//"}, rc=2, err=[
        E + "CHOWN_PATHS entry '//etc//' (that is, /etc) is a system path (/, /bin, /boot, /dev, /etc, /lib*, /proc, "
        "/sbin, /sys, /usr and what is under them; /home, /root, /run, /tmp, /var themselves); list your data's own "
        "directory instead"]),
    case("CHOWN_PATHS=/missing", env={"USER_ID": "2000", "CHOWN_PATHS": "/missing"}, rc=2,
         err=[E + "CHOWN_PATHS entry '/missing' does not exist"]),
    case("CHOWN_PATHS-second-entry-refused-first-kept", env={"USER_ID": "2000", "CHOWN_PATHS": "/data:/usr"},
         mounts=("/data 0:0 755",), rc=2, err=[
        E + "CHOWN_PATHS entry '/usr' is a system path (/, /bin, /boot, /dev, /etc, /lib*, /proc, /sbin, /sys, /usr "
        "and what is under them; /home, /root, /run, /tmp, /var themselves); list your data's own directory "
        "instead"]),
    case("CHOWN_PATHS=/data-differs", env={"USER_ID": "2000", "CHOWN_PATHS": "/data", "MOUNT_CHECK": "no"},
         mounts=("/data 0:0 755",), ops="ops:x:2000:2000::/home/ops:/bin/sh",
         acts=[*remapped("2000:2000"), "chown -R -h 2000:2000 /data"]),
    case("CHOWN_PATHS=/data-already-owned", env={"CHOWN_PATHS": "/data"}, mounts=("/data 10001:10001 755",)),
    case("CHOWN_PATHS=:/data:-empty-entries", env={"CHOWN_PATHS": ":/data:", "MOUNT_CHECK": "no"}, mounts=("/data 0:0 755",),
         acts=["chown -R -h 10001:10001 /data"]),
    case("CHOWN_PATHS-mount-inside", env={"CHOWN_PATHS": "/data", "MOUNT_CHECK": "no"},
         mounts=("/data 0:0 755", "/data/inner 0:0 755"),
         acts=["find /data -xdev ( ! -user 10001 -o ! -group 10001 ) -exec chown -h 10001:10001 {} +"]),
    case("CHOWN_PATHS-idmapped", env={"CHOWN_PATHS": "/data"}, mounts=("/data 0:0 755 idmapped",),
         err=["entrypoint: CHOWN_PATHS entry '/data' is on an idmapped mount (/data), which already shows the app "
              "its own ownership; left as it is"]),
]


@pytest.mark.parametrize("given,rc,run,err,ops,acts", CHOWN)
def test_chown_paths(shell, given, rc, run, err, ops, acts):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert [a for a in r.out if not a.startswith(("HOME=", "NSS_WRAPPER_PASSWD=", "exec "))] == acts
    assert ops_line(r.passwd) == (ops if rc == 0 else OPS)


def test_chown_paths_symlink_to_a_system_path(shell):
    g = Given(env={"USER_ID": "2000", "CHOWN_PATHS": "/app/link"})
    base = Path(tempfile.mkdtemp(prefix="ep-"))
    try:
        root = base / "root"
        root.mkdir()
        build(root, g)
        (root / "app/link").symlink_to("../etc")
        p = run_alone([*SHELLS[shell], str(SCRIPTS / "entrypoint.sh"), "true"], cwd=root / "app",
                      env={"PATH": os.environ["PATH"], "ENTRYPOINT_ROOT": str(root), "ENTRYPOINT_DRY_RUN": "1",
                           "PWD": str(root / "app"), **g.env})
        assert p.returncode == 2
        assert p.stderr.startswith(E + "CHOWN_PATHS entry '/app/link' (that is, /etc) is a system path")
        assert (root / "etc/passwd").read_text() == PASSWD
    finally:
        shutil.rmtree(base)


MOUNT_WARN = ("{p} is mounted read-write but ops ({ids}) cannot write it (owner {own}, mode {mode}). Fix: {fix}. "
              "MOUNT_CHECK=no silences this")
ROOT_FIX = ("CHOWN_PATHS=/data gives it to ops; USER_ID=0 ALLOW_ROOT_ID=1 keeps a one-off admin job (a backup) root, "
            "which --user 0 does not")

MOUNTS = [
    case("mount-writable-by-owner", mounts=("/data 10001:10001 755",)),
    case("mount-root-owned-755", mounts=("/data 0:0 755",),
         err=[W + MOUNT_WARN.format(p="/data", ids="10001:10001", own="0:0", mode="755", fix=ROOT_FIX)]),
    case("mount-root-owned-777", mounts=("/data 0:0 777",)),
    case("mount-path-with-a-space", mounts=("/my\\040data 0:0 755",),
         err=[W + MOUNT_WARN.format(p="/my data", ids="10001:10001", own="0:0", mode="755",
                                    fix=ROOT_FIX.replace("/data", "/my data"))]),
    case("mount-group-writable", mounts=("/data 0:10001 775",)),
    case("mount-other-owner", mounts=("/data 1234:1234 755",), env={"MAP_NODE_UID": "no"},
         err=[W + MOUNT_WARN.format(p="/data", ids="10001:10001", own="1234:1234", mode="755",
                                    fix="CHOWN_PATHS=/data gives it to ops; MAP_NODE_UID=/data runs as its owner "
                                        "1234; " + ROOT_FIX.split("; ")[1])]),
    case("mount-owner-without-x", mounts=("/data 10001:10001 655",),
         err=[W + MOUNT_WARN.format(p="/data", ids="10001:10001", own="10001:10001", mode="655",
                                    fix=ROOT_FIX.replace("ops; USER_ID", "ops; MAP_NODE_UID=/data runs as its owner "
                                                         "10001; USER_ID"))]),
    case("mount-group-kept-member", mounts=("/data 0:44 770",), groups="0 44"),
    case("MOUNT_CHECK=no", env={"MOUNT_CHECK": "no"}, mounts=("/data 0:0 755",)),
    case("mount-read-only-not-checked", mounts=("/data 0:0 755 ro",)),
    case("mount-idmapped-not-checked", mounts=("/data 0:0 755 idmapped",)),
    case("mount-checked-for-the-new-ids", env={"USER_ID": "2000", "CHOWN_PATHS": "/data"},
         mounts=("/data 0:0 755",), ops="ops:x:2000:2000::/home/ops:/bin/sh",
         acts=[*remapped("2000:2000"), "chown -R -h 2000:2000 /data"],
         err=[W + MOUNT_WARN.format(p="/data", ids="2000:2000", own="0:0", mode="755", fix=ROOT_FIX)]),
    case("mount-uid-0-not-checked", env={"USER_ID": "0", "ALLOW_ROOT_ID": "1"}, mounts=("/data 1234:0 700",),
         run="gosu 0:0 true"),
]


@pytest.mark.parametrize("given,rc,run,err,ops,acts", MOUNTS)
def test_mount_check(shell, given, rc, run, err, ops, acts):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert [a for a in r.out if not a.startswith(("HOME=", "NSS_WRAPPER_PASSWD=", "exec "))] == acts


READ_ONLY_GROUPS = (W + "ops could not keep the groups 44 it was given: the root filesystem is read-only (--read-only). "
                    "Start it with --user 10001:10001 --group-add 44 instead, which needs no change here")
GROUPS = [
    case("group-add-44-joins-video", groups="0 44"),
    case("group-add-4711-unnamed", groups="0 4711"),
    case("group-add-44-with-remap", groups="0 44", env={"USER_ID": "2000"}, ops="ops:x:2000:2000::/home/ops:/bin/sh",
         acts=remapped("2000:2000")),
    case("group-add-44-restart", groups="0 44", group=GROUP.replace("video:x:44:", "video:x:44:ops")),
    case("groups-listing-root-are-roots-own", groups="0 44", group=GROUP.replace("video:x:44:", "video:x:44:root")),
    case("group-add-own-gid-not-added", groups="0 10001"),
    case("group-add-overflow-gid-not-added", groups="0 65534"),
    case("group-add-read-only", groups="0 44", read_only=True, err=[READ_ONLY_GROUPS]),
    case("remap-read-only", env={"USER_ID": "2000"}, read_only=True, run="gosu 2000:2000 env HOME=/home/ops true",
         err=[W + "ops could not be given uid 2000: the root filesystem is read-only (--read-only). Start it with "
              "--user 2000:2000 instead, which needs no change here. Running as 2000:2000 with HOME=/home/ops"]),
    case("remap-and-groups-read-only", env={"USER_ID": "2000"}, groups="0 44 4711", read_only=True,
         run="gosu 2000:2000 env HOME=/home/ops true",
         err=[W + "ops could not be given uid 2000, nor keep the groups 44 4711 it was given: the root filesystem is "
              "read-only (--read-only). Start it with --user 2000:2000 --group-add 44 --group-add 4711 instead, "
              "which needs no change here. Running as 2000:2000 with HOME=/home/ops"]),
]
# The lines of /etc/group that differ after the start (removed and added, sorted).
CHANGED = {
    "group-add-44-joins-video": ["video:x:44:", "video:x:44:ops"],
    "group-add-4711-unnamed": ["group-add-4711:x:4711:ops"],
    "group-add-44-with-remap": ["ops:x:10001:", "ops:x:2000:", "video:x:44:", "video:x:44:ops"],
    "group-add-44-restart": [],
    "groups-listing-root-are-roots-own": [],
    "group-add-own-gid-not-added": [],
    "group-add-overflow-gid-not-added": [],
    "group-add-read-only": [],
    "remap-read-only": [],
    "remap-and-groups-read-only": [],
}


@pytest.mark.parametrize("given,rc,run,err,ops,acts", GROUPS)
def test_groups_kept(shell, given, rc, run, err, ops, acts, request):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert ops_line(r.passwd) == ops
    changed = set(r.group.splitlines()) ^ set(given.group.splitlines())
    assert sorted(changed) == CHANGED[request.node.callspec.id.split("-", 1)[1]]
    assert r.rewrote == ({"group"} if changed else set()) | ({"passwd"} if ops != OPS else set())
    assert r.etc == ["group", "passwd"]


RENDER = "/dev/dri/renderD128"
DEVICES = [
    case("device-gid-4711-granted", devices=(f"{RENDER} 0:4711 660",),
         err=[f"entrypoint: {RENDER} (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no "
              "turns this off"]),
    case("device-named-group-render", devices=(f"{RENDER} 0:105 660",),
         err=[f"entrypoint: {RENDER} (group render, gid 105): ops joins it to open the device; DEVICE_GROUPS=no turns "
              "this off"]),
    case("device-at-top-of-dev", devices=("/dev/ttyUSB0 0:4711 660",),
         err=["entrypoint: /dev/ttyUSB0 (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no"
              " turns this off"]),
    case("device-group-0", devices=(f"{RENDER} 0:0 660",),
         err=[W + f"{RENDER} belongs to group root (0), which the app is never given; give the device a group of its "
              "own on the host (chgrp), or DEVICE_GROUPS=no to silence this"]),
    case("device-unmapped-host-gid", devices=(f"{RENDER} 65534:65534 660",),
         err=[W + f"{RENDER} belongs to a host group this container cannot map (it shows as gid 65534); run it with "
              "--userns=host, or let others open it on the host; DEVICE_GROUPS=no silences this"]),
    case("device-unmapped-host-gid-podman", devices=(f"{RENDER} 65534:65534 660",), env={"container": "podman"},
         err=[W + f"{RENDER} belongs to a host group this container cannot map (it shows as gid 65534); start it with "
              "--user 10001:10001 --group-add keep-groups so that your host groups stay the app's (crun)"]),
    case("DEVICE_GROUPS=no", devices=(f"{RENDER} 0:4711 660",), env={"DEVICE_GROUPS": "no"}),
    case("device-others-may-open", devices=(f"{RENDER} 0:4711 666",)),
    case("device-owned-by-the-app", devices=(f"{RENDER} 10001:4711 660",)),
    case("device-group-already-kept", devices=(f"{RENDER} 0:44 660",), groups="0 44"),
    case("device-privileged", devices=(f"{RENDER} 0:4711 660",), caps="000001ffffffffff"),
    case("device-standard-set-only", devices=("/dev/pts/0 0:5 620", "/dev/shm/x 0:4711 660")),
    case("device-restart", devices=(f"{RENDER} 0:4711 660",), group=GROUP + "device-4711:x:4711:ops\n"),
    case("device-read-only", devices=(f"{RENDER} 0:4711 660",), read_only=True,
         err=[W + "ops could not join the device groups 4711: the root filesystem is read-only (--read-only). Start "
              "it with --user 10001:10001 --group-add 4711 instead, which needs no change here"]),
    case("device-with-remap", devices=(f"{RENDER} 0:4711 660",), env={"USER_ID": "2000"},
         ops="ops:x:2000:2000::/home/ops:/bin/sh", acts=remapped("2000:2000"),
         err=[f"entrypoint: {RENDER} (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no "
              "turns this off"]),
]
GRANTED = {"device-gid-4711-granted": "device-4711:x:4711:ops", "device-named-group-render": "render:x:105:ops",
           "device-at-top-of-dev": "device-4711:x:4711:ops", "device-restart": "device-4711:x:4711:ops",
           "device-with-remap": "device-4711:x:4711:ops"}


@pytest.mark.parametrize("given,rc,run,err,ops,acts", DEVICES)
def test_device_groups(shell, given, rc, run, err, ops, acts, request):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    name = request.node.callspec.id.split("-", 1)[1]
    gid = 105 if "render" in name else 4711
    assert group_line(r.group, gid) == GRANTED.get(name, group_line(given.group, gid))
    assert ops_line(r.passwd) == ops


def test_device_read_only_changes_nothing(shell):
    r = start(shell, Given(devices=(f"{RENDER} 0:4711 660",), read_only=True))
    assert (r.passwd, r.group) == (PASSWD, GROUP)


ARBITRARY = "4242:0"
NAMELESS = (W + "uid 4242 has no account and neither /tmp nor {home} is writable, so it stays nameless (whoami fails); "
            "mount a writable /tmp (an emptyDir)")
AS_GIVEN = [
    # (id, given, HOME, NSS_WRAPPER_PASSWD, stderr)
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775"), "/home/ops", "", [], id="writable-root-home-of-ops"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2755"), "/tmp", "", [], id="read-only-root-home-in-tmp"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2755", tmp="0:0 755"), "/home/ops", "", [],
                 id="read-only-root-no-writable-tmp"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", read_only=True, mounts=("/tmp 0:0 1777",)), "/tmp", "",
                 [], id="read-only-mount-tmpfs-on-tmp"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", read_only=True), "/home/ops", "", [],
                 id="read-only-mount-no-tmpfs"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", read_only=True, mounts=("/home/ops 0:0 1777",)),
                 "/home/ops", "", [], id="read-only-mount-home-mounted-rw"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", read_only=True,
                       mounts=("/home 0:0 755", "/home/ops 10001:0 2775 ro", "/tmp 0:0 1777")), "/tmp", "", [],
                 id="read-only-mount-over-home"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", read_only=True, mounts=("/tmp 0:0 1777 ro", "/tmp 0:0 1777")),
                 "/tmp", "", [], id="stacked-mounts-the-last-decides"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2755", env={"TMPDIR": "/app"}), "/app", "", [],
                 id="read-only-root-TMPDIR-writable"),
    pytest.param(Given(user=ARBITRARY, env={"HOME": "/srv"}), "/srv", "", [], id="HOME-given-is-kept"),
    pytest.param(Given(user="10001:10001"), "/", "", [], id="uid-with-account-untouched"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", nss=True), "/home/ops", "/tmp/.base-gosu-passwd.4242.",
                 [], id="nss-writable-root"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2755", nss=True), "/tmp", "/tmp/.base-gosu-passwd.4242.", [],
                 id="nss-read-only-root-tmpfs"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", tmp="0:0 755", nss=True), "/home/ops",
                 "/home/ops/.base-gosu-passwd.4242.", [], id="nss-no-tmp-passwd-in-home"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2755", tmp="0:0 755", nss=True), "/home/ops", "",
                 [NAMELESS.format(home="/home/ops")], id="nss-read-only-root-no-tmp"),
    pytest.param(Given(user=ARBITRARY, home="10001:0 2775", nss=True, env={"NSS_WRAPPER_PASSWD": "/etc/mine"}),
                 "/home/ops", "/etc/mine",
                 [], id="nss-own-passwd-kept"),
]


@pytest.mark.parametrize("given,home,nss,err", AS_GIVEN)
def test_started_as_a_uid(shell, given, home, nss, err):
    r = start(shell, Given(**{**given.__dict__, "env": {"HOME": "/", **given.env}}))
    assert (r.rc, r.exec, r.home, r.err) == (0, "true", home, err)
    got = next(line[19:] for line in r.out if line.startswith("NSS_WRAPPER_PASSWD="))
    assert got.startswith(nss) and bool(got) == bool(nss)
    if nss.startswith(("/tmp/", "/home/")):
        assert ops_line(r.nss_passwd) == "ops:x:4242:0::/home/ops:/bin/sh"
        assert r.nss_passwd.replace("ops:x:4242:0:", "ops:x:10001:10001:") == PASSWD
    assert (r.passwd, r.group) == (PASSWD, GROUP)


# podman writes an account of its own for a uid the image lacks: named after it, gid 0, home the workdir.
PODMAN = PASSWD + "4242:*:4242:0:container user:/app:/bin/sh\n"
ENGINE_ACCOUNT = [
    # (id, given, HOME)
    pytest.param(Given(user=ARBITRARY, passwd=PODMAN, env={"HOME": "/app"}), "/app", id="engine-account-writable-home"),
    pytest.param(Given(user=ARBITRARY, passwd=PODMAN, env={"HOME": "/app"}, read_only=True,
                       mounts=("/tmp 0:0 1777 tmpfs",)), "/tmp", id="engine-account-read-only-root-home-in-tmp"),
    pytest.param(Given(user=ARBITRARY, passwd=PODMAN, env={"HOME": "/app"}, read_only=True), "/app",
                 id="engine-account-read-only-root-no-writable-tmp"),
    pytest.param(Given(user=ARBITRARY, passwd=PODMAN, env={"HOME": "/srv"}, read_only=True,
                       mounts=("/tmp 0:0 1777 tmpfs",)), "/srv", id="engine-account-HOME-given-is-kept"),
    pytest.param(Given(user="65534:0", env={"HOME": "/nonexistent"}, read_only=True, mounts=("/tmp 0:0 1777 tmpfs",)),
                 "/tmp", id="image-account-gid-0-read-only-root-home-in-tmp"),
    pytest.param(Given(user="65534:65534", env={"HOME": "/nonexistent"}, read_only=True,
                       mounts=("/tmp 0:0 1777 tmpfs",)), "/nonexistent", id="image-account-own-gid-untouched"),
    pytest.param(Given(user="10001:0", env={"HOME": "/home/ops"}, read_only=True, mounts=("/tmp 0:0 1777 tmpfs",)),
                 "/home/ops", id="ops-uid-gid-0-untouched"),
]


@pytest.mark.parametrize("given,home", ENGINE_ACCOUNT)
def test_started_as_a_uid_with_an_account(shell, given, home):
    r = start(shell, given)
    assert (r.rc, r.exec, r.home, r.err) == (0, "true", home, [])
    assert (r.passwd, r.group, r.nss_passwd) == (given.passwd, GROUP, "")


FAILS = [
    # (id, given, the reason in the warning; the failing tool's own line, if it prints one, comes first)
    pytest.param(Given(env={"USER_ID": "2000"}, groups="0 44", fail="mv:passwd"),
                 "cannot replace /etc/passwd: mv: injected failure", id="passwd-replace-fails-group-rolled-back"),
    pytest.param(Given(env={"USER_ID": "2000"}, groups="0 44", fail="mv:group"),
                 "cannot replace /etc/group: mv: injected failure", id="group-replace-fails"),
    pytest.param(Given(env={"USER_ID": "2000"}, groups="0 44", fail="chmod:passwd.base-gosu-new"),
                 "cannot write /etc/passwd.base-gosu-new: chmod: injected failure", id="passwd-staging-fails"),
    pytest.param(Given(env={"USER_ID": "2000"}, groups="0 44", fail="chmod:group.base-gosu-new"),
                 "chmod: injected failure\ncannot write /etc/group.base-gosu-new: awk failed", id="group-staging-fails"),
]


@pytest.mark.parametrize("given,why", FAILS)
def test_a_failed_rewrite_changes_nothing(shell, given, why):
    r = start(shell, given)
    assert (r.rc, r.exec) == (0, "gosu 2000:2000 env HOME=/home/ops true")
    *tool, why = why.split("\n")
    assert r.err == [*tool, W + f"ops could not be given uid 2000, nor keep the groups 44 it was given: {why}. Start it with "
                     "--user 2000:2000 --group-add 44 instead, which needs no change here. Running as 2000:2000 with "
                     "HOME=/home/ops"]
    assert (r.passwd, r.group, r.etc) == (PASSWD, GROUP, ["group", "passwd"])
    assert not [a for a in r.out if a.startswith(("find", "chown"))], "the home followed ids that were not given"


STDIO = [
    pytest.param(Given(pipes="12"), "chown 10001:10001 /proc/PID/fd/1 /proc/PID/fd/2", id="stdout-stderr-pipes"),
    pytest.param(Given(pipes="012", env={"USER_ID": "2000", "GROUP_ID": "3000"}),
                 "chown 2000:3000 /proc/PID/fd/0 /proc/PID/fd/1 /proc/PID/fd/2", id="all-three-to-the-new-ids"),
    pytest.param(Given(pipes="2", env={"USER_ID": "0", "ALLOW_ROOT_ID": "1"}), "chown 0:0 /proc/PID/fd/2",
                 id="root-ids"),
    pytest.param(Given(), None, id="no-pipes-no-chown"),
]


@pytest.mark.parametrize("given,chown", STDIO)
def test_stdio_pipes_go_to_the_app(shell, given, chown):
    """A container's stdout and stderr are root's pipes: the app must be able to reopen them (/dev/stdout)."""
    r = start(shell, given)
    assert r.rc == 0 and r.err == []
    assert [line for line in r.out if line.startswith("chown") and "/proc/" in line] == ([chown] if chown else [])


ROOTLESS = "0 1000 1\n1 100000 65536"   # a rootless engine: root here is host uid 1000
REMAPPED = "0 100000 65536"              # dockerd --userns-remap
REMAP_FIX = ("this engine maps container uids to host uids 100000 and up (its subuid range), so on the host chown it "
             "to 110001:110001 (ops here), or run with --userns=host")
USERNS = [
    case("remapped-app-of-unmapped-host-user-stops", uid_map=REMAPPED, mounts=("/app 65534:65534 755",), rc=2,
         err=[E + f"/app belongs to a host user this container cannot map (it shows as uid 65534); {REMAP_FIX}; or "
              "MAP_NODE_UID=no if the app only reads it"]),
    case("rootless-app-of-the-host-user-stops", uid_map=ROOTLESS, mounts=("/app 0:0 755",), rc=2,
         err=[E + "/app belongs to you on the host (root in this rootless container is host uid 1000), so ops (10001, "
              "host uid 110000) cannot write it; set USER_ID=0 ALLOW_ROOT_ID=1: root in this rootless container is "
              "you on the host; or MAP_NODE_UID=no if the app only reads it"]),
    case("rootless-podman-app-stops-naming-keep-id", uid_map=ROOTLESS, mounts=("/app 0:0 755",), rc=2,
         env={"container": "podman"},
         err=[E + "/app belongs to you on the host (root in this rootless container is host uid 1000), so ops (10001, "
              "host uid 110000) cannot write it; run podman with --userns=keep-id:uid=10001,gid=10001 so your host "
              "uid is ops here; or MAP_NODE_UID=no if the app only reads it"]),
    case("rootless-app-writable-by-others-runs", uid_map=ROOTLESS, mounts=("/app 0:0 777",)),
    case("rootless-app-not-a-mount-runs", uid_map=ROOTLESS, app="0:0 755"),
    case("no-userns-root-owned-app-mount-runs", mounts=("/app 0:0 755",),
         err=[W + MOUNT_WARN.format(p="/app", ids="10001:10001", own="0:0", mode="755",
                                    fix=ROOT_FIX.replace("/data", "/app"))]),
    case("remapped-app-overflow-with-MAP_NODE_UID=no", uid_map=REMAPPED, mounts=("/app 65534:65534 755",),
         env={"MAP_NODE_UID": "no"},
         err=[W + MOUNT_WARN.format(p="/app", ids="10001:10001", own="65534:65534", mode="755",
                                    fix="it belongs to a host user this container cannot map: " + REMAP_FIX)]),
    case("rootless-mount-of-the-host-user-warns", uid_map=ROOTLESS, mounts=("/data 0:0 755",),
         err=[W + MOUNT_WARN.format(p="/data", ids="10001:10001", own="0:0", mode="755",
                                    fix="it is yours on the host: set USER_ID=0 ALLOW_ROOT_ID=1: root in this rootless "
                                        "container is you on the host, or USER_ID=0 ALLOW_ROOT_ID=1 (root here is you "
                                        "on the host); for a volume, CHOWN_PATHS=/data gives it to ops")]),
]


@pytest.mark.parametrize("given,rc,run,err,ops,acts", USERNS)
def test_user_namespaces(shell, given, rc, run, err, ops, acts):
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert (r.passwd, r.group) == (PASSWD, GROUP)


MORE = [
    case("GOSU_USER=daemon-home-is-a-system-path", env={"GOSU_USER": "daemon", "USER_ID": "3000"},
         files=("/usr/sbin/tool 1:1 755",), run="gosu daemon true"),
    case("CHOWN_PATHS-dangling-symlink-is-chowned", env={"CHOWN_PATHS": "/app/gone"}, links=("/app/gone /nowhere",),
         acts=["chown -R -h 10001:10001 /app/gone"]),
    case("CHOWN_PATHS-symlink-into-a-volume", env={"CHOWN_PATHS": "/app/v", "MOUNT_CHECK": "no"},
         mounts=("/data 0:0 755",), links=("/app/v /data",), acts=["chown -R -h 10001:10001 /app/v"]),
    case("device-bound-outside-dev", bound_devices=("/srv/render 0:4711 660",),
         err=["entrypoint: /srv/render (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no"
              " turns this off"]),
    case("device-of-group-0-bound-outside-dev-is-no-data", bound_devices=("/srv/render 0:0 660",),
         err=[W + "/srv/render belongs to group root (0), which the app is never given; give the device a group of its "
              "own on the host (chgrp), or DEVICE_GROUPS=no to silence this"]),
    case("two-devices-two-groups", devices=(f"{RENDER} 0:4711 660", "/dev/ttyUSB0 0:20 660"),
         err=["entrypoint: /dev/ttyUSB0 (group device-20, gid 20): ops joins it to open the device; DEVICE_GROUPS=no "
              "turns this off", f"entrypoint: {RENDER} (group device-4711, gid 4711): ops joins it to open the device; "
                                "DEVICE_GROUPS=no turns this off"]),
    case("two-unwritable-mounts-two-lines", mounts=("/data 0:0 755", "/more 0:0 755"),
         err=[W + MOUNT_WARN.format(p=p, ids="10001:10001", own="0:0", mode="755",
                                    fix=ROOT_FIX.replace("/data", p)) for p in ("/data", "/more")]),
    case("two-unwritable-mounts-with-USER_ID", mounts=("/data 0:0 755", "/more 0:0 755"), env={"USER_ID": "2000"},
         ops="ops:x:2000:2000::/home/ops:/bin/sh", acts=remapped("2000:2000"),
         err=[W + MOUNT_WARN.format(p=p, ids="2000:2000", own="0:0", mode="755",
                                    fix=ROOT_FIX.replace("/data", p)) for p in ("/data", "/more")]),
    case("CHOWN_PATHS-two-volumes", env={"CHOWN_PATHS": "/data:/more", "MOUNT_CHECK": "no"},
         mounts=("/data 0:0 755", "/more 0:0 755"),
         acts=["chown -R -h 10001:10001 /data", "chown -R -h 10001:10001 /more"]),
    case("mount-fresh-tmpfs-not-checked", mounts=("/run/cache 0:0 755 tmpfs",)),
    case("device-group-may-read-only", devices=(f"{RENDER} 0:4711 640",),
         err=[f"entrypoint: {RENDER} (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no "
              "turns this off"]),
    case("CHOWN_PATHS-second-of-two-idmapped", env={"CHOWN_PATHS": "/more"},
         mounts=("/data 0:0 755 idmapped", "/more 0:0 755 idmapped"),
         err=["entrypoint: CHOWN_PATHS entry '/more' is on an idmapped mount (/more), which already shows the app "
              "its own ownership; left as it is"]),
    case("mount-vanished-says-nothing", env={"MAP_NODE_UID": "no"}, mounts=("/gone 0:0 755 gone",)),
    case("overflow-ids-read-from-the-kernel", overflow="4000:4001", app="4000:4001 755",
         err=[W + "/app is owned by the overflow uid 4000 (a host user this container cannot map); keeping ops at "
              "10001:10001"]),
    case("overflow-gid-read-from-the-kernel", overflow="4000:4001", app="1500:4001 755",
         ops="ops:x:1500:10001::/home/ops:/bin/sh", acts=[HOME_CHOWN.format(ids="1500:10001")]),
    case("regular-file-in-dev-is-no-device", files=("/dev/termination-log 0:4711 660",)),
    case("symlink-in-dev-counted-once", devices=(f"{RENDER} 0:4711 660",), links=("/dev/dri/card-link renderD128",),
         err=[f"entrypoint: {RENDER} (group device-4711, gid 4711): ops joins it to open the device; DEVICE_GROUPS=no "
              "turns this off"]),
    case("real-remap-home-mount-stat-again", real=True, app="1500:1500 775", mounts=("/home/ops 10001:10001 755",),
         ops="ops:x:1500:1500::/home/ops:/bin/sh"),
    case("real-CHOWN_PATHS-stat-again", real=True, env={"CHOWN_PATHS": "/data"}, mounts=("/data 0:0 755",)),
    case("real-CHOWN_PATHS-remap-stat-again", real=True, env={"CHOWN_PATHS": "/data", "USER_ID": "2000"},
         mounts=("/data 0:0 755",), ops="ops:x:2000:2000::/home/ops:/bin/sh"),
    # After a failed rewrite gosu gets numeric ids and so no supplementary group: ops' membership of video by
    # name no longer opens the mount, and the mount check must say so.
    case("failed-rewrite-mount-check-by-ids", env={"USER_ID": "2000"}, fail="mv:passwd",
         group=GROUP.replace("video:x:44:", "video:x:44:ops"), mounts=("/data 0:44 775",),
         run="gosu 2000:2000 env HOME=/home/ops true",
         err=[W + "ops could not be given uid 2000: cannot replace /etc/passwd: mv: injected failure. Start it with "
              "--user 2000:2000 instead, which needs no change here. Running as 2000:2000 with HOME=/home/ops",
              W + "/data is mounted read-write but ops (2000:2000) cannot write it (owner 0:44, mode 775). Fix: "
              "CHOWN_PATHS=/data gives it to ops; USER_ID=0 ALLOW_ROOT_ID=1 keeps a one-off admin job (a backup) "
              "root, which --user 0 does not. MOUNT_CHECK=no silences this"]),
    case("real-home-chown-fails-warns", real=True, env={"USER_ID": "2000"}, fail="chown:*home/ops*",
         ops="ops:x:2000:2000::/home/ops:/bin/sh", err=[W + "could not chown /home/ops to 2000:2000"]),
    case("real-workdir-chown-fails-warns", real=True, env={"USER_ID": "2000"}, fail="chown:*/root/app",
         ops="ops:x:2000:2000::/home/ops:/bin/sh", err=[W + "could not chown /app to 2000:2000"]),
    case("real-stdio-chown-fails-warns", real=True, pipes="12", fail="chown:*/fd/*",
         err=[W + "cannot hand stdio to 10001:10001, so /dev/stdout may not open: chown: injected failure"]),
]


@pytest.mark.parametrize("given,rc,run,err,ops,acts", MORE)
def test_more_starts(shell, given, rc, run, err, ops, acts):
    """System homes, symlinks, bound devices, fresh tmpfs; and real runs (the chowns done in the root, a stand-in
    gosu), where the mount check must see what the remap and CHOWN_PATHS just changed."""
    r = start(shell, given)
    assert (r.rc, r.exec, r.err) == (rc, run, err)
    assert ops_line(r.passwd if given.env.get("GOSU_USER", "ops") == "ops" else PASSWD) == ops
    assert [a for a in r.out if not a.startswith(("HOME=", "NSS_WRAPPER_PASSWD=", "exec "))] == acts
