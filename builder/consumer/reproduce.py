"""Check a published image against its inputs: rebuild it from what its labels name and compare.

The labels are the image's plan (build/plan.py): the base (registry,
repository, platform digest), gosu (version and sha256), the project
revision, the build epoch and the ops account; `from_labels` reads them back
into that record, which is rebuilt as any build would. The entrypoint
comes from that revision in the local checkout; the rebuild uses this
checkout's assembler. Equal manifest digests mean every byte is accounted
for; otherwise the answer names the config fields and the files that differ.
"""

from __future__ import annotations

import dataclasses

import gzip
import hashlib
import io
import json
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.core.errors import BuilderError
from builder.image import make
from builder.image.assembly import append, layer
from builder.image import nsswrapper
from builder.image.assembly.store import Store
from builder.config.settings import Flavor, NssSettings
from builder.image.plan import Gosu, ImagePlan, LabelError, from_labels, inputs_digest, plan_image, platform_string
from builder.core.refs import parse_ref
from builder.core.registry import DOCKER_MANIFEST, OCI_MANIFEST, Registry


class ReproduceError(BuilderError):
    pass


@dataclass
class Verdict:
    ref: str
    platform: str
    published: str
    rebuilt: str
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.published == self.rebuilt and not self.differences

    def lines(self) -> list[str]:
        if self.identical:
            return [f"identical: {self.ref} ({self.platform}) manifest {self.published}"]
        return [f"differs: {self.ref} ({self.platform}): published manifest {self.published}, rebuilt "
                f"{self.rebuilt}", *(f"  {d}" for d in self.differences)]


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True)


def revision_file(root: Path, revision: str, path: str) -> bytes:
    if git(root, "cat-file", "-e", f"{revision}^{{commit}}").returncode != 0:
        raise ReproduceError(f"revision {revision} is not in the checkout at {root}: fetch it (git fetch origin "
                             f"{revision}) or run reproduce in a clone that has it. Nothing was rebuilt")
    p = git(root, "show", f"{revision}:{path}")
    if p.returncode != 0:
        raise ReproduceError(f"revision {revision} has no {path}: it predates reproducible assembly")
    return p.stdout


def revision_entrypoint(root: Path, revision: str) -> append.Entrypoint:
    """images/entrypoint.sh at the revision and the entrypoint-*.sh files it sources there (none before the
    entrypoint was split)."""
    core = revision_file(root, revision, "images/entrypoint.sh")
    names = git(root, "ls-tree", "--name-only", f"{revision}:images").stdout.decode().split()
    libs = {n: revision_file(root, revision, f"images/{n}") for n in names
            if n.startswith("entrypoint-") and n.endswith(".sh")}
    return append.Entrypoint.of({"entrypoint.sh": core, **libs})


def _flatten(obj, prefix: str = "") -> dict[str, str]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: json.dumps(obj, sort_keys=True)}


def config_differences(published: dict, rebuilt: dict) -> list[str]:
    a, b = _flatten(published), _flatten(rebuilt)
    return [f"config {k}: published {a.get(k, '(absent)')}, rebuilt {b.get(k, '(absent)')}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def file_differences(published: dict[str, tuple], rebuilt: dict[str, tuple]) -> list[str]:
    names = ("kind", "mode", "uid", "gid", "size", "content")
    out = []
    for path in sorted(set(published) | set(rebuilt)):
        p, r = published.get(path), rebuilt.get(path)
        if p == r:
            continue
        if p is None or r is None:
            where = "only in the published image" if r is None else "missing from the published image"
            out.append(f"file /{path}: {where}")
            continue
        what = [f"{n} {_show(n, x)} != {_show(n, y)}" for n, x, y in zip(names, p, r) if x != y]
        out.append(f"file /{path}: {', '.join(what)} (published != rebuilt)")
    return out


def _show(name: str, value) -> str:
    return oct(value) if name == "mode" else (value[:12] if name == "content" and value else str(value))


def rebuild(published: ImagePlan, root: Path, store: Store, gosu: bytes, registry_for) -> append.Image:
    """The image the published plan describes, with the entrypoint of its revision and this checkout's
    assembler; the inputs digest is computed afresh from those, so a changed input shows as a difference."""
    entrypoint = revision_entrypoint(root, published.revision.commit)
    p = published
    again = plan_image(p.target, p.base, p.gosu, p.revision, p.repository, p.account, p.source_url, entrypoint,
                       p.nss_wrapper)
    if p.vulns:  # the scan is taken as published (a database moves on): its label is an input like the others
        again = dataclasses.replace(again, vulns=p.vulns, inputs=inputs_digest(
            p.target, p.base, p.gosu, p.account, entrypoint, p.nss_wrapper, p.vulns))
    return make.assemble_plan(again, gosu, entrypoint, store, registry_for)


def compare(ref: str, registry: Registry, repo: str, digest: str, manifest: dict, store: Store,
            image: append.Image, platform: str) -> Verdict:
    v = Verdict(ref, platform, digest, image.digest)
    if v.published == v.rebuilt:
        return v
    config = json.loads(registry.get_blob(repo, manifest["config"]["digest"]))
    v.differences += config_differences(config, image.config_doc)
    theirs, ours = [d["digest"] for d in manifest["layers"]], [d["digest"] for d in image.layers]
    if theirs[:-1] != ours[:-1]:
        v.differences.append(f"base layers: published {[d[:19] for d in theirs[:-1]]}, rebuilt "
                             f"{[d[:19] for d in ours[:-1]]}")
    if theirs[-1:] != ours[-1:]:
        published = layer.listing(gzip.decompress(registry.get_blob(repo, theirs[-1])))
        v.differences += file_differences(published, layer.listing(append.own_layer_tar(store, image)))
        v.differences.append(f"layer {theirs[-1][:19]} (published) != {ours[-1][:19]} (rebuilt)")
    if not v.differences:
        v.differences.append("manifests differ in encoding only (same config and layers)")
    return v


def children(registry: Registry, repo: str, ref: str) -> list[tuple[str, dict]]:
    """(digest, manifest) of each image under `ref`: one for a manifest, one per platform for an index."""
    got = registry.get_manifest(repo, ref)
    if got is None:
        raise ReproduceError(f"{registry.host}/{repo}:{ref} is not in the registry")
    doc = json.loads(got[0])
    if "manifests" not in doc:
        return [(got[2], doc)]
    out = []
    for m in doc["manifests"]:
        if m.get("mediaType", OCI_MANIFEST) in (OCI_MANIFEST, DOCKER_MANIFEST) and \
                m.get("platform", {}).get("os", "unknown") != "unknown":
            child = registry.get_manifest(repo, m["digest"])
            out.append((m["digest"], json.loads(child[0])))
    return out


def reproduce(ref: str, root: Path, store: Store, flavors: dict[str, Flavor], gosu_for, registry_for,
              releases: dict[str, dict[str, Flavor]] | None = None, nss_for=None) -> list[Verdict]:
    """Rebuild every platform under `ref` from the plan its labels name; `gosu_for(Gosu)` returns gosu's
    verified bytes, `nss_for(NssWrapper)` those of the nss_wrapper the labels name."""
    host, repo, tag = parse_ref(ref)
    registry = registry_for(host)
    verdicts = []
    for digest, manifest in children(registry, repo, tag):
        config = json.loads(registry.get_blob(repo, manifest["config"]["digest"]))
        platform = platform_string(config)
        try:
            published = from_labels(config.get("config", {}).get("Labels") or {}, platform, flavors, releases)
        except (LabelError, ValueError) as e:
            raise ReproduceError(str(e)) from None
        if published.nss_wrapper:
            if nss_for is None:
                raise ReproduceError(f"{ref} ({platform}) carries nss_wrapper, and no way to fetch it was given")
            published = replace(published, nss_wrapper=replace(published.nss_wrapper,
                                                                data=nss_for(published.nss_wrapper)))
        image = rebuild(published, root, store, gosu_for(published.gosu), registry_for)
        verdicts.append(compare(ref, registry, repo, digest, manifest, store, image, platform))
    return verdicts


def gosu_getter(options_for):
    """gosu_for(Fetched) -> bytes: from the verified cache by sha256, else fetched and verified again.

    `options_for(version, arch, source kind)` gives the FetchOptions (mirror, key) to fetch with.
    """
    from builder.gosu import fetch as fetch_stage
    from builder.gosu.download import Cache

    def get(wanted: Gosu) -> bytes:
        opts = options_for(wanted.version, wanted.arch, wanted.kind)
        blob = Cache(opts.cache_dir).blob(wanted.sha256)
        data = blob.read_bytes() if blob.is_file() else b""
        if hashlib.sha256(data).hexdigest() == wanted.sha256:
            return data
        report = fetch_stage.fetch(opts, log=io.StringIO())
        got = next((f for f in report.fetched if f.arch == wanted.arch), None)
        if got is None or got.sha256 != wanted.sha256:
            have = got.sha256 if got else "; ".join(str(f) for f in report.failures) or "nothing"
            raise ReproduceError(f"gosu {wanted.version} {wanted.arch} with sha256 {wanted.sha256} is neither in "
                                 f"the cache nor at the configured source (got {have}); pass --mirror/--key for "
                                 "where it was fetched from")
        return got.path.read_bytes()
    return get


def nss_wrapper_getter(settings: NssSettings):
    """nss_for(NssWrapper) -> bytes: the library by the pin an image's labels give (package version, suite,
    .deb sha256), from the verified cache or through the signed chain, whatever this checkout pins."""
    def get(wanted: nsswrapper.NssWrapper) -> bytes:
        got = nsswrapper.get(replace(settings, package=wanted.package), {wanted.arch: wanted.pin})[wanted.arch]
        if got.sha256 != wanted.sha256:
            raise ReproduceError(f"{wanted.package} {wanted.version} ({wanted.arch}): the pinned .deb holds a "
                                 f"library with sha256 {got.sha256}, but the image's labels name {wanted.sha256}")
        return got.data
    return get
