"""Making an image: a verified gosu and the entrypoint appended to a digest-pinned base, as its plan says.

Each image is assembled (image/assembly) from the base's layers as the
registry serves them, then loaded into the engine so it can run there.
Nothing runs inside the image while it is built, and nothing is resolved
here: the plan names the base's digest and gosu's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from builder.image.assembly import append, load as loader
from builder.image.assembly.accounts import Account
from builder.image.assembly.store import Store
from builder.image.model import Base, Target
from builder.image.plan import ImagePlan, to_labels
from builder.core.engine import Engine
from builder.core.clients import Clients
from builder.core.registry import RegistryError
from builder.gosu.fetch import Fetched


@dataclass(frozen=True)
class Built:
    plan: ImagePlan
    fetched: Fetched  # the verified gosu the plan names (the audit reads its source's details)
    labels: dict
    image: append.Image
    store: Store

    @property
    def target(self) -> Target:
        return self.plan.target

    @property
    def tag(self) -> str:
        return self.plan.tag

    @property
    def image_id(self) -> str:
        """The config digest, which is also the engine's image ID once loaded."""
        return self.image.config_digest

    @property
    def base(self) -> Base:
        return self.plan.base

    @property
    def inputs(self) -> str:
        return self.plan.inputs

    @property
    def trial(self) -> str:
        return self.plan.trial


def recipe(plan: ImagePlan, gosu: bytes, entrypoint: append.Entrypoint, labels: dict[str, str]) -> append.Recipe:
    a, nss = plan.account, plan.nss_wrapper
    return append.Recipe(
        base=append.BaseRef(plan.base.host, plan.base.repo, plan.base.digest), gosu=gosu, entrypoint=entrypoint,
        account=Account(a.user, a.uid, a.gid, f"home/{a.user}"), epoch=plan.revision.epoch, labels=labels,
        note=f"base-gosu: gosu {plan.gosu.version}, entrypoint, user {a.user} {a.uid}:{a.gid}"
             + (f", nss_wrapper {nss.version}" if nss else ""),
        nss_wrapper=nss.data if nss else b"")


def gosu_bytes(gosu: Fetched) -> bytes:
    data = gosu.path.read_bytes()
    if hashlib.sha256(data).hexdigest() != gosu.sha256:
        raise ValueError(f"{gosu.path}: gosu {gosu.arch} changed since it was verified; run the build again")
    return data


def assemble_plan(plan: ImagePlan, gosu: bytes, entrypoint: append.Entrypoint, store: Store, registry_for,
                  extra_labels: dict[str, str] | None = None) -> append.Image:
    """The image a plan describes; `extra_labels` only where labels were carried over as published."""
    if hashlib.sha256(gosu).hexdigest() != plan.gosu.sha256:
        raise ValueError(f"gosu {plan.gosu.arch}: the bytes given are not the sha256 {plan.gosu.sha256} its plan names")
    nss = plan.nss_wrapper
    if nss and hashlib.sha256(nss.data).hexdigest() != nss.sha256:
        raise ValueError(f"nss_wrapper {nss.arch}: the bytes given are not the sha256 {nss.sha256} its plan names")
    labels = {**to_labels(plan), **(extra_labels or {})}
    try:
        return append.assemble(recipe(plan, gosu, entrypoint, labels), store, registry_for(plan.base.host))
    except RegistryError as e:
        raise ValueError(f"cannot read base {plan.base.ref}@{plan.base.digest[:19]}: {e}") from None


def build(store: Store, plan: ImagePlan, gosu: Fetched, entrypoint: append.Entrypoint, registry_for=None) -> Built:
    """Assemble one planned image (no engine involved); `load` puts images into the engine."""
    image = assemble_plan(plan, gosu_bytes(gosu), entrypoint, store, registry_for or Clients())
    return Built(plan, gosu, to_labels(plan), image, store)


def load(engine: Engine, built: list[Built], registry_for=None) -> int:
    """Put built images into the engine under their tags; returns how many had to be loaded."""
    if not built:
        return 0
    return loader.load(engine, built[0].store, registry_for or Clients(),
                       [(b.tag, b.image) for b in built])
