"""The fetch stage: a verified gosu binary per requested architecture, from the chosen source.

Sources live in builder/gosu/sources/: tianon's signed GitHub release (the
default), Debian's archive, and a rebuild from the source Debian's archive
carries, each checked against keys pinned in keys/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from builder.gosu.sources import debian, github, rebuild
from builder.gosu.sources.model import DEBIAN, GITHUB, KINDS, REBUILD, Failure, FetchOptions, FetchReport, Fetched  # noqa: F401


def fetch(opts: FetchOptions, log=sys.stderr) -> FetchReport:
    return {DEBIAN: debian.fetch, REBUILD: rebuild.fetch}.get(opts.kind, github.fetch)(opts, log)


def choose_source(github_location: str, timeout: float) -> tuple[str, str]:
    """For `auto`: tianon's release when its location answers, else Debian's archive; and why."""
    if "://" not in github_location:
        if Path(github_location).is_dir():
            return GITHUB, f"the GitHub release mirror {github_location} is a local directory"
        return DEBIAN, f"the GitHub release mirror {github_location} does not exist"
    try:
        requests.head(github_location, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        reason = type(e).__name__
        for marker in ("Name or service not known", "Temporary failure in name resolution", "Connection refused",
                       "timed out", "Network is unreachable"):
            if marker in str(e):
                reason = marker
        return DEBIAN, f"{github_location} cannot be reached ({reason})"
    return GITHUB, f"{github_location} answers"


def print_report(report: FetchReport, out=sys.stdout, err=sys.stderr) -> None:
    """One line per arch: `arch sha256 path`, or `FAILED arch: file: reason: what to do`."""
    for w in report.warnings:
        err.write(f"warning: {w}\n")
    for f in report.fetched:
        how = "cached" if f.from_cache else ("built" if f.kind == REBUILD else "fetched")
        if f.kind == REBUILD:
            checks = (f"InRelease by {f.trust_root}, Sources, Packages, build info, {f.detail('checks')}"
                      + (", lock" if f.locked else ""))
            what = (f"gosu {f.version} rebuilt with {f.detail('go_version')} from {f.detail('suite')} "
                    f"{f.detail('package')} and {f.detail('go_package')} {f.detail('go_package_version')}; "
                    f"{f.size} bytes")
        elif f.kind == DEBIAN:
            checks = f"InRelease by {f.trust_root}, Packages, .deb, ELF" + (", lock" if f.locked else "")
            what = f"gosu {f.version}, {f.detail('suite')} package {f.detail('package')}"
        else:
            checks = "signature" + (", SHA256SUMS" if f.sums_checked else "") + ", ELF" + (", lock" if f.locked else "")
            what = f"gosu {f.version}"
        if f.detail("expired_accepted"):
            checks += f"; InRelease past Valid-Until accepted on request: {f.detail('expired_accepted')}, a trial input"
        out.write(f"{f.arch:9} {f.sha256}  {f.path}  ({what}; {how}; verified {checks})\n")
    for fail in report.failures:
        err.write(f"FAILED {fail}\n")
