"""Go modules made from Debian's sources, served to `go` by a local file:// module proxy.

gosu is built in module mode, the way upstream builds it, but every module
comes from a file this project verified: gosu's own from the orig tarball,
each dependency from the Debian -dev package that ships its source. No
module proxy, checksum database or VCS is ever asked.

Versions say where the code came from. gosu's module is gosu's own release,
as semver (1.19 -> v1.19.0), so the binary's build information names it
instead of `(devel)`, as upstream's release build does. A dependency gets a
pre-release version of the Debian package it came from
(golang-golang-x-sys-dev 0.50.0+dfsg-1~bpo13+1 -> v0.50.0-debian.0.50.0-dfsg-1-bpo13-1),
and every go.mod served requires exactly those versions, so minimal version
selection can pick nothing else. go.sum files are left out: their hashes are
of upstream's module zips, which these are not; the trust comes from the
archive chain instead.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Module zips are compared by content (go's h1: hash covers names and bytes), but
# fixed metadata keeps the files themselves identical between runs too.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ModuleError(ValueError):
    """A module cannot be made from these sources; the message says which and why."""


@dataclass(frozen=True)
class Module:
    path: str                  # module path, e.g. golang.org/x/sys
    version: str               # semver the proxy serves it as
    files: dict[str, bytes]    # path inside the module -> content (go.mod included)
    package: str = ""          # the Debian package it came from ("" for gosu's own)
    package_version: str = ""


def release_version(version: str) -> str:
    """gosu's '1.19' -> 'v1.19.0': Go needs semver, gosu tags major.minor."""
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
        raise ModuleError(f"gosu version {version!r} is not MAJOR.MINOR[.PATCH], so it has no Go module version")
    return "v" + version + (".0" if version.count(".") == 1 else "")


def debian_version(package_version: str, module_path: str) -> str:
    """A Go pre-release version that names the Debian package version it came from.

    Its major.minor.patch is the package's upstream one where Go allows it for
    this module path (a path without /vN takes only v0 and v1), else vN.0.0.
    """
    upstream = package_version.split(":", 1)[-1]
    m = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", upstream)
    nums = [int(g or 0) for g in m.groups()] if m else [0, 0, 0]
    suffix = re.search(r"/v(\d+)$", module_path)
    major = int(suffix.group(1)) if suffix else None
    if (major is None and nums[0] > 1) or (major is not None and nums[0] != major):
        nums = [major or 0, 0, 0]
    base = ".".join(map(str, nums))
    tag = re.sub(r"[^0-9A-Za-z.-]", "-", package_version.replace(":", "-"))
    # Semver forbids empty and zero-padded numeric identifiers; join those to their neighbour.
    parts: list[str] = []
    for ident in tag.split("."):
        if parts and (not ident or (ident.isdigit() and len(ident) > 1 and ident[0] == "0")):
            parts[-1] += "-" + ident
        else:
            parts.append(ident or "0")
    return f"v{base}-debian.{'.'.join(parts)}"


def source_files(tree: dict[str, bytes], top: str = "") -> dict[str, bytes]:
    """The files of one module from a source tree: below `top`, minus nested modules and vendor/."""
    prefix = top.strip("/") + "/" if top.strip("/") else ""
    picked = {k[len(prefix):]: v for k, v in tree.items() if k.startswith(prefix)}
    nested = {p.rsplit("/", 1)[0] + "/" for p in picked if p.endswith("/go.mod") and "/" in p}
    return {p: v for p, v in picked.items()
            if not any(p.startswith(n) for n in nested) and not p.startswith("vendor/") and "/vendor/" not in p}


def go_mod_json(go: Path, env: dict[str, str], gomod: bytes, workdir: Path) -> dict:
    """`go mod edit -json` of a go.mod: the toolchain's own parser, offline."""
    path = workdir / "go.mod"
    path.write_bytes(gomod)
    try:
        out = subprocess.run([str(go), "mod", "edit", "-json", str(path)], env=env, capture_output=True,
                             check=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        raise ModuleError(f"go.mod cannot be read: {e.stderr.strip()}") from None
    return json.loads(out)


def pin_requirements(go: Path, env: dict[str, str], gomod: bytes, versions: dict[str, str], workdir: Path) -> bytes:
    """The go.mod with every requirement on a module we serve set to the version we serve it as."""
    doc = go_mod_json(go, env, gomod, workdir)
    edits = [f"-require={r['Path']}@{versions[r['Path']]}" for r in doc.get("Require") or []
             if r["Path"] in versions]
    edits += [f"-dropreplace={r['Old']['Path']}" for r in doc.get("Replace") or []]
    if edits:
        subprocess.run([str(go), "mod", "edit", *edits, str(workdir / "go.mod")], env=env, check=True,
                       capture_output=True)
    return (workdir / "go.mod").read_bytes()


def module_zip(mod: Module) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(mod.files):
            info = zipfile.ZipInfo(f"{mod.path}@{mod.version}/{name}", ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, mod.files[name])
    return buf.getvalue()


def escape(path: str) -> str:
    """Go's case-encoding of module paths in a proxy (!x for X)."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def write_proxy(root: Path, modules: list[Module]) -> Path:
    """A GOPROXY=file:// tree serving exactly these module versions."""
    for mod in modules:
        if "go.mod" not in mod.files:
            raise ModuleError(f"module {mod.path} has no go.mod")
        d = root / escape(mod.path) / "@v"
        d.mkdir(parents=True, exist_ok=True)
        (d / "list").write_text(mod.version + "\n")
        (d / f"{mod.version}.info").write_text(json.dumps({"Version": mod.version}) + "\n")
        (d / f"{mod.version}.mod").write_bytes(mod.files["go.mod"])
        (d / f"{mod.version}.zip").write_bytes(module_zip(mod))
    return root
