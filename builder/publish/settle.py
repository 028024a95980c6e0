"""Publishers that overlap: a flavor's floating tags end on one whole index, and a run that lost says so.

A registry has no compare-and-swap on tags, so two runs moving a flavor's
floating tags at once (a slow nightly and the next one, a manual run during
the nightly) can leave `alpine` on one run's index and `alpine-3.20` on the
other's. After its own moves, each run re-reads those tags and moves any
that differ to the greatest index it has seen among them, ordered by the
index's `created` annotation (the newest revision) and then by digest, and
repeats until one read finds every floating tag on that index. Every run
orders alike, so they converge on the same index; and the last write of
all is followed by its writer's own read, so when every run has ended the
tags agree. Each candidate was written by a run only after every child was
in the registry and signed (tags.apply), so the tags name an index a run
published whole. A run whose own index is not the one they settle on has
lost the race: it says which index won, and exits non-zero; its index stays
under its immutable tag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from builder.core.registry import OCI_INDEX, Registry
from builder.publish.push import PublishError
from builder.config.settings import Destination

CREATED = "org.opencontainers.image.created"


@dataclass(frozen=True)
class Index:
    digest: str
    body: bytes
    media_type: str

    @property
    def order(self) -> tuple[str, str]:
        try:
            created = json.loads(self.body).get("annotations", {}).get(CREATED, "")
        except ValueError:
            created = ""
        return created, self.digest


def read(registry: Registry, repo: str, tag: str) -> Index | None:
    got = registry.get_manifest(repo, tag)
    return None if got is None else Index(got[2], got[0], got[1] or OCI_INDEX)


def settle(registry: Registry, dest: Destination, tags: tuple[str, ...], ours: Index, log,
           rounds: int = 30) -> Index:
    """Move `tags` until one read finds them all on the greatest index seen; returns that index."""
    seen = {ours.digest: ours}
    for _ in range(rounds):
        now = {t: read(registry, dest.repository, t) for t in tags}
        seen.update((i.digest, i) for i in now.values() if i is not None)
        best = max(seen.values(), key=lambda i: i.order)
        behind = [t for t, i in now.items() if i is None or i.digest != best.digest]
        if not behind:
            return best
        for t in behind:
            registry.put_manifest(dest.repository, t, best.body, best.media_type)
            log.write(f"publish: {dest.ref(t)} -> {best.digest[:19]}: moved again (another publish moved it "
                      "at the same time)\n")
    raise PublishError(f"{', '.join(dest.ref(t) for t in tags)} kept changing under this run for {rounds} "
                       "rounds: another publish is still moving them; re-run when it has finished")
