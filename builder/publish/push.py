"""Pushing: each smoke-tested per-arch image goes up by digest, and every image a publish hands on is a `Child`.

A `Child` is made in one place (`record`): from an image's plan, before
anything is built (no digest yet), then with the descriptor of the image
the registry serves, pushed by this run (`push_child`) or already there.
Pushing and tagging can run on different machines (the nightly matrix):
`invoke push` writes its records to files, and publish/tags.py turns such
records into one OCI index per flavor release and moves its tags. The
guards read records too: trial images, images past their base's end of
life and images with a vulnerable gosu are stopped before a byte is sent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.core.errors import BuilderError
from builder.image import audit
from builder.image.assembly.append import base_layer
from builder.image.audit.vulns import parse_label
from builder.image.make import Built
from builder.image.plan import ImagePlan
from builder.core.refs import split_ref
from builder.publish import attest
from builder.core.oci import platform_key
from builder.core.clients import Clients
from builder.core.registry import OCI_MANIFEST, Registry, RegistryError
from builder.config import eol
from builder.config.settings import Destination


class PublishError(BuilderError):
    pass


@dataclass(frozen=True)
class Child:
    """One per-arch image a publish hands on: what a push job hands to the assemble job, and what the guards read.

    Made by `record` alone. Until the image is in the registry (planned, or a
    dry run's "would push") its digest is "".
    """
    flavor: str
    release: str
    arch: str
    platform: dict
    digest: str
    size: int
    inputs: str
    gosu_version: str
    revision: str
    created: str
    uploaded: int = 0  # bytes this push sent (0: the registry had it, or nothing is pushed yet)
    media_type: str = OCI_MANIFEST
    trial: str = ""    # why this image is a trial image ("" for production inputs only)
    default: bool = True  # its flavor's default release: the tag <flavor> follows it
    eol: str = ""      # its base release's end of life, as the label org.base-gosu.base.eol says ("" if none known)
    vulns: str = ""    # its org.base-gosu.gosu.vulns label ("" if gosu was not scanned)
    gosu_source: str = ""  # github, debian or rebuild ("": a record from before it was kept; not rebuild)
    # The findings that apply, by ID, when this run scanned gosu; never written to a push record (its reader
    # has the label's count), so two records of one image are equal whether or not they carry them.
    findings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        return f"{self.flavor}-{self.release}"

    @property
    def in_registry(self) -> bool:
        return bool(self.digest)

    @property
    def applying(self) -> str:
        """The findings that apply to its gosu ("" if none, or if it was not scanned)."""
        if self.findings:
            return ", ".join(self.findings)
        count = parse_label(self.vulns)[0] if self.vulns else 0
        return f"{count} finding(s) that apply (label {self.vulns})" if count > 0 else ""

    @property
    def platform_key(self) -> str:
        return platform_key(self.platform)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "platform": self.platform}

    def to_json(self) -> str:
        data = asdict(self)
        del data["findings"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "Child":
        try:
            data = json.loads(path.read_text())
            child = cls(**data)
            if child.vulns:  # a label that does not parse makes the record unreadable: the guard never guesses
                parse_label(child.vulns)
            return child
        except (OSError, ValueError, TypeError) as e:
            raise PublishError(f"digest file {path} is unreadable or not a push record ({e}); "
                               "re-run `invoke push` for that flavor and arch") from None


def record(plan: ImagePlan, image: dict | None = None, uploaded: int = 0) -> Child:
    """The record of a planned image; with `image` (a descriptor), of the image the registry serves for it."""
    target, image = plan.target, image or {}
    findings = tuple(f"{v.id} ({', '.join(v.symbols)})" for v in plan.scan.affected) if plan.scan else ()
    return Child(target.flavor.name, target.flavor.release, target.arch.dpkg,
                 image.get("platform") or target.platform.as_oci(), image.get("digest", ""), image.get("size", 0),
                 plan.inputs, plan.gosu.version, plan.revision.commit, plan.revision.created, uploaded=uploaded,
                 media_type=image.get("mediaType", OCI_MANIFEST), trial=plan.trial, default=target.flavor.default,
                 eol=str(target.flavor.eol or ""), vulns=plan.vulns, gosu_source=plan.gosu.kind, findings=findings)


def write_records(directory: Path, children: list[Child]) -> list[Path]:
    """One <flavor>-<release>-<arch>.json per image, each written whole (temp file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in children:
        path = directory / f"{c.key}-{c.arch}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(c.to_json())
        tmp.replace(path)
        paths.append(path)
    return paths


def read_records(directory: Path) -> list[Child]:
    paths = sorted(directory.glob("*.json")) if directory.is_dir() else []
    if not paths:
        raise PublishError(f"no push records (*.json) in {directory}: run `invoke push --digests-dir "
                           f"{directory}` for each flavor and arch first (in CI: download the push jobs' artifacts)")
    return [Child.from_file(p) for p in paths]


def _refuse_beyond_local(found: list[tuple[str, object]], dest: Destination, allowed: bool, words) -> None:
    """The one shape of every publish guard: images that may leave this machine only on purpose are refused
    for any registry but the local one, before any byte is sent. `found` holds (name, why) for each such
    image; `words(name, why, more)` is the error for the first."""
    if not found or dest.local or allowed:
        return
    name, why = found[0]
    raise PublishError(words(name, why, f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def check_trial(images: list[tuple[str, str]], dest: Destination, allow_trial: bool) -> None:
    """Trial images (stand-in bases, gosu trusted through a test key or an expired archive Release) never leave this
    machine by accident.

    `images` holds (name, trial reasons) pairs; refused before any byte is sent.
    """
    _refuse_beyond_local([(n, why) for n, why in images if why], dest, allow_trial, lambda name, why, more: (
        f"{name} is a trial image: {why}{more}. {dest.registry} is not this machine's local registry, so trial "
        "images are refused there: build from the real bases (images.use_standins) with gosu from a source "
        "pinned in keys/ (and, for Debian's archive, a current mirror), or pass --allow-trial to publish it "
        "anyway. Nothing was pushed"))


def check_eol(images: list[tuple[str, str]], dest: Destination, allow_eol: bool, today) -> None:
    """Images whose base release is past its end of life never leave this machine by accident.

    `images` holds (name, org.base-gosu.base.eol label) pairs; refused before any byte is sent.
    """
    dead = [(name, e) for name, e in ((n, eol.from_label(label)) for n, label in images) if e and e.past(today)]
    _refuse_beyond_local(dead, dest, allow_eol, lambda name, e, more: (
        f"{name}: its base release reached its end of life on {e.date} ({e.source}){more}. {dest.registry} is not "
        "this machine's local registry, so it is refused there: publish a supported release (`invoke releases`), "
        "or pass --allow-eol to publish it anyway. Nothing was pushed"))


def check_vulnerable(images: list[tuple[str, str]], dest: Destination, allow_vulnerable: bool) -> None:
    """An image whose gosu has a vulnerable function present leaves this machine only on purpose.

    `images` holds (name, the findings that apply) pairs; refused before any byte is sent.
    """
    _refuse_beyond_local([(n, what) for n, what in images if what], dest, allow_vulnerable, lambda name, what, more: (
        f"{name}: gosu has vulnerable code present that no reviewed assessment clears: {what}{more}. "
        f"{dest.registry} is not this machine's local registry, so such images are refused there: add a reviewed "
        "not_affected assessment of each ID to vuln-assessments.yaml (docs/vulnerabilities.md), build with "
        "--source rebuild (gosu compiled with the newest Go Debian carries), or pass --allow-vulnerable to publish "
        "it anyway (its VEX says `affected`). Nothing was pushed"))


@dataclass(frozen=True)
class Pushed:
    repo: str
    digest: str
    size: int
    platform: dict
    labels: dict

    def descriptor(self) -> dict:
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": self.size, "platform": self.platform}


def push_assembled(store, image, registry: Registry, repo: str, base_registry: Registry,
                   mount_from: tuple[str, ...] = ()) -> Pushed:
    """Upload an assembled image's blobs and manifest by digest; no tag is created or moved.

    Blobs the registry has are skipped; the base's layers are mounted from
    `mount_from` (same registry) when it can, else read from the store or
    the base's registry and sent.
    """
    own = image.layers[-1]["digest"]   # the appended layer: never in the base's repository, so never mounted
    for desc in image.layers:
        digest = desc["digest"]
        if registry.blob_exists(repo, digest):
            continue
        if mount_from and digest != own and registry.mount_blob(repo, digest, mount_from):
            continue
        data = store.get(digest) or base_layer(store, base_registry, image, digest)
        registry.put_blob(repo, data, digest)  # asked above: one existence check per blob
    registry.upload_blob(repo, image.config, image.config_digest)
    digest = registry.put_manifest(repo, image.digest, image.manifest, OCI_MANIFEST)
    if digest != image.digest:
        raise RegistryError(f"registry {registry.host} stored manifest {image.digest[:19]} as {digest[:19]}")
    return Pushed(repo, digest, len(image.manifest), image.platform, image.labels)


def push_child(registry: Registry, dest: Destination, built: Built, log, clients: Clients | None = None
               ) -> tuple[Child, dict[str, dict]]:
    """Upload one smoke-tested, assembled image by digest; no tag is created or moved. Returns its record
    and the documents to attest to it (those just attached as referrers).

    Whether the registry already serves an image's inputs is decided before
    building (the run's plan), so every image that reaches here is pushed;
    blobs the registry has are skipped, and the base's layers are mounted
    when the base lives in the same registry.
    """
    target = built.target
    before = registry.bytes_uploaded
    base_host, base_repo, _ = split_ref(built.base.ref)
    mount = (base_repo,) if base_host == registry.host and base_repo != dest.repository else ()
    base_registry = registry if base_host == registry.host else (clients or Clients())(base_host)
    pushed = push_assembled(built.store, built.image, registry, dest.repository, base_registry, mount)
    # Referrers only once their subject is in the registry, and before any tag moves: nothing ever points
    # at an image that was not pushed, and a tag never names an image without its SBOM and provenance.
    attached = audit.attach(registry, dest.repository, built, pushed.descriptor(), lambda _host: base_registry)
    sent = registry.bytes_uploaded - before
    vex = f", VEX {attached.vex[:19]}" if attached.vex else ""
    log.write(f"push: {target.name}: {dest.ref(pushed.digest)} ({sent} bytes uploaded); SBOM "
              f"{attached.sbom[:19]}, provenance {attached.provenance[:19]}{vex} attached\n")
    child = record(built.plan, pushed.descriptor(), sent)
    return child, attest.predicates(attached.sbom_doc, attached.provenance_doc, pushed.digest, vex=attached.vex_doc)


def check_children(children: list[Child], expected: list[tuple[str, str, str]] | None = None
                   ) -> dict[str, list[Child]]:
    """Group by flavor release (flavor-release); every expected (flavor, release, arch) present once and nothing
    else, and each release's children agree."""
    by_flavor: dict[str, list[Child]] = {}
    seen: dict[tuple[str, str, str], Child] = {}
    for c in children:
        if (c.flavor, c.release, c.arch) in seen:
            raise PublishError(f"two push records for {c.flavor} {c.release} {c.arch} "
                               f"({seen[c.flavor, c.release, c.arch].digest[:19]} and {c.digest[:19]}); keep one per "
                               "flavor, release and arch")
        seen[c.flavor, c.release, c.arch] = c
        by_flavor.setdefault(c.key, []).append(c)
    missing = [" ".join(e) for e in (expected or []) if tuple(e) not in seen]
    if missing:
        raise PublishError(f"no push record for {', '.join(missing)}: its push job failed or did not run. "
                           "No tag was moved")
    # A tag gets exactly the platforms asked for: a stray record (another run's, an arch a flavor no longer
    # lists) must not slip into an index.
    wanted = {tuple(e) for e in expected or []}
    extra = [" ".join(k) for k in seen if expected is not None and k not in wanted]
    if extra:
        raise PublishError(f"push record for {', '.join(extra)} was not asked for (--flavor, --release, --arch, "
                           "images.flavors): remove it from the records directory or ask for it. No tag was moved")
    for flavor, group in by_flavor.items():
        for attr, what in (("gosu_version", "gosu versions"), ("gosu_source", "gosu sources"),
                           ("default", "default-release settings")):
            values = sorted({getattr(c, attr) for c in group})
            if len(values) > 1:
                raise PublishError(f"{flavor}: its arches were built from different {what} ({', '.join(values)}); "
                                   "the lock or config changed between push jobs. Re-run them all. No tag was moved")
    return by_flavor


