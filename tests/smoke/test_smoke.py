"""Every smoke check, on every flavor, for amd64 and arm64 (arm64 under emulation)."""

import io
import tempfile
from pathlib import Path

import pytest

from builder import pipeline, wiring
from builder.smoke import schedule, suite as smoke

from tests.support.engine import rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine

FLAVORS = ("minideb", "ubuntu", "alpine")


@pytest.mark.parametrize("flavor,arches", [
    ("minideb", "amd64,arm64"),
    ("ubuntu", "amd64,arm64"),
    ("alpine", "amd64"),
    # Alone in its run, as in the nightly's job of an arch no runner has: every check under emulation.
    ("alpine", "arm64"),
])
def test_smoke(rig, flavor, arches):
    """Every check on the images of one run, smoke.jobs at a time as `invoke smoke` runs them; every failure is
    reported. With amd64 beside it, arm64 runs the checks its arch answers, and amd64's run of the rest stands
    for its own."""
    subjects = [pipeline.subject_of(rig.built(flavor, arch)) for arch in arches.split(",")]
    log = io.StringIO()
    checks = smoke.checks_for(rig.engine)
    failures = schedule.run_many(rig.engine, subjects, checks, rig.settings.smoke_jobs, log)
    assert not failures, "\n".join(map(str, failures))
    lines = log.getvalue().splitlines()
    assert len(lines) == len(subjects) * len(checks)
    stood_for = [l for l in lines if l.endswith(f"ok on {subjects[0].image}, arch-independent (0.0 s)")]
    assert len(stood_for) == (sum(hasattr(c, "arch_independent") for c in checks.values())
                              if len(subjects) > 1 else 0), lines


def test_checks_catch_the_naive_entrypoint(rig):
    """The checks can fail: the widely copied `exec gosu ops "$@"` alone fails most of them."""
    good = rig.built("alpine", "amd64")
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(
            f"FROM {good.tag}\nRUN printf '#!/bin/sh\\nexec gosu ops \"$@\"\\n' > /usr/local/bin/entrypoint\n")
        rig.engine.build(Path(ctx), "base-gosu-test/naive:amd64", "linux/amd64")
    subject = pipeline.subject_of(good)
    subject = smoke.Subject(**{**subject.__dict__, "image": "base-gosu-test/naive:amd64"})
    failed = {f.check for f in smoke.run_all(rig.engine, subject)}
    for expected in ("USER_ID/GROUP_ID remap", "remap to mount owner", "bad value refused", "--cap-drop ALL",
                     "/dev/stdout and /dev/stderr writable"):
        assert expected in failed, failed


def test_refusals_sharing_a_container_still_name_the_case_that_went_through(rig):
    """bad_values_refused runs its refusals in one container: an entrypoint that takes a leading zero fails
    the check on that case alone, with the message a container per case gave."""
    good = rig.built("alpine", "amd64")
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(f"FROM {good.tag}\nRUN sed -i '/has a leading zero/d' /usr/local/bin/entrypoint\n")
        rig.engine.build(Path(ctx), "base-gosu-test/leading-zero:amd64", "linux/amd64")
    subject = smoke.Subject(**{**pipeline.subject_of(good).__dict__, "image": "base-gosu-test/leading-zero:amd64",
                               "ref": ""})
    with pytest.raises(smoke.SmokeFailure) as e:
        smoke.bad_values_refused(smoke.Ctx(rig.engine, subject))
    assert (e.value.check, e.value.saw[:24]) == ("bad value refused", "USER_ID='010': exit 0, s")


def test_a_change_among_starts_sharing_a_container_fails_the_check_that_shares_it(rig):
    """The probe container's refusals are judged unchanged by its diff: a case that writes is seen."""
    c = smoke.Ctx(rig.engine, pipeline.subject_of(rig.built("alpine", "amd64")))
    results, changed = c.starts_and_changes([smoke.Case.of(USER_ID="abc"), smoke.Case.as_built("touch", "/etc/mark")])
    assert [r.returncode for r in results] == [2, 0]
    with pytest.raises(smoke.SmokeFailure) as e:
        c.unchanged("nothing changed on refusal", changed)
    assert "'A /etc/mark'" in e.value.saw


def test_smoke_failure_names_image_check_and_observation(rig):
    built = rig.built("alpine", "amd64")
    subject = pipeline.subject_of(built)
    wrong = smoke.Subject(**{**subject.__dict__, "gosu_sha256": "0" * 64})
    with pytest.raises(smoke.SmokeFailure) as e:
        smoke.gosu_sha256(smoke.Ctx(rig.engine, wrong))
    assert str(e.value).startswith(f"{built.tag}: gosu sha256: image has '{built.fetched.sha256}'")


def test_images_carry_labels_and_exact_gosu(rig):
    for flavor in FLAVORS:
        b = rig.built(flavor, "amd64")
        labels = rig.engine.inspect(b.tag)["Config"]["Labels"]
        assert labels["org.base-gosu.gosu.sha256"] == b.fetched.sha256
        assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
        assert labels["org.base-gosu.inputs"] == b.inputs
        for k in ("source", "revision", "created", "base.name"):
            assert labels[f"org.opencontainers.image.{k}"]


def test_build_of_real_gosu_1_14_with_the_real_pinned_key(rig, tmp_path):
    """The spec's offline path: alpine/amd64 from ../shared/gosu-release with the production key."""
    from tests.conftest import SHARED, skip_or_fail
    rel = SHARED / "gosu-release"
    if not (rel / "1.14").is_dir():
        skip_or_fail(f"{rel} not found")
    req = wiring.build_request(rig.settings, flavor="alpine", arch="amd64", gosu_version="1.14", mirror=str(rel))
    assert req.fetch.fingerprint == "B42F6819007F00F88E364FD4036A9C25BF357DD4"
    [b] = pipeline.build(req, rig.engine, log=io.StringIO())
    assert b.fetched.sha256 == "bd8be776e97ec2b911190a82d9ab3fa6c013ae6d3121eea3d0bfd5c82a0eaf8c"
    smoke.gosu_version(smoke.Ctx(rig.engine, pipeline.subject_of(b)))


@pytest.mark.parametrize("env,want", [
    ([], "10001:10001:ops"),
    (["-e", "USER_ID=1000"], "1000:1000:ops"),
    (["-e", "USER_ID=405", "-e", "GROUP_ID=100"], "405:100:ops"),
])
def test_entrypoint_behaves_the_same_under_bash(rig, env, want):
    """minideb runs it with dash, alpine with busybox ash (the smoke checks); here bash runs it too."""
    b = rig.built("minideb", "amd64")
    r = rig.engine.container(b.tag, "/usr/local/bin/entrypoint", "sh", "-c", smoke.IDS,
                             options=[*env, "--entrypoint", "bash"])
    assert (r.returncode, r.stdout.strip()) == (0, want), r.stderr
    r = rig.engine.container(b.tag, "/usr/local/bin/entrypoint", "true", options=["-e", "USER_ID=1e3",
                                                                                  "--entrypoint", "bash"])
    assert r.returncode != 0 and "USER_ID='1e3'" in r.stderr


def test_checks_run_the_built_image_even_if_its_tag_moves(rig):
    """The engine that built an image smoke-tests it by ID: a concurrent build that re-tags cannot swap it."""
    alpine, minideb = rig.built("alpine", "amd64"), rig.built("minideb", "amd64")
    moved = "base-gosu-test/moved:alpine-amd64"
    rig.engine.tag(minideb.tag, moved)
    try:
        subject = pipeline.subject_of(alpine, by_id=True)
        subject = smoke.Subject(**{**subject.__dict__, "image": moved})
        assert subject.runs == alpine.image_id
        ctx = smoke.Ctx(rig.engine, subject)
        ctx.expect("runs the built image", ctx.run("sh", "-c", "test -f /etc/alpine-release && echo alpine"), "alpine")
        assert smoke.run_all(rig.engine, subject) == []
    finally:
        rig.engine.remove_image(moved)
