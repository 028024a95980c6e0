"""Indexes and tags: one OCI index per flavor release from its children, then the tags move.

Each release has its own tags (<flavor>-<release>, <flavor>-<release>-gosu<version>); only the flavor's
default release also moves <flavor>, so publishing one release never moves another's tags.

In the order a publish takes them: each release's tags are read once
(`read_states`) and held to the platforms they serve (`check_shrink_all`: a
tag never loses one unless asked); each release is laid out from them
(`layout`: its index and what each tag does); then `apply` writes each
changed release's index by digest (signed through the caller's `seal`),
reads once more that nothing the indexes need is gone, moves the tags
(putting back those it moved if a move fails) and settles the floating tags
against a publish running at the same time. No tag is touched until every
child of every flavor is in the registry (and, with a signer, signed); the
gosu-versioned tag never moves once it exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from builder.core import oci
from builder.image.model import LABEL
from builder.core.oci import platform_key
from builder.publish import settle, signing
from builder.publish.push import Child, PublishError
from builder.config.settings import Destination
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
class Layout:
    """One flavor release laid out: its children, the index made of them, and what each of its tags does."""
    key: str           # flavor-release, as its children's Child.key
    children: tuple[Child, ...]
    index: bytes
    moves: tuple[TagMove, ...]

    @property
    def index_digest(self) -> str:
        return sha256_digest(self.index)

    @property
    def changes(self) -> bool:
        return any(m.changes for m in self.moves)


@dataclass(frozen=True)
class Report:
    layouts: list[Layout]
    children: list[Child]
    moved: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

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


def tags_of(child: Child) -> tuple[str, ...]:
    """The tags of the flavor release a child belongs to (tags_for)."""
    return tags_for(child.flavor, child.release, child.gosu_version, child.default, child.gosu_source)


def read_states(registry: Registry, repo: str, groups: dict[str, list[Child]]) -> dict[str, dict[str, TagState]]:
    """Each flavor release's tags (by flavor-release) as the registry serves them now; read once per run."""
    return {key: read_tags(registry, repo, tags_of(group[0])) for key, group in groups.items()}


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


def check_shrink_all(states: dict[str, dict[str, TagState]], groups: dict[str, list[Child]],
                     allow_shrink: bool) -> None:
    """The shrink guard for every flavor release: its floating tags keep every platform they serve now (the
    immutable tag never moves, so it cannot lose one)."""
    for key, group in groups.items():
        floating = dict(list(states[key].items())[:-1])
        check_shrink(floating, {c.platform_key for c in group}, allow_shrink)


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


def layout(children: list[Child], states: dict[str, dict[str, TagState]]) -> list[Layout]:
    """Each flavor release's index and tag moves; `states` (by flavor-release): its tags as this run read them
    (read_states)."""
    groups: dict[str, list[Child]] = {}
    for c in children:
        groups.setdefault(c.key, []).append(c)
    return [layout_release(group, states[key]) for key, group in sorted(groups.items())]


def layout_release(group: list[Child], states: dict[str, TagState]) -> Layout:
    """One flavor release: the index of its children, and for each of its tags what it does."""
    first = group[0]
    tags = tags_of(first)
    wanted = {c.platform_key: c.inputs for c in group}
    index = index_for(group, {
        "org.opencontainers.image.ref.name": tags[-1],
        "org.opencontainers.image.revision": first.revision,
        "org.opencontainers.image.created": max(c.created for c in group),
        f"{LABEL}.gosu.version": first.gosu_version,
    })
    moves = tuple(TagMove(tag, tag_action(states[tag], wanted, tag == tags[-1]), states[tag]) for tag in tags)
    return Layout(first.key, tuple(sorted(group, key=lambda c: c.platform_key)), index, moves)


def tag_action(state: TagState, wanted: dict[str, str], immutable: bool) -> str:
    """What a tag does, given the inputs (by platform) this run's index holds."""
    if not state.exists:
        return "create"
    if state.inputs == wanted:
        return "up to date"
    # The gosu-versioned tag is immutable: once published it never moves, so a pin on it stays
    # reproducible; new base builds reach the floating tags.
    return "kept (immutable)" if immutable else "move"


def describe(layouts: list[Layout], dest: Destination) -> list[str]:
    lines = []
    for lay in layouts:
        for c in lay.children:
            did = ("would build, smoke-test and push" if not c.in_registry else
                   f"uploaded {c.uploaded} bytes" if c.uploaded else "already in the registry, no upload")
            lines.append(f"  {lay.key:<15} {c.arch:<8} {(c.digest or '(new image)')[:19]:<19}  "
                         f"inputs {c.inputs[:19]}  {did}")
        for m in lay.moves:
            was = f" (was {m.state.digest[:19]})" if m.state.exists and m.changes else ""
            lines.append(f"  tag {dest.ref(m.tag)}: {m.action}{was}")
    return lines


def check_present(registry: Registry, dest: Destination, children: list[Child]) -> None:
    """Every child is in the registry: records handed over by push jobs name images pushed elsewhere."""
    for c in children:
        if registry.get_manifest(dest.repository, c.digest) is None:
            raise PublishError(f"{dest.ref(c.digest)} ({c.key} {c.arch}) is not in the registry; "
                               "re-run its push. No tag was moved")


def apply(registry: Registry, dest: Destination, layouts: list[Layout], log,
          seal: Callable[[str], None] | None = None) -> list[str]:
    """Write each changed release's index by digest, check nothing it needs is gone, then move the tags and
    settle them; returns the tags moved.

    Every child is in the registry and, with a signer, sealed before this
    is called (shipping seals each once). `seal(digest)`, if given, signs
    each index by digest before any tag moves, so a tag never points at an
    unsigned image; a failure there moves no tag.
    """
    todo = [lay for lay in layouts if lay.changes]
    write_indexes(registry, dest, todo, seal)
    check_gone(registry, dest, todo, signed=seal is not None)
    moved = move(registry, dest, todo)
    say_moves(layouts, dest, log)
    settle_all(registry, dest, todo, log)
    return moved


def write_indexes(registry: Registry, dest: Destination, layouts: list[Layout],
                  seal: Callable[[str], None] | None) -> None:
    for lay in layouts:
        registry.put_manifest(dest.repository, lay.index_digest, lay.index, OCI_INDEX)
        if seal:
            seal(lay.index_digest)


def check_gone(registry: Registry, dest: Destination, layouts: list[Layout], signed: bool) -> None:
    """Right before the first move, what the indexes need is read once more: a child, signature or
    attestation deleted underneath fails the run, naming it, and moves no tag."""
    missing = gone(registry, dest, layouts, signed)
    if missing:
        raise PublishError(f"{'; '.join(missing)}: deleted from the registry (another admin, a garbage "
                           "collection) after this run pushed or signed it. No tag was moved; re-run the "
                           "publish (or its push) to put it back")


def gone(registry: Registry, dest: Destination, layouts: list[Layout], signed: bool) -> list[str]:
    """What these layouts' indexes need and the registry no longer has: a child, or (signed) a signature or
    attestation."""
    if not layouts:
        return []  # no tag moves: nothing to read
    out = []
    present = registry.list_tags(dest.repository) if signed else set()
    for lay in layouts:
        for c in lay.children:
            what = f"{dest.ref(c.digest)} ({lay.key} {c.arch})"
            if registry.get_manifest(dest.repository, c.digest) is None:
                out.append(what)
            elif signed:
                out += [f"the {kind} of {what}" for kind, suffix in (("signature", "sig"), ("attestations", "att"))
                        if signing.sig_tag(c.digest, suffix) not in present]
        if signed and signing.sig_tag(lay.index_digest) not in present:
            out.append(f"the signature of index {dest.ref(lay.index_digest)} ({lay.key})")
    return out


def move(registry: Registry, dest: Destination, layouts: list[Layout]) -> list[str]:
    """Move each changing tag to its release's index; if a move fails, the tags already moved are put back
    (rollback) and the error says what became of each."""
    moved: list[TagMove] = []
    try:
        for lay in layouts:
            for m in lay.moves:
                if m.changes:
                    registry.put_manifest(dest.repository, m.tag, lay.index, OCI_INDEX)
                    moved.append(m)
    except RegistryError as e:
        raise PublishError(f"{e}. Tag moves stopped: {rollback(registry, dest, moved)}") from None
    return [m.tag for m in moved]


def rollback(registry: Registry, dest: Destination, moved: list[TagMove]) -> str:
    """Put each moved tag back on the index it had; a tag this run created points at a complete,
    smoke-tested index and stays. Returns what was done, for the error."""
    restored = [m.tag for m in moved if m.state.exists and _restore(registry, dest, m)]
    stuck = [m.tag for m in moved if m.state.exists and m.tag not in restored]
    created = [m.tag for m in moved if not m.state.exists]
    detail = f"restored {', '.join(restored) or 'none'}"
    if stuck:
        detail += f"; COULD NOT restore {', '.join(stuck)} (re-run publish to finish)"
    if created:
        detail += f"; created (complete, smoke-tested) {', '.join(created)}"
    return detail


def _restore(registry: Registry, dest: Destination, move: TagMove) -> bool:
    try:
        registry.put_manifest(dest.repository, move.tag, move.state.body, move.state.media_type)
        return True
    except RegistryError:
        return False


def say_moves(layouts: list[Layout], dest: Destination, log) -> None:
    for lay in layouts:
        for m in lay.moves:
            verb = {"create": "created", "move": "moved"}.get(m.action, m.action)
            log.write(f"publish: {dest.ref(m.tag)} -> {lay.index_digest[:19]}: {verb}\n"
                      if m.changes else f"publish: {dest.ref(m.tag)}: {verb}, nothing to do\n")


def settle_all(registry: Registry, dest: Destination, layouts: list[Layout], log) -> None:
    """After the moves, each release's floating tags are settled against any publish running at the same
    time (publish/settle.py); a run whose index lost says which won."""
    lost = []
    for lay in layouts:
        floating = tuple(m.tag for m in lay.moves[:-1])
        won = settle.settle(registry, dest, floating, settle.Index(lay.index_digest, lay.index, OCI_INDEX), log)
        if won.digest != lay.index_digest:
            lost.append(f"{', '.join(dest.ref(t) for t in floating)} name {won.digest[:19]}, another publish's "
                        f"newer index, not this run's {lay.index_digest[:19]} (which stays under "
                        f"{dest.ref(lay.moves[-1].tag)})")
    if lost:
        raise PublishError(f"another publish ran at the same time and won: {'; '.join(lost)}")
