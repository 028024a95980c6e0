"""The fetch flags parse as the image tasks take them: `--arch all` is every arch the source serves."""

from __future__ import annotations

import pytest

from builder import wiring
from builder.core import arches
from tests.support.engine import project_config


@pytest.mark.parametrize("source, listed", [
    ("github", ",".join(arches.NAMES)),
    ("debian", "gosu.debian.arches"),
], ids=["github-all-nine", "debian-its-suites-arches"])
def test_arch_all_is_every_arch_the_source_serves(source, listed):
    cfg = project_config()
    want = listed if "," in listed else cfg.gosu["debian"]["arches"]
    opts = wiring.fetch_options(cfg.gosu, source=source, arch="all")
    assert [a.dpkg for a in opts.arches] == [a.dpkg for a in arches.parse_list(want)]
    assert opts.arches == wiring.fetch_options(cfg.gosu, source=source, arch="ALL").arches


def test_an_unknown_arch_is_still_named():
    with pytest.raises(Exception, match="unknown architecture 'al'"):
        wiring.fetch_options(project_config().gosu, source="debian", arch="al")
