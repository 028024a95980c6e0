"""gosu's Go build information, read in Python, against `go version -m` (Debian's golang-go) on real binaries."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest

from builder import wiring
from builder.image.audit import goinfo
from builder.core.host import SetupError, apt_install

from tests.conftest import SHARED, skip_or_fail

REAL_1_14 = SHARED / "gosu-release" / "1.14" / "gosu-amd64"


@pytest.fixture(scope="session")
def go() -> str:
    try:
        apt_install(["golang-go"], io.StringIO())
    except SetupError as e:
        skip_or_fail(f"needs Debian's golang-go for the differential test: {e}")
    return shutil.which("go") or "/usr/bin/go"


def go_says(go: str, binary: Path, tmp: Path) -> list[tuple[str, ...]]:
    """`go version -m`, parsed; it reads only files with an execute bit, so it gets a copy that has one."""
    exe = tmp / f"exe-{binary.name}"
    shutil.copyfile(binary, exe)
    exe.chmod(0o755)
    out = subprocess.run([go, "version", "-m", str(exe)], capture_output=True, text=True, check=True).stdout
    first, *rest = out.splitlines()
    # Go 1.19 prints a blank line after a replaced dependency; it carries nothing.
    return [("go", first.rsplit(": ", 1)[1])] + [tuple(line.strip("\t").split("\t")) for line in rest if line.strip()]


def we_say(info: goinfo.BuildInfo) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("go", info.go_version)]
    if info.path:
        rows.append(("path", info.path))

    def mod(kind, m):
        rows.append(tuple(x for x in (kind, m.path, m.version, m.sum) if x) if kind == "dep" or m.sum
                    else (kind, m.path, m.version, ""))
        if m.replaced_by:
            r = m.replaced_by
            rows.append(tuple(x for x in ("=>", r.path, r.version, r.sum) if x))
    if info.main:
        mod("mod", info.main)
    for d in info.deps:
        mod("dep", d)
    rows += [("build", f"{k}={v}") for k, v in info.settings]
    return rows


def _normal(rows):
    # go prints an empty sum column as a trailing tab; compare without it.
    return [tuple(x for x in r if x) for r in rows]


def test_real_gosu_1_14_pre_go_1_18_layout(go, tmp_path):
    if not REAL_1_14.is_file():
        skip_or_fail(f"{REAL_1_14} not found")
    info = goinfo.read(REAL_1_14)
    assert info.go_version == "go1.16.7" and info.path == "github.com/tianon/gosu"
    assert {d.path for d in info.deps} == {"github.com/opencontainers/runc", "golang.org/x/sys"}
    assert _normal(we_say(info)) == _normal(go_says(go, REAL_1_14, tmp_path))


def test_debians_gosu_builds_inline_layout(go, tmp_path):
    from invoke import Config
    from builder.gosu.fetch import fetch
    from tests.conftest import ROOT
    cfg = Config(project_location=str(ROOT))
    cfg.load_project()
    report = fetch(wiring.fetch_options(cfg.gosu, source="debian", arch="amd64,s390x,armhf",
                                        cache_dir=str(tmp_path / "c")), log=io.StringIO())
    if not report.ok:
        skip_or_fail(f"Debian's mirror could not provide gosu: {report.failures[0]}")
    for f in report.fetched:
        info = goinfo.read(f.path)
        assert info.go_version.startswith("go1.")
        assert dict(info.settings).get("GOARCH") == {"armhf": "arm"}.get(f.arch, f.arch)
        assert _normal(we_say(info)) == _normal(go_says(go, f.path, tmp_path)), f.arch


GO_MAIN = 'package main\n\nimport "golang.org/x/example/dep"\n\nfunc main() { dep.Hello() }\n'


def test_binaries_the_tests_build_with_modules_and_replacements(go, tmp_path):
    """A module with a replaced dependency, built for a little- and a big-endian arch."""
    dep = tmp_path / "dep"
    dep.mkdir()
    (dep / "go.mod").write_text("module golang.org/x/example\n\ngo 1.19\n")
    (dep / "dep").mkdir()
    (dep / "dep" / "dep.go").write_text('package dep\n\nfunc Hello() { println("hi") }\n')
    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text("module example.test/app\n\ngo 1.19\n\nrequire golang.org/x/example v0.1.0\n\n"
                                "replace golang.org/x/example => ../dep\n")
    (app / "main.go").write_text(GO_MAIN)
    env = {"HOME": str(tmp_path), "GOPATH": str(tmp_path / "gopath"), "GOCACHE": str(tmp_path / "cache"),
           "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CGO_ENABLED": "0", "PATH": "/usr/bin:/bin"}
    for arch in ("amd64", "s390x"):
        out = tmp_path / f"app-{arch}"
        subprocess.run([go, "build", "-trimpath", "-o", str(out), "."], cwd=app, env={**env, "GOARCH": arch},
                       check=True, capture_output=True)
        info = goinfo.read(out)
        assert info.main and info.main.path == "example.test/app"
        assert info.deps[0].replaced_by and info.deps[0].replaced_by.path == "../dep"
        assert _normal(we_say(info)) == _normal(go_says(go, out, tmp_path)), arch


def test_not_a_go_binary_is_a_clear_error(tmp_path):
    p = tmp_path / "sh"
    p.write_bytes(b"\x7fELF" + b"\0" * 200)
    with pytest.raises(goinfo.GoInfoError, match="no Go build information"):
        goinfo.read(p)
