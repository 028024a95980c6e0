"""The ops user and group, written into a base's account files the way its own tools would write them.

Two dialects, chosen by what the base ships:

* shadow-utils (Debian, Ubuntu): `groupadd --gid G ops` then `useradd
  --no-log-init --uid U --gid G --create-home --home-dir /home/ops --shell
  /bin/sh ops`, with the defaults those tools read from /etc/login.defs and
  /etc/default/useradd (password ageing, home mode, skel, subordinate ids).
* busybox (Alpine): `addgroup -g G ops` then `adduser -D -u U -G ops -h
  /home/ops -s /bin/sh ops`, minus the group member list adduser adds
  (the image's group line stays `ops:x:G:`).

Passwords are locked (`!`) and the last-change day is the build epoch's day,
so the result is a function of the base and the settings only.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.image.assembly.basefs import BaseFs
from builder.image.assembly.layer import DIR, FILE, Entry

SHADOW_UTILS, BUSYBOX = "shadow-utils", "busybox"


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class Account:
    """The image's user: a plan names it by user and ids (labels, the inputs digest); assembly also writes its
    home and shell."""
    user: str
    uid: int
    gid: int
    home: str = "home/ops"   # relative to the root
    shell: str = "/bin/sh"

    def __str__(self) -> str:
        return f"{self.user}:{self.uid}:{self.gid}"


def dialect(fs: BaseFs) -> str:
    if any(fs.get(p) for p in ("usr/sbin/useradd", "sbin/useradd")):
        return SHADOW_UTILS
    if fs.get("bin/busybox") and fs.get("etc/passwd"):
        return BUSYBOX
    raise AccountError("the base has neither shadow-utils' useradd nor busybox: cannot tell how its accounts are "
                       "written; pick a Debian, Ubuntu or Alpine base")


def defs(text: str | None, sep: str | None = None) -> dict[str, str]:
    """login.defs (`KEY value`) or default/useradd (`KEY=value`); comments and blanks ignored."""
    out = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, value = line.split(sep, 1) if (sep or " ") in line or (not sep and "\t" in line) else (line, "")
        out[key.strip()] = value.strip().strip('"')
    return out


def _num(d: dict, key: str, default: int) -> int:
    """A number as the shadow tools read it (strtol base 0: 0x.. hex, 0.. octal)."""
    if key not in d:
        return default
    v = d[key]
    try:
        sign, digits = (-1, v[1:]) if v.startswith("-") else (1, v)
        base = 16 if digits.lower().startswith("0x") else 8 if digits.startswith("0") and len(digits) > 1 else 10
        return sign * int(digits, base)
    except ValueError:
        raise AccountError(f"base /etc/login.defs or /etc/default/useradd: {key} {v!r} is not a number") from None


def _append(text: str, line: str) -> str:
    return text + ("" if not text or text.endswith("\n") else "\n") + line + "\n"


def _names_and_ids(text: str, id_field: int = 2) -> tuple[set[str], set[int]]:
    names, ids = set(), set()
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > id_field and f[0]:
            names.add(f[0])
            if f[id_field].isdigit():
                ids.add(int(f[id_field]))
    return names, ids


def _check_free(fs: BaseFs, a: Account) -> None:
    users, uids = _names_and_ids(fs.text("etc/passwd") or "")
    groups, gids = _names_and_ids(fs.text("etc/group") or "")
    for taken, what in ((a.user in users, f"user {a.user}"), (a.uid in uids, f"uid {a.uid}"),
                        (a.user in groups, f"group {a.user}"), (a.gid in gids, f"gid {a.gid}")):
        if taken:
            raise AccountError(f"the base already has {what}; pick other images.ops_user/ops_uid/ops_gid")
    if fs.get(a.home):
        raise AccountError(f"the base already has /{a.home}; pick another images.ops_user")


def free_range(text: str, lo: int, hi: int, count: int) -> int:
    """The lowest start >= lo whose `count` ids overlap no range in a subuid/subgid file (as useradd picks)."""
    ranges = sorted((int(f[1]), int(f[1]) + int(f[2])) for f in (l.split(":") for l in text.splitlines())
                    if len(f) == 3 and f[1].isdigit() and f[2].isdigit())
    start = lo
    for begin, end in ranges:
        if end <= start:
            continue
        if begin >= start + count:
            break
        start = max(start, end)
    if start + count - 1 > hi:
        raise AccountError(f"no free subordinate id range of {count} between {lo} and {hi}")
    return start


def _rewrite(fs: BaseFs, path: str, text: str) -> Entry:
    e = fs.get(path)
    return Entry(path, FILE, e.mode, e.uid, e.gid, text.encode("utf-8", "surrogateescape"))


def _home(fs: BaseFs, a: Account, mode: int, skel: str) -> list[Entry]:
    out = [Entry(a.home, DIR, mode, a.uid, a.gid)]
    for e in fs.under(skel):
        rel = e.path[len(skel) + 1:]
        out.append(Entry(f"{a.home}/{rel}", e.kind, e.mode, a.uid, a.gid, e.data, e.target))
    return out


def shadow_utils(fs: BaseFs, a: Account, day: int) -> list[Entry]:
    login = defs(fs.text("etc/login.defs"))
    useradd = defs(fs.text("etc/default/useradd"), "=")
    out = []
    group = _append(fs.text("etc/group"), f"{a.user}:x:{a.gid}:")
    out.append(_rewrite(fs, "etc/group", group))
    if fs.get("etc/gshadow"):
        out.append(_rewrite(fs, "etc/gshadow", _append(fs.text("etc/gshadow"), f"{a.user}:!::")))
    out.append(_rewrite(fs, "etc/passwd", _append(fs.text("etc/passwd"), f"{a.user}:x:{a.uid}:{a.gid}::/{a.home}:{a.shell}")))
    if fs.get("etc/shadow"):
        def field(v: int) -> str:
            return "" if v < 0 else str(v)
        ageing = [field(_num(login, k, -1)) for k in ("PASS_MIN_DAYS", "PASS_MAX_DAYS", "PASS_WARN_AGE")]
        inactive = field(_num(useradd, "INACTIVE", -1))
        expire = useradd.get("EXPIRE", "")
        out.append(_rewrite(fs, "etc/shadow", _append(fs.text("etc/shadow"), ":".join(
            [a.user, "!", field(day), *ageing, inactive, expire, ""]))))
    in_range = _num(login, "UID_MIN", 1000) <= a.uid <= _num(login, "UID_MAX", 60000)
    for kind in ("uid", "gid"):
        path, key = f"etc/sub{kind}", f"SUB_{kind.upper()}"
        count = _num(login, f"{key}_COUNT", 65536)
        if fs.get(path) and count > 0 and in_range:
            text = fs.text(path)
            start = free_range(text, _num(login, f"{key}_MIN", 100000), _num(login, f"{key}_MAX", 600100000), count)
            out.append(_rewrite(fs, path, _append(text, f"{a.user}:{start}:{count}")))
    umask = _num(login, "UMASK", 0o22)
    mode = _num(login, "HOME_MODE", 0o777 & ~umask)
    skel = useradd.get("SKEL", "/etc/skel").strip("/")
    if not skel.startswith("etc/"):
        raise AccountError(f"base /etc/default/useradd: SKEL={skel} is outside /etc, which the build does not read")
    out += _home(fs, a, mode, skel)
    if useradd.get("CREATE_MAIL_SPOOL", "no").lower() == "yes":
        mail_dir = login.get("MAIL_DIR", "/var/mail").strip("/")
        mail_gid = next((int(f[2]) for f in (l.split(":") for l in group.splitlines()) if f[0] == "mail"), a.gid)
        out.append(Entry(f"{mail_dir}/{a.user}", FILE, 0o660, a.uid, mail_gid))
    return out


def busybox(fs: BaseFs, a: Account, day: int) -> list[Entry]:
    out = [_rewrite(fs, "etc/group", _append(fs.text("etc/group"), f"{a.user}:x:{a.gid}:"))]
    if fs.get("etc/gshadow"):
        out.append(_rewrite(fs, "etc/gshadow", _append(fs.text("etc/gshadow"), f"{a.user}:!::")))
    out.append(_rewrite(fs, "etc/passwd", _append(
        fs.text("etc/passwd"), f"{a.user}:x:{a.uid}:{a.gid}:Linux User,,,:/{a.home}:{a.shell}")))
    if fs.get("etc/shadow"):
        out.append(_rewrite(fs, "etc/shadow", _append(fs.text("etc/shadow"), f"{a.user}:!:{day}:0:99999:7:::")))
    # adduser makes the home 0755, chowns it, then sets the setgid bit.
    return out + _home(fs, a, 0o2755, "etc/skel")


def add(fs: BaseFs, a: Account, epoch: int) -> tuple[str, list[Entry]]:
    """(dialect, the entries the layer writes for the account): account files, home and its skel copy."""
    kind = dialect(fs)
    for required in ("etc/passwd", "etc/group"):
        if not fs.get(required) or fs.get(required).kind != FILE:
            raise AccountError(f"the base has no /{required}")
    _check_free(fs, a)
    day = epoch // 86400
    return kind, (shadow_utils if kind == SHADOW_UTILS else busybox)(fs, a, day)
