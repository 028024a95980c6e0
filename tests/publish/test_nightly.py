"""The nightly workflow's own steps, rehearsed: .github/workflows/nightly.yml read as it is, its matrix job run
(`invoke matrix`), then each image job's steps for every job that matrix lists, then the assemble job's,
against a loopback registry; the tags it leaves are asserted.

What cannot be as on GitHub is substituted, each named here and nowhere else:
- the registry: a second loopback registry with basic auth (INVOKE_PUBLISH_REGISTRY), not ghcr.io;
- signing: a key pair (`--sign-key`) in place of `--keyless` (no OIDC token here);
- the vulnerability database: ../shared/vulndb's copy (INVOKE_VULN_DB) in place of vuln.go.dev, with
  vuln.require as the workflow sets it;
- gosu: Debian's 1.17 (INVOKE_GOSU_SOURCE=debian) in place of tianon's release (GitHub cannot be reached), so
  the shipped vuln-assessments.yaml is what lets its two present findings through;
- bases: the local registry's stand-ins in place of the real ones (the workflow's INVOKE_IMAGES_* are left
  out), so `--allow-trial` is added where `--keyless` was;
- the matrix: a runtime configuration (INVOKE_RUNTIME_CONFIG) leaves one release per flavor, amd64 only (alpine
  also i386, which runs here without an emulator, so one release has two image jobs), and gives alpine 3.20 (the
  one alpine whose rootfs is here) an end of life to come;
- each job's `digests` directory is its own temporary directory, and the artifact steps copy between them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from builder import wiring
from builder.consumer import show
from builder.image.audit import vulndb as db_stage
from tests.conftest import ROOT, SHARED
from tests.support.engine import project_config, rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry

pytestmark = pytest.mark.engine

WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
PASSWORD = "nightly-rehearsal-3"
# The jobs the rehearsal's configuration leaves in the matrix: the release each flavor keeps, and its arches.
KEEP = {"minideb": "trixie", "ubuntu": "24.04", "alpine": "3.20"}
ARCHES = {"minideb": ("amd64",), "ubuntu": ("amd64",), "alpine": ("amd64", "i386")}
GONE = "2000-01-01"


def rehearsal_config(path: Path) -> Path:
    cfg = project_config()
    flavors = {}
    for name, f in cfg.images["flavors"].items():
        releases = {}
        for release in f["releases"]:
            if str(release) == KEEP[name]:
                releases[release] = {"arches": ",".join(ARCHES[name]),
                                     **({"eol": "2099-01-01", "eol_source": "the rehearsal"}
                                        if name == "alpine" else {})}
            else:
                releases[release] = {"eol": GONE, "eol_source": "left out of the rehearsal"}
        flavors[name] = {"releases": releases}
    path.write_text(yaml.safe_dump({"images": {"flavors": flavors}}))
    return path


class Runner:
    """Runs a workflow job's steps as a runner would: env, ${{ }} expressions, GITHUB_OUTPUT and GITHUB_ENV."""

    def __init__(self, workflow: dict, env: dict, tmp: Path, reg: AuthRegistry, key: Path, cosign: Path):
        self.workflow, self.base_env, self.tmp, self.reg, self.key = workflow, env, tmp, reg, key
        self.cosign = cosign
        self.artifacts = tmp / "artifacts"
        self.log: list[str] = []

    def expand(self, text: str, matrix: dict, outputs: dict) -> str:
        def value(m: re.Match) -> str:
            expr = m.group(1).strip()
            if expr.startswith("matrix."):
                got = matrix[expr.removeprefix("matrix.")]
                return str(got).lower() if isinstance(got, bool) else str(got)
            if expr == "github.actor":
                return self.reg.user
            if expr == "secrets.GITHUB_TOKEN":
                return self.reg.password
            if expr.startswith("inputs.dry_run"):
                return ""
            if expr.startswith("steps.") or expr.startswith("needs."):
                return outputs.get(expr, "")
            raise AssertionError(f"the rehearsal does not know the expression {expr!r}; teach it")
        return re.sub(r"\$\{\{(.*?)\}\}", value, text)

    def command(self, run: str, workdir: Path) -> str:
        # Root already: sudo is what a hosted runner needs. --keyless needs GitHub's OIDC token.
        run = re.sub(r"\bsudo (-E )?", "", run)
        run = run.replace("--keyless", f"--sign-key {self.key} --allow-trial")
        run = run.replace("--digests-dir digests", f"--digests-dir {workdir / 'digests'}")
        return run.replace("./run ", f"{ROOT}/run ")

    def job(self, name: str, matrix: dict | None = None, outputs: dict | None = None) -> dict:
        job, matrix, outputs = self.workflow["jobs"][name], matrix or {}, dict(outputs or {})
        workdir = self.tmp / f"{name}-{len(self.log)}"
        workdir.mkdir()
        env = {**self.base_env, **{k: self.expand(str(v), matrix, outputs) for k, v in (job.get("env") or {}).items()}}
        for step in job["steps"]:
            if "if" in step and not self.expand("${{ " + step["if"] + " }}", matrix, outputs) in ("true", "True"):
                continue
            if "uses" in step:
                self.action(step, workdir, lambda text: self.expand(text, matrix, outputs))
                continue
            github_env, github_output = workdir / "GITHUB_ENV", workdir / "GITHUB_OUTPUT"
            github_env.touch()
            github_output.write_text("")
            step_env = {**env, **{k: self.expand(str(v), matrix, outputs) for k, v in (step.get("env") or {}).items()},
                        "GITHUB_ENV": str(github_env), "GITHUB_OUTPUT": str(github_output),
                        "GITHUB_REPOSITORY_OWNER": "Rehearsal"}
            run = self.command(self.expand(step["run"], matrix, outputs), workdir)
            done = subprocess.run(["bash", "-e", "-c", run], cwd=ROOT, env=step_env, capture_output=True, text=True,
                                  timeout=1800, stdin=subprocess.DEVNULL)
            self.log.append(f"== {name} {matrix}: {step.get('name', run[:60])} (exit {done.returncode})\n"
                            f"{done.stdout[-4000:]}{done.stderr[-8000:]}")
            assert done.returncode == 0, self.log[-1]
            env.update(line.split("=", 1) for line in github_env.read_text().splitlines() if "=" in line)
            if step.get("id"):
                for line in github_output.read_text().splitlines():
                    key, _, val = line.partition("=")
                    outputs[f"steps.{step['id']}.outputs.{key}"] = val
        return {f"needs.{name}.outputs.{k}": self.expand(v, matrix, outputs)
                for k, v in (job.get("outputs") or {}).items()}

    def action(self, step: dict, workdir: Path, expand) -> None:
        uses = step["uses"].split("@")[0]
        if uses == "actions/checkout":
            return  # the job runs in this checkout
        if uses == "actions/upload-artifact":
            files = sorted((workdir / "digests").glob("*.json"))
            assert files or step["with"].get("if-no-files-found") != "error", f"{step['with']['name']}: no files"
            target = self.artifacts / expand(step["with"]["name"])
            target.mkdir(parents=True)
            for f in files:
                shutil.copy(f, target)
            return
        if uses == "actions/download-artifact":
            (workdir / "digests").mkdir(exist_ok=True)
            for f in sorted(self.artifacts.glob(step["with"]["pattern"] + "/*.json")):
                shutil.copy(f, workdir / "digests")
            return
        raise AssertionError(f"the rehearsal does not know the action {uses}; teach it")


@pytest.fixture
def rehearsal(rig, tmp_path):
    reg = AuthRegistry(tmp_path / "registry")
    subprocess.run([str(rig.cosign), "generate-key-pair", "--output-key-prefix", str(tmp_path / "nightly")],
                   check=True, env={**os.environ, "COSIGN_PASSWORD": PASSWORD}, capture_output=True, timeout=60)
    workflow = yaml.safe_load(WORKFLOW.read_text())
    local_only = {"INVOKE_IMAGES_BASE_MIRROR", "INVOKE_IMAGES_USE_STANDINS"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    env.update({k: str(v) for k, v in workflow["env"].items() if k not in local_only})
    db = db_stage.unpacked(SHARED / "vulndb" / "vulndb-v1-20260821.tar.xz", tmp_path / "vulndb",
                           wiring.settings(wiring.project_config()).vuln.local_db_sha256)
    env.update(INVOKE_PUBLISH_REGISTRY=reg.host, INVOKE_VULN_DB=str(db), INVOKE_GOSU_SOURCE="debian",
               INVOKE_RUNTIME_CONFIG=str(rehearsal_config(tmp_path / "rehearsal.yaml")), COSIGN_PASSWORD=PASSWORD)
    try:
        yield Runner(workflow, env, tmp_path, reg, tmp_path / "nightly.key", rig.cosign)
    finally:
        reg.stop()


def test_the_workflow_asks_for_a_scan_against_the_live_database():
    env = yaml.safe_load(WORKFLOW.read_text())["env"]
    assert env.get("INVOKE_VULN_REQUIRE") == "true" and "INVOKE_VULN_DB" not in env


def test_the_nightly_steps_publish_every_matrix_job_and_move_each_flavors_tags(rehearsal):
    outputs = rehearsal.job("matrix")
    jobs = json.loads(outputs["needs.matrix.outputs.matrix"])["include"]
    assert sorted((j["flavor"], j["release"], j["arch"]) for j in jobs) == \
        sorted((f, r, a) for f, r in KEEP.items() for a in ARCHES[f]), jobs
    for job in jobs:
        rehearsal.job("image", job)
    rehearsal.job("assemble", outputs=outputs)
    log = "\n".join(rehearsal.log)
    assert "0 applying; 2 present but reviewed not_affected: GO-2025-3956, GO-2026-4602" in log, log[-6000:]
    assert "scanning against the local copy" not in log  # the database given, not a fallback

    client = rehearsal.reg.client()
    repo = "rehearsal/base-gosu"
    listed = set(client.list_tags(repo))
    want = {t for f, r in KEEP.items() for t in (f, f"{f}-{r}", f"{f}-{r}-gosu1.17")}
    assert {t for t in listed if not t.startswith("sha256-")} == want, sorted(listed)
    for flavor, release in KEEP.items():
        index = json.loads(client.get_manifest(repo, flavor)[0])
        assert sorted(m["platform"]["architecture"] for m in index["manifests"] if m["platform"].get("os") !=
                      "unknown") == sorted({"i386": "386"}.get(a, a) for a in ARCHES[flavor])
        assert client.get_manifest(repo, f"{flavor}-{release}-gosu1.17")[2] == client.get_manifest(repo, flavor)[2]
    # Signed: each index and child has its signature tag.
    assert sum(t.endswith(".sig") for t in listed) >= 2 * len(KEEP)
    # The VEX quotes the review, and its attestation verifies with the key that stood in for --keyless.
    vex = json.loads(show.show(client, repo, "alpine", "vex", "linux/amd64"))
    reviewed = {st["vulnerability"]["name"]: st for st in vex["statements"] if "status_notes" in st}
    assert set(reviewed) == {"GO-2025-3956", "GO-2026-4602"}
    assert all(st["status"] == "not_affected" and st["status_notes"].startswith("Reviewed by base-gosu maintainers")
               for st in reviewed.values())
    child = next(m["digest"] for m in json.loads(client.get_manifest(repo, "alpine")[0])["manifests"]
                 if m["platform"]["architecture"] == "amd64")
    rehearsal.reg.logged_in_engine(rehearsal.tmp / "docker-config")
    got = subprocess.run([str(rehearsal.cosign), "verify-attestation", "--type", "openvex", "--key",
                          str(rehearsal.key.with_suffix(".pub")), "--insecure-ignore-tlog=true",
                          "--allow-http-registry", f"{rehearsal.reg.host}/{repo}@{child}"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DOCKER_CONFIG": str(rehearsal.tmp / "docker-config")})
    assert got.returncode == 0, got.stderr

    # The next night, nothing new: every image job pushes one arch of a release whose tags serve two, and
    # nothing is built or uploaded; assemble moves no tag.
    first = len(rehearsal.log)
    rehearsal.artifacts = rehearsal.tmp / "artifacts-next-night"  # a new workflow run has its own artifacts
    for job in jobs:
        rehearsal.job("image", job)
    rehearsal.job("assemble", outputs=outputs)
    again = "\n".join(rehearsal.log[first:])
    assert again.count("not rebuilt, nothing uploaded") == len(jobs), again[-4000:]
    assert "nothing to do" in again and not re.search(r": (created|moved)$", again, re.M), again[-4000:]
    assert {t for t in client.list_tags(repo) if not t.startswith("sha256-")} == want


def test_a_finding_without_its_review_stops_the_image_job_before_a_byte_is_sent(rehearsal, tmp_path):
    shipped = yaml.safe_load((ROOT / "vuln-assessments.yaml").read_text())
    del shipped["assessments"]["GO-2025-3956"]
    (tmp_path / "fewer.yaml").write_text(yaml.safe_dump(shipped))
    rehearsal.base_env["INVOKE_VULN_ASSESSMENTS"] = str(tmp_path / "fewer.yaml")
    job = {"flavor": "alpine", "release": "3.20", "arch": "amd64", "runner": "ubuntu-24.04", "emulated": False}
    with pytest.raises(AssertionError):
        rehearsal.job("image", job)
    # The failed step's own output: the assertion's text also holds a repr of the process, longer under -v.
    failed = rehearsal.log[-1]
    refused = [line for line in failed.splitlines() if "no reviewed assessment clears" in line]
    assert len(refused) == 1 and "GO-2025-3956 (os/exec.LookPath)" in refused[0], failed[-3000:]
    assert all(w in refused[0] for w in ("vuln-assessments.yaml", "--source rebuild", "--allow-vulnerable"))
    assert rehearsal.reg.client().list_tags("rehearsal/base-gosu") == set()
