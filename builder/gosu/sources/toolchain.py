"""A Go toolchain from Debian's archive: golang-1.NN-go (the host's arch) + golang-1.NN-src (arch: all).

Both packages are taken only through the archive chain (sources/inputs.py
checks them against a verified Packages index); this module chooses them
and unpacks them into a cached tree whose GOROOT is usr/lib/go-1.NN. The
tree is keyed by the two packages' sha256s and made by rename, so a
half-unpacked toolchain is never used, and a later run reuses it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.gosu.signature import VerificationError
from builder.gosu.sources import archive as deb_archive, deb

GO_PACKAGE = re.compile(r"golang-(1\.\d+)-go")


@dataclass(frozen=True)
class Toolchain:
    minor: str            # "1.27"
    package_version: str  # Debian's, e.g. 1.27.4-1~bpo13+1
    suite: str
    go_deb: tuple[str, str, int]   # (pool filename, sha256, size) of golang-1.NN-go
    src_deb: tuple[str, str, int]  # (pool filename, sha256, size) of golang-1.NN-src

    @property
    def package(self) -> str:
        return f"golang-{self.minor}-go"


def _minor_key(minor: str) -> tuple[int, ...]:
    return tuple(int(x) for x in minor.split("."))


def choose(candidates: list[tuple[str, dict[str, str]]], want: str = "", pinned: str = "") -> tuple[str, dict]:
    """(suite, stanza) of golang-1.NN-go to use: the one `want` names (1.NN), else the newest minor.

    `candidates` are (suite, stanza) pairs from the suites' host-arch Packages.
    `pinned` (a Debian version from the lock) must then be available exactly.
    """
    if want and not re.fullmatch(r"1\.\d+", want):
        raise VerificationError("--go", "bad request", f"{want!r} is not a Go minor version such as 1.27")
    by_minor: dict[str, list[tuple[str, dict]]] = {}
    for suite, stanza in candidates:
        m = GO_PACKAGE.fullmatch(stanza.get("Package", ""))
        if m:
            by_minor.setdefault(m.group(1), []).append((suite, stanza))
    if not by_minor:
        raise VerificationError("golang-1.NN-go", "no package", "no configured suite carries a golang-1.NN-go "
                                "package for this host; add a suite that does (gosu.rebuild.suites)")
    minor = want or max(by_minor, key=_minor_key)
    if minor not in by_minor:
        raise VerificationError(f"golang-{minor}-go", "no package",
                                f"the configured suites carry golang-{', golang-'.join(sorted(by_minor, key=_minor_key))}"
                                f"-go, not golang-{minor}-go; pass one of those to --go or add a suite")
    offers = deb_archive.newest_first(by_minor[minor], lambda offer: offer[1])
    if pinned:
        exact = [p for p in offers if p[1].get("Version") == pinned]
        if not exact:
            raise VerificationError(
                f"golang-{minor}-go", "lock mismatch",
                f"the configured suites carry {offers[0][1].get('Version')}, but the lock file pins {pinned}; review "
                "the new toolchain, then run `invoke lock --source rebuild`")
        return exact[0]
    return offers[0]


def install(root: Path, toolchain: Toolchain, go_deb: Path, src_deb: Path) -> Path:
    """The unpacked toolchain's GOROOT, below `root` (a cache directory), made once."""
    key = f"{toolchain.go_deb[1][:16]}-{toolchain.src_deb[1][:16]}"
    final = root / key
    goroot = final / "usr" / "lib" / f"go-{toolchain.minor}"
    if (goroot / "bin" / "go").is_file():
        return goroot
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        for path in (go_deb, src_deb):
            try:
                deb.unpack(path.read_bytes(), stage)
            except deb.DebError as e:
                raise VerificationError(path.name, "not a Go toolchain", str(e)) from None
        if not (stage / "usr" / "lib" / f"go-{toolchain.minor}" / "bin" / "go").is_file():
            raise VerificationError(toolchain.go_deb[0], "not a Go toolchain",
                                    f"has no usr/lib/go-{toolchain.minor}/bin/go")
        try:
            stage.rename(final)
        except OSError:  # another run made it first; theirs is as good as ours
            shutil.rmtree(stage, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return goroot


def go_version(goroot: Path) -> str:
    """'go1.27.4', as the toolchain itself reports it."""
    first = (goroot / "VERSION").read_text().splitlines()[0].strip()
    if not re.fullmatch(r"go\d+\.\d+(\.\d+)?", first):
        raise VerificationError(str(goroot / "VERSION"), "not a Go toolchain", f"says {first!r}")
    return first


def run_go(goroot: Path, env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(goroot / "bin" / "go"), *args], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VerificationError("go " + " ".join(args[:2]), "build failed", proc.stderr.strip()[-2000:])
    return proc.stdout
