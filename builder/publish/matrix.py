"""The nightly workflow's image jobs: one per (flavor, release, arch) that images.flavors lists.

Generated, not copied into the workflow, so adding an arch to a flavor adds its
job (and assemble, run with `--arch all`, then expects its push record).
An arch runs on a runner of its own arch where ci.runners names one; every
other arch goes to the runner of ci.other_arches_on, under qemu unless that
host runs it natively (i386 on amd64).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from builder.core import emulation
from builder.image.model import ALL, select_targets
from builder.config.settings import ImageSettings


@dataclass(frozen=True)
class Job:
    flavor: str
    release: str
    arch: str
    runner: str      # the GitHub runner label the job runs on
    emulated: bool   # the job's smoke checks run under qemu (the workflow installs it, and allows more time)


def expected_targets(settings: ImageSettings, flavor: str | None, arch: str, release: str | None = None, today=None
                     ) -> list[tuple[str, str, str]]:
    """(flavor, release, arch) an assemble must find a push record for."""
    return [(t.flavor.name, t.flavor.release, t.arch.dpkg)
            for t in select_targets(settings, flavor, arch, arch, release, today)]


def jobs(settings: ImageSettings, runners: dict[str, str], other_arches_on: str, release: str | None = ALL,
         today=None) -> list[Job]:
    """Every (flavor, release, arch) asked for (default: every supported release), in configuration order."""
    if other_arches_on not in runners:
        raise ValueError(f"ci.other_arches_on is {other_arches_on!r}, which has no runner in ci.runners "
                         f"({', '.join(runners) or 'empty'}): name one of those arches, or add its runner")
    out = []
    for t in select_targets(settings, None, ALL, other_arches_on, release, today):
        host = t.arch.dpkg if t.arch.dpkg in runners else other_arches_on
        out.append(Job(t.flavor.name, t.flavor.release, t.arch.dpkg, runners[host], bool(emulation.foreign([t.arch.dpkg], host))))
    return out


def to_json(found: list[Job]) -> str:
    """One line, as GITHUB_OUTPUT and `fromJSON` in a job's strategy.matrix take it."""
    return json.dumps({"include": [asdict(j) for j in found]}, separators=(",", ":"))
