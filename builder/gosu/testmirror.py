"""A gosu mirror signed by a throwaway key: tianon's release layout, for tests and demos.

The binaries are Debian bookworm's gosu 1.14, taken through the project's own
archive check (builder/gosu/sources/debian.py); this signs them (and a
SHA256SUMS) with a locally generated key and writes a runtime Invoke config
that trusts exactly that key for exactly that mirror. Images built from it are
trial images: the key is not one of keys/, so they never leave this machine
unless asked to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.gosu.fetch import FetchOptions, fetch, print_report
from builder.core.host import SetupError, apt_install, say

VERSION = "1.14-debian"
SUITE, UPSTREAM = "bookworm", "1.14"


@dataclass(frozen=True)
class TestMirror:
    root: Path
    version: str
    key_file: Path
    fingerprint: str
    config: Path


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], check=True, capture_output=True, text=True).stdout


def throwaway_key(home: Path) -> str:
    if not (home / "pubring.kbx").exists():
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        gpg(home, "--quick-gen-key", "base-gosu TEST mirror key (never trust in production) <test@invalid>",
            "ed25519", "sign", "2y")
    out = gpg(home, "--with-colons", "--list-keys")
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def _debian_gosu(opts: FetchOptions, log) -> dict[str, Path]:
    report = fetch(opts, log=log)
    if not report.ok:
        print_report(report, out=log, err=log)
        raise SetupError(f"Debian's gosu {opts.version} ({opts.suite}) could not be fetched and verified: "
                         f"{report.failures[0]}")
    return {f.arch: f.path for f in report.fetched}


def make(root: Path, debian: FetchOptions, log) -> TestMirror:
    """`debian`: fetch options for Debian's archive; the mirror holds bookworm's gosu 1.14 for its arches."""
    apt_install(["gnupg"], log)
    root.mkdir(parents=True, exist_ok=True)
    fpr = throwaway_key(root / "gnupg")
    rel = root / VERSION
    rel.mkdir(exist_ok=True)
    arches = tuple(a.dpkg for a in debian.arches)
    todo = [a for a in debian.arches if not (rel / f"gosu-{a.dpkg}").exists()]
    if todo:
        got = _debian_gosu(dataclasses.replace(debian, arches=tuple(todo), suite=SUITE, version=UPSTREAM,
                                               lock=None), log)
        for arch, path in got.items():
            tmp = rel / f".gosu-{arch}.tmp"
            shutil.copyfile(path, tmp)
            os.replace(tmp, rel / f"gosu-{arch}")
    for arch in arches:
        dest = rel / f"gosu-{arch}"
        gpg(root / "gnupg", "--armor", "--output", f"{dest}.asc", "--detach-sign", str(dest))
    sums = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
                   for f in sorted(rel.glob("gosu-*")) if not f.name.endswith(".asc"))
    (rel / "SHA256SUMS").write_text(sums)
    gpg(root / "gnupg", "--armor", "--output", str(rel / "SHA256SUMS.asc"), "--detach-sign", str(rel / "SHA256SUMS"))
    key_file = root / "key.asc"
    key_file.write_text(gpg(root / "gnupg", "--armor", "--export", fpr))
    config = root / "invoke.yaml"
    config.write_text(
        "# Written by `invoke test-mirror`: trust a throwaway key for this mirror only.\n"
        f"gosu:\n  version: '{VERSION}'\n  mirror: '{root}'\n  key_file: '{key_file}'\n  fingerprint: '{fpr}'\n"
    )
    say(log, f"test-mirror: {rel} signed by test key {fpr} for {', '.join(arches)}")
    say(log, f"test-mirror: use it with `invoke -f {config} TASK`")
    return TestMirror(root, VERSION, key_file, fpr, config)
