"""Reviewed assessments (vuln-assessments.yaml): parsed whole or refused naming the file, ID and key; applied
only to the binaries they cover; quoted by the VEX; named when they apply to nothing; and the shipped ones
against Go's real vulnerability database (the copy in ../shared/vulndb) and Debian's real gosu 1.17.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
import yaml

from builder import config, wiring
from builder.core.emulation import native_arch
from builder.gosu import fetch as fetch_stage
from builder.image.audit import assessments, openvex, vulndb as db_stage, vulns
from builder.local import tools
from builder.publish import push
from builder.config.settings import Destination
from tests.conftest import ROOT, SHARED
from tests.support import vulndb
from tests.support.engine import project_config

SHARED_DB = SHARED / "vulndb" / "vulndb-v1-20260821.tar.xz"
GOOD = {"status": "not_affected", "justification": "vulnerable_code_not_in_execute_path",
        "impact": "gosu never calls it.", "reviewed_by": "maintainers", "reviewed_on": "2026-12-07",
        "covers": [{"version": "1.17", "source": "debian"}]}


def entry(**changes) -> dict:
    e = {**GOOD, **changes}
    return {k: v for k, v in e.items() if v is not None}


def write(tmp_path: Path, data, name="assess.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("data, message", [
    ("assessments: {GO-2026-4602: [", r"does not parse as YAML at line 1"),
    ({"assessments": {"GO-2026-4602": entry(status="fine")}}, r"GO-2026-4602: status: 'fine' is not one of"),
    ({"assessments": {"GO-2026-4602": entry(justification="trust_me")}}, r"GO-2026-4602: justification: 'trust_me'"),
    ({"assessments": {"GO-2026-4602": entry(justification=None)}}, r"GO-2026-4602: justification: '\(missing\)'"),
    ({"assessments": {"GO-2026-4602": entry(status="affected")}}, r"GO-2026-4602: justification: only a not_aff"),
    ({"assessments": {"GO-2026-4602": entry(reviewed_by=None)}}, r"GO-2026-4602: reviewed_by: missing or empty"),
    ({"assessments": {"GO-2026-4602": entry(reviewed_by=" ")}}, r"GO-2026-4602: reviewed_by: missing or empty"),
    ({"assessments": {"GO-2026-4602": entry(reviewed_on=None)}}, r"GO-2026-4602: reviewed_on: None is not a date"),
    ({"assessments": {"GO-2026-4602": entry(reviewed_on="last week")}}, r"GO-2026-4602: reviewed_on: 'last week'"),
    ({"assessments": {"GO-2026-4602": entry(impact=None)}}, r"GO-2026-4602: impact: missing or empty"),
    ({"assessments": {"GO-2026-4602": entry(covers=None)}}, r"GO-2026-4602: covers: missing"),
    ({"assessments": {"GO-2026-4602": entry(covers=[{"source": "debian"}])}}, r"covers: .* neither a version"),
    ({"assessments": {"GO-2026-4602": entry(covers=[{"sha256": "abc"}])}}, r"covers: sha256 'abc' is not 64"),
    ({"assessments": {"GO-2026-4602": entry(covers=[{"version": "1.17", "source": "ppa"}])}}, r"source 'ppa'"),
    ({"assessments": {"GO-2026-4602": entry(covers=[{"versoin": "1.17"}])}}, r"covers: .*versoin"),
    ({"assessments": {"GO-2026-4602": entry(reviewer="me")}}, r"GO-2026-4602: reviewer: unknown key"),
    ({"assessments": {"CVE-2026-27139": entry()}}, r"CVE-2026-27139: id: not a Go vulnerability ID"),
    ({"assessments": {"GO-2026-4602": "not_affected"}}, r"GO-2026-4602: \(entry\): must be a mapping"),
    ({"assessment": {}}, r"the top level must be one key, `assessments`"),
    ({"assessments": ["GO-2026-4602"]}, r"`assessments` must map each vulnerability ID"),
], ids=["yaml-syntax", "status-unknown", "justification-unknown", "justification-missing",
        "affected-with-justification", "reviewer-missing", "reviewer-blank", "date-missing", "date-not-a-date",
        "impact-missing", "covers-missing", "covers-no-version", "covers-short-sha256", "covers-unknown-source",
        "covers-unknown-key", "unknown-key", "cve-not-go-id", "entry-not-a-mapping", "top-level-typo",
        "assessments-a-list"])
def test_a_bad_assessments_file_is_refused_naming_the_file_the_id_and_the_key(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(assessments.AssessmentError) as e:
        wiring.read_assessments(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert re.search(message, str(e.value)), str(e.value)


def test_a_missing_assessments_file_is_named(tmp_path):
    with pytest.raises(assessments.AssessmentError, match=f"{tmp_path / 'gone.yaml'}: No such file.*vuln.assessments"):
        wiring.read_assessments(tmp_path / "gone.yaml")


def test_a_bad_assessments_file_stops_the_build_before_anything_is_fetched(tmp_path):
    path = write(tmp_path, {"assessments": {"GO-2026-4602": entry(status="maybe")}})
    cfg = project_config()
    cfg.vuln["assessments"] = str(path)
    cfg.vuln["db"] = str(vulndb.make(tmp_path / "db"))
    with pytest.raises(Exception, match=r"GO-2026-4602: status: 'maybe'") as e:
        wiring.build_request(wiring.settings(cfg), flavor="alpine", arch="amd64", source="debian")
    assert type(e.value).__name__ == "UsageError"


@pytest.mark.parametrize("covers, version, source, sha, applies", [
    ({"version": "1.17", "source": "debian"}, "1.17", "debian", "a" * 64, True),
    ({"version": "1.17", "source": "debian"}, "1.17", "github", "a" * 64, False),
    ({"version": "1.17", "source": "debian"}, "1.19", "debian", "a" * 64, False),
    ({"version": "1.17"}, "1.17", "rebuild", "a" * 64, True),
    ({"sha256": "a" * 64}, "9.9", "github", "a" * 64, True),
    ({"sha256": "a" * 64}, "1.17", "debian", "b" * 64, False),
], ids=["version+source", "other-source", "other-version", "version-any-source", "sha256", "other-sha256"])
def test_an_assessment_covers_exactly_the_builds_it_names(covers, version, source, sha, applies):
    found = assessments.parse({"assessments": {"GO-2026-4602": entry(covers=[covers])}}, "f.yaml")
    assert (found.for_binary("GO-2026-4602", version, source, sha) is not None) is applies
    assert found.for_binary("GO-2025-3956", version, source, sha) is None


# What the scans below need: the scanner, and Debian's real gosu 1.17 (amd64) fetched through the archive chain.

@pytest.fixture(scope="module")
def scanner():
    settings = config.tool_settings(project_config())
    return tools.ensure(settings, "govulncheck", native_arch(), io.StringIO()), \
        settings.tools["govulncheck"].pins[native_arch()].version


@pytest.fixture(scope="module")
def debian_gosu():
    opts = wiring.fetch_options(project_config().gosu, source="debian", arch="amd64")
    report = fetch_stage.fetch(opts, log=io.StringIO())
    assert report.ok
    return {f.arch: (f.path, f.sha256, f.version, f.kind) for f in report.fetched}


def scan_with(scanner, db, cache, found, binaries, **kw):
    log = io.StringIO()
    s = vulns.Settings(str(db), scanner[0], scanner[1], cache, assessments=found, **kw)
    return vulns.scan_all(s, binaries, log), log.getvalue()


def test_a_reviewed_finding_is_cleared_and_one_for_other_builds_or_ids_is_named(tmp_path, scanner, debian_gosu):
    db = vulndb.make(tmp_path / "db")
    present, absent = vulndb.PRESENT.id, vulndb.ABSENT.id
    cleared = assessments.parse({"assessments": {present: entry()}}, "a.yaml")
    scans, log = scan_with(scanner, db, tmp_path / "c", cleared, debian_gosu)
    s = scans["amd64"]
    assert [v.id for v in s.cleared] == [present] and s.affected == ()
    assert re.fullmatch(r"0;by-version=2;reviewed=1:[0-9a-f]{12};db=" + re.escape(vulndb.MODIFIED), s.label)
    assert f"0 applying; 1 present but reviewed not_affected: {present}" in log
    assert "vulns: assessment" not in log
    # Other builds than this one, and an ID the scan reports without a function present: named, not applied.
    others = assessments.parse({"assessments": {present: entry(covers=[{"version": "1.19", "source": "github"}]),
                                                absent: entry()}}, "a.yaml")
    scans, log = scan_with(scanner, db, tmp_path / "c", others, debian_gosu)
    assert [v.id for v in scans["amd64"].affected] == [present] and scans["amd64"].reviews == ()
    assert f"vulns: assessment {absent} in a.yaml: the scan reports no function of it present in the gosu it " \
           "covers here (amd64): stale" in log
    assert f"vulns: assessment {present} in a.yaml: it covers gosu 1.19 (github), not this run's gosu 1.17 " \
           "(debian): not applied" in log
    assert f"vulns: assessment {present} in a.yaml covers gosu 1.19 (github), not gosu 1.17 (debian) amd64" in log


def test_changing_a_reviews_words_changes_the_label_and_so_the_inputs(tmp_path, scanner, debian_gosu):
    db = vulndb.make(tmp_path / "db")
    one = assessments.parse({"assessments": {vulndb.PRESENT.id: entry()}}, "a.yaml")
    two = assessments.parse({"assessments": {vulndb.PRESENT.id: entry(impact="Other words.")}}, "a.yaml")
    first = scan_with(scanner, db, tmp_path / "c", one, debian_gosu)[0]["amd64"]
    second = scan_with(scanner, db, tmp_path / "c", two, debian_gosu)[0]["amd64"]
    assert second.cached and first.label != second.label
    assert vulns.parse_label(first.label) == vulns.parse_label(second.label) == (0, vulndb.MODIFIED)


# Go's real database, as of 2026-08-21, and the shipped assessments.

@pytest.fixture(scope="module")
def real_db(tmp_path_factory):
    return db_stage.unpacked(SHARED_DB, tmp_path_factory.mktemp("realdb"), wiring.settings(wiring.project_config()).vuln.local_db_sha256)


@pytest.fixture(scope="module")
def shipped():
    return wiring.read_assessments(wiring.settings(wiring.project_config()).vuln.assessments)


def test_the_shipped_file_reviews_both_findings_in_debians_1_17(shipped):
    assert {a.id: a.status for a in shipped.items} == {"GO-2026-4602": "not_affected", "GO-2025-3956": "not_affected"}
    text = (ROOT / "vuln-assessments.yaml").read_text()
    assert "go.dev/cl/749480" in text and "go.dev/cl/691775" in text and "main.go" in text


def vex_of(s) -> dict:
    return json.loads(openvex.document(s, "127.0.0.1:5000/org/base-gosu", "sha256:" + "c" * 64, "amd64",
                                       "github.com/tianon/gosu", "", "1.17", "go1.24.4", "base-gosu"))


def test_debians_1_17_against_the_real_database_is_cleared_by_the_shipped_review(tmp_path, scanner, debian_gosu,
                                                                               real_db, shipped):
    scans, log = scan_with(scanner, real_db, tmp_path / "c", shipped, debian_gosu)
    s = scans["amd64"]
    assert {v.id for v in s.applicable} == {"GO-2025-3956", "GO-2026-4602"}, log
    assert s.affected == () and "vulns: assessment" not in log
    statements = {st["vulnerability"]["name"]: st for st in vex_of(s)["statements"]}
    for a in shipped.items:
        st = statements[a.id]
        assert (st["status"], st["justification"], st["impact_statement"]) == (a.status, a.justification, a.impact)
        assert st["status_notes"].startswith(f"Reviewed by {a.reviewed_by} on {a.reviewed_on}")
    assert "affected" not in {st["status"] for st in statements.values()}
    elsewhere = Destination("registry.example", "org/base-gosu")
    push.check_vulnerable([("org/base-gosu:alpine-amd64", ", ".join(v.id for v in s.affected))], elsewhere, False)


def test_without_one_review_the_same_gosu_is_affected_and_refused_naming_the_id(tmp_path, scanner, debian_gosu,
                                                                              real_db, shipped):
    fewer = dataclasses.replace(shipped, items=tuple(a for a in shipped.items if a.id != "GO-2025-3956"))
    s = scan_with(scanner, real_db, tmp_path / "c", fewer, debian_gosu)[0]["amd64"]
    assert [v.id for v in s.affected] == ["GO-2025-3956"] and vulns.parse_label(s.label)[0] == 1
    statuses = {st["vulnerability"]["name"]: st["status"] for st in vex_of(s)["statements"]}
    assert (statuses["GO-2025-3956"], statuses["GO-2026-4602"]) == ("affected", "not_affected")
    with pytest.raises(push.PublishError, match=r"GO-2025-3956 \(os/exec.LookPath\)"):
        push.check_vulnerable([("org/base-gosu:alpine-amd64", ", ".join(f"{v.id} ({', '.join(v.symbols)})"
                                                                        for v in s.affected))],
                              Destination("registry.example", "org/base-gosu"), False)


@pytest.mark.parametrize("today, warned", [(dt.date(2026, 12, 7), True), (dt.date(2026, 9, 1), False)],
                         ids=["108-days-old", "11-days-old"])
def test_an_unreachable_database_gives_way_to_the_local_copy_with_its_date(tmp_path, scanner, debian_gosu, real_db,
                                                                          today, warned):
    scans, log = scan_with(scanner, "http://127.0.0.1:9", tmp_path / "c", assessments.Assessments(""), debian_gosu,
                           timeout=2, fallback=str(real_db), today=today)
    assert "vulns: database http://127.0.0.1:9 cannot be reached: scanning against the local copy " \
           f"{real_db} (local.vuln_db), as of 2026-08-21T20:38:00Z" in log
    assert ("vulns: warning: the local copy is from 2026-08-21 (108 days old" in log) is warned
    assert scans["amd64"].db == str(real_db) and scans["amd64"].applicable


def test_a_required_scan_never_takes_the_local_copy(tmp_path, scanner, debian_gosu, real_db):
    with pytest.raises(vulns.VulnError, match="cannot be reached.*vuln.require"):
        scan_with(scanner, "http://127.0.0.1:9", tmp_path / "c", assessments.Assessments(""), debian_gosu,
                  timeout=2, fallback=str(real_db), required=True)


def test_a_local_copy_that_does_not_match_its_pin_is_not_unpacked(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(vulns.VulnError, match=r"sha256 15cdbe.*local.vuln_db_sha256 pins 0000.*nothing was unpacked"):
        db_stage.unpacked(SHARED_DB, cache, "0" * 64)
    assert not cache.exists() or list(cache.iterdir()) == []
    broken = tmp_path / "broken.tar.xz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(vulns.VulnError, match="cannot be unpacked"):
        db_stage.unpacked(broken, cache)
    assert [p for p in cache.iterdir()] == []
