"""Tools the pipeline runs (cosign, oras), taken from Debian's archive through the project's own chain.

Each tool is a Go binary in a Debian package; the package version and the
.deb's sha256 are pinned per host arch in configuration (`tools:`), the
.deb is fetched only if a signed Packages index lists it with that sha256,
and the binary is read out of it in Python. The result lives in
`<dir>/bin/<name>` beside a record of what it came from; a later call
re-checks the binary's bytes against that record and downloads nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.core.errors import BuilderError
from builder.gosu.download import Cache, DownloadError, Source, make_session
from builder.gosu.sources import archive as deb_archive, deb
from builder.gosu.sources.archive import Archive
from builder.gosu.sources.packages import Session, binary_file
from builder.config.settings import Pin
from builder.gosu.signature import PinnedKeyError, VerificationError, pinned_keyring, sha256_file
from builder.config.settings import Tool, ToolSettings


class ToolError(BuilderError):
    """A tool could not be installed; the message names it and says what to do."""


@dataclass(frozen=True)
class Installed:
    """What `<dir>/bin/<name>` is, written beside it."""
    package: str
    version: str
    deb_sha256: str
    sha256: str
    suite: str
    signer: str


def path(settings: ToolSettings, name: str) -> Path:
    return settings.dir / "bin" / name


def ensure(settings: ToolSettings, name: str, host: str, log=sys.stderr) -> Path:
    """The pinned tool for this host arch, installed if missing; raises ToolError."""
    tool = settings.tools.get(name)
    if tool is None:
        raise ToolError(f"no tool {name!r} is configured (tools: in invoke.yaml)")
    pin = tool.pins.get(host)
    if pin is None:
        raise ToolError(f"{name}: no pinned package for {host} (tools.{name}.pins); add its version and .deb "
                        "sha256 for this arch")
    dest = path(settings, name)
    if _current(dest, pin):
        return dest
    installed = _install(settings, tool, pin, host, dest)
    log.write(f"tools: {name} {pin.version} ({host}) from {settings.suite}, verified InRelease by "
              f"{installed.signer}, Packages, .deb {pin.deb_sha256[:16]}...; {dest}\n")
    return dest


def _record(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.json")


def _current(dest: Path, pin: Pin) -> bool:
    try:
        rec = Installed(**json.loads(_record(dest).read_text()))
    except (OSError, ValueError, TypeError):
        return False
    return (rec.version, rec.deb_sha256) == (pin.version, pin.deb_sha256) and dest.is_file() \
        and sha256_file(dest) == rec.sha256


def fetch_deb(settings: ToolSettings, package: str, pin: Pin, arch: str, key: str, host: str = "") -> tuple[bytes, str]:
    """(the pinned .deb's bytes, who signed the InRelease that vouched for it); `key` names the pin in errors.

    The .deb is kept in <dir>/cache by its sha256: a later call reads it from there (re-checked against
    the pin) and fetches nothing. `arch` is a dpkg arch or `all`: then it is looked up where the Release says
    arch-all packages are listed for `host` (Debian lists them in every binary-<arch>/Packages).
    """
    cache = Cache(settings.dir / "cache")
    cached = cache.blob(pin.deb_sha256)
    record = cached.with_name(cached.name + ".signer")
    if cached.is_file() and record.is_file() and sha256_file(cached) == pin.deb_sha256:
        return cached.read_bytes(), record.read_text().strip()
    stage = cache.staging()
    try:
        (first, fpr), *more = settings.archive_keys
        with pinned_keyring(first, fpr, *more) as keyring:
            repo = Archive(Source(settings.mirror), make_session(settings.retries, settings.backoff), settings.timeout)
            s = Session(repo, keyring, cache, stage, open(os.devnull, "w"))
            relpath = deb_archive.arch_all_index(s.release(settings.suite), host) if arch == "all" \
                else f"main/binary-{arch}/Packages"
            index, _ = s.index(settings.suite, relpath)
            stanzas = [st for st in deb_archive.packages_named(index, package, arch)
                       if st.get("Version") == pin.version]
            if not stanzas:
                have = ", ".join(st.get("Version", "?") for st in deb_archive.packages_named(index, package, arch))
                raise ToolError(f"{package}: dists/{settings.suite} carries {package} {have or '(none)'}, not "
                                f"the pinned {pin.version}; review the new package and update {key}")
            f = binary_file(s, settings.suite, relpath, stanzas[0])
            if f.sha256 != pin.deb_sha256:
                raise ToolError(f"{package}: the signed index lists {f.filename} with sha256 {f.sha256}, but "
                                f"{key} pins {pin.deb_sha256}; refusing it")
            data = s.get(f).read_bytes()
            signer = s.release(settings.suite).signer
    except (PinnedKeyError, VerificationError, DownloadError) as e:
        raise ToolError(f"{package}: could not be taken from Debian's archive: {e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    record.write_text(signer + "\n")
    return data, signer


def _install(settings: ToolSettings, tool: Tool, pin: Pin, host: str, dest: Path) -> Installed:
    data, signer = fetch_deb(settings, tool.package, pin, host, f"tools.{tool.name}")
    try:
        binary = deb.extract(data, tool.member)
    except deb.DebError as e:
        raise ToolError(f"{tool.name}: could not be taken from Debian's archive: {e}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(binary)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    rec = Installed(tool.package, pin.version, pin.deb_sha256, sha256_file(dest), settings.suite, signer)
    _record(dest).write_text(json.dumps(asdict(rec), indent=2) + "\n")
    return rec
