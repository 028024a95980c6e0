"""The smoke checks under podman (rootful, rootless) and dockerd --userns-remap.

The full list for minideb/amd64 under each; the user-namespace checks for
every flavor on amd64 (minideb's are in the full list).
"""

from __future__ import annotations

import pytest

from builder import config
from builder.smoke import suite as smoke

from tests.support.alt_engines import ALT_KINDS
from tests.support.engine import project_config, rig  # noqa: F401 - fixture

USERNS_KINDS = ("podman-rootless", "docker-userns")


@pytest.mark.engine
@pytest.mark.parametrize("kind", ALT_KINDS)
def test_smoke_under(alts, kind):
    """Every check (the user-namespace ones too where the engine has one), smoke.jobs at a time."""
    engine, subject = alts.subject(kind, "minideb")
    assert engine.mode == kind
    checks = smoke.checks_for(engine)
    assert set(smoke.USERNS_CHECKS) <= set(checks) if kind in USERNS_KINDS else not set(smoke.USERNS_CHECKS) & set(checks)
    failures = smoke.run_all(engine, subject, checks=checks, jobs=int(project_config().smoke.jobs))
    assert not failures, "\n".join(map(str, failures))


@pytest.mark.engine
@pytest.mark.parametrize("check", list(smoke.USERNS_CHECKS))
@pytest.mark.parametrize("flavor", ("ubuntu", "alpine"))
@pytest.mark.parametrize("kind", USERNS_KINDS)
def test_userns_checks_every_flavor(alts, kind, flavor, check):
    engine, subject = alts.subject(kind, flavor)
    smoke.USERNS_CHECKS[check](smoke.Ctx(engine, subject))


def test_engine_setting_is_checked():
    cfg = project_config()
    assert config.engine_settings(cfg).kind == "docker"
    assert config.engine_for(config.engine_settings(cfg), "podman-rootless").kind == "podman-rootless"
    with pytest.raises(ValueError, match="'dokcer' is not one of docker, podman, podman-rootless, docker-userns"):
        config.engine_for(config.engine_settings(cfg), "dokcer")
