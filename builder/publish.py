"""The publish stage: per-arch images go up by digest, then one index per tag, and tags move last.

Two halves that can run on different machines (the nightly matrix):
`push_child` uploads one smoke-tested image by digest and returns a `Child`
record (written to a file by the task); `plan` + `apply` read those records,
assemble one OCI index per flavor and move its tags. No tag is touched until
every child of every flavor is in the registry, and a failure while moving
tags puts back the ones already moved.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import audit, oci
from .images import LABEL, Built, split_ref
from .registry import DOCKER_LIST, OCI_INDEX, OCI_MANIFEST, Registry, RegistryError, credentials_for, sha256_digest

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


class PublishError(Exception):
    pass


@dataclass(frozen=True)
class Destination:
    registry: str      # host[:port]
    repository: str    # org/base-gosu
    local: bool = False  # the project's own registry that `invoke up` runs: trial images may go there

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}{'@' if tag.startswith('sha256:') else ':'}{tag}"


@dataclass(frozen=True)
class Child:
    """One per-arch image in the registry: what a push job hands to the assemble job."""
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
    uploaded: int = 0  # bytes this push sent (0: the registry had it; -1: a dry run's "would push")
    media_type: str = OCI_MANIFEST
    trial: str = ""    # why this image is a trial image ("" for production inputs only)

    @property
    def platform_key(self) -> str:
        return platform_key(self.platform)

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "platform": self.platform}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> "Child":
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as e:
            raise PublishError(f"digest file {path} is unreadable or not a push record ({e}); "
                               "re-run `invoke push` for that flavor and arch") from None


def write_records(directory: Path, children: list[Child]) -> list[Path]:
    """One <flavor>-<arch>.json per image, each written whole (temp file + rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for c in children:
        path = directory / f"{c.flavor}-{c.arch}.json"
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


@dataclass(frozen=True)
class TagState:
    """What a tag points at now, with each platform's inputs label (for no-op and rollback)."""
    tag: str
    digest: str | None = None
    body: bytes | None = None
    media_type: str = ""
    inputs: dict[str, str] = field(default_factory=dict)    # platform key -> inputs digest
    children: dict[str, dict] = field(default_factory=dict)  # platform key -> descriptor

    @property
    def exists(self) -> bool:
        return self.digest is not None


@dataclass(frozen=True)
class TagMove:
    tag: str
    action: str        # create | move | up to date | kept (immutable)
    state: TagState

    @property
    def changes(self) -> bool:
        return self.action in ("create", "move")


@dataclass(frozen=True)
class FlavorPlan:
    flavor: str
    children: tuple[Child, ...]
    index: bytes
    moves: tuple[TagMove, ...]

    @property
    def index_digest(self) -> str:
        return sha256_digest(self.index)


@dataclass
class Report:
    plans: list[FlavorPlan]
    children: list[Child]
    bytes_uploaded: int = 0
    moved: list[str] = field(default_factory=list)

    @property
    def noop(self) -> bool:
        return not self.moved and not any(c.uploaded for c in self.children)


def platform_key(p: dict) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def platform_dict(p) -> dict:
    return {"architecture": p.architecture, "os": p.os, **({"variant": p.variant} if p.variant else {})}


def tags_for(flavor: str, release: str, gosu_version: str) -> tuple[str, str, str]:
    """Floating, base release, and the immutable one that also names gosu."""
    tags = (flavor, f"{flavor}-{release}", f"{flavor}-{release}-gosu{gosu_version}")
    bad = [t for t in tags if not TAG_RE.match(t)]
    if bad:
        raise PublishError(f"{bad[0]!r} is not a valid tag; check the flavor's release and the gosu version")
    return tags


def child_inputs(registry: Registry, repo: str, digest: str, cache: dict) -> str:
    if digest not in cache:
        try:
            cache[digest] = oci.child_config(registry, repo, digest).get("config", {}).get("Labels", {}) \
                .get(f"{LABEL}.inputs", "")
        except KeyError:
            cache[digest] = ""
    return cache[digest]


def read_tag(registry: Registry, repo: str, tag: str, cache: dict | None = None) -> TagState:
    """The tag's current index and each child's inputs label; a tag that is absent reads as empty."""
    cache = {} if cache is None else cache
    got = registry.get_manifest(repo, tag)
    if got is None:
        return TagState(tag)
    body, media_type, digest = got
    doc = json.loads(body)
    if media_type in INDEX_TYPES or "manifests" in doc:
        # Attestation manifests (buildx) carry platform unknown/unknown: not an image to run.
        descs = [m for m in doc.get("manifests", []) if m.get("platform", {}).get("os", "unknown") != "unknown"]
    else:  # a single-arch manifest under the tag (pushed by something else)
        config = json.loads(registry.get_blob(repo, doc["config"]["digest"]))
        descs = [{"mediaType": media_type, "digest": digest, "size": len(body), "platform": oci.platform_of(config)}]
    children = {platform_key(d["platform"]): d for d in descs}
    inputs = {k: child_inputs(registry, repo, d["digest"], cache) for k, d in children.items()}
    return TagState(tag, digest, body, media_type or OCI_INDEX, inputs, children)


def read_tags(registry: Registry, repo: str, tags: tuple[str, ...]) -> dict[str, TagState]:
    cache: dict = {}
    return {t: read_tag(registry, repo, t, cache) for t in tags}


def check_shrink(states: dict[str, TagState], platforms: set[str], allow_shrink: bool) -> None:
    """Refuse to drop platforms from a tag downstream builds may be using, unless asked to."""
    if allow_shrink:
        return
    for s in states.values():
        lost = sorted(set(s.children) - platforms)
        if lost:
            raise PublishError(
                f"tag {s.tag} now serves {', '.join(sorted(s.children))}; this run has only "
                f"{', '.join(sorted(platforms))}, so {', '.join(lost)} would disappear for downstream builds. "
                "Publish them too (--arch all, or name them in --arch) or pass --allow-shrink to drop them on purpose. Nothing was pushed")


def reusable(states: dict[str, TagState], platform: str, inputs: str) -> dict | None:
    """A child already in the registry, under one of the flavor's tags, built from the same inputs."""
    for s in states.values():
        if s.inputs.get(platform) == inputs:
            return s.children[platform]
    return None


def existing_child(target, gosu_version: str, inputs: str, descriptor: dict, revision: tuple[str, str],
                   trial: str = "") -> Child:
    """The record for an image the registry already serves with these inputs (nothing to upload)."""
    return Child(target.flavor.name, target.flavor.release, target.arch.dpkg, descriptor["platform"],
                 descriptor["digest"], descriptor["size"], inputs, gosu_version, *revision,
                 media_type=descriptor.get("mediaType", OCI_MANIFEST), trial=trial)


def check_trial(images: list[tuple[str, str]], dest: Destination, allow_trial: bool) -> None:
    """Trial images (stand-in bases, gosu trusted through a test key or an expired archive Release) never leave this
    machine by accident.

    `images` holds (name, trial reasons) pairs; refused before any byte is sent.
    """
    trial = [(name, why) for name, why in images if why]
    if not trial or dest.local or allow_trial:
        return
    name, why = trial[0]
    more = f" (and {len(trial) - 1} more)" if len(trial) > 1 else ""
    raise PublishError(
        f"{name} is a trial image: {why}{more}. {dest.registry} is not this machine's local registry, so trial "
        "images are refused there: build from the real bases (images.use_standins) with gosu from a source "
        "pinned in keys/ (and, for Debian's archive, a current mirror), or pass --allow-trial to publish it "
        "anyway. Nothing was pushed")


def push_child(registry: Registry, dest: Destination, built: Built, log) -> Child:
    """Upload one smoke-tested, assembled image by digest; no tag is created or moved.

    Whether the registry already serves an image's inputs is decided before
    building (pipeline._triage), so every image that reaches here is pushed;
    blobs the registry has are skipped, and the base's layers are mounted
    when the base lives in the same registry.
    """
    target = built.target
    before = registry.bytes_uploaded
    base_host, base_repo, _ = split_ref(built.base.ref)
    mount = (base_repo,) if base_host == registry.host and base_repo != dest.repository else ()
    base_registry = registry if base_host == registry.host else Registry(base_host, credentials_for(base_host))
    pushed = oci.push_assembled(built.store, built.image, registry, dest.repository, base_registry, mount)
    # Referrers only once their subject is in the registry, and before any tag moves: nothing ever points
    # at an image that was not pushed, and a tag never names an image without its SBOM and provenance.
    attached = audit.attach(registry, dest.repository, built, pushed.descriptor(), lambda _host: base_registry)
    sent = registry.bytes_uploaded - before
    log.write(f"push: {target.name}: {dest.ref(pushed.digest)} ({sent} bytes uploaded); SBOM "
              f"{attached.sbom[:19]}, provenance {attached.provenance[:19]} attached\n")
    return Child(target.flavor.name, target.flavor.release, target.arch.dpkg, pushed.platform, pushed.digest,
                 pushed.size, built.inputs, built.gosu.version, built.labels["org.opencontainers.image.revision"],
                 built.labels["org.opencontainers.image.created"], uploaded=sent, trial=built.trial)


def push_all(registry: Registry, dest: Destination, built: list[Built], log) -> list[Child]:
    return [push_child(registry, dest, b, log) for b in built]


def check_children(children: list[Child], expected: list[tuple[str, str]] | None = None) -> dict[str, list[Child]]:
    """Group by flavor; every expected (flavor, arch) present once and nothing else, and each flavor's children
    agree."""
    by_flavor: dict[str, list[Child]] = {}
    seen: dict[tuple[str, str], Child] = {}
    for c in children:
        if (c.flavor, c.arch) in seen:
            raise PublishError(f"two push records for {c.flavor} {c.arch} ({seen[c.flavor, c.arch].digest[:19]} "
                               f"and {c.digest[:19]}); keep one per flavor and arch")
        seen[c.flavor, c.arch] = c
        by_flavor.setdefault(c.flavor, []).append(c)
    missing = [f"{f} {a}" for f, a in (expected or []) if (f, a) not in seen]
    if missing:
        raise PublishError(f"no push record for {', '.join(missing)}: its push job failed or did not run. "
                           "No tag was moved")
    # A tag gets exactly the platforms asked for: a stray record (another run's, an arch a flavor no longer
    # lists) must not slip into an index.
    extra = [f"{f} {a}" for f, a in seen if expected is not None and (f, a) not in expected]
    if extra:
        raise PublishError(f"push record for {', '.join(extra)} was not asked for (--flavor, --arch, "
                           "images.flavors): remove it from the records directory or ask for it. No tag was moved")
    for flavor, group in by_flavor.items():
        for attr, what in (("gosu_version", "gosu versions"), ("release", "base releases")):
            values = sorted({getattr(c, attr) for c in group})
            if len(values) > 1:
                raise PublishError(f"{flavor}: its arches were built from different {what} ({', '.join(values)}); "
                                   "the lock or config changed between push jobs. Re-run them all. No tag was moved")
    return by_flavor


def index_for(children: list[Child], annotations: dict) -> bytes:
    manifests = [c.descriptor() for c in sorted(children, key=lambda c: c.platform_key)]
    return oci.canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
                          "annotations": annotations})


def plan_flavor(registry: Registry, dest: Destination, group: list[Child], allow_shrink: bool,
                states: dict[str, TagState] | None = None) -> FlavorPlan:
    first = group[0]
    tags = tags_for(first.flavor, first.release, first.gosu_version)
    states = states or read_tags(registry, dest.repository, tags)
    wanted = {c.platform_key: c.inputs for c in group}
    check_shrink({t: states[t] for t in tags[:2]}, set(wanted), allow_shrink)
    index = index_for(group, {
        "org.opencontainers.image.ref.name": tags[-1],
        "org.opencontainers.image.revision": first.revision,
        "org.opencontainers.image.created": max(c.created for c in group),
        f"{LABEL}.gosu.version": first.gosu_version,
    })
    moves = []
    for tag in tags:
        s = states[tag]
        if not s.exists:
            action = "create"
        elif s.inputs == wanted:
            action = "up to date"
        elif tag == tags[-1]:
            # The gosu-versioned tag is immutable: once published it never moves, so a
            # pin on it stays reproducible; new base builds reach the floating tags.
            action = "kept (immutable)"
        else:
            action = "move"
        moves.append(TagMove(tag, action, s))
    return FlavorPlan(first.flavor, tuple(sorted(group, key=lambda c: c.platform_key)), index, tuple(moves))


def plan(registry: Registry, dest: Destination, children: list[Child], expected=None,
         allow_shrink: bool = False) -> list[FlavorPlan]:
    groups = check_children(children, expected)
    return [plan_flavor(registry, dest, g, allow_shrink) for _, g in sorted(groups.items())]


def describe(plans: list[FlavorPlan], dest: Destination) -> list[str]:
    lines = []
    for p in plans:
        for c in p.children:
            did = ("would build, smoke-test and push" if c.uploaded < 0 else
                   f"uploaded {c.uploaded} bytes" if c.uploaded else "already in the registry, no upload")
            lines.append(f"  {p.flavor:<8} {c.arch:<8} {c.digest[:19]:<19}  inputs {c.inputs[:19]}  {did}")
        for m in p.moves:
            was = f" (was {m.state.digest[:19]})" if m.state.exists and m.changes else ""
            lines.append(f"  tag {dest.ref(m.tag)}: {m.action}{was}")
    return lines


def _restore(registry: Registry, dest: Destination, move: TagMove) -> bool:
    try:
        registry.put_manifest(dest.repository, move.tag, move.state.body, move.state.media_type)
        return True
    except RegistryError:
        return False


def apply(registry: Registry, dest: Destination, plans: list[FlavorPlan], log, seal=None) -> list[str]:
    """Check every child is present, write every index by digest, then move the tags.

    `seal(digest, per_arch)`, if given, signs (and for a per-arch image
    attests) each child and index by digest before any tag moves, so a tag
    never points at an unsigned image; a failure there moves no tag.

    If a tag move fails, the tags already moved by this call are put back to
    the index they had; a tag this call created points at a complete,
    smoke-tested index and is reported.
    """
    todo = [p for p in plans if any(m.changes for m in p.moves)]
    for p in todo:
        for c in p.children:
            if registry.get_manifest(dest.repository, c.digest) is None:
                raise PublishError(f"{dest.ref(c.digest)} ({p.flavor} {c.arch}) is not in the registry; "
                                   "re-run its push. No tag was moved")
            if seal:
                seal(c.digest, True)
        registry.put_manifest(dest.repository, p.index_digest, p.index, OCI_INDEX)
        if seal:
            seal(p.index_digest, False)
    moved: list[TagMove] = []
    try:
        for p in todo:
            for m in p.moves:
                if m.changes:
                    registry.put_manifest(dest.repository, m.tag, p.index, OCI_INDEX)
                    moved.append(m)
    except RegistryError as e:
        restored = [m.tag for m in moved if m.state.exists and _restore(registry, dest, m)]
        stuck = [m.tag for m in moved if m.state.exists and m.tag not in restored]
        created = [m.tag for m in moved if not m.state.exists]
        detail = f"restored {', '.join(restored) or 'none'}"
        if stuck:
            detail += f"; COULD NOT restore {', '.join(stuck)} (re-run publish to finish)"
        if created:
            detail += f"; created (complete, smoke-tested) {', '.join(created)}"
        raise PublishError(f"{e}. Tag moves stopped: {detail}") from None
    for p in plans:
        for m in p.moves:
            verb = {"create": "created", "move": "moved"}.get(m.action, m.action)
            log.write(f"publish: {dest.ref(m.tag)} -> {p.index_digest[:19]}: {verb}\n"
                      if m.changes else f"publish: {dest.ref(m.tag)}: {verb}, nothing to do\n")
    return [m.tag for m in moved]
