"""Turn the Invoke configuration (invoke.yaml + environment + flags) into plain options.

tasks.py passes the raw config section and the flags; nothing else in the
package reads configuration, so every stage is a function of its arguments.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from . import arches, lock as lockfile
from .fetch import FetchOptions
from .verify import normalize_fingerprint

ROOT = Path(__file__).resolve().parent.parent


def project_path(value: str | Path) -> Path:
    """Config paths are relative to the project; absolute ones stay as given."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else ROOT / p


def cli_path(value: str | None) -> Path | None:
    """Paths typed on the command line are relative to where the user stands."""
    return Path(value).expanduser().resolve() if value else None


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


def fetch_options(gosu: Mapping, *, version: str | None = None, arch: str | None = None,
                  mirror: str | None = None, key: str | None = None, fingerprint: str | None = None,
                  cache_dir: str | None = None, enforce_lock: bool = True, source: str | None = None,
                  suite: str | None = None, go: str | None = None, accept_expired: str | None = None) -> FetchOptions:
    from .fetch import choose_source
    lock = lockfile.load(project_path(gosu["lock_file"]))
    kind = (source or gosu.get("source") or "github").strip().lower()
    if kind not in SOURCES:
        raise ValueError(f"gosu source {kind!r} is unknown: use one of {', '.join(SOURCES)}")
    if suite and kind == "github":
        raise ValueError("--suite applies to the debian and rebuild sources only; add --source debian or rebuild")
    if go and kind != "rebuild":
        raise ValueError("--go applies to the rebuild source only; add --source rebuild")
    if accept_expired and kind == "github":
        raise ValueError("--accept-expired applies to Debian's archive (the debian and rebuild sources); add "
                         "--source debian or rebuild")
    why = ""
    if kind == "auto":
        if mirror or key or fingerprint:
            raise ValueError("--source auto chooses between the configured GitHub and Debian sources; with --mirror, "
                             "--key or --fingerprint name the source (--source github or --source debian)")
        kind, why = choose_source(gosu.get("mirror") or gosu["release_url"], float(gosu.get("probe_timeout", 5)))
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
            version=version or gosu.get("version") or pinned, source=source_of(deb["mirror"], mirror, "dists/, pool/"),
            key_file=Path(), fingerprint="", kind="debian", suite=the_suite,
            archive_keys=archive_keys(deb, key, fingerprint),
            accept_expired=expired_suites(gosu, accept_expired, (the_suite,)), **common)
    return FetchOptions(
        version=version or gosu.get("version") or lock.version,
        source=source_of(gosu.get("mirror") or gosu["release_url"], mirror),
        key_file=cli_path(key) or project_path(gosu["key_file"]),
        fingerprint=normalize_fingerprint(fingerprint or gosu["fingerprint"]), **common)


def rebuild_options(gosu: Mapping, lock, version, suite, go, mirror, key, fingerprint, common) -> FetchOptions:
    """gosu.rebuild: the orig tarball from source_suite, the toolchain and dependencies from suites."""
    from .emulation import native_arch
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
        source=source_of(deb["mirror"], mirror, "dists/, pool/"), key_file=Path(), fingerprint="", kind="rebuild",
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


def lock_options(gosu: Mapping, *, source: str | None = None, version: str | None = None, arch: str | None = None,
                 **kw) -> FetchOptions:
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
    opts = fetch_options(gosu, source=kind, version=version, arch=arch, **kw)
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


def local_settings(local: Mapping) -> "LocalSettings":
    from .local import LocalSettings
    return LocalSettings(
        state_dir=project_path(local["state_dir"]),
        registry_port=int(local["registry_port"]),
        arches=tuple(a.dpkg for a in arches.parse_list(local["arches"], table=arches.IMAGE_ARCHES)),
        debian_mirror=local["debian_mirror"],
        debian_suite=local["debian_suite"],
        debian_suites=_arch_map("local.debian_suites", local.get("debian_suites") or ""),
        debian_bootstrap=str(local.get("debian_bootstrap") or "mmdebstrap").strip(),
        alpine_dir=project_path(local["alpine_dir"]),
        alpine_version=str(local["alpine_version"]),
        minideb_seed=local["minideb_seed"],
        ubuntu_seed=local["ubuntu_seed"],
        alpine_seed=local["alpine_seed"],
    )


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


def engine_settings(c_config, engine: str | None = None) -> "EngineSettings":
    """Which engine the smoke checks run under: --engine, else smoke.engine."""
    from .engines import KINDS, EngineSettings
    sm = c_config.smoke
    kind = (engine or sm["engine"]).strip()
    if kind not in KINDS:
        raise ValueError(f"engine {kind!r} is not one of {', '.join(KINDS)} (--engine or smoke.engine)")
    return EngineSettings(kind, project_path(sm["state_dir"]), sm["rootless_user"], Path(sm["userns_dir"]),
                          Path(sm["userns_data"]))


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


def image_settings(images: Mapping) -> "ImageSettings":
    from .images import Flavor, ImageSettings
    flavors = {
        name: Flavor(name, f["base"], f.get("standin") or "", f.get("digest") or "", str(f["release"]),
                     tuple(a.dpkg for a in arches.parse_list(f["arches"], table=arches.IMAGE_ARCHES)),
                     flavor_platforms(name, f.get("platforms") or ""))
        for name, f in images["flavors"].items()
    }
    return ImageSettings(
        repository=images["repository"], flavors=flavors, base_mirror=images["base_mirror"],
        use_standins=standins_mode(images["use_standins"]), ops_user=images["ops_user"],
        ops_uid=int(images["ops_uid"]), ops_gid=int(images["ops_gid"]), source_url=images["source_url"],
    )


def build_request(c_config, flavor: str | None = None, arch: str | None = None, gosu_version: str | None = None,
                  mirror: str | None = None, key: str | None = None, fingerprint: str | None = None,
                  default_arch: str | None = None, source: str | None = None,
                  suite: str | None = None, go: str | None = None, accept_expired: str | None = None) -> "Request":
    from .images import plan
    from .emulation import native_arch
    from .pipeline import Request
    settings = image_settings(c_config.images)
    targets = plan(settings, flavor, arch, default_arch or native_arch())
    needed = ",".join(dict.fromkeys(t.arch.gosu for t in targets))
    opts = fetch_options(c_config.gosu, version=gosu_version, arch=needed, mirror=mirror, key=key,
                         fingerprint=fingerprint, source=source, suite=suite, go=go, accept_expired=accept_expired)
    return Request(settings, tuple(targets), opts, ROOT,
                   store=project_path(c_config.images.get("store") or ".cache/images"),
                   revision=source_revision(ROOT))


def source_revision(root: Path, environ=os.environ) -> "Revision":
    """The commit built and the build's one timestamp: SOURCE_DATE_EPOCH if set, else the commit's time."""
    from .images import git_revision
    return git_revision(root, environ.get("SOURCE_DATE_EPOCH"))


REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


def destination(c_config, registry: str | None = None, repository: str | None = None):
    """(Destination, Registry client) for publish/push/assemble; credentials from the environment."""
    from .publish import Destination
    from .registry import Registry, credentials_for
    pub = c_config.publish
    host = (registry or pub.get("registry") or f"127.0.0.1:{int(c_config.local['registry_port'])}").strip()
    if not host or "://" in host or "/" in host or " " in host:
        raise ValueError(f"registry {host!r}: give HOST[:PORT] without scheme or path, e.g. ghcr.io or 127.0.0.1:5000")
    repo = (repository or pub.get("repository") or c_config.images["repository"]).strip()
    if not REPO_RE.match(repo):
        raise ValueError(f"repository {repo!r} is not a valid name: lowercase path components such as "
                         "org/base-gosu")
    client = Registry(host, credentials_for(host), retries=int(pub["retries"]), backoff=float(pub["backoff"]))
    local = host in {f"{name}:{int(c_config.local['registry_port'])}" for name in ("127.0.0.1", "localhost")}
    return Destination(host, repo, local), client


def publish_arches(c_config, arch: str | None) -> str:
    return arch or c_config.publish.get("arches") or c_config.local["arches"]


def expected_targets(c_config, flavor: str | None, arch: str) -> list[tuple[str, str]]:
    """(flavor, arch) pairs an assemble must find a push record for."""
    from .images import plan
    return [(t.flavor.name, t.arch.dpkg) for t in plan(image_settings(c_config.images), flavor, arch, arch)]


def matrix_jobs(c_config) -> list["Job"]:
    """ci: the nightly's image jobs, one per (flavor, arch) of images.flavors, each with its runner."""
    from .matrix import jobs
    ci, runners = c_config.ci, {}
    for item in (i.strip() for i in str(ci["runners"]).split(",") if i.strip()):
        name, sep, label = item.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"ci.runners: {item!r} is not ARCH=RUNNER-LABEL, e.g. arm64=ubuntu-24.04-arm")
        try:
            runners[arches.get(name, arches.IMAGE_ARCHES).dpkg] = label.strip()
        except arches.UnknownArch as e:
            raise ValueError(f"ci.runners: {e}") from None
    try:
        host = arches.get(str(ci["other_arches_on"]), arches.IMAGE_ARCHES).dpkg
    except arches.UnknownArch as e:
        raise ValueError(f"ci.other_arches_on: {e}") from None
    return jobs(image_settings(c_config.images), runners, host)


def tool_settings(c_config) -> "ToolSettings":
    """cosign and oras: pinned packages from Debian's archive, checked with gosu.debian's mirror and keys."""
    from .tools import Pin, Tool, ToolSettings
    t, deb = c_config.tools, c_config.gosu["debian"]
    tools = {}
    for name in ("cosign", "oras"):
        spec = t[name]
        tools[name] = Tool(name, spec["package"], spec["member"],
                           {arch: Pin(str(p["version"]), str(p["deb_sha256"]).lower())
                            for arch, p in spec["pins"].items()})
    return ToolSettings(project_path(t["dir"]), deb["mirror"], t["suite"], archive_keys(deb, None, None), tools,
                        timeout=float(c_config.gosu["timeout"]) * 2, retries=int(c_config.gosu["retries"]),
                        backoff=float(c_config.gosu["backoff"]))


def reproduce_setup(c_config, mirror: str | None = None, key: str | None = None, fingerprint: str | None = None):
    """(image settings, store, options_for(version, arch, source kind)) for `invoke reproduce`."""
    from .assembly.store import Store
    settings = image_settings(c_config.images)
    store = Store(project_path(c_config.images.get("store") or ".cache/images"))

    def options_for(version: str, arch: str, kind: str) -> FetchOptions:
        return fetch_options(c_config.gosu, version=version, arch=arch, mirror=mirror, key=key,
                             fingerprint=fingerprint, enforce_lock=False, source=kind)
    return settings, store, options_for


def signer(c_config, dest, key: str | None = None, keyless: bool = False, unsigned: bool = False,
           environ=os.environ) -> "Signer | None":
    """The cosign signer for a publish to `dest` (None with --unsigned); refused before any byte is sent."""
    from . import tools
    from .emulation import native_arch
    from .signing import Signer, choose
    s = c_config.signing
    identity = choose((key or s.get("key") or "").strip(), keyless or flag(s.get("keyless", False), "signing.keyless"),
                      unsigned, dest.local, project_path(s["local_key"]), dest.registry)
    if identity is None:
        return None
    if identity.key and "://" not in identity.key:
        identity = dataclasses.replace(identity, key=str(cli_path(identity.key) if key else
                                                         project_path(identity.key)))
    cosign = tools.path(tool_settings(c_config), "cosign")
    if not cosign.is_file():
        cosign = tools.ensure(tool_settings(c_config), "cosign", native_arch())
    return Signer(cosign, identity, dict(environ))


def trust(c_config, keys: list[str] | None = None, identity: str | None = None, issuer: str | None = None):
    """What `invoke verify` trusts: public keys (--key, repeatable), else a keyless identity and issuer."""
    from .trustcheck import Trust
    s = c_config.signing
    identity, issuer = identity or s.get("identity") or "", issuer or s.get("issuer") or ""
    if keys:
        paths = [cli_path(k) if "://" not in k else k for k in keys]
    elif identity or issuer:
        paths = []
    else:
        configured = [k.strip() for k in str(s.get("trusted_keys") or "").split(",") if k.strip()]
        paths = [project_path(k) if "://" not in k else k for k in configured] or \
            [project_path(s["local_key"]).with_suffix(".pub")]
    if not paths and not (identity and issuer):
        raise ValueError("keyless verification needs both --identity REGEX and --issuer URL "
                         "(signing.identity, signing.issuer)")
    for p in paths:
        if isinstance(p, Path) and not p.is_file():
            raise ValueError(f"trusted key {p} does not exist (--key, signing.trusted_keys; `invoke up` makes the "
                             "local registry's)")
    return Trust(tuple(str(p) for p in paths), identity, issuer)
