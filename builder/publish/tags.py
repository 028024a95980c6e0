"""Indexes and tags: one OCI index per flavor release from its pushed children, then the tags move.

Each release has its own tags (<flavor>-<release>, <flavor>-<release>-gosu<version>); only the flavor's
default release also moves <flavor>, so publishing one release never moves another's tags.

No tag is touched until every child of every flavor is in the registry (and,
with a signer, signed); a failure while moving tags puts back the ones
already moved. A tag never loses a platform unless asked (check_shrink), and
the gosu-versioned tag never moves once it exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from builder.core import oci
from builder.image.model import LABEL
from builder.core.oci import platform_key
from builder.publish import settle, signing
from builder.publish.push import Child, Destination, PublishError, check_children
from builder.core.registry import DOCKER_LIST, OCI_INDEX, Registry, RegistryError, sha256_digest

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


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
        return not self.moved and all(c.in_registry and not c.uploaded for c in self.children)


def tags_for(flavor: str, release: str, gosu_version: str, default: bool = True,
             gosu_source: str = "") -> tuple[str, ...]:
    """The floating ones (<flavor> for the default release only, and <flavor>-<release>), then the immutable
    one that also names gosu: always last.

    A gosu rebuilt here is other bytes than the release of the same version, and is published as a variant
    beside it: every one of its tags ends in `-rebuild` (`alpine-rebuild`, `alpine-3.20-gosu1.19-rebuild`), so a
    pin on either never turns into the other and neither publish moves the other's floating tags.
    """
    variant = "-rebuild" if gosu_source == "rebuild" else ""
    tags = tuple(t + variant for t in ((flavor,) if default else ()) +
                 (f"{flavor}-{release}", f"{flavor}-{release}-gosu{gosu_version}"))
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


def index_for(children: list[Child], annotations: dict) -> bytes:
    manifests = [c.descriptor() for c in sorted(children, key=lambda c: c.platform_key)]
    return oci.canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
                          "annotations": annotations})


def plan_flavor(registry: Registry, dest: Destination, group: list[Child], allow_shrink: bool,
                states: dict[str, TagState] | None = None) -> FlavorPlan:
    first = group[0]
    tags = tags_for(first.flavor, first.release, first.gosu_version, first.default, first.gosu_source)
    states = states or read_tags(registry, dest.repository, tags)
    wanted = {c.platform_key: c.inputs for c in group}
    check_shrink({t: states[t] for t in tags[:-1]}, set(wanted), allow_shrink)
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
    return FlavorPlan(f"{first.flavor}-{first.release}", tuple(sorted(group, key=lambda c: c.platform_key)), index,
                      tuple(moves))


def plan(registry: Registry, dest: Destination, children: list[Child], expected=None,
         allow_shrink: bool = False, states: dict[str, dict[str, TagState]] | None = None) -> list[FlavorPlan]:
    """Each flavor release's index and tag moves; `states` (by flavor-release): its tags as this run already read
    them."""
    groups = check_children(children, expected)
    return [plan_flavor(registry, dest, g, allow_shrink, (states or {}).get(name))
            for name, g in sorted(groups.items())]


def describe(plans: list[FlavorPlan], dest: Destination) -> list[str]:
    lines = []
    for p in plans:
        for c in p.children:
            did = ("would build, smoke-test and push" if not c.in_registry else
                   f"uploaded {c.uploaded} bytes" if c.uploaded else "already in the registry, no upload")
            lines.append(f"  {p.flavor:<15} {c.arch:<8} {(c.digest or '(new image)')[:19]:<19}  "
                         f"inputs {c.inputs[:19]}  {did}")
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

    Right before the first move, what the indexes need is read once more
    (`gone`): a child, signature or attestation deleted underneath fails the
    run, naming it, and moves no tag. If a tag move fails, the tags already
    moved by this call are put back to the index they had; a tag this call
    created points at a complete, smoke-tested index and is reported. After
    the moves, the floating tags are settled against any publish running at
    the same time (publish/settle.py).
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
    missing = gone(registry, dest, todo, signed=seal is not None)
    if missing:
        raise PublishError(f"{'; '.join(missing)}: deleted from the registry (another admin, a garbage "
                           "collection) after this run pushed or signed it. No tag was moved; re-run the "
                           "publish (or its push) to put it back")
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
    lost = []
    for p in todo:
        floating = tuple(m.tag for m in p.moves[:-1])
        won = settle.settle(registry, dest, floating, settle.Index(p.index_digest, p.index, OCI_INDEX), log)
        if won.digest != p.index_digest:
            lost.append(f"{', '.join(dest.ref(t) for t in floating)} name {won.digest[:19]}, another publish's "
                        f"newer index, not this run's {p.index_digest[:19]} (which stays under "
                        f"{dest.ref(p.moves[-1].tag)})")
    if lost:
        raise PublishError(f"another publish ran at the same time and won: {'; '.join(lost)}")
    return [m.tag for m in moved]


def gone(registry: Registry, dest: Destination, plans: list[FlavorPlan], signed: bool) -> list[str]:
    """What these plans' indexes need and the registry no longer has: a child, or (signed) a signature or
    attestation. Read once, right before the first tag moves."""
    out = []
    present = registry.list_tags(dest.repository) if signed else set()
    for p in plans:
        for c in p.children:
            what = f"{dest.ref(c.digest)} ({p.flavor} {c.arch})"
            if registry.get_manifest(dest.repository, c.digest) is None:
                out.append(what)
            elif signed:
                out += [f"the {kind} of {what}" for kind, suffix in (("signature", "sig"), ("attestations", "att"))
                        if signing.sig_tag(c.digest, suffix) not in present]
        if signed and signing.sig_tag(p.index_digest) not in present:
            out.append(f"the signature of index {dest.ref(p.index_digest)} ({p.flavor})")
    return out
