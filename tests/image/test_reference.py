"""Differential test: the assembled image against the same image made by the distribution's own tools.

tests/reference/Dockerfile runs groupadd/useradd (busybox addgroup/adduser
on Alpine) inside the base, under emulation for arm64. Both images must
have the same account lines (apart from the password last-change day) and
the same files, modes and owners under /home/ops, /app and /usr/local/bin.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from builder.image.model import IMAGES

from tests.conftest import ROOT
from tests.support.engine import ARCHES, exported_tree, file_text, rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine

FLAVORS = ("minideb", "ubuntu", "alpine")
ACCOUNT_FILES = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/subuid", "etc/subgid")
TREES = ("home/ops", "app", "usr/local/bin")


def wanted(path: str) -> bool:
    return path in ACCOUNT_FILES or any(path == t or path.startswith(t + "/") for t in TREES)


def without_day(text: str, user: str) -> str:
    """shadow's third field (last change) of the user's line: a date, so not compared."""
    lines = []
    for line in text.splitlines():
        f = line.split(":")
        if f[0] == user and len(f) > 2:
            f[2] = "<day>"
        lines.append(":".join(f))
    return "\n".join(lines)


def reference(rig, built) -> str:
    tag = f"{built.tag.rsplit(':', 1)[0]}-reference:{built.target.name}"
    s = rig.request(built.target.flavor.name, built.target.arch.dpkg).settings
    with tempfile.TemporaryDirectory(prefix="reference-") as ctx:
        shutil.copyfile(built.fetched.path, Path(ctx) / "gosu")
        shutil.copyfile(IMAGES / "entrypoint.sh", Path(ctx) / "entrypoint.sh")
        rig.engine.build(Path(ctx), tag, str(built.target.platform),
                         dockerfile=ROOT / "tests" / "reference" / "Dockerfile",
                         build_args={"BASE_IMAGE": f"{built.base.repo_ref}@{built.base.digest}",
                                     "OPS_USER": s.ops_user, "OPS_UID": str(s.ops_uid), "OPS_GID": str(s.ops_gid)})
    return tag


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("flavor", FLAVORS)
def test_assembled_image_matches_the_distribution_tools(rig, flavor, arch):
    built = rig.built(flavor, arch)
    ref = reference(rig, built)
    try:
        ours, theirs = exported_tree(rig.engine, built.tag, wanted), exported_tree(rig.engine, ref, wanted)
        assert {"app", "home/ops", "usr/local/bin/gosu", "usr/local/bin/entrypoint"} <= set(theirs)
        assert sorted(p for p in theirs if p.startswith(TREES)) == sorted(p for p in ours if p.startswith(TREES))
        for path in sorted(theirs):
            if path in ACCOUNT_FILES:
                assert ours[path][:4] == theirs[path][:4], f"{path}: kind, mode, owner"
            else:
                assert ours.get(path) == theirs[path], path
        assert sorted(p for p in ours if p in ACCOUNT_FILES) == sorted(p for p in theirs if p in ACCOUNT_FILES)
        for path in ACCOUNT_FILES:
            if path in theirs:
                a, b = (file_text(rig.engine, image, "/" + path) for image in (built.tag, ref))
                assert without_day(a, "ops") == without_day(b, "ops"), path
        assert "ops:!:" in file_text(rig.engine, built.tag, "/etc/shadow"), "password locked"
    finally:
        rig.engine.remove_image(ref)
