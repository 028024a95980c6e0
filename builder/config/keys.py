"""Configuration keys nobody reads are refused: a typo, or a key from before a move, would otherwise leave the
build on a default without a word (a supply-chain hole for a pipeline whose users override bases).

The project's own invoke.yaml names every key it reads; a key in a runtime file or the environment that it
does not name is unknown. Where users name the keys themselves (flavors, releases, arches of pins), any name
goes, and what lies under it is held to the union of what the project's file has there.
"""

from __future__ import annotations

from collections.abc import Mapping

# Paths whose keys users choose ("*" at the chosen key).
CHOSEN = ("images.flavors.*", "images.flavors.*.releases.*", "images.nss_wrapper.pins.*", "tools.*.pins.*")
# Keys that moved, and where each lives now.
MOVED = {f"images.flavors.*.{k}": f"images.flavors.<flavor>.releases.<release>.{k}"
         for k in ("base", "standin", "digest", "arches", "platforms", "eol", "eol_source")}
# Invoke's own environment variables, which name no configuration key.
INVOKE_ENV = ("INVOKE_RUNTIME_CONFIG", "INVOKE_DEBUG")


def _pattern(path: tuple[str, ...]) -> str:
    """The path with each user-chosen key as "*"."""
    out: list[str] = []
    for key in path:
        out.append("*" if ".".join([*out, "*"]) in CHOSEN else key)
    return ".".join(out)


def templates(project: Mapping) -> dict[str, set[str]]:
    """pattern -> the keys the project's own file has there (for a chosen key: across every one it names)."""
    out: dict[str, set[str]] = {}

    def walk(node, path):
        if not isinstance(node, Mapping):
            return
        out.setdefault(_pattern(path), set()).update(node)
        for k, v in node.items():
            walk(v, (*path, str(k)))
    walk(project, ())
    return out


def unknown(effective: Mapping, project: Mapping, invoke_own: set[str]) -> list[str]:
    """One line per key in `effective` that the project does not read, in file order."""
    known = templates(project)
    found: list[str] = []

    def walk(node, path):
        pattern = _pattern(path)
        allowed = known.get(pattern)
        for k, v in node.items():
            key = ".".join((*path, str(k)))
            if pattern == "" and k in invoke_own:
                continue
            if pattern + ".*" not in CHOSEN and (allowed is None or str(k) not in allowed):
                moved = MOVED.get(_pattern((*path, str(k))))
                found.append(f"{key}: moved to {moved}" if moved else
                             f"{key}: not a key this project reads (check its spelling against invoke.yaml)")
                continue
            if isinstance(v, Mapping):
                walk(v, (*path, str(k)))
    walk(effective, ())
    return found


def env_names(project: Mapping, invoke_defaults: Mapping) -> set[str]:
    """Every INVOKE_* variable that names a key (Invoke maps only those onto configuration)."""
    names = set(INVOKE_ENV)

    def walk(node, path):
        for k, v in node.items():
            names.add("INVOKE_" + "_".join((*path, str(k))).upper())
            if isinstance(v, Mapping):
                walk(v, (*path, str(k)))
    walk(project, ())
    walk(invoke_defaults, ())
    return names


def unknown_env(environ: Mapping, project: Mapping, invoke_defaults: Mapping, effective: Mapping) -> list[str]:
    """INVOKE_* variables that name no key: Invoke would ignore them in silence."""
    names = env_names(project, invoke_defaults) | env_names(effective, {})
    return [f"environment variable {k}: names no configuration key (check its spelling against invoke.yaml)"
            for k in sorted(environ) if k.startswith("INVOKE_") and k not in names]
