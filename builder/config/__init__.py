"""Turn the Invoke configuration (invoke.yaml + environment + flags) into plain, typed settings.

Parsing only: no network, no subprocess, no lock file read here (the
wiring, builder/wiring.py, does those and hands the results in). No stage
reads configuration: wiring and commands hand each what was parsed here, so
every stage is a function of its arguments. The gosu section (every fetch
source) is in gosu.py; publish, signing, ci and verify (where images go and
what a consumer trusts) in publishing.py; the rest is here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from builder.core import arches
from builder.config import eol as eol_mod
from builder.config.gosu import archive_keys
from builder.config.paths import ROOT, cli_path, project_path  # noqa: F401 - the wiring and tasks use them
from builder.config.settings import (CHROOTLESS, DEBIAN_MODES, ENGINE_KINDS, EngineSettings, Flavor, ImageSettings,
                                     LocalSettings, NssSettings, Pin, Tool, ToolSettings)


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


def engine_settings(c_config, engine: str | None = None) -> EngineSettings:
    """Which engine the smoke checks run under: --engine, else smoke.engine."""
    sm = c_config.smoke
    kind = (engine or sm["engine"]).strip()
    if kind not in ENGINE_KINDS:
        raise ValueError(f"engine {kind!r} is not one of {', '.join(ENGINE_KINDS)} (--engine or smoke.engine)")
    return EngineSettings(kind, project_path(sm["state_dir"]), sm["rootless_user"], Path(sm["userns_dir"]),
                          Path(sm["userns_data"]))


def smoke_jobs(smoke: Mapping) -> int:
    """smoke.jobs: how many smoke checks run at once (1: one after another)."""
    return jobs(smoke.get("jobs", 1), "smoke.jobs", "checks")


def jobs(value, key: str, what: str) -> int:
    """A number of things done at once, 1 or more (1: one after another)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{key} is {text!r}: give a whole number of {what} to run at once, 1 or more")
    return int(text)


def flag(value, key: str) -> bool:
    """A yes/no setting, strictly: a typo must not silently pick a side."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{key} is {value!r}: use true or false")


def standins_mode(value) -> str:
    """images.use_standins: auto, or a strict yes/no."""
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        return "true" if flag(value, "images.use_standins") else "false"
    except ValueError:
        raise ValueError(f"images.use_standins is {value!r}: use auto, true or false") from None


def flavor_platforms(flavor: str, spec: str) -> tuple[tuple[str, "arches.Platform"], ...]:
    """images.flavors.<flavor>.platforms: 'armhf=linux/arm/v7,...', where the base differs from the arch's own."""
    out = []
    for item in (i.strip() for i in str(spec).split(",") if i.strip()):
        name, sep, platform = item.partition("=")
        if not sep:
            raise ValueError(f"images.flavors.{flavor}.platforms: {item!r} is not ARCH=PLATFORM, e.g. armhf=linux/arm/v7")
        try:
            out.append((arches.get(name, arches.IMAGE_ARCHES).dpkg, arches.parse_platform(platform)))
        except arches.UnknownArch as e:
            raise ValueError(f"images.flavors.{flavor}.platforms: {e}") from None
    return tuple(out)


def image_settings(images: Mapping, local: Mapping | None = None, distro_info=None, today=None) -> ImageSettings:
    """images.*: every flavor's releases. `distro_info` (eol.DistroInfo): the tables Debian's and Ubuntu's
    end-of-life dates come from (None: not looked up, those releases' dates stay unknown). `today`: a default
    release past its end of life is refused. `local` (the local section): when bases come through the local
    registry, local.default_releases picks the defaults there (the releases that can be seeded here)."""
    local_defaults = _local_defaults(images, local)
    releases = {}
    for name, f in images["flavors"].items():
        releases[name] = _releases(name, f, distro_info, local_defaults.get(name))
    flavors = {}
    for name, rels in releases.items():
        flavors[name] = next(r for r in rels.values() if r.default)
        chosen = flavors[name]
        if today is not None and name not in local_defaults and chosen.eol and chosen.eol.past(today):
            raise ValueError(f"images.flavors.{name}.default is {chosen.release!r}, which reached its end of life on "
                             f"{chosen.eol.date} ({chosen.eol.source}): make a supported release the default")
    return ImageSettings(
        repository=images["repository"], flavors=flavors, base_mirror=images["base_mirror"],
        use_standins=standins_mode(images["use_standins"]), ops_user=images["ops_user"],
        ops_uid=int(images["ops_uid"]), ops_gid=int(images["ops_gid"]), source_url=images["source_url"],
        releases=releases,
    )


def _local_defaults(images: Mapping, local: Mapping | None) -> dict[str, str]:
    """local.default_releases (FLAVOR=RELEASE,...), when images.base_mirror is the local registry."""
    if local is None:
        return {}
    port = int(local["registry_port"])
    if str(images.get("base_mirror") or "").rstrip("/") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
        return {}
    out = {}
    for item in (i.strip() for i in str(local.get("default_releases") or "").split(",") if i.strip()):
        name, sep, release = item.partition("=")
        if not sep or not release.strip():
            raise ValueError(f"local.default_releases: {item!r} is not FLAVOR=RELEASE, e.g. alpine=3.20")
        out[name.strip()] = release.strip()
    return out


def _releases(name: str, f: Mapping, distro_info, local_default: str | None) -> dict:
    """images.flavors.<name>.releases, each a Flavor (the flavor at that release), in configuration order."""
    key = f"images.flavors.{name}"
    rels = f.get("releases") or {}
    if not rels:
        raise ValueError(f"{key}.releases is empty: list at least one release (base, arches, ...)")
    default = str(f.get("default") or "")
    for which, value in ((f"{key}.default", default), ("local.default_releases", local_default)):
        if value is not None and value not in {str(r) for r in rels}:
            raise ValueError(f"{which} is {value!r}, which is not one of {key}.releases: "
                             f"{', '.join(str(r) for r in rels)}")
    out = {}
    for release, r in rels.items():
        release, rkey = str(release), f"{key}.releases.{release}"
        spec = ",".join(a.strip() for a in str(r.get("arches") or "").split(",") if a.strip())
        if not spec:
            raise ValueError(f"{rkey}.arches is empty: list the arches its base is published for")
        try:
            listed = tuple(a.dpkg for a in arches.parse_list(spec, table=arches.IMAGE_ARCHES))
        except arches.UnknownArch as e:
            raise ValueError(f"{rkey}.arches: {e}") from None
        try:
            if r.get("eol"):
                eol = eol_mod.Eol(eol_mod.parse_date(r["eol"], f"{rkey}.eol"), str(r.get("eol_source") or f"{rkey}.eol"))
            elif f.get("eol_from") and distro_info is not None:
                eol = eol_mod.lookup(distro_info, f["eol_from"], release, f"{key}.eol_from")
            else:
                eol = None
        except eol_mod.EolError as e:
            raise ValueError(str(e)) from None
        if not r.get("base"):
            raise ValueError(f"{rkey}.base is empty: give the release's upstream reference, e.g. alpine:3.20")
        out[release] = Flavor(name, r["base"], r.get("standin") or "", r.get("digest") or "", release, listed,
                              flavor_platforms(f"{name}.releases.{release}", r.get("platforms") or ""), eol,
                              release == (local_default or default))
    return out


def distro_info_pin(c_config) -> tuple[str, Pin]:
    """tools.distro_info: the distro-info-data package and its pin (version, .deb sha256; arch all)."""
    spec = c_config.tools["distro_info"]
    pin = spec["pins"]["all"]
    return str(spec["package"]), Pin(str(pin["version"]), str(pin["deb_sha256"]).lower())


def local_default_note(c_config) -> str:
    """What `release` says when local.default_releases changed a default ("" when none did)."""
    chosen = _local_defaults(c_config.images, c_config.local)
    notes = [f"{name} {release} (configured default {c_config.images['flavors'][name].get('default')})"
             for name, release in chosen.items()
             if name in c_config.images["flavors"] and release != str(c_config.images["flavors"][name].get("default"))]
    return ("local defaults (local.default_releases, the releases that can be seeded here): " + ", ".join(notes)
            if notes else "")


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


def vuln_db(c_config, given: str | None = None) -> tuple[str, Path, float, bool]:
    """(database, cache dir, timeout, require) for gosu's scan; database "" means no scan. A URL is taken as it
    is; a directory given on the command line is relative to where the user stands, in config to this file."""
    v = c_config.get("vuln") or {}
    if given is not None:
        db = given if given.startswith(("https://", "http://", "file://")) or not given else str(cli_path(given))
    else:
        db = str(v.get("db", ""))
        db = db if not db or db.startswith(("https://", "http://", "file://")) else str(project_path(db))
    if db.startswith("http://") and not re.match(r"http://(127\.|localhost[:/]|\[::1\])", db):
        raise ValueError(f"vuln.db {db}: plain http is taken only from this machine (loopback); use https")
    return (db, project_path(str(v.get("cache_dir", ".cache/vulns"))), float(v.get("timeout", 10)),
            flag(v.get("require", "false"), "vuln.require"))


def vuln_assessments_file(c_config) -> Path | None:
    """vuln.assessments: the reviewed assessments file (None: no assessments, every present finding counts)."""
    name = str((c_config.get("vuln") or {}).get("assessments") or "").strip()
    return project_path(name) if name else None


def local_vuln_db(c_config) -> tuple[Path | None, str]:
    """(local.vuln_db, its pinned sha256): the copy an unreachable remote database gives way to locally."""
    local = c_config.get("local") or {}
    where = str(local.get("vuln_db") or "").strip()
    sha = str(local.get("vuln_db_sha256") or "").strip().lower()
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise ValueError(f"local.vuln_db_sha256 {sha!r} is not 64 hex digits")
    return (project_path(where) if where else None), sha
