"""gosu rebuilt here from its released source, with the Go toolchain the configured Debian suites carry.

inputs.py takes the orig tarball, the toolchain and the dependency sources
through Debian's archive chain; gomod.py makes them Go modules; gobuild.py
cross-compiles every arch with upstream's recipe and checks each binary as
upstream's release build does. This module ties them together, applies the
lock (every input and the output are pinned per arch) and caches: the
verified inputs by sha256, the unpacked toolchain, Go's build cache and each
output with a record of what it was built from. A warm run re-checks that
record's evidence (InRelease signatures and validity, the digests they list,
every input's bytes, the output's bytes) and compiles nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from builder.core.arches import Arch
from builder.gosu.download import Cache, DownloadError, Source, make_session
from builder.gosu.signature import Keyring, VerificationError, check_elf, is_project_key, sha256_file
from builder.gosu.sources import archive as deb_archive, deb, gobuild, gomod, toolchain
from builder.gosu.sources.archive import Archive
from builder.gosu.sources.inputs import Inputs, Pins, Session, gather
from builder.gosu.sources.model import REBUILD, FetchOptions, FetchReport, Fetched, with_archive_keys
from builder.gosu import lock as lockfile

GOCODE = "usr/share/gocode/src"


@dataclass(frozen=True)
class RebuildRecord:
    """One arch's output and everything it was made from, with the evidence to check it all again offline."""
    sha256: str
    size: int
    version: str
    go_version: str
    orig: list        # [pool filename, sha256, size, suite, Debian source version]
    toolchain: list   # [minor, package version, suite, [go deb filename, sha256, size], [src deb ...]]
    deps: list        # [[package, version, module, module version, deb sha256, filename], ...]
    evidence: list    # [[suite, InRelease sha256, index, index sha256], ...]
    signers: list
    checks: str
    source: str       # where the orig tarball came from


def fetch(opts: FetchOptions, log=sys.stderr) -> FetchReport:
    cache = Cache(opts.cache_dir)
    return with_archive_keys(opts, lambda keyring, report: _fetch_all(opts, cache, keyring, report, log))


def _cache_key(opts: FetchOptions) -> str:
    return f"rebuild-{opts.suite}-{opts.version}-go{opts.go or 'newest'}"


def _locked(opts: FetchOptions) -> lockfile.RebuildLock | None:
    r = opts.lock.rebuild if opts.lock else None
    return r if r and r.suite == opts.suite and r.version == opts.version else None


def _pins(opts: FetchOptions) -> Pins:
    r = _locked(opts)
    if not r or not r.arches:
        return Pins()
    e = next(iter(r.arches.values()))
    return Pins(e.orig_sha256, e.go_package_version, tuple(sorted(e.deps.items())))


def _fetch_all(opts: FetchOptions, cache: Cache, keyring: Keyring, report: FetchReport, log) -> None:
    checked: dict[str, bool | str] = {}  # digest -> intact; evidence -> its expiry marker ("" if fresh)
    missing = report.take_cached(
        opts.arches, lambda a: _from_cache(opts, cache, keyring, a, report, checked) if opts.version else None)
    if not missing:
        return
    stage = cache.staging()
    try:
        session = Session(Archive(Source(opts.mirror), make_session(opts.retries, opts.backoff), opts.timeout),
                          keyring, cache, stage, log, opts.accept_expired)
        try:
            inputs, goroot, files = gather(session, opts.version, opts.suite, opts.suites, opts.host_arch, opts.go,
                                           dict(opts.modules), _pins(opts), cache.root / "toolchains")
            env, main_version = _prepare(inputs, goroot, files, session, stage, cache)
            go_version = toolchain.go_version(goroot)
        except (DownloadError, VerificationError) as e:
            report.fail_all(missing, e)
            return
        except gomod.ModuleError as e:
            report.fail_all(missing, VerificationError("go.mod", "bad module", str(e)))
            return
        log.write(f"rebuild: gosu {inputs.version} ({inputs.orig.suite} {inputs.orig.version}) with {go_version} "
                  f"({inputs.toolchain.package} {inputs.toolchain.package_version}, {inputs.toolchain.suite}); "
                  f"{', '.join(f'{d.module} from {d.file.name} {d.file.version}' for d in inputs.deps)}\n")
        # One arch at a time: each compile already uses the cores (go -p).
        report.collect(missing, 1, lambda a: _build_one(opts, cache, keyring, inputs, goroot, env, main_version,
                                                        go_version, stage, a, log))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _prepare(inputs: Inputs, goroot: Path, files: dict[str, bytes], session: Session, stage: Path,
             cache: Cache) -> tuple[dict[str, str], str]:
    """The module proxy (gosu + its dependencies) and the `go` environment that uses it."""
    work = stage / "go"
    work.mkdir()
    go = goroot / "bin" / "go"
    env = gobuild.go_env(work, cache.root / "go-build", stage / "proxy")
    versions = {d.module: d.module_version for d in inputs.deps}
    modules = []
    edit = stage / "edit"
    edit.mkdir()
    for d in inputs.deps:
        try:
            tree = deb.files_under(session.get(d.file).read_bytes(), f"{GOCODE}/{d.module}")
        except deb.DebError as e:
            raise VerificationError(d.file.name, "no module source", f"{e} (for {d.module})") from None
        mod_files = gomod.source_files(tree)
        mod_files.pop("go.sum", None)
        gomod_text = mod_files.get("go.mod", f"module {d.module}\n".encode())
        declared = gomod.go_mod_json(go, env, gomod_text, edit).get("Module", {}).get("Path")
        if declared != d.module:
            raise VerificationError(d.file.name, "no module source",
                                    f"{GOCODE}/{d.module}/go.mod declares module {declared}, not {d.module}")
        mod_files["go.mod"] = gomod.pin_requirements(go, env, gomod_text, versions, edit)
        modules.append(gomod.Module(d.module, d.module_version, mod_files, d.file.name, d.file.version))
    main_version = gomod.release_version(inputs.version)
    own = {k: v for k, v in files.items() if k != "go.sum"}
    own["go.mod"] = gomod.pin_requirements(go, env, files["go.mod"], versions, edit)
    modules.append(gomod.Module(gobuild.MODULE, main_version, own))
    gomod.write_proxy(stage / "proxy", modules)
    return env, main_version


def _entry(inputs: Inputs, sha256: str, size: int) -> lockfile.RebuildEntry:
    return lockfile.RebuildEntry(inputs.orig.sha256, inputs.toolchain.package, inputs.toolchain.package_version,
                                 {f.name: f.sha256 for f in inputs.go_files},
                                 {d.file.name: d.file.version for d in inputs.deps}, sha256, size)


def _build_one(opts: FetchOptions, cache: Cache, keyring: Keyring, inputs: Inputs, goroot: Path,
               env: dict[str, str], main_version: str, go_version: str, stage: Path, arch: Arch, log) -> Fetched:
    locked = _locked(opts)
    if locked:
        locked.check_inputs(arch.dpkg, _entry(inputs, "", 0))
    name = f"gosu-{arch.dpkg}"
    try:
        out = gobuild.build(goroot, env, arch, main_version, stage / name)
    except OSError as e:
        raise VerificationError(name, "build failed", str(e)) from None
    check_elf(out, arch, name)
    info = gobuild.build_info(goroot, env, out)
    gobuild.check_build_info(info, arch, go_version, main_version,
                             {d.module: d.module_version for d in inputs.deps}, name)
    checks = gobuild.upstream_checks(out, arch, opts.host_arch, inputs.version)
    digest, size = sha256_file(out), out.stat().st_size
    if locked:
        locked.check_output(arch.dpkg, digest, size)
    log.write(f"rebuild: {name} {digest} ({size} bytes); {checks}\n")
    path = cache.store_blob(out, digest)
    t = inputs.toolchain
    rec = RebuildRecord(
        digest, size, inputs.version, go_version,
        [inputs.orig.filename, inputs.orig.sha256, inputs.orig.size, inputs.orig.suite, inputs.orig.version],
        [t.minor, t.package_version, t.suite, list(t.go_deb), list(t.src_deb)],
        [[d.file.name, d.file.version, d.module, d.module_version, d.file.sha256, d.file.filename]
         for d in inputs.deps],
        [[e.suite, e.inrelease_sha256, e.index, e.index_sha256] for e in inputs.evidence],
        sorted(inputs.signers), checks, Source(opts.mirror).location(*inputs.orig.filename.split("/")))
    cache.write(keyring.fingerprint, _cache_key(opts), arch.dpkg, rec)
    return _fetched(opts, arch, rec, path, False, bool(locked), inputs.expired_accepted)


def _from_cache(opts: FetchOptions, cache: Cache, keyring: Keyring, arch: Arch, report: FetchReport,
                checked: dict[str, bool | str]) -> Fetched | None:
    """A cached output, after checking its record's evidence and every input's bytes again, with no network.

    Each InRelease is checked at this moment, with this run's accept_expired:
    an output built from a suite accepted expired is not served to a run that
    does not accept it (nor is it evicted: the evidence is intact), and a run
    that does gets it marked again.
    """
    rec = cache.read(keyring.fingerprint, _cache_key(opts), arch.dpkg, RebuildRecord)
    if rec is None:
        return None
    locked = _locked(opts)
    name = f"gosu-{arch.dpkg}"
    try:
        if locked:
            entry = lockfile.rebuild_entry(_fetched(opts, arch, rec, cache.blob(rec.sha256), True, False))
            try:
                locked.check_inputs(arch.dpkg, entry)
            except VerificationError:
                return None  # the lock names other inputs: build from those
            locked.check_output(arch.dpkg, rec.sha256, rec.size)
        inputs = [rec.orig[1], rec.toolchain[3][1], rec.toolchain[4][1], *(d[4] for d in rec.deps)]
        for digest in [rec.sha256, *inputs]:
            if digest not in checked:
                blob = cache.blob(digest)
                checked[digest] = blob.is_file() and sha256_file(blob) == digest
            if not checked[digest]:
                raise VerificationError(name, "cache modified",
                                        f"cached file {cache.blob(digest)} is gone or was modified after it was "
                                        "verified")
        now = dt.datetime.now(dt.timezone.utc)
        markers = set()
        for suite, inrelease, index, index_sha in rec.evidence:
            key = f"{suite}:{inrelease}:{index}:{index_sha}"
            if key not in checked:
                blob = cache.blob(inrelease)
                if not blob.is_file() or sha256_file(blob) != inrelease:
                    raise VerificationError(f"dists/{suite}/InRelease", "cache modified",
                                            "the cached InRelease is gone or was modified")
                release = deb_archive.release_from(blob, suite, keyring, now, opts.accept_expired)
                if release.files.get(index, ("",))[0] != index_sha:
                    raise VerificationError(index, "cache modified", "the cached InRelease does not list this index")
                checked[key] = release.expired_marker
            markers.add(checked[key])
        check_elf(cache.blob(rec.sha256), arch, name)
    except VerificationError as e:
        if e.reason == "expired Release":
            return None  # not accepted by this run: the network decides (a fresh mirror, or the refusal)
        cache.evict(keyring.fingerprint, _cache_key(opts), arch.dpkg, rec)
        report.warnings.append(f"{arch.dpkg}: {e}; evicted it from the cache and building again")
        return None
    return _fetched(opts, arch, rec, cache.blob(rec.sha256), True, bool(locked), ", ".join(sorted(markers - {""})))


def _fetched(opts: FetchOptions, arch: Arch, rec: RebuildRecord, path: Path, from_cache: bool,
             locked: bool, expired_accepted: str = "") -> Fetched:
    keys = dict((fpr, f) for f, fpr in opts.archive_keys)
    minor, package_version = rec.toolchain[0], rec.toolchain[1]
    toolchain_debs = {f"golang-{minor}-go": rec.toolchain[3][1], f"golang-{minor}-src": rec.toolchain[4][1]}
    details = (("suite", rec.orig[3]), ("package", rec.orig[4]), ("orig", rec.orig[0]), ("orig_sha256", rec.orig[1]),
               ("go_version", rec.go_version), ("go_package", f"golang-{minor}-go"),
               ("go_package_version", package_version), ("go_suite", rec.toolchain[2]),
               ("toolchain_debs", json.dumps(toolchain_debs, sort_keys=True)),
               ("deps", json.dumps([d[:4] for d in rec.deps])), ("checks", rec.checks))
    if expired_accepted:
        details += (("expired_accepted", expired_accepted),)
    return Fetched(arch.dpkg, rec.version, rec.sha256, rec.size, path, from_cache, False, locked, rec.source,
                   kind=REBUILD, trust_root=",".join(rec.signers),
                   pinned=bool(rec.signers) and all(s in keys and is_project_key(keys[s], s) for s in rec.signers),
                   details=details)



def components(f: Fetched, host_arch: str) -> list[dict[str, str]]:
    """What a rebuilt gosu is made of, as package URLs, for the SBOM to name.

    The binary's own build information says the same for the Go side (an SBOM
    scanner reading it sees go1.NN.N and each dependency's Debian-named
    version); this adds the Debian packages they came from.
    """
    out = [{"name": "gosu", "version": f.version, "purl": f"pkg:deb/debian/gosu@{f.detail('package')}?arch=source"},
           {"name": "go", "version": f.detail("go_version"), "purl": f"pkg:golang/stdlib@{f.detail('go_version')}"}]
    for package, sha in json.loads(f.detail("toolchain_debs") or "{}").items():
        arch = "all" if package.endswith("-src") else host_arch
        out.append({"name": package, "version": f.detail("go_package_version"), "sha256": sha,
                    "purl": f"pkg:deb/debian/{package}@{f.detail('go_package_version')}?arch={arch}"})
    for package, version, module, module_version in json.loads(f.detail("deps") or "[]"):
        out.append({"name": module, "version": module_version, "purl": f"pkg:golang/{module}@{module_version}",
                    "from": f"pkg:deb/debian/{package}@{version}?arch=all"})
    return out
