"""Turn the Invoke configuration (invoke.yaml + environment + flags) into plain, typed settings.

Parsing only: no network, no subprocess, no lock file read here (the
wiring, builder/wiring.py, does those and hands the results in). No stage
reads configuration: wiring and commands hand each what was parsed here, so
every stage is a function of its arguments. A task parses the whole of it
once (project.py). The images section is in images.py; the gosu section
(every fetch source) in gosu.py; publish, signing, ci and verify (where
images go and what a consumer trusts) in publishing.py; the rest is here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.core import arches
from builder.config.gosu import archive_keys
from builder.config.paths import ROOT, cli_path, project_path  # noqa: F401 - the wiring and tasks use them
from builder.config.images import distro_info_pin, image_settings, local_default_note, with_eol  # noqa: F401 - API
from builder.config.values import flag, jobs
from builder.config.settings import (CHROOTLESS, DEBIAN_MODES, ENGINE_KINDS, EngineSettings, LocalSettings, NssSettings, Pin,
                                     Tool, ToolSettings)


def local_settings(local: Mapping) -> LocalSettings:
    return LocalSettings(
        state_dir=project_path(local["state_dir"]),
        registry_port=int(local["registry_port"]),
        arches=tuple(a.dpkg for a in arches.parse_list(local["arches"], table=arches.IMAGE_ARCHES)),
        debian_mirror=local["debian_mirror"],
        standin_suites=_standin_suites(local.get("standin_suites") or ""),
        debian_suites=_arch_map("local.debian_suites", local.get("debian_suites") or ""),
        debian_bootstrap=str(local.get("debian_bootstrap") or "mmdebstrap").strip(),
        debian_mode=_debian_mode(local),
        emulation_fallback=_emulation_fallback(str(local.get("emulation_fallback") or "")),
        alpine_dir=project_path(local["alpine_dir"]),
        alpine_version=str(local["alpine_version"]),
        alpine_seed=local["alpine_seed"],
        seed_jobs=jobs(local["seed_jobs"], "local.seed_jobs", "bootstraps"),
    )


def _debian_mode(local: Mapping) -> str:
    """local.debian_mode: chrootless (the default) or emulated; debootstrap has only the latter."""
    mode = str(local.get("debian_mode") or CHROOTLESS).strip()
    if mode not in DEBIAN_MODES:
        raise ValueError(f"local.debian_mode is {mode!r}: use one of {', '.join(DEBIAN_MODES)}")
    if mode == CHROOTLESS and str(local.get("debian_bootstrap") or "mmdebstrap").strip() == "debootstrap":
        raise ValueError("local.debian_mode is chrootless, which debootstrap cannot do: set it to emulated, or "
                         "local.debian_bootstrap to mmdebstrap")
    return mode


def _emulation_fallback(spec: str) -> tuple[str, ...]:
    """local.emulation_fallback: 'all' or SUITE or SUITE/ARCH entries, e.g. 'bullseye,bookworm/s390x'."""
    out = []
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        suite, _, arch = item.partition("/")
        known = {a.dpkg for a in arches.IMAGE_ARCHES}
        # A bootstrap asks with the suite's and the arch's Debian names: any other spelling would never match.
        if not re.fullmatch(r"[a-z][a-z0-9.-]*", suite) or (arch and arch not in known):
            raise ValueError(f"local.emulation_fallback: {item!r} is not all, SUITE or SUITE/ARCH "
                             f"(ARCH one of {', '.join(sorted(known))}), e.g. bullseye or bookworm/s390x")
        out.append(item)
    return tuple(out)


def _standin_suites(spec: str) -> tuple[tuple[str, str], ...]:
    """local.standin_suites: 'minideb-trixie=trixie,...'."""
    out = []
    for item in (i.strip() for i in str(spec).split(",") if i.strip()):
        name, sep, suite = item.partition("=")
        if not sep or not suite.strip() or "-" not in name:
            raise ValueError(f"local.standin_suites: {item!r} is not FLAVOR-RELEASE=SUITE, e.g. minideb-trixie=trixie")
        out.append((name.strip(), suite.strip()))
    return tuple(out)


def _arch_map(key: str, spec: str) -> tuple[tuple[str, str], ...]:
    """'riscv64=trixie,...' -> ((riscv64, trixie), ...), the arch checked against the table."""
    out = []
    for item in (i.strip() for i in str(spec).split(",") if i.strip()):
        name, sep, value = item.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"{key}: {item!r} is not ARCH=VALUE, e.g. riscv64=trixie")
        try:
            out.append((arches.get(name, arches.IMAGE_ARCHES).dpkg, value.strip()))
        except arches.UnknownArch as e:
            raise ValueError(f"{key}: {e}") from None
    return tuple(out)


def engine_settings(c_config) -> EngineSettings:
    """Which engine the smoke checks run under (smoke.engine; engine_for applies --engine)."""
    sm = c_config.smoke
    return engine_for(EngineSettings(sm["engine"], project_path(sm["state_dir"]), sm["rootless_user"],
                                     Path(sm["userns_dir"]), Path(sm["userns_data"])), None)


def engine_for(configured: EngineSettings, engine: str | None) -> EngineSettings:
    """--engine, else smoke.engine, checked."""
    kind = (engine or configured.kind).strip()
    if kind not in ENGINE_KINDS:
        raise ValueError(f"engine {kind!r} is not one of {', '.join(ENGINE_KINDS)} (--engine or smoke.engine)")
    return dataclasses.replace(configured, kind=kind)


def smoke_jobs(smoke: Mapping) -> int:
    """smoke.jobs: how many smoke checks run at once (1: one after another)."""
    return jobs(smoke.get("jobs", 1), "smoke.jobs", "checks")


def tool_settings(c_config) -> ToolSettings:
    """cosign, oras and govulncheck: pinned packages from Debian's archive, checked with gosu.debian's mirror and keys."""
    t, deb = c_config.tools, c_config.gosu["debian"]
    tools = {}
    for name in ("cosign", "oras", "govulncheck"):
        spec = t[name]
        tools[name] = Tool(name, spec["package"], spec["member"],
                           {arch: Pin(str(p["version"]), str(p["deb_sha256"]).lower())
                            for arch, p in spec["pins"].items()})
    return ToolSettings(project_path(t["dir"]), deb["mirror"], t["suite"], archive_keys(deb, None, None), tools,
                        timeout=float(c_config.gosu["timeout"]) * 2, retries=int(c_config.gosu["retries"]),
                        backoff=float(c_config.gosu["backoff"]))


def nss_wrapper_settings(c_config) -> NssSettings:
    """images.nss_wrapper: Debian's libnss-wrapper for the flavors named, pinned per arch, checked with
    gosu.debian's mirror and keys."""
    n, deb = c_config.images["nss_wrapper"], c_config.gosu["debian"]
    flavors = tuple(f.strip() for f in str(n.get("flavors") or "").split(",") if f.strip())
    unknown = [f for f in flavors if f not in c_config.images["flavors"]]
    if unknown:
        raise ValueError(f"images.nss_wrapper.flavors names {', '.join(unknown)}, which images.flavors does not "
                         "configure")
    pins = {}
    for name, p in (n.get("pins") or {}).items():
        try:
            arch = arches.get(name, arches.IMAGE_ARCHES).dpkg
            pins[arch] = Pin(str(p["version"]), str(p["deb_sha256"]).lower(), str(p["suite"]))
        except (arches.UnknownArch, KeyError, TypeError) as e:
            raise ValueError(f"images.nss_wrapper.pins.{name}: {e}; give {{version, suite, deb_sha256}} per "
                             "dpkg arch") from None
    return NssSettings(project_path(n["cache_dir"]), deb["mirror"], archive_keys(deb, None, None), n["package"],
                       flavors, pins, timeout=float(c_config.gosu["timeout"]) * 2,
                       retries=int(c_config.gosu["retries"]), backoff=float(c_config.gosu["backoff"]),
                       without=tuple(w.strip() for w in str(n.get("without") or "").split(",") if w.strip()))


@dataclass(frozen=True)
class VulnConfig:
    """The vuln section, with local.vuln_db: what gosu is scanned against; vuln_db applies --vuln-db."""
    db: str                  # a URL, a directory of this project, or "" for no scan
    cache_dir: Path
    timeout: float
    required: bool           # no scan, no build: an unreachable database is an error, not a warning
    assessments: Path | None  # the reviewed assessments file (None: every present finding counts)
    local_db: Path | None    # the copy an unreachable remote database gives way to here
    local_db_sha256: str     # its pinned sha256 ("" for none)


def vuln_config(c_config) -> VulnConfig:
    v, local = c_config.get("vuln") or {}, c_config.get("local") or {}
    db = str(v.get("db", ""))
    where = str(local.get("vuln_db") or "").strip()
    sha = str(local.get("vuln_db_sha256") or "").strip().lower()
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"local.vuln_db_sha256 {sha!r} is not 64 hex digits")
    name = str(v.get("assessments") or "").strip()
    return VulnConfig(_db_at(db, project_path),
                      project_path(str(v.get("cache_dir", ".cache/vulns"))), float(v.get("timeout", 10)),
                      flag(v.get("require", "false"), "vuln.require"), project_path(name) if name else None,
                      project_path(where) if where else None, sha)


def vuln_db(v: VulnConfig, given: str | None = None) -> str:
    """The database gosu is scanned against: --vuln-db (a URL as it is, a directory relative to where the user
    stands; "" for none), else vuln.db."""
    return v.db if given is None else _db_at(given, cli_path)


def _db_at(value: str, resolve) -> str:
    """A URL as it is, a directory through `resolve` (to the project or to where the user stands), checked."""
    db = value if not value or value.startswith(("https://", "http://", "file://")) else str(resolve(value))
    if db.startswith("http://") and not re.match(r"http://(127\.|localhost[:/]|\[::1\])", db):
        raise ValueError(f"vuln.db {db}: plain http is taken only from this machine (loopback); use https")
    return db
