"""A scanned image published with its VEX: attached as a referrer, attested with cosign (--type openvex),
checked by `invoke verify`, printed by `invoke vex`; refused beyond the local registry while a finding applies.

One alpine amd64 image (the rig's gosu, Debian's 1.17 re-signed by a test key) scanned against the tests'
own database, pushed by digest to the local registry under its own repository; no smoke run (a few seconds).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import subprocess
import uuid

import pytest

from builder import pipeline, shipping
from builder.shipping import PublishOptions
from builder.consumer import show, verify as trustcheck
from builder.core.emulation import native_arch
from builder.core.registry import Registry
from builder.image.audit import vulns
from builder.local import tools
from builder.publish import push as pub, signing
from builder.config.settings import Destination
from tests.support import vulndb
from tests.support.engine import rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def published(rig, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vex")
    settings = rig.settings.tools
    scanner = tools.ensure(settings, "govulncheck", native_arch(), io.StringIO())
    scan = vulns.Settings(str(vulndb.make(tmp / "db")), scanner, settings.tools["govulncheck"].pins[native_arch()]
                          .version, tmp / "cache")
    repo = f"test/vex-{uuid.uuid4().hex[:8]}"
    req = dataclasses.replace(rig.request("alpine", "amd64", repository=repo), vuln=scan)
    log = io.StringIO()
    [built] = pipeline.build(req, rig.engine, log)
    client = Registry(f"127.0.0.1:{rig.cfg.local['registry_port']}")
    local_key = rig.settings.signing.local_key
    signer = signing.Signer(rig.cosign, signing.Identity(key=str(local_key.with_suffix(".key")), local=True))
    child, _ = pub.push_child(client, Destination(client.host, repo, local=True), built, log)
    return dict(built=built, child=child, client=client, repo=repo, signer=signer, log=log,
                pub=local_key.with_suffix(".pub"))


def expected(child) -> tuple[str, str, str]:
    return child.flavor, child.release, child.arch


def test_a_finding_that_applies_is_refused_beyond_the_local_registry_before_anything_moves(published):
    p = published
    elsewhere = Destination(p["client"].host, p["repo"], local=False)
    # alpine 3.20, the release seedable here, is past its end of life: allowed, so the finding is what stops it.
    with pytest.raises(pub.PublishError, match="gosu has vulnerable code present.*--allow-vulnerable"):
        shipping.assemble([p["child"]], p["client"], elsewhere, [expected(p["child"])], io.StringIO(),
                          PublishOptions(allow_trial=True, allow_eol=True, signer=p["signer"]))
    assert p["client"].get_manifest(p["repo"], "alpine") is None
    assert re.search(r"vulns: gosu \S+ amd64: \d applying: GO-2099-0001 \(os/exec.LookPath\)", p["log"].getvalue())


def test_the_vex_is_attached_attested_and_verified(published, tmp_path):
    p = published
    log = io.StringIO()
    shipping.assemble([p["child"]], p["client"], Destination(p["client"].host, p["repo"], local=True),
                      [expected(p["child"])], log, PublishOptions(allow_trial=True, signer=p["signer"]))
    assert "attested (cyclonedx, slsaprovenance1, openvex)" in log.getvalue()
    ref = f"{p['client'].host}/{p['repo']}"
    doc = json.loads(show.show(p["client"], p["repo"], "alpine", "vex", "linux/amd64"))
    assert {s["vulnerability"]["name"]: s["status"] for s in doc["statements"]}[vulndb.PRESENT.id] == "affected"
    assert all(p["child"].digest.replace(":", "%3A") in pr["@id"] for s in doc["statements"] for pr in s["products"])
    # The SBOM lists what the VEX speaks about.
    sbom = json.loads(show.show(p["client"], p["repo"], "alpine", "sbom", "linux/amd64"))
    purls = {c.get("purl") for c in sbom.get("components", [])} | \
        {s.get("purl") for c in sbom.get("components", []) for s in c.get("components") or []}
    assert {s["@id"] for st in doc["statements"] for pr in st["products"] for s in pr["subcomponents"]} <= purls
    checker = trustcheck.Checker(p["signer"].cosign, trustcheck.Trust((str(p["pub"]),)), p["client"], p["repo"])
    _, rows = trustcheck.check(checker, "alpine")
    assert [(r.check, r.problem) for r in rows if not r.ok] == []
    assert {"attestation openvex", "VEX = vulns label"} <= {r.check for r in rows}
    # What a user runs, with Debian's cosign: the openvex attestation verifies against the key.
    got = subprocess.run([str(p["signer"].cosign), "verify-attestation", "--type", "openvex", "--key", str(p["pub"]),
                          "--insecure-ignore-tlog=true", "--allow-http-registry", f"{ref}@{p['child'].digest}"],
                         capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert got.returncode == 0, got.stderr
    statements = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in got.stdout.splitlines()
                  if line.strip()]
    assert {st["predicateType"] for st in statements} == {"https://openvex.dev/ns"}
    assert statements[0]["predicate"] == doc
