"""Everything a gosu rebuild needs, taken from Debian's archive through the project's own chain.

* gosu's orig tarball: listed (sha256, size) in the source suite's Sources
  index, which its InRelease lists;
* a Go toolchain: golang-1.NN-go for the host's arch and golang-1.NN-src, the
  newest minor the configured suites carry (or the one asked for), each
  listed in a Packages index;
* one Debian -dev package per module gosu's go.mod requires (the mapping is
  configuration, gosu.rebuild.modules), each listed in a Packages index.

Every InRelease must carry a good signature by a pinned archive key and be
within its Valid-Until (sources/archive.py), unless the run names that suite
in accept_expired: it is then taken and marked, and the build is a trial. Verified files go to the cache
by sha256 and are taken from there next time, after their bytes are checked
again. Nothing else is asked of the network.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.gosu.signature import VerificationError
from builder.gosu.sources import archive as deb_archive, gomod as gm, toolchain as tc
from builder.gosu.sources.gobuild import go_env
from builder.gosu.sources.packages import ArchiveFile, Evidence, Session, binary_file


@dataclass(frozen=True)
class Dependency:
    module: str           # Go module path
    module_version: str   # the version it is served to `go` as (names the Debian package version)
    file: ArchiveFile     # the -dev package it comes from


@dataclass
class Inputs:
    version: str                      # gosu's own version, e.g. 1.19
    orig: ArchiveFile
    toolchain: tc.Toolchain
    go_files: tuple[ArchiveFile, ArchiveFile]
    deps: list[Dependency] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    signers: set[str] = field(default_factory=set)
    expired_accepted: str = ""        # 'unstable 2026-11-06': suites taken past their Valid-Until, as asked


@dataclass(frozen=True)
class Pins:
    """What the lock pins for this version (empty strings: not pinned)."""
    orig_sha256: str = ""
    go_package_version: str = ""
    deps: tuple[tuple[str, str], ...] = ()   # (Debian package, version)

    def dep(self, package: str) -> str:
        return dict(self.deps).get(package, "")


def gather(s: Session, version: str, source_suite: str, suites: tuple[str, ...], host: str, go: str,
           modules: dict[str, str], pins: Pins, goroots: Path) -> tuple[Inputs, Path, dict[str, bytes]]:
    """(inputs, GOROOT, gosu's source files) with every file verified and cached."""
    orig = _orig(s, version, source_suite, pins)
    orig_path = s.get(orig)
    files = _tarball_files(orig_path, orig.filename)
    toolchain, go_files = toolchain_files(s, suites, host, go, pins)
    goroot = tc.install(goroots, toolchain, s.get(go_files[0]), s.get(go_files[1]))
    inputs = Inputs(deb_archive.upstream_version(orig.version), orig, toolchain, go_files)
    inputs.deps = _dependencies(s, files, suites, host, modules, pins, goroot)
    inputs.evidence = list(s.evidence.values())
    inputs.signers = {r.signer for r in s.releases.values()}
    inputs.expired_accepted = s.expired_accepted()
    return inputs, goroot, files


def _orig(s: Session, version: str, suite: str, pins: Pins) -> ArchiveFile:
    try:
        index, name = s.index(suite, "main/source/Sources")
    except VerificationError as e:
        if e.reason != "expired Release":
            raise
        raise VerificationError(e.file, e.reason, f"{e.detail}; or take gosu's source from another suite "
                                "(--suite, gosu.rebuild.source_suite)") from None
    where = f"dists/{suite}/{name}"
    stanzas = deb_archive.newest_first(deb_archive.sources_named(index, "gosu"))
    if not stanzas:
        raise VerificationError("gosu", "no source package", f"{where} has no gosu source package; choose a suite "
                                "that carries it (gosu.rebuild.source_suite, --suite)")
    if version:
        stanzas = [st for st in stanzas if deb_archive.upstream_version(st.get("Version", "")) == version] or \
            _no_version(stanzas, version, where)
    stanza = stanzas[0]
    upstream = deb_archive.upstream_version(stanza["Version"])
    path, sha, size = deb_archive.source_file(stanza, rf"gosu_{re.escape(upstream)}\.orig\.tar\.(gz|xz|bz2)", where)
    if pins.orig_sha256 and pins.orig_sha256 != sha:
        raise VerificationError(path.rsplit("/", 1)[-1], "lock mismatch",
                                f"{where} lists sha256 {sha}, but the lock file pins {pins.orig_sha256}; review the "
                                "new tarball, then run `invoke lock --source rebuild`")
    return ArchiveFile("gosu", stanza["Version"], path, sha, size, suite, name)


def _no_version(stanzas: list[dict], version: str, where: str):
    have = ", ".join(st.get("Version", "?") for st in stanzas)
    raise VerificationError("gosu", "no source package",
                            f"{where} has gosu {have}, not gosu {version}; pass --version "
                            f"{deb_archive.upstream_version(stanzas[0].get('Version', ''))} or another --suite")


def _tarball_files(path: Path, name: str) -> dict[str, bytes]:
    """{path below the top directory: content} of the orig tarball's regular files (links are skipped)."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(path.read_bytes()), mode="r:*") as tar:
            for info in tar:
                parts = info.name.lstrip("./").split("/", 1)
                if info.isreg() and len(parts) == 2 and ".." not in parts[1].split("/"):
                    out[parts[1]] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise VerificationError(name, "not a source tarball", f"cannot be read: {e}") from None
    if "go.mod" not in out:
        raise VerificationError(name, "not a Go module", "has no go.mod at its top; gosu is built in module mode")
    return out


def toolchain_files(s: Session, suites: tuple[str, ...], host: str, go: str,
               pins: Pins) -> tuple[tc.Toolchain, tuple[ArchiveFile, ArchiveFile]]:
    candidates = []
    for suite in suites:
        index, _ = s.index(suite, f"main/binary-{host}/Packages")
        candidates += [(suite, st) for st in deb_archive.stanzas_starting(index, "golang-1.", host)]
    suite, go_stanza = tc.choose(candidates, go, pins.go_package_version)
    minor = tc.GO_PACKAGE.fullmatch(go_stanza["Package"]).group(1)
    all_rel = deb_archive.arch_all_index(s.release(suite), host)
    index, name = s.index(suite, all_rel)
    src = [st for st in deb_archive.packages_named(index, f"golang-{minor}-src", "all")
           if st.get("Version") == go_stanza["Version"]]
    if not src:
        raise VerificationError(f"golang-{minor}-src", "no package",
                                f"dists/{suite}/{name} has no golang-{minor}-src {go_stanza['Version']} to go with "
                                f"golang-{minor}-go; the suite is mid-update, try again later")
    go_file = binary_file(s, suite, f"main/binary-{host}/Packages", go_stanza)
    src_file = binary_file(s, suite, all_rel, src[0])
    toolchain = tc.Toolchain(minor, go_stanza["Version"], suite, (go_file.filename, go_file.sha256, go_file.size),
                             (src_file.filename, src_file.sha256, src_file.size))
    return toolchain, (go_file, src_file)


def requirements(goroot: Path, env: dict[str, str], gomod: bytes, workdir: Path) -> list[str]:
    return [r["Path"] for r in gm.go_mod_json(goroot / "bin" / "go", env, gomod, workdir).get("Require") or []]


def _dependencies(s: Session, files: dict[str, bytes], suites: tuple[str, ...], host: str,
                  modules: dict[str, str], pins: Pins, goroot: Path) -> list[Dependency]:
    work = s.stage / "gomod-read"
    work.mkdir(exist_ok=True)
    deps = []
    for module in requirements(goroot, go_env(work, work / "gocache"), files["go.mod"], work):
        package = modules.get(module)
        if not package:
            raise VerificationError(module, "no Debian package",
                                    f"gosu's go.mod requires {module}, and gosu.rebuild.modules names no Debian "
                                    f"package for it; add {module}=<golang-...-dev package>")
        deps.append(dependency(s, module, package, suites, host, pins.dep(package)))
    return deps


def dependency(s: Session, module: str, package: str, suites: tuple[str, ...], host: str,
               pinned: str = "") -> Dependency:
    """The newest `package` the suites carry (or the pinned version), as the source of `module`."""
    offers = []
    for suite in suites:
        relpath = deb_archive.arch_all_index(s.release(suite), host)
        index, _ = s.index(suite, relpath)
        offers += [(suite, relpath, st) for st in deb_archive.packages_named(index, package, ("all", host))]
    if not offers:
        raise VerificationError(package, "no package", f"none of {', '.join(suites)} carries {package} "
                                f"(for {module}); add a suite that does (gosu.rebuild.suites)")
    offers = deb_archive.newest_first(offers, lambda offer: offer[2])
    if pinned:
        exact = [o for o in offers if o[2].get("Version") == pinned]
        if not exact:
            raise VerificationError(package, "lock mismatch",
                                    f"the configured suites carry {offers[0][2].get('Version')}, but the lock "
                                    f"file pins {pinned}; review it, then run `invoke lock --source rebuild`")
        offers = exact
    suite, relpath, stanza = offers[0]
    f = binary_file(s, suite, relpath, stanza)
    return Dependency(module, gm.debian_version(f.version, module), f)
