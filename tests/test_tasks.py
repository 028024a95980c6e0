"""The Invoke interface as users script against it: output lines, exit codes."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import tasks
from builder import wiring
from tests.conftest import ROOT, lock_for
from tests.support.engine import project_config

INVOKE = [sys.executable, "-m", "invoke"]


def invoke(*args, env=None):
    return subprocess.run(INVOKE + list(args), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_list_shows_every_task_with_help():
    out = invoke("--list").stdout
    for name in ("fetch", "lock", "up", "down", "build", "smoke", "release", "publish", "push", "assemble", "test",
                 "test-mirror", "reproduce", "verify", "matrix", "releases"):
        line = next(l for l in out.splitlines() if l.strip().startswith(name + " "))
        doc = " ".join(getattr(tasks, name.replace("-", "_")).__doc__.split())
        shown = line.split(None, 1)[1].strip().removesuffix("...")
        assert doc.startswith(shown[:40]), (name, shown, doc)


def test_every_option_has_help():
    for name in ("fetch", "lock", "build", "smoke", "release", "publish", "push", "assemble", "test", "test-mirror",
                 "reproduce", "verify", "matrix"):
        out = invoke("--help", name).stdout
        opts = [l for l in out.splitlines() if l.strip().startswith("-")]
        assert opts and all(len(l.split("  ")[-1].strip()) > 5 and l.strip().count(" ") > 2 for l in opts), out


def test_every_task_that_moves_tags_takes_the_flag_its_shrink_refusal_names():
    # publish/tags.check_shrink's refusal says "pass --allow-shrink": each task that can reach it must take it.
    for name in ("release", "publish", "push", "assemble"):
        assert "--allow-shrink" in invoke("--help", name).stdout, name


def test_fetch_prints_sha_and_path_per_arch(tmp_path, release, release_key):
    root, digests, key_file = release
    r = invoke("fetch", "--version", "9.9", "--arch", "amd64,s390x", "--mirror", str(root), "--key", str(key_file),
               "--fingerprint", release_key.fingerprint, "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[:2] for l in lines] == [["amd64", digests["amd64"]], ["s390x", digests["s390x"]]]
    assert all(Path(l.split()[2]).is_file() for l in lines)


def test_fetch_failure_exits_nonzero_with_one_line_per_failing_arch(tmp_path, release, release_key, attacker_key):
    root, _, key_file = release
    attacker_key.sign(root / "9.9" / "gosu-arm64")
    (root / "9.9" / "gosu-i386.asc").unlink()
    r = invoke("fetch", "--version", "9.9", "--mirror", str(root), "--key", str(key_file),
               "--fingerprint", release_key.fingerprint, "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 1
    failed = [l for l in r.stderr.splitlines() if l.startswith("FAILED")]
    assert len(failed) == 2
    assert failed[0].startswith("FAILED arm64: gosu-arm64: wrong key:")
    assert failed[1].startswith("FAILED i386: gosu-i386.asc: missing signature:")
    assert len(r.stdout.splitlines()) == 7


def test_key_never_relaxes_the_pinned_fingerprint(tmp_path, release):
    root, _, key_file = release
    r = invoke("fetch", "--version", "9.9", "--arch", "amd64", "--mirror", str(root), "--key", str(key_file),
               "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 1
    assert "must hold exactly the pinned key B42F6819007F00F88E364FD4036A9C25BF357DD4" in r.stderr


def test_bad_arguments_get_clear_errors(tmp_path):
    r = invoke("fetch", "--arch", "sparc")
    assert r.returncode == 2 and "unknown architecture 'sparc'" in r.stderr
    r = invoke("fetch", "--mirror", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "mirror directory" in r.stderr
    r = invoke("fetch", "--fingerprint", "036A9C25BF357DD4")
    assert r.returncode == 2 and "full 40" in r.stderr


def test_locked_version_is_enforced_and_lock_rewrites_it(tmp_path, release, release_key):
    root, digests, key_file = release
    lock = tmp_path / "gosu.lock.json"
    lock.write_text(json.dumps({"version": "9.9", "arches": {a: {"sha256": "0" * 64, "size": None, "source": "t",
                                                                  "confidence": "t"} for a in digests}}))
    env = {"INVOKE_GOSU_LOCK_FILE": str(lock), "INVOKE_GOSU_MIRROR": str(root), "INVOKE_GOSU_KEY_FILE": str(key_file),
           "INVOKE_GOSU_FINGERPRINT": release_key.fingerprint, "INVOKE_GOSU_CACHE_DIR": str(tmp_path / "c")}
    r = invoke("fetch", "--arch", "amd64", env=env)  # default version: the lock's
    assert r.returncode == 1 and "lock mismatch" in r.stderr
    r = invoke("lock", "--version", "9.9", env=env)
    assert r.returncode == 0, r.stderr
    new = json.loads(lock.read_text())["github"]
    assert {a: e["sha256"] for a, e in new["arches"].items()} == digests
    assert all(e["confidence"].startswith("verified: signature by " + release_key.fingerprint + " and signed SHA256SUMS")
               for e in new["arches"].values())
    r = invoke("fetch", env=env)
    assert r.returncode == 0 and "lock" in r.stdout.splitlines()[0]


def test_repo_lock_pins_gosu_1_19_for_all_nine_arches():
    lock = json.loads((ROOT / "gosu.lock.json").read_text())["github"]
    assert lock["version"] == "1.19" and len(lock["arches"]) == 9
    assert lock["arches"]["amd64"]["sha256"] == "52c8749d0142edd234e9d6bd5237dff2d81e71f43537e2f4f66f75dd4b243dd0"
    assert all(e["confidence"] and e["source"] for e in lock["arches"].values())


def test_repo_lock_pins_debian_trixie_gosu_for_its_eight_arches():
    lock = json.loads((ROOT / "gosu.lock.json").read_text())["debian"]
    assert (lock["suite"], lock["version"]) == ("trixie", "1.17")
    assert sorted(lock["arches"]) == ["amd64", "arm64", "armel", "armhf", "i386", "ppc64el", "riscv64", "s390x"]
    for arch, e in lock["arches"].items():
        assert e["package_version"].startswith("1.17-") and len(e["deb_sha256"]) == len(e["sha256"]) == 64
        assert e["source"].endswith(f"/pool/main/g/gosu/gosu_{e['package_version']}_{arch}.deb")


def test_repo_lock_pins_the_rebuild_of_gosu_1_19():
    """Made from the real chain with --accept-expired unstable, and recorded as such: the lock is no freshness claim
    (every fetch checks Valid-Until itself; tests/gosu/test_rebuild.py shows a lock never lets an expired suite by)."""
    lock = json.loads((ROOT / "gosu.lock.json").read_text())["rebuild"]
    assert (lock["suite"], lock["version"]) == ("unstable", "1.19")
    assert lock.get("expired_accepted", "") in ("", "unstable 2026-11-06")   # gone once locked from a current mirror
    assert sorted(lock["arches"]) == ["amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64",
                                      "s390x"]
    assert {e["orig_sha256"] for e in lock["arches"].values()} == \
        {"cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"}
    assert all(len(e["sha256"]) == 64 and e["go_package"].startswith("golang-1.") for e in lock["arches"].values())


def test_source_flags_are_checked_before_anything_runs():
    r = invoke("fetch", "--source", "ftp")
    assert r.returncode == 2 and "gosu source 'ftp' is unknown: use one of github, debian, rebuild, auto" in r.stderr
    r = invoke("fetch", "--suite", "trixie")
    assert r.returncode == 2 and "--suite applies to the debian and rebuild sources only" in r.stderr
    r = invoke("fetch", "--source", "debian", "--go", "1.27")
    assert r.returncode == 2 and "--go applies to the rebuild source only" in r.stderr
    r = invoke("lock", "--source", "rebuild", "--go", "go1.27")
    assert r.returncode == 2 and "'go1.27' is not a Go minor version such as 1.27" in r.stderr, r.stderr
    r = invoke("fetch", "--source", "debian", "--key", "k.asc")
    assert r.returncode == 2 and "--key and --fingerprint go together" in r.stderr
    r = invoke("lock", "--source", "auto")
    assert r.returncode == 2 and "a lock names its source" in r.stderr
    r = invoke("lock")
    assert r.returncode == 2 and "locking the github source needs --version" in r.stderr
    r = invoke("fetch", "--accept-expired", "unstable")
    assert r.returncode == 2 and "--accept-expired applies to Debian's archive" in r.stderr
    r = invoke("lock", "--source", "debian", "--accept-expired", "unstable")
    assert r.returncode == 2 and "names unstable, which this fetch does not read (it reads trixie)" in r.stderr
    r = invoke("smoke", "--source", "rebuild", "--accept-expired", "unstable,Sid")
    assert r.returncode == 2 and "--accept-expired: 'Sid' is not a Debian suite name" in r.stderr, r.stderr


def test_publish_arguments_are_checked_before_anything_runs(tmp_path):
    """Bad destinations and missing push records: exit 2, naming the input, with no engine or registry needed."""
    r = invoke("publish", "--registry", "https://ghcr.io", "--dry-run")
    assert r.returncode == 2 and "registry 'https://ghcr.io': give HOST[:PORT] without scheme" in r.stderr, r.stderr
    r = invoke("publish", "--repository", "Org/Base", "--dry-run")
    assert r.returncode == 2 and "repository 'Org/Base' is not a valid name" in r.stderr, r.stderr
    r = invoke("publish", "--flavor", "centos", "--dry-run")
    assert r.returncode == 2 and "unknown flavor centos" in r.stderr, r.stderr
    r = invoke("assemble", "--digests-dir", str(tmp_path / "none"))
    assert r.returncode == 2 and f"no push records (*.json) in {tmp_path / 'none'}" in r.stderr, r.stderr
    r = invoke("assemble", "--digests-dir", str(tmp_path), "--arch", "sparc")
    assert r.returncode == 2 and "unknown architecture 'sparc'" in r.stderr, r.stderr


def test_publish_elsewhere_needs_a_signing_identity_before_anything_runs(tmp_path):
    """No engine, no registry: the refusal comes before a single byte could be sent."""
    r = invoke("publish", "--registry", "127.0.0.1:9", "--flavor", "alpine")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "publish: error: 127.0.0.1:9 is not this machine's local registry, and nothing would sign" in r.stderr
    assert "--sign-key FILE_OR_KMS_URI" in r.stderr and "--keyless" in r.stderr and "--unsigned" in r.stderr
    r = invoke("assemble", "--digests-dir", str(tmp_path / "none"), "--registry", "127.0.0.1:9")
    assert r.returncode == 2 and "no push records" in r.stderr, r.stderr
    r = invoke("push", "--digests-dir", str(tmp_path), "--registry", "127.0.0.1:9", "--flavor", "alpine")
    assert r.returncode == 2 and "push: error: 127.0.0.1:9 is not this machine's local registry" in r.stderr
    r = invoke("publish", "--registry", "127.0.0.1:9", "--sign-key", "k.key", "--keyless")
    assert r.returncode == 2 and "choose one" in r.stderr, r.stderr
    r = invoke("publish", "--registry", "127.0.0.1:9", "--sign-key", "k.key", "--unsigned")
    assert r.returncode == 2 and "--unsigned contradicts" in r.stderr, r.stderr
    r = invoke("verify", "127.0.0.1:9/org/base-gosu:alpine", "--key", str(tmp_path / "nope.pub"))
    assert r.returncode == 2 and f"trusted key {tmp_path / 'nope.pub'} does not exist" in r.stderr, r.stderr
    r = invoke("verify", "127.0.0.1:9/org/base-gosu:alpine", "--identity", "^https://github.com/")
    assert r.returncode == 2 and "needs both --identity REGEX and --issuer URL" in r.stderr, r.stderr


def test_smoke_engine_is_checked_before_anything_runs():
    r = invoke("smoke", "--engine", "dokcer")
    assert r.returncode == 2, r.stderr
    assert "engine 'dokcer' is not one of docker, podman, podman-rootless, docker-userns" in r.stderr
    r = invoke("smoke", env={"INVOKE_SMOKE_ENGINE": "lxc"})
    assert r.returncode == 2 and "engine 'lxc'" in r.stderr, r.stderr


def _listed(spec: str) -> list[str]:
    return [a.strip() for a in str(spec).split(",") if a.strip()]


def test_matrix_is_every_arch_of_each_supported_release_each_on_its_runner():
    r = invoke("matrix")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1, "GITHUB_OUTPUT takes it as one line"
    jobs = json.loads(r.stdout)["include"]
    settings = wiring.image_settings(wiring.settings(wiring.project_config()), dt.date.today())
    assert [(j["flavor"], j["release"], j["arch"]) for j in jobs] == [
        (f, r, a) for f, rels in settings.releases.items() for r, rel in rels.items()
        if not (rel.eol and rel.eol.past(dt.date.today())) for a in rel.arches]
    # Alpine 3.20 is configured, past its end of life, and so has no job; every other release has its own.
    assert ("alpine", "3.20") not in {(j["flavor"], j["release"]) for j in jobs}
    assert {("minideb", "bookworm"), ("ubuntu", "22.04"), ("alpine", "3.23")} <= {(j["flavor"], j["release"]) for j in jobs}
    amd64 = dict(p.split("=") for p in _listed(project_config().ci.runners))["amd64"]
    for j in jobs:
        # GitHub hosts amd64 and arm64 runners; everything else runs on amd64, i386 natively, the rest under qemu.
        assert j["runner"] == ("ubuntu-24.04-arm" if j["arch"] == "arm64" else amd64), j
        assert j["emulated"] is (j["arch"] not in ("amd64", "arm64", "i386")), j
    assert {j["arch"] for j in jobs if j["emulated"]} == {"armhf", "armv7", "ppc64el", "riscv64", "s390x"}


def test_matrix_configuration_errors_name_the_key():
    r = invoke("matrix", env={"INVOKE_CI_OTHER_ARCHES_ON": "sparc"})
    assert r.returncode == 2 and "matrix: error: ci.other_arches_on: unknown architecture 'sparc'" in r.stderr
    r = invoke("matrix", env={"INVOKE_CI_RUNNERS": "arm64=ubuntu-24.04-arm"})
    assert r.returncode == 2 and "ci.other_arches_on is 'amd64', which has no runner in ci.runners (arm64)" in r.stderr
    r = invoke("matrix", env={"INVOKE_CI_RUNNERS": "amd64,arm64=ubuntu-24.04-arm"})
    assert r.returncode == 2 and "ci.runners: 'amd64' is not ARCH=RUNNER-LABEL" in r.stderr, r.stderr
    assert not r.stdout


def test_nightly_runs_the_generated_matrix_and_assembles_every_arch():
    """The workflow takes its jobs from `invoke matrix`, so it cannot drift from invoke.yaml."""
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())
    jobs = wf["jobs"]
    assert any("./run matrix" in step.get("run", "") for step in jobs["matrix"]["steps"])
    image = jobs["image"]
    assert image["needs"] == "matrix"
    assert image["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.matrix) }}"
    assert image["runs-on"] == "${{ matrix.runner }}"
    assert [s for s in image["steps"] if s.get("if") == "matrix.emulated" and "qemu-user-static" in s["run"]]
    assert wf["env"]["INVOKE_PUBLISH_ARCHES"] == "all"
    assert jobs["assemble"]["needs"] == "image" and "if" not in jobs["assemble"]
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
