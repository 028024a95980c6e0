"""Compile gosu for one arch with upstream's release recipe, then check the result as upstream does.

The recipe is upstream's (its Dockerfile): CGO_ENABLED=0, `-trimpath`,
`-ldflags '-d -w'` (no `-s`: the symbol table stays so govulncheck can read
the binary), module mode, one GOARCH (+ GOARM) per dpkg arch, everything
cross-compiled on the host. `go install module@version` through a local
file:// proxy (sources/gomod.py) gives the build information gosu's own
version rather than `(devel)`.

The environment is built from nothing, so no GO* variable of the caller's
leaks in: only the toolchain, the proxy, the build cache and the target.
With -trimpath no directory reaches the binary, so the same inputs give the
same bytes in any directory, checkout, umask, time zone or day.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.core import emulation
from builder.core.arches import GOARCH, NAMES, Arch
from builder.gosu.signature import VerificationError
from builder.gosu.sources import toolchain as tc

MODULE = "github.com/tianon/gosu"
LDFLAGS = "-d -w"

# dpkg arch -> (GOARCH, extra environment), as upstream's Dockerfile builds each
# release file; armhf is ARMv6 so one binary also serves Raspberry Pi 1/Zero.
GO_TARGETS: dict[str, tuple[str, dict[str, str]]] = {
    name: (GOARCH[name], {"armel": {"GOARM": "5"}, "armhf": {"GOARM": "6"}}.get(name, {})) for name in NAMES
}


def go_env(work: Path, gocache: Path, proxy: Path | None = None) -> dict[str, str]:
    """A `go` environment from nothing: offline, local toolchain only, no cgo, no telemetry."""
    return {
        "PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work), "GOENV": "off", "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off", "GOWORK": "off", "GOFLAGS": "-modcacherw",
        "GOPROXY": f"file://{proxy}" if proxy else "off", "GOSUMDB": "off", "GONOSUMDB": "", "GOPRIVATE": "",
        "GOPATH": str(work / "gopath"), "GOMODCACHE": str(work / "modcache"), "GOCACHE": str(gocache),
        "CGO_ENABLED": "0", "GOOS": "linux", "TZ": "UTC", "LC_ALL": "C",
    }


def build(goroot: Path, env: dict[str, str], arch: Arch, module_version: str, out: Path, jobs: int = 2) -> Path:
    """Cross-compile gosu for `arch` into `out`; the build cache makes a repeat compile nothing."""
    goarch, extra = GO_TARGETS[arch.dpkg]
    e = {**env, "GOARCH": goarch, **extra}
    bindir = Path(env["GOPATH"]) / "bin"
    shutil.rmtree(bindir, ignore_errors=True)
    tc.run_go(goroot, e, "install", "-p", str(jobs), "-trimpath", f"-ldflags={LDFLAGS}", f"{MODULE}@{module_version}",
              cwd=Path(env["HOME"]))
    built = [p for p in bindir.rglob("gosu") if p.is_file()]
    if len(built) != 1:
        raise VerificationError(f"gosu-{arch.dpkg}", "build failed", f"go install left {len(built)} binaries")
    shutil.move(str(built[0]), out)
    return out


@dataclass(frozen=True)
class BuildInfo:
    go: str
    path: str
    main: tuple[str, str]
    deps: dict[str, str]
    settings: dict[str, str]


def build_info(goroot: Path, env: dict[str, str], binary: Path) -> BuildInfo:
    """`go version -m`, parsed."""
    text = tc.run_go(goroot, env, "version", "-m", str(binary))
    lines = text.splitlines()
    go = lines[0].split(":", 1)[1].strip() if lines and ":" in lines[0] else ""
    path, main, deps, settings = "", ("", ""), {}, {}
    for line in lines[1:]:
        f = line.strip().split("\t")
        if f[0] == "path" and len(f) > 1:
            path = f[1]
        elif f[0] == "mod" and len(f) > 2:
            main = (f[1], f[2])
        elif f[0] == "dep" and len(f) > 2:
            deps[f[1]] = f[2]
        elif f[0] == "build" and len(f) > 1:
            k, _, v = f[1].partition("=")
            settings[k] = v
    return BuildInfo(go, path, main, deps, settings)


def check_build_info(info: BuildInfo, arch: Arch, go: str, main_version: str, deps: dict[str, str],
                     name: str) -> None:
    """The binary must say it is this gosu, built by this Go, from exactly these modules, with the recipe."""
    goarch, extra = GO_TARGETS[arch.dpkg]
    want = {"CGO_ENABLED": "0", "-trimpath": "true", "GOARCH": goarch, "GOOS": "linux", **extra}
    problems = []
    if info.go != go:
        problems.append(f"built by {info.go or '?'}, not {go}")
    if info.main != (MODULE, main_version):
        problems.append(f"main module is {' '.join(info.main)}, not {MODULE} {main_version}")
    if info.deps != deps:
        problems.append(f"dependencies are {info.deps}, not {deps}")
    problems += [f"{k}={info.settings.get(k, '(unset)')}, not {v}" for k, v in want.items() if info.settings.get(k) != v]
    if problems:
        raise VerificationError(name, "wrong build", "; ".join(problems))


def runner(arch: Arch, host: str) -> list[str] | None:
    """How to run a binary of `arch` here: [] natively, [emulator], or None when nothing can."""
    if not emulation.foreign([arch.dpkg], host):
        return []
    # qemu-user-static run directly: no binfmt handler needed.
    emulator = shutil.which(emulation.static_binary(arch.dpkg))
    return [emulator] if emulator else None


def upstream_checks(binary: Path, arch: Arch, host: str, version: str, attempts: int = 30) -> str:
    """Upstream's build checks (`--version`, `nobody id`, `nobody ls -l /proc/self/fd`); what was done.

    Under emulation Go binaries sometimes hang at start-up (a QEMU bug), so,
    as upstream does, each check gets 1 s and up to 30 tries.
    """
    prefix = runner(arch, host)
    if prefix is None:
        return f"upstream checks not run: no {emulation.static_binary(arch.dpkg)} on this host"
    checks = [["--version"]] + ([["nobody", "id"], ["nobody", "ls", "-l", "/proc/self/fd"]] if os.geteuid() == 0 else [])
    binary.chmod(0o755)
    tries = 0
    for args in checks:
        for attempt in range(attempts):
            tries += 1
            try:
                p = subprocess.run([*prefix, str(binary), *args], capture_output=True, text=True, timeout=1 if prefix
                                   else 10)
            except subprocess.TimeoutExpired:
                continue
            if p.returncode == 0:
                break
            raise VerificationError(f"gosu-{arch.dpkg}", "upstream check failed",
                                    f"`gosu {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()[:300]}")
        else:
            raise VerificationError(f"gosu-{arch.dpkg}", "upstream check failed",
                                    f"`gosu {' '.join(args)}` hung {attempts} times")
        if args == ["--version"] and p.stdout.split()[:1] != [version]:
            raise VerificationError(f"gosu-{arch.dpkg}", "upstream check failed",
                                    f"`gosu --version` said {p.stdout.strip()[:100]!r}, not {version}")
    how = "natively" if not prefix else f"under {Path(prefix[0]).name}"
    done = "--version, nobody id, nobody ls -l /proc/self/fd" if len(checks) == 3 else "--version (not root: " \
        "the nobody checks need root)"
    return f"upstream checks {how}: {done}" + (f" ({tries - len(checks)} retries)" if tries > len(checks) else "")
