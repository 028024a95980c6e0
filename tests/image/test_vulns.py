"""gosu scanned with govulncheck (Debian's 1.0.4) against a database the tests make, and the VEX made from it.

The binaries are the real ones the project fetches: Debian's gosu 1.17 (Go 1.24.4) for amd64 and arm64 through
the verified archive chain, and tianon's signed 1.14 release (Go 1.16.7) from ../shared.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest

from builder import config, wiring
from builder.core.emulation import native_arch
from builder.gosu import fetch as fetch_stage
from builder.image import plan
from builder.image.audit import goinfo, openvex, vulns
from builder.local import tools
from builder.publish import push, tags
from builder.config.settings import Destination
from tests.conftest import SHARED
from tests.image.test_plan import DEBIAN, ENTRYPOINT, make
from tests.support import vulndb
from tests.support.engine import project_config


@pytest.fixture(scope="module")
def scanner():
    cfg = project_config()
    settings = config.tool_settings(cfg)
    return tools.ensure(settings, "govulncheck", native_arch(), io.StringIO()), \
        settings.tools["govulncheck"].pins[native_arch()].version


@pytest.fixture(scope="module")
def debian_gosu():
    """{arch: (path, sha256, version, source)} of Debian's gosu, fetched and verified as a build does."""
    opts = wiring.fetch_options(project_config().gosu, source="debian", arch="amd64,arm64")
    report = fetch_stage.fetch(opts, log=io.StringIO())
    assert report.ok
    return {f.arch: (f.path, f.sha256, f.version, f.kind) for f in report.fetched}


def settings(scanner, db, cache: Path, **kw) -> vulns.Settings:
    return vulns.Settings(str(db), scanner[0], scanner[1], cache, **kw)


def test_each_entry_at_the_level_govulncheck_finds_it(tmp_path, scanner, debian_gosu):
    db = vulndb.make(tmp_path / "db")
    log = io.StringIO()
    scans = vulns.scan_all(settings(scanner, db, tmp_path / "cache"), debian_gosu, log)
    assert set(scans) == {"amd64", "arm64"}
    for arch, s in scans.items():
        by_id = {v.id: v for v in s.vulns}
        # withdrawn: no statement; another module: not in the binary, so nothing to say
        assert set(by_id) == {vulndb.PRESENT.id, vulndb.ABSENT.id}, arch
        assert s.withdrawn == (vulndb.WITHDRAWN.id,)
        present, absent = by_id[vulndb.PRESENT.id], by_id[vulndb.ABSENT.id]
        assert (present.level, present.symbols, present.module, present.version) == \
            ("symbol", ("os/exec.LookPath",), "stdlib", "v1.24.4")
        assert (absent.level, absent.symbols, absent.packages) == ("version", (), ())
        assert s.label == f"1;by-version=2;db={vulndb.MODIFIED}"
        assert s.stale == ""
    assert f"{vulndb.PRESENT.id} (os/exec.LookPath)" in log.getvalue()


def test_a_warm_scan_does_not_run_the_scanner_and_a_new_database_does(tmp_path, scanner, debian_gosu):
    db = vulndb.make(tmp_path / "db")
    path, sha, _, _ = debian_gosu["amd64"]
    first = vulns.scan(settings(scanner, db, tmp_path / "cache"), path, sha, vulndb.MODIFIED)
    gone = (tmp_path / "no-scanner", "1.0.4-1")
    again = vulns.scan(settings(gone, db, tmp_path / "cache"), path, sha, vulndb.MODIFIED)
    assert again == first and again.cached and not first.cached
    with pytest.raises(vulns.VulnError, match="govulncheck could not run"):
        vulns.scan(settings(gone, db, tmp_path / "cache"), path, sha, "2026-08-22T00:00:00Z")


def test_a_missing_or_malformed_database_is_named(tmp_path, scanner, debian_gosu):
    with pytest.raises(vulns.VulnError, match=f"database {tmp_path / 'nowhere'}.*missing or malformed"):
        vulns.scan_all(settings(scanner, tmp_path / "nowhere", tmp_path), debian_gosu, io.StringIO())
    db = vulndb.make(tmp_path / "db")
    (db / "index" / "db.json").write_text("{not json")
    with pytest.raises(vulns.VulnError, match="db.json or modules.json is missing or malformed"):
        vulns.scan_all(settings(scanner, db, tmp_path), debian_gosu, io.StringIO())


def test_an_unreachable_database_gives_no_scan_unless_required(tmp_path, scanner, debian_gosu):
    log = io.StringIO()
    where = "https://127.0.0.1:9"
    assert vulns.scan_all(settings(scanner, where, tmp_path, timeout=2), debian_gosu, log) == {}
    assert log.getvalue().count("\n") == 1 and "cannot be reached: gosu was not scanned" in log.getvalue()
    with pytest.raises(vulns.VulnError, match="cannot be reached.*vuln.require"):
        vulns.scan_all(settings(scanner, where, tmp_path, timeout=2, required=True), debian_gosu, io.StringIO())


def test_a_database_older_than_gosus_go_release_is_said(tmp_path, scanner, debian_gosu):
    old = [dataclasses.replace(e, fixed="1.20.3") if e.module == "stdlib" else e for e in vulndb.ENTRIES]
    db = vulndb.make(tmp_path / "db", old)
    log = io.StringIO()
    scans = vulns.scan_all(settings(scanner, db, tmp_path / "cache"), {"amd64": debian_gosu["amd64"]}, log)
    assert "no Go standard library fix newer than 1.20.3, but gosu was built with Go 1.24.4" in scans["amd64"].stale
    assert "vulns: warning:" in log.getvalue()
    # The entries no longer affect go1.24.4: nothing is claimed about them.
    assert scans["amd64"].vulns == ()


def test_tianons_1_14_is_not_readable_by_govulncheck_1_0_4_and_gets_no_scan(tmp_path, scanner):
    binary = SHARED / "gosu-release" / "1.14" / "gosu-amd64"
    if not binary.is_file():
        pytest.skip(f"{binary} is absent")
    log = io.StringIO()
    db = vulndb.make(tmp_path / "db")
    got = vulns.scan_all(settings(scanner, db, tmp_path), {"amd64": (binary, "bd8b" + "0" * 60, "1.14", "github")}, log)
    assert got == {} and "gosu 1.14 amd64 not scanned: govulncheck could not scan" in log.getvalue()


@pytest.fixture(scope="module")
def scan(tmp_path_factory, scanner, debian_gosu):
    tmp = tmp_path_factory.mktemp("vex")
    db = vulndb.make(tmp / "db")
    return vulns.scan_all(settings(scanner, db, tmp / "cache"), {"amd64": debian_gosu["amd64"]}, io.StringIO())["amd64"]


def vex(scan, digest="sha256:" + "c" * 64) -> bytes:
    return openvex.document(scan, "127.0.0.1:5000/org/base-gosu", digest, "amd64", "github.com/tianon/gosu", "",
                            "1.17", "go1.24.4", "base-gosu (https://example.invalid)")


def test_the_vex_says_affected_where_the_function_is_present_and_why_not_elsewhere(scan):
    doc = json.loads(vex(scan))
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0" and doc["@id"].startswith("urn:uuid:")
    assert doc["timestamp"] == vulndb.MODIFIED
    by_name = {s["vulnerability"]["name"]: s for s in doc["statements"]}
    assert list(by_name) == [vulndb.PRESENT.id, vulndb.ABSENT.id]
    affected, not_affected = by_name[vulndb.PRESENT.id], by_name[vulndb.ABSENT.id]
    assert affected["status"] == "affected" and "os/exec.LookPath" in affected["action_statement"]
    assert "--source rebuild" in affected["action_statement"]
    assert (not_affected["status"], not_affected["justification"]) == ("not_affected", "vulnerable_code_not_present")
    assert affected["vulnerability"]["aliases"] == ["CVE-2099-0001"]
    product = affected["products"][0]
    assert product["@id"] == ("pkg:oci/base-gosu@sha256%3A" + "c" * 64 +
                              "?arch=amd64&repository_url=127.0.0.1:5000/org/base-gosu")
    assert [s["@id"] for s in product["subcomponents"]] == ["pkg:golang/stdlib@v1.24.4"]


def test_the_vex_is_the_same_bytes_for_the_same_image_and_database(scan):
    assert vex(scan) == vex(scan)
    assert vex(scan) != vex(scan, "sha256:" + "d" * 64)
    assert json.loads(vex(scan))["@id"] != json.loads(vex(scan, "sha256:" + "d" * 64))["@id"]


def test_the_label_is_written_from_the_plan_read_back_and_moves_the_inputs(scan):
    bare = make(gosu=DEBIAN)
    scanned = dataclasses.replace(bare, vulns=scan.label, scan=scan,
                                  inputs=plan.inputs_digest(bare.target, bare.base, bare.gosu, bare.account,
                                                            ENTRYPOINT, vulns=scan.label))
    labels = plan.to_labels(scanned)
    assert labels[plan.VULNS] == scan.label and plan.VULNS not in plan.to_labels(bare)
    again = plan.from_labels(json.loads(json.dumps(labels)), str(scanned.target.platform),
                             config.image_settings(project_config().images, project_config().local).flavors)
    assert again == scanned and again.scan is None and plan.to_labels(again) == labels
    assert scanned.inputs != bare.inputs
    assert vulns.parse_label(scan.label) == (1, vulndb.MODIFIED)


def test_an_image_with_a_finding_that_applies_leaves_only_on_purpose():
    local = Destination("127.0.0.1:5000", "org/base-gosu", local=True)
    remote = Destination("registry.example", "org/base-gosu")
    images = [("org/base-gosu:alpine-amd64", "GO-2099-0001 (os/exec.LookPath)"), ("org/base-gosu:ubuntu-amd64", "")]
    push.check_vulnerable(images, local, False)
    push.check_vulnerable(images, remote, True)
    push.check_vulnerable([images[1]], remote, False)
    with pytest.raises(push.PublishError, match=r"alpine-amd64: gosu has vulnerable code present that no reviewed "
                                                r"assessment clears: GO-2099-0001 \(os/exec.LookPath\).*"
                                                r"vuln-assessments.yaml.*--source rebuild.*--allow-vulnerable.*"
                                                r"Nothing was pushed"):
        push.check_vulnerable(images, remote, False)
    child = push.Child("alpine", "3.20", "amd64", {}, "sha256:x", 1, "i", "1.17", "r", "c", vulns="2;by-version=5;db=d")
    assert child.applying.startswith("2 finding(s)")
    assert push.Child("alpine", "3.20", "amd64", {}, "sha256:x", 1, "i", "1.17", "r", "c").applying == ""


def test_rebuilt_and_released_gosu_never_share_a_tag():
    assert tags.tags_for("alpine", "3.20", "1.19", gosu_source="github")[-1] == "alpine-3.20-gosu1.19"
    assert tags.tags_for("alpine", "3.20", "1.19", gosu_source="debian")[-1] == "alpine-3.20-gosu1.19"
    assert tags.tags_for("alpine", "3.20", "1.19", gosu_source="rebuild") == \
        ("alpine-rebuild", "alpine-3.20-rebuild", "alpine-3.20-gosu1.19-rebuild")
    assert tags.tags_for("alpine", "3.22", "1.19", False, "rebuild") == ("alpine-3.22-rebuild", "alpine-3.22-gosu1.19-rebuild")


def test_without_a_function_table_nothing_is_said_to_apply_or_not(tmp_path, scanner, debian_gosu):
    # govulncheck 1.0.4 reports every entry as if its functions were present when it finds no function table
    # (a binary linked with -s and without .gopclntab): the same bytes with those sections renamed.
    path, _, version, _ = debian_gosu["amd64"]
    data = path.read_bytes().replace(b".gopclntab\0", b".xopclntab\0").replace(b".symtab\0", b".xymtab\0")
    blind = tmp_path / "gosu"
    blind.write_bytes(data)
    assert {".gopclntab", ".symtab"} & goinfo.elf_sections(data) == set()
    assert {".gopclntab", ".symtab"} <= goinfo.elf_sections(path.read_bytes())
    db = vulndb.make(tmp_path / "db")
    s = vulns.scan_all(settings(scanner, db, tmp_path / "cache"), {"amd64": (blind, "f" * 64, version, "debian")},
                       io.StringIO())["amd64"]
    assert not s.symbols and s.applicable == () and s.label == f"unknown;by-version=2;db={vulndb.MODIFIED}"
    assert vulns.parse_label(s.label) == (-1, vulndb.MODIFIED)
    doc = json.loads(vex(s))
    assert {st["status"] for st in doc["statements"]} == {"under_investigation"}
