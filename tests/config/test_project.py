"""A task's configuration is parsed once, whole, and every bad value in it is refused in that one pass."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from invoke import Context

import tasks
from builder import config, wiring
from builder.config import project
from builder.config.project import ProjectSettings
from tests.conftest import ROOT
from tests.support.engine import project_config


def counting(monkeypatch, module, name: str) -> list:
    calls, real = [], getattr(module, name)

    def counted(*args, **kw):
        calls.append(name)
        return real(*args, **kw)
    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("task, args", [
    (tasks.releases, ()),
    (tasks.matrix, ("all",)),
], ids=["releases", "matrix"])
def test_a_task_parses_its_configuration_once(monkeypatch, capsys, task, args):
    parses = counting(monkeypatch, project, "parse")
    sections = [counting(monkeypatch, config, name)
                for name in ("tool_settings", "local_settings", "image_settings", "with_eol")]
    task(Context(config=project_config()), *args)
    assert len(parses) == 1 and all(len(c) == 1 for c in sections), (parses, sections)
    assert capsys.readouterr().out


def test_the_settings_are_frozen_and_hold_no_raw_configuration():
    s = wiring.settings(project_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.smoke_jobs = 1
    with pytest.raises(TypeError):
        s.gosu["version"] = "9.9"
    raw = type(project_config().images)
    assert not any(isinstance(getattr(s, f.name), raw) for f in dataclasses.fields(ProjectSettings))


@pytest.mark.parametrize("key, value, says", [
    ("smoke.jobs", "0", "smoke.jobs is '0'"),
    ("smoke.engine", "dokcer", "engine 'dokcer' is not one of"),
    ("local.debian_mode", "chroot", "local.debian_mode is 'chroot'"),
    ("local.seed_jobs", "x", "local.seed_jobs is 'x'"),
    ("local.vuln_db_sha256", "xyz", "local.vuln_db_sha256 'xyz' is not 64 hex digits"),
    ("signing.keyless", "maybe", "signing.keyless is 'maybe'"),
    ("vuln.require", "maybe", "vuln.require is 'maybe'"),
    ("vuln.db", "http://vuln.example", "plain http is taken only from this machine"),
    ("ci.runners", "amd64", "ci.runners: 'amd64' is not ARCH=RUNNER-LABEL"),
    ("verify.origins", "ghcr.io", "origin 'ghcr.io' is not HOST[:PORT]/REPO"),
    ("images.use_standins", "maybe", "images.use_standins is 'maybe'"),
    ("images.nss_wrapper.flavors", "debian", "images.nss_wrapper.flavors names debian"),
], ids=lambda v: v if isinstance(v, str) and "." in v and " " not in v else "")
def test_any_bad_value_is_refused_by_the_one_parse(key, value, says):
    cfg = project_config()
    *path, last = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    node[last] = value
    with pytest.raises(ValueError) as e:
        project.parse(cfg)
    assert says in str(e.value), e.value


def test_a_bad_value_stops_a_task_that_never_reads_it_with_exit_2():
    r = subprocess.run([sys.executable, "-m", "invoke", "releases"], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "INVOKE_CI_RUNNERS": "amd64"}, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == \
        "releases: error: ci.runners: 'amd64' is not ARCH=RUNNER-LABEL, e.g. arm64=ubuntu-24.04-arm", r.stderr
