"""The gosu section (and --source, --suite, --accept-expired ...) as FetchOptions for each source."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from builder.core import arches
from builder.core.fingerprint import normalize_fingerprint
from builder.config.settings import FetchOptions
from builder.config.paths import cli_path, project_path


def source_of(configured: str, mirror: str | None, layout: str = "<dir>/<version>/gosu-<arch>") -> str:
    """An HTTP base URL as given, or a mirror directory that must exist."""
    base = mirror or configured
    if "://" not in base:
        path = cli_path(base) if mirror else project_path(base)
        if not path.is_dir():
            raise ValueError(f"mirror directory {base!r} does not exist; pass an HTTP base URL or a directory "
                             f"laid out as {layout}")
        return str(path)
    return base


SOURCES = ("github", "debian", "rebuild", "auto")


def source_kind(gosu: Mapping, source: str | None) -> str:
    """--source, else gosu.source: github, debian, rebuild or auto (which the wiring resolves)."""
    kind = (source or gosu.get("source") or "github").strip().lower()
    if kind not in SOURCES:
        raise ValueError(f"gosu source {kind!r} is unknown: use one of {', '.join(SOURCES)}")
    return kind


def auto_location(gosu: Mapping, mirror: str | None, key: str | None, fingerprint: str | None) -> str:
    """Where `auto` looks for tianon's release; naming a mirror or key names the source instead."""
    if mirror or key or fingerprint:
        raise ValueError("--source auto chooses between the configured GitHub and Debian sources; with --mirror, "
                         "--key or --fingerprint name the source (--source github or --source debian)")
    return gosu.get("mirror") or gosu["release_url"]


def fetch_options(gosu: Mapping, lock, *, version: str | None = None, arch: str | None = None,
                  mirror: str | None = None, key: str | None = None, fingerprint: str | None = None,
                  cache_dir: str | None = None, enforce_lock: bool = True, source: str | None = None,
                  suite: str | None = None, go: str | None = None, accept_expired: str | None = None,
                  chosen_because: str = "") -> FetchOptions:
    """The fetch stage's options for one source (`auto` must have been resolved to one by then)."""
    kind = source_kind(gosu, source)
    if kind == "auto":
        raise ValueError("gosu source auto is chosen by probing GitHub; resolve it before parsing (wiring)")
    if suite and kind == "github":
        raise ValueError("--suite applies to the debian and rebuild sources only; add --source debian or rebuild")
    if go and kind != "rebuild":
        raise ValueError("--go applies to the rebuild source only; add --source rebuild")
    if accept_expired and kind == "github":
        raise ValueError("--accept-expired applies to Debian's archive (the debian and rebuild sources); add "
                         "--source debian or rebuild")
    why = chosen_because
    if arch and arch.strip().lower() == "all":  # as build and smoke take it: every arch this source serves
        arch = {"debian": gosu["debian"]["arches"], "rebuild": gosu["rebuild"]["arches"]}.get(kind)
    common = dict(arches=tuple(arches.parse_list(arch)),
                  cache_dir=cli_path(cache_dir) or project_path(gosu["cache_dir"]),
                  lock=lock if enforce_lock else None, timeout=float(gosu["timeout"]), retries=int(gosu["retries"]),
                  backoff=float(gosu["backoff"]), parallel=int(gosu["parallel"]), chosen_because=why)
    if kind == "rebuild":
        opts = rebuild_options(gosu, lock, version, suite, go, mirror, key, fingerprint, common)
        return dataclasses.replace(opts, accept_expired=expired_suites(gosu, accept_expired,
                                                                        (opts.suite, *opts.suites)))
    if kind == "debian":
        deb = gosu["debian"]
        the_suite = (suite or deb["suite"]).strip()
        pinned = lock.debian.version if lock.debian and lock.debian.suite == the_suite else ""
        return FetchOptions(
            version=version or gosu.get("version") or pinned, mirror=source_of(deb["mirror"], mirror, "dists/, pool/"),
            key_file=Path(), fingerprint="", kind="debian", suite=the_suite,
            archive_keys=archive_keys(deb, key, fingerprint),
            accept_expired=expired_suites(gosu, accept_expired, (the_suite,)), **common)
    return FetchOptions(
        version=version or gosu.get("version") or lock.version,
        mirror=source_of(gosu.get("mirror") or gosu["release_url"], mirror),
        key_file=cli_path(key) or project_path(gosu["key_file"]),
        fingerprint=normalize_fingerprint(fingerprint or gosu["fingerprint"]), **common)


def rebuild_options(gosu: Mapping, lock, version, suite, go, mirror, key, fingerprint, common) -> FetchOptions:
    """gosu.rebuild: the orig tarball from source_suite, the toolchain and dependencies from suites."""
    from builder.core.emulation import native_arch
    deb, reb = gosu["debian"], gosu["rebuild"]
    the_suite = (suite or reb["source_suite"]).strip()
    suites = tuple(s.strip() for s in str(reb["suites"]).split(",") if s.strip())
    if not suites:
        raise ValueError("gosu.rebuild.suites is empty: name the suites the Go toolchain and dependency sources "
                         "come from (e.g. trixie,trixie-backports)")
    modules = []
    for pair in str(reb["modules"]).split(","):
        if pair.strip():
            module, sep, package = pair.partition("=")
            if not sep or not module.strip() or not package.strip():
                raise ValueError(f"gosu.rebuild.modules entry {pair.strip()!r} is not MODULE=DEBIAN-PACKAGE")
            modules.append((module.strip(), package.strip()))
    the_go = (go or str(reb.get("go") or "")).strip()
    if the_go and not re.fullmatch(r"1\.\d+", the_go):
        raise ValueError(f"Go version {the_go!r} is not a Go minor version such as 1.27 (--go, gosu.rebuild.go)")
    locked = lock.rebuild.version if lock.rebuild and lock.rebuild.suite == the_suite else ""
    return FetchOptions(
        version=version or gosu.get("version") or locked or lock.version,
        mirror=source_of(deb["mirror"], mirror, "dists/, pool/"), key_file=Path(), fingerprint="", kind="rebuild",
        suite=the_suite, archive_keys=archive_keys(deb, key, fingerprint), suites=suites,
        go=the_go, modules=tuple(modules), host_arch=native_arch(), **common)


SUITE_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*")


def expired_suites(gosu: Mapping, flag: str | None, used: tuple[str, ...]) -> tuple[str, ...]:
    """The suites whose InRelease may be past its Valid-Until: --accept-expired, else gosu.debian.accept_expired.

    Like apt's Check-Valid-Until=false for a snapshot or a stale mirror, but
    per suite and never by default. A flag naming a suite this fetch does not
    read is a typo, refused; the configured value may name suites other
    sources use.
    """
    value = flag if flag is not None else str(gosu["debian"].get("accept_expired") or "")
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    what = "--accept-expired" if flag is not None else "gosu.debian.accept_expired"
    for name in names:
        if not SUITE_NAME.fullmatch(name):
            raise ValueError(f"{what}: {name!r} is not a Debian suite name such as unstable")
    unused = [n for n in names if n not in used]
    if flag is not None and unused:
        raise ValueError(f"--accept-expired names {', '.join(unused)}, which this fetch does not read (it reads "
                         f"{', '.join(dict.fromkeys(used))}); name the suite whose InRelease has expired")
    return names


def lock_options(gosu: Mapping, lock, *, source: str | None = None, version: str | None = None,
                 arch: str | None = None, **kw) -> FetchOptions:
    """What `invoke lock` fetches: a github version must be named; debian defaults to the suite's newest."""
    kind = (source or gosu.get("source") or "github").strip().lower()
    if kind == "auto":
        raise ValueError("a lock names its source: pass --source github, debian or rebuild")
    if kind == "github" and not version:
        raise ValueError("locking the github source needs --version (the gosu release to pin)")
    if kind == "debian":
        arch = arch or gosu["debian"]["arches"]
    if kind == "rebuild":
        arch = arch or gosu["rebuild"]["arches"]
    opts = fetch_options(gosu, lock, source=kind, version=version, arch=arch, **kw)
    return opts if version or kind != "debian" else dataclasses.replace(opts, version="")


def archive_keys(deb: Mapping, key: str | None, fingerprint: str | None) -> tuple[tuple[Path, str], ...]:
    """Debian's archive keys from keys/ (one file each), or the one key a test archive is signed with."""
    if key or fingerprint:
        if not (key and fingerprint):
            raise ValueError("for the debian source, --key and --fingerprint go together: the key file and the "
                             "fingerprint it must hold replace Debian's archive keys")
        return ((cli_path(key), normalize_fingerprint(fingerprint)),)
    keys_dir = project_path(deb["keys_dir"])
    fprs = [normalize_fingerprint(f) for f in str(deb["fingerprints"]).split(",") if f.strip()]
    if not fprs:
        raise ValueError("gosu.debian.fingerprints is empty: pin Debian's archive keys (see keys/README.md)")
    return tuple((keys_dir / f"{f}.asc", f) for f in fprs)
