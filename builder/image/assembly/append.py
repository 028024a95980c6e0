"""Assemble an image by appending one computed layer to a digest-pinned base: no engine, no RUN, no emulator.

The image is a pure function of its inputs: the base's manifest (by
digest), gosu's bytes, the entrypoint's files, the ops account, the labels
and the epoch. The base is read from the registry it was resolved in; the
result (new layer, config, manifest) goes into the store, and the base's
layers stay referenced by digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.image.assembly import accounts, basefs, layer
from builder.image.assembly.layer import DIR, FILE, Entry
from builder.core.registry import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Registry
from builder.image.assembly.store import Store, digest_of
from builder.core.oci import canonical

ENTRYPOINT = "/usr/local/bin/entrypoint"
# The files the entrypoint sources (images/entrypoint-*.sh), read only by the starts that need them.
ENTRYPOINT_LIB = "/usr/local/lib/base-gosu"
WORKDIR = "app"
NSS_WRAPPER = "/usr/local/lib/base-gosu/libnss_wrapper.so"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_HERE = Path(__file__).resolve().parent
# The builder's own code is an input too: a change to how images are assembled must not reuse old results.
CODE = hashlib.sha256(b"".join((_HERE / f).read_bytes() for f in
                               ("append.py", "layer.py", "basefs.py", "accounts.py"))).hexdigest()


class AssemblyError(ValueError):
    pass


@dataclass(frozen=True)
class Entrypoint:
    """The entrypoint an image ships: its source files in images/ by name, entrypoint.sh (the core, run as
    ENTRYPOINT) and the entrypoint-*.sh files it sources from ENTRYPOINT_LIB."""
    sources: tuple[tuple[str, bytes], ...]

    @classmethod
    def of(cls, sources: dict[str, bytes]) -> Entrypoint:
        if "entrypoint.sh" not in sources:
            raise AssemblyError(f"the entrypoint's files {sorted(sources)} lack entrypoint.sh")
        return cls(tuple(sorted(sources.items())))

    def files(self) -> list[tuple[str, str, bytes]]:
        """(source name, path in the image without its leading /, bytes) of each file, the core first."""
        return sorted(((name, image_path(name), data) for name, data in self.sources), key=lambda f: f[1] != (
            ENTRYPOINT.strip("/")))

    def sha256(self) -> str:
        """The core's sha256 when it is the one file (as images from before the split carry in their inputs
        digest), else that of every file's name and sha256."""
        if len(self.sources) == 1:
            return hashlib.sha256(self.sources[0][1]).hexdigest()
        return hashlib.sha256(canonical({n: hashlib.sha256(d).hexdigest() for n, d in self.sources})).hexdigest()


def image_path(name: str) -> str:
    """Where images/<name> is in the image (no leading /)."""
    return ENTRYPOINT.strip("/") if name == "entrypoint.sh" else f"{ENTRYPOINT_LIB.strip('/')}/{name}"


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class BaseRef:
    host: str
    repo: str
    digest: str       # the platform's manifest digest


@dataclass(frozen=True)
class Recipe:
    """Everything the image is computed from."""
    base: BaseRef
    gosu: bytes
    entrypoint: Entrypoint
    account: accounts.Account
    epoch: int
    labels: dict[str, str]
    cmd: tuple[str, ...] = ("sh",)
    note: str = ""     # the history line
    nss_wrapper: bytes = b""   # the library for a glibc base (shadow-utils accounts); empty: none

    def key(self) -> str:
        extra = {"nss_wrapper": hashlib.sha256(self.nss_wrapper).hexdigest()} if self.nss_wrapper else {}
        return hashlib.sha256(canonical({
            "code": CODE, "base": self.base.digest, "gosu": hashlib.sha256(self.gosu).hexdigest(),
            "entrypoint": self.entrypoint.sha256(), "account": self.account.__dict__,
            "epoch": self.epoch, "labels": self.labels, "cmd": self.cmd, "note": self.note, **extra,
        })).hexdigest()


@dataclass(frozen=True)
class Image:
    """An assembled image: its manifest and config are in the store, and so is its own layer."""
    manifest: bytes
    config: bytes
    base: BaseRef
    dialect: str = ""
    timings: dict = field(default_factory=dict, compare=False)

    @property
    def digest(self) -> str:
        return digest_of(self.manifest)

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)

    @property
    def doc(self) -> dict:
        return json.loads(self.manifest)

    @property
    def config_doc(self) -> dict:
        return json.loads(self.config)

    @property
    def layers(self) -> list[dict]:
        return self.doc["layers"]

    @property
    def own_layer(self) -> dict:
        return self.layers[-1]

    @property
    def platform(self) -> dict:
        c = self.config_doc
        variant = {"variant": c["variant"]} if c.get("variant") else {}
        return {"architecture": c["architecture"], "os": c["os"], **variant}

    @property
    def labels(self) -> dict:
        return self.config_doc.get("config", {}).get("Labels") or {}


def _cached(store: Store, digest: str, fetch) -> bytes:
    data = store.get(digest)
    if data is None:
        data = fetch()
        if digest_of(data) != digest:
            raise AssemblyError(f"base blob {digest[:19]} arrived with other content; the registry served "
                                "something else than the digest names")
        store.put(data)
    return data


def read_base(store: Store, registry: Registry, base: BaseRef) -> tuple[dict, dict, basefs.BaseFs]:
    """(manifest, config, the file-system subset the build edits), every part verified by digest and cached."""
    def manifest():
        got = registry.get_manifest(base.repo, base.digest)
        if got is None:
            raise AssemblyError(f"base {base.host}/{base.repo}@{base.digest} is not in the registry")
        return got[0]
    man = json.loads(_cached(store, base.digest, manifest))
    if "layers" not in man:
        raise AssemblyError(f"base {base.repo}@{base.digest[:19]} is an index, not one platform's image")
    cfg = json.loads(_cached(store, man["config"]["digest"],
                             lambda: registry.get_blob(base.repo, man["config"]["digest"])))
    subsets = []
    for desc in man["layers"]:
        key = f"{basefs.SUBSET_VERSION}-{desc['digest'].split(':', 1)[1]}"
        sub_digest = store.get_ref("subsets", key)
        sub = store.get(sub_digest) if sub_digest else None
        if sub is None:
            sub = basefs.subset(_fetch_layer(store, registry, base, desc["digest"], keep=False))
            store.put_ref("subsets", key, store.put(sub))
        subsets.append(sub)
    return man, cfg, basefs.merge(subsets)


def _fetch_layer(store: Store, registry: Registry, base: BaseRef, digest: str, keep: bool) -> bytes:
    data = store.get(digest)
    if data is None:
        data = registry.get_blob(base.repo, digest)
        if digest_of(data) != digest:
            raise AssemblyError(f"base layer {digest[:19]} from {base.host}/{base.repo} does not match its digest")
        if keep:
            store.put(data)
    return data


def base_layer(store: Store, registry: Registry, image: Image, digest: str) -> bytes:
    """A base layer's bytes (for an engine that lacks it, or a registry that does): kept in the store once read."""
    return _fetch_layer(store, registry, image.base, digest, keep=True)


def _parents(entries: list[Entry], fs: basefs.BaseFs) -> list[Entry]:
    """Each written path's parent directories, with the mode and owner the base gives them."""
    have = {e.path for e in entries}
    out = {}
    for e in entries:
        parts = e.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p in have or p in out:
                continue
            b = fs.get(p)
            if b is not None and b.kind != DIR:
                raise AssemblyError(f"the base has /{p} as a {b.kind}, not a directory; cannot write /{e.path}")
            out[p] = Entry(p, DIR, b.mode, b.uid, b.gid) if b else Entry(p, DIR, 0o755)
    return list(out.values())


def writable_by_gid0(e: Entry) -> Entry:
    """Group 0 with the owner's permissions (g=u), as Red Hat's image guidelines ask: an arbitrary uid started
    with gid 0 (OpenShift, runAsUser without an account) can write it. Group 0 gains nothing the owner lacks,
    and a process started as root that keeps gid 0 is root already. No setgid: what is made in it must not
    inherit group 0."""
    mode = (e.mode & ~0o2070) | ((e.mode & 0o700) >> 3)
    return replace(e, mode=mode, gid=0)


def entries_for(r: Recipe, fs: basefs.BaseFs) -> tuple[str, list[Entry]]:
    dialect, account = accounts.add(fs, r.account, r.epoch)
    account = [writable_by_gid0(e) if e.path == r.account.home and e.kind == DIR else e for e in account]
    own = [
        Entry("usr/local/bin/gosu", FILE, 0o755, 0, 0, r.gosu),
        # The core runs; the files it sources are read, never run: no execute bit.
        *(Entry(path, FILE, 0o755 if name == "entrypoint.sh" else 0o644, 0, 0, data)
          for name, path, data in r.entrypoint.files()),
        # Group 0 with the owner's permissions: an arbitrary uid started with gid 0 (OpenShift) can write it.
        Entry(WORKDIR, DIR, 0o775, r.account.uid, 0),
        *account,
    ]
    if r.nss_wrapper:
        if dialect != accounts.SHADOW_UTILS:
            # A glibc library in a musl base would fail to load at every start; refuse to build that image.
            raise AssemblyError(f"the plan names nss_wrapper, a glibc library, but the base's accounts are "
                                f"{dialect}'s (Alpine, musl): drop the flavor from images.nss_wrapper.flavors")
        own.append(Entry(NSS_WRAPPER.strip("/"), FILE, 0o644, 0, 0, r.nss_wrapper))
    return dialect, own + _parents(own, fs)


def config_for(r: Recipe, base_cfg: dict, diff_id: str) -> bytes:
    c = dict(base_cfg.get("config") or {})
    user_env = f"GOSU_USER={r.account.user}"
    c["Env"] = [e for e in (c.get("Env") or []) if not e.startswith("GOSU_USER=")] + [user_env]
    c["WorkingDir"] = f"/{WORKDIR}"
    c["Entrypoint"] = [ENTRYPOINT]
    c["Cmd"] = list(r.cmd)
    c["Labels"] = {**(c.get("Labels") or {}), **r.labels}
    out = {k: base_cfg[k] for k in ("architecture", "os", "os.version", "os.features", "variant") if k in base_cfg}
    out.update({
        "created": iso(r.epoch),
        "config": c,
        "rootfs": {"type": "layers", "diff_ids": [*base_cfg["rootfs"]["diff_ids"], diff_id]},
        "history": [*(base_cfg.get("history") or []),
                    {"created": iso(r.epoch), "created_by": r.note or "base-gosu: gosu, entrypoint, ops account",
                     "comment": "assembled by base-gosu (builder/image/assembly/append.py)"}],
    })
    return canonical(out)


def _oci_layer(desc: dict) -> dict:
    # Same bytes, OCI name: an OCI manifest should not mix in Docker media types.
    media = OCI_LAYER_GZIP if desc["mediaType"] == DOCKER_LAYER_GZIP else desc["mediaType"]
    return {"mediaType": media, "digest": desc["digest"], "size": desc["size"]}


def assemble(r: Recipe, store: Store, registry: Registry) -> Image:
    """The image for `r`, from the store when the same recipe was assembled before."""
    timings = {}
    start = time.perf_counter()
    key = r.key()
    known = store.get_ref("images", key)
    if known:
        man = store.get(known)
        cfg = store.get(json.loads(man)["config"]["digest"]) if man else None
        if man and cfg and store.has(json.loads(man)["layers"][-1]["digest"]):
            return Image(man, cfg, r.base, timings={"cached": time.perf_counter() - start})
    base_man, base_cfg, fs = read_base(store, registry, r.base)
    timings["base"] = time.perf_counter() - start
    dialect, entries = entries_for(r, fs)
    new = layer.make(entries, r.epoch)
    timings["layer"] = time.perf_counter() - start - timings["base"]
    config = config_for(r, base_cfg, new.diff_id)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [*map(_oci_layer, base_man["layers"]),
                   {"mediaType": OCI_LAYER_GZIP, "digest": new.digest, "size": len(new.blob)}],
    })
    for blob in (new.blob, config, manifest):
        store.put(blob)
    store.put_ref("images", key, digest_of(manifest))
    return Image(manifest, config, r.base, dialect, timings)


def own_layer_tar(store: Store, image: Image) -> bytes:
    """The uncompressed bytes of the layer the build wrote (for comparisons)."""
    blob = store.get(image.own_layer["digest"])
    if blob is None:
        raise AssemblyError(f"layer {image.own_layer['digest'][:19]} is not in the store")
    return gzip.decompress(blob)
