"""Assembly without an engine: the layer's bytes, whiteouts in base layers, account files, diffs."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from builder.core import refs
from builder.consumer import reproduce
from builder.image.assembly import accounts, append, basefs, layer
from builder.image.assembly.accounts import Account
from builder.image.assembly.layer import DIR, FILE, SYMLINK, Entry

EPOCH = 1_764_000_000          # 2025-11-24T16:00:00Z
DAY = EPOCH // 86400
OPS = Account("ops", 10001, 10001)


def test_layer_bytes_depend_on_entries_only():
    entries = [Entry("usr/local/bin/gosu", FILE, 0o755, data=b"\x7fELF"), Entry("app", DIR, 0o755, 10001, 10001),
               Entry("usr/local/bin", DIR, 0o755), Entry("home/ops/.link", SYMLINK, 0o777, 10001, 10001, target="x")]
    a, b = layer.make(entries, EPOCH), layer.make(list(reversed(entries)), EPOCH)
    assert (a.tar, a.blob) == (b.tar, b.blob)
    assert layer.make(entries, EPOCH + 1).digest != a.digest
    with tarfile.open(fileobj=io.BytesIO(a.tar)) as t:
        members = t.getmembers()
    assert [m.name for m in members] == ["app", "home/ops/.link", "usr/local/bin", "usr/local/bin/gosu"]
    assert {m.mtime for m in members} == {EPOCH}
    assert all(m.uname == m.gname == "" and not m.pax_headers for m in members)
    assert b"PaxHeader" not in a.tar and b"atime" not in a.tar and b"ctime" not in a.tar
    assert [(m.mode, m.uid) for m in members] == [(0o755, 10001), (0o777, 10001), (0o755, 0), (0o755, 0)]
    # gzip header: no FNAME flag, MTIME 0
    assert a.blob[3] & 0x08 == 0 and a.blob[4:8] == b"\0\0\0\0"
    assert gzip.decompress(a.blob) == a.tar


def test_layer_refuses_duplicates_and_bad_paths():
    with pytest.raises(ValueError, match="duplicate entries: etc"):
        layer.tar_bytes([Entry("etc", DIR, 0o755), Entry("etc", DIR, 0o755)], EPOCH)
    for bad in ("/etc", "etc/../x", "etc//x", ""):
        with pytest.raises(ValueError, match="must be relative"):
            Entry(bad, DIR, 0o755)


def tar_of(*members: tuple[str, str, bytes | str]) -> bytes:
    """A layer blob: (name, kind, data-or-link) members, gzipped like a registry's."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
            else:
                ti.size, ti.mode = len(data), 0o644
            t.addfile(ti, io.BytesIO(data) if kind == "file" else None)
    return gzip.compress(buf.getvalue())


def test_base_layers_apply_in_order_with_whiteouts():
    lower = tar_of(("./etc", "dir", b""), ("./etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n"),
                   ("./etc/gone", "file", b"x"), ("./etc/skel", "dir", b""), ("./etc/skel/.old", "file", b"o"),
                   ("./usr/bin/big", "file", b"not kept"), ("./usr/sbin/useradd", "file", b"elf"))
    upper = tar_of(("etc/.wh.gone", "file", b""), ("etc/skel/.wh..wh..opq", "file", b""),
                   ("etc/skel/.new", "file", b"n"), ("etc/passwd", "file", b"root:x:0:0::/root:/bin/bash\n"))
    fs = basefs.merge([basefs.subset(lower), basefs.subset(upper)])
    assert fs.get("etc/gone") is None
    assert [e.path for e in fs.under("etc/skel")] == ["etc/skel/.new"]
    assert fs.text("etc/passwd") == "root:x:0:0::/root:/bin/bash\n"
    assert fs.get("usr/bin/big") is None, "only what the build edits is kept"
    assert fs.get("usr/sbin/useradd").data == b"", "tools: metadata only"
    assert accounts.dialect(fs) == accounts.SHADOW_UTILS


def fs_of(files: dict[str, str], meta: tuple[str, ...] = ("usr/sbin/useradd",), modes=None) -> basefs.BaseFs:
    entries = {p: Entry(p, FILE, (modes or {}).get(p, 0o644), 0, 42 if "shadow" in p else 0, t.encode())
               for p, t in files.items()}
    entries.update({p: Entry(p, FILE, 0o755) for p in meta})
    for d in ("etc", "home", "etc/skel"):
        entries[d] = Entry(d, DIR, 0o755)
    return basefs.BaseFs(entries)


DEBIAN = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n",
    "etc/group": "root:x:0:\nmail:x:8:\nubuntu:x:1000:\n",
    "etc/shadow": "root:*:20000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\n",
    "etc/subuid": "ubuntu:100000:65536\n",
    "etc/subgid": "",
    "etc/login.defs": "UMASK\t\t022\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\nUID_MIN 1000\n"
                      "UID_MAX 60000\n#HOME_MODE 0700\n",
    "etc/default/useradd": "SHELL=/bin/sh\n",
    "etc/skel/.profile": "# profile\n",
}


def test_shadow_utils_lines_as_useradd_writes_them():
    kind, entries = accounts.add(fs_of(DEBIAN, modes={"etc/shadow": 0o640}), OPS, EPOCH)
    by = {e.path: e for e in entries}
    assert kind == accounts.SHADOW_UTILS
    assert by["etc/passwd"].data.decode().endswith("ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n"
                                                   "ops:x:10001:10001::/home/ops:/bin/sh\n")
    assert by["etc/group"].data.decode().endswith("ubuntu:x:1000:\nops:x:10001:\n")
    assert by["etc/shadow"].data.decode().endswith(f"ops:!:{DAY}:0:99999:7:::\n")
    assert (by["etc/shadow"].mode, by["etc/shadow"].gid) == (0o640, 42), "the base's mode and owner stay"
    assert by["etc/gshadow"].data.decode().endswith("ops:!::\n")
    assert by["etc/subuid"].data.decode() == "ubuntu:100000:65536\nops:165536:65536\n"
    assert by["etc/subgid"].data.decode() == "ops:100000:65536\n"
    assert (by["home/ops"].mode, by["home/ops"].uid, by["home/ops"].gid) == (0o755, 10001, 10001)
    assert (by["home/ops/.profile"].data, by["home/ops/.profile"].uid) == (b"# profile\n", 10001)


def test_shadow_utils_honours_home_mode_and_no_subid_files():
    files = {k: v for k, v in DEBIAN.items() if "sub" not in k}
    files["etc/login.defs"] += "HOME_MODE 0750\n"
    _, entries = accounts.add(fs_of(files), OPS, EPOCH)
    by = {e.path: e for e in entries}
    assert by["home/ops"].mode == 0o750 and "etc/subuid" not in by


def test_busybox_lines_as_adduser_writes_them_without_the_member_list():
    files = {"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:root\n",
             "etc/shadow": "root:*::0:::::\n"}
    fs = fs_of(files, meta=("bin/busybox",))
    del fs.entries["etc/skel"]
    kind, entries = accounts.add(fs, OPS, EPOCH)
    by = {e.path: e for e in entries}
    assert kind == accounts.BUSYBOX
    assert by["etc/passwd"].data.decode().endswith("ops:x:10001:10001:Linux User,,,:/home/ops:/bin/sh\n")
    assert by["etc/group"].data.decode() == "root:x:0:root\nops:x:10001:\n"
    assert by["etc/shadow"].data.decode().endswith(f"ops:!:{DAY}:0:99999:7:::\n")
    assert by["home/ops"].mode == 0o2755 and "etc/gshadow" not in by


def recipe_with(nss: bytes) -> append.Recipe:
    return append.Recipe(append.BaseRef("127.0.0.1:5000", "base", "sha256:" + "1" * 64), b"gosu",
                         append.Entrypoint.of({"entrypoint.sh": b"#!/bin/sh\n"}),
                         OPS, EPOCH, {}, nss_wrapper=nss)


def test_nss_wrapper_is_written_root_owned_0644_on_shadow_utils_bases_only():
    dialect, entries = append.entries_for(recipe_with(b"\x7fELF nss"), fs_of(DEBIAN))
    by = {e.path: e for e in entries}
    lib = by["usr/local/lib/base-gosu/libnss_wrapper.so"]
    assert dialect == accounts.SHADOW_UTILS and append.NSS_WRAPPER == "/" + lib.path
    assert (lib.kind, lib.mode, lib.uid, lib.gid, lib.data) == (FILE, 0o644, 0, 0, b"\x7fELF nss")
    assert (by["usr/local/lib/base-gosu"].mode, by["usr/local/lib/base-gosu"].uid) == (0o755, 0)
    _, without = append.entries_for(recipe_with(b""), fs_of(DEBIAN))
    assert not any(e.path.startswith("usr/local/lib") for e in without)
    assert recipe_with(b"x").key() != recipe_with(b"y").key() != recipe_with(b"").key()
    busybox = fs_of({"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:root\n"},
                    meta=("bin/busybox",))
    with pytest.raises(append.AssemblyError, match="nss_wrapper, a glibc library.*images.nss_wrapper.flavors"):
        append.entries_for(recipe_with(b"\x7fELF nss"), busybox)


def test_taken_names_and_ids_are_refused():
    for account, what in ((Account("ubuntu", 10001, 10001), "user ubuntu"), (Account("ops", 1000, 10001), "uid 1000"),
                          (Account("ops", 10001, 8), "gid 8"), (Account("mail", 10001, 10001), "group mail")):
        with pytest.raises(accounts.AccountError, match=f"already has {what}"):
            accounts.add(fs_of(DEBIAN), account, EPOCH)
    with pytest.raises(accounts.AccountError, match="neither shadow-utils' useradd nor busybox"):
        accounts.add(fs_of(DEBIAN, meta=()), OPS, EPOCH)


def test_free_subordinate_range_skips_used_ones():
    assert accounts.free_range("", 100000, 600100000, 65536) == 100000
    assert accounts.free_range("a:100000:65536\nb:300000:10\n", 100000, 600100000, 65536) == 165536
    assert accounts.free_range("a:150000:10\n", 100000, 600100000, 65536) == 150010
    with pytest.raises(accounts.AccountError, match="no free subordinate id range"):
        accounts.free_range("a:100000:65536\n", 100000, 120000, 65536)


def test_differences_name_fields_and_files():
    assert reproduce.config_differences({"config": {"Env": ["A=1"], "Labels": {"x": "1"}}, "created": "t"},
                                        {"config": {"Env": ["A=1"], "Labels": {"x": "2"}}, "created": "t"}) == \
        ['config config.Labels.x: published "1", rebuilt "2"']
    pub = {"usr/local/bin/entrypoint": (FILE, 0o755, 0, 0, 10, "aaaa"), "app": (DIR, 0o755, 1, 1, 0, "")}
    ours = {"usr/local/bin/entrypoint": (FILE, 0o755, 0, 0, 11, "bbbb"), "app": (DIR, 0o755, 1, 1, 0, "")}
    assert reproduce.file_differences(pub, ours) == [
        "file /usr/local/bin/entrypoint: size 10 != 11, content aaaa != bbbb (published != rebuilt)"]


@pytest.mark.parametrize("ref,want", [
    ("127.0.0.1:5000/org/base-gosu:alpine", ("127.0.0.1:5000", "org/base-gosu", "alpine")),
    ("ghcr.io/org/base-gosu@sha256:" + "a" * 64, ("ghcr.io", "org/base-gosu", "sha256:" + "a" * 64)),
])
def test_reproduce_takes_a_tag_or_a_digest(ref, want):
    assert refs.parse_ref(ref) == want


@pytest.mark.parametrize("mode,want", [(0o755, 0o775), (0o2755, 0o775), (0o700, 0o770), (0o750, 0o770)])
def test_the_image_users_home_is_group_0_with_the_owners_permissions(mode, want):
    """For an arbitrary uid with gid 0 (OpenShift); the accounts module writes homes as the distribution's
    tools do (the ubuntu stand-in's user keeps its own), the image's layer gives ops's to group 0."""
    e = append.writable_by_gid0(Entry("home/ops", DIR, mode, 10001, 10001))
    assert (e.mode, e.uid, e.gid) == (want, 10001, 0)


def test_the_entrypoint_files_and_their_digest():
    """The core runs from /usr/local/bin, what it sources sits in /usr/local/lib/base-gosu; an entrypoint of
    one file keeps the digest images made before the split carry in their inputs."""
    core = append.Entrypoint.of({"entrypoint.sh": b"core"})
    split = append.Entrypoint.of({"entrypoint-diagnostics.sh": b"d", "entrypoint.sh": b"core"})
    assert core.sha256() == hashlib.sha256(b"core").hexdigest()
    assert split.sha256() not in (core.sha256(), append.Entrypoint.of({"entrypoint.sh": b"core",
                                                                         "entrypoint-diagnostics.sh": b"e"}).sha256())
    assert [(n, p) for n, p, _ in split.files()] == [
        ("entrypoint.sh", "usr/local/bin/entrypoint"),
        ("entrypoint-diagnostics.sh", "usr/local/lib/base-gosu/entrypoint-diagnostics.sh")]
    with pytest.raises(append.AssemblyError):
        append.Entrypoint.of({"entrypoint-diagnostics.sh": b"d"})
