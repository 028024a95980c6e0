"""The image plan: labels are written from it and read back into the same record."""

from __future__ import annotations

import dataclasses
import json

import pytest

from builder import config
from builder.image import model, nsswrapper, plan
from builder.image.assembly import append
from builder.core import arches
from tests.support.engine import project_config

ENTRYPOINT = append.Entrypoint.of({"entrypoint.sh": b"#!/bin/sh\nexec gosu ops \"$@\"\n"})


def flavors():
    cfg = project_config()
    return config.image_settings(cfg.images, cfg.local).flavors


def github_gosu(arch: str = "amd64", **kw) -> plan.Gosu:
    fields = dict(arch=arch, version="1.19", sha256="a" * 64, kind="github",
                  trust_root="B42F6819007F00F88E364FD4036A9C25BF357DD4", pinned=True, go_version="go1.24.6",
                  module_version="v1.19.0")
    return plan.Gosu(**{**fields, **kw})


def nss(arch: str = "amd64", **kw) -> nsswrapper.NssWrapper:
    fields = dict(arch=arch, package="libnss-wrapper", version="1.1.12-1", sha256="c" * 64, deb_sha256="d" * 64,
                  suite="bookworm")
    return nsswrapper.NssWrapper(**{**fields, **kw})


def make(flavor: str = "alpine", arch: str = "amd64", gosu: plan.Gosu | None = None, standin: str = "",
         revision: model.Revision = model.Revision("0" * 40, 1700000000),
         nss_wrapper: nsswrapper.NssWrapper | None = None) -> plan.ImagePlan:
    f = flavors()[flavor]
    a = arches.get(arch, arches.IMAGE_ARCHES)
    base = model.Base(f"127.0.0.1:5000/{flavor}:x", f"127.0.0.1:5000/{flavor}", "sha256:" + "1" * 64,
                      "sha256:" + "2" * 64, standin)
    return plan.plan_image(model.Target(f, a), base, gosu or github_gosu(a.gosu), revision, "org/base-gosu",
                           plan.Account("ops", 10001, 10001), "https://example.invalid/base-gosu", ENTRYPOINT,
                           nss_wrapper)


DEBIAN = github_gosu(kind="debian", pinned=True, source_labels=(
    ("org.base-gosu.gosu.debian.suite", "trixie"), ("org.base-gosu.gosu.debian.package", "gosu 1.17-3+b4 amd64")))
REBUILD = github_gosu(kind="rebuild", pinned=False, expired_accepted="unstable 2026-11-06", source_labels=(
    ("org.base-gosu.gosu.rebuild.go-version", "go1.27.4"),
    ("org.base-gosu.gosu.rebuild.toolchain", "golang-1.27-go 1.27.4-1~bpo13+1"),
    ("org.base-gosu.gosu.rebuild.source", "gosu 1.19-1 (unstable), gosu_1.19.orig.tar.gz sha256:cd97"),
    ("org.base-gosu.gosu.rebuild.dependencies", "golang.org/x/sys v0.30.0 from golang-golang-x-sys-dev 0.30")))


@pytest.mark.parametrize("p", [
    make(), make("minideb", "arm64"), make("ubuntu", "armhf"), make("alpine", "armv7"),
    make("alpine", gosu=DEBIAN), make("ubuntu", gosu=REBUILD, standin="ubuntu:24.04"),
    make("minideb", gosu=github_gosu(pinned=False, go_version="", module_version="")),
    make("minideb", nss_wrapper=nss()),
    make("ubuntu", "riscv64", nss_wrapper=nss("riscv64", version="1.1.16-1", suite="trixie")),
], ids=["alpine", "minideb-arm64", "ubuntu-armhf", "alpine-armv7", "debian", "rebuild-standin-expired",
        "unpinned-no-buildinfo", "minideb-nss-wrapper", "ubuntu-riscv64-nss-wrapper"])
def test_labels_read_back_into_the_same_plan(p):
    labels = plan.to_labels(p)
    # As an image config carries them: JSON, then read back with the config's platform.
    again = plan.from_labels(json.loads(json.dumps(labels)), str(p.target.platform), flavors())
    assert again == p
    assert plan.to_labels(again) == labels


def test_the_trial_label_says_why():
    p = make("ubuntu", gosu=REBUILD, standin="ubuntu:24.04")
    reasons = plan.to_labels(p)["org.base-gosu.trial"]
    assert "is a stand-in for ubuntu:24.04" in reasons
    assert "which is not pinned in keys/" in reasons and "expired_accepted: unstable 2026-11-06" in reasons
    assert plan.to_labels(make())["org.base-gosu.trial"] == ""


def test_every_input_moves_the_inputs_digest():
    p = make()
    same = make()
    assert p.inputs == same.inputs
    changed = [
        plan.plan_image(p.target, p.base, p.gosu, p.revision, p.repository, p.account, p.source_url, append.Entrypoint.of({"entrypoint.sh": ENTRYPOINT.sources[0][1] + b"#"})),
        make(gosu=dataclasses.replace(github_gosu(), sha256="b" * 64)),
        make(gosu=dataclasses.replace(github_gosu(), pinned=False)),
        make(standin="alpine:3.20"),
        make("alpine", "arm64"),
        plan.plan_image(p.target, p.base, p.gosu, p.revision, p.repository, plan.Account("ops", 1, 1), p.source_url,
                        ENTRYPOINT),
        make(nss_wrapper=nss()),
        make(nss_wrapper=nss(sha256="e" * 64)),
    ]
    assert len({c.inputs for c in changed} | {p.inputs}) == len(changed) + 1
    # The revision is not an input: the same inputs at another commit reuse the published image.
    assert make(revision=model.Revision("f" * 40, 1)).inputs == p.inputs


def test_labels_missing_or_foreign_are_refused_by_name():
    labels = plan.to_labels(make())
    with pytest.raises(plan.LabelError, match="lacks the label.*org.base-gosu.inputs"):
        plan.from_labels({k: v for k, v in labels.items() if k != "org.base-gosu.inputs"}, "linux/amd64", flavors())
    with pytest.raises(plan.LabelError, match="flavor 'centos' is not configured"):
        plan.from_labels({**labels, "org.base-gosu.flavor": "centos"}, "linux/amd64", flavors())


def test_nss_wrapper_labels_name_the_package_and_both_digests_or_are_refused():
    labels = plan.to_labels(make("minideb", nss_wrapper=nss()))
    assert {k: v for k, v in labels.items() if k.startswith("org.base-gosu.nss-wrapper.")} == {
        "org.base-gosu.nss-wrapper.package": "libnss-wrapper", "org.base-gosu.nss-wrapper.version": "1.1.12-1",
        "org.base-gosu.nss-wrapper.sha256": "c" * 64, "org.base-gosu.nss-wrapper.deb-sha256": "d" * 64,
        "org.base-gosu.nss-wrapper.suite": "bookworm"}
    assert not any(k.startswith("org.base-gosu.nss-wrapper.") for k in plan.to_labels(make()))
    del labels["org.base-gosu.nss-wrapper.deb-sha256"]
    with pytest.raises(plan.LabelError, match="lacks the label.*nss-wrapper.deb-sha256"):
        plan.from_labels(labels, "linux/amd64", flavors())


def test_an_image_from_before_the_pinned_label_reads_its_trial_reasons():
    labels = plan.to_labels(make(gosu=github_gosu(pinned=False)))
    del labels["org.base-gosu.gosu.pinned"]
    assert plan.from_labels(labels, "linux/amd64", flavors()).gosu.pinned is False
    labels = plan.to_labels(make())
    del labels["org.base-gosu.gosu.pinned"]
    assert plan.from_labels(labels, "linux/amd64", flavors()).gosu.pinned is True
