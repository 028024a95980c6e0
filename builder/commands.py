"""What a task does when it is more than one call: the inputs from wiring, the stages in order, the result
printed. tasks.py declares each task and calls one function here or in wiring; a function that can end a run
unfinished returns its exit code (0: done), which builder.cli's `cli` raises.
"""

from __future__ import annotations

import dataclasses
import sys

from builder import config, pipeline, shipping, wiring
from builder.config import cli_path, project_path, publishing
from builder.config.project import ProjectSettings
from builder.consumer import verify as verify_stage
from builder.core.engine import Engine
from builder.gosu import fetch as fetch_stage, lock as lockfile, testarchive, testmirror
from builder.publish import matrix as matrix_stage, push as push_stage


def _fetched(s: ProjectSettings, flags: dict, for_lock: bool = False):
    opts = wiring.fetch_options(s.gosu, for_lock=for_lock, **flags,
                                **({"enforce_lock": False} if for_lock else {}))
    report = fetch_stage.fetch(opts)
    fetch_stage.print_report(report)
    return opts, report


def fetch(s: ProjectSettings, flags: dict) -> int:
    """`invoke fetch`: exit 1 unless every arch was fetched and verified."""
    return 0 if _fetched(s, flags)[1].ok else 1


def lock(s: ProjectSettings, flags: dict) -> int:
    """`invoke lock`: every arch of a release fetched and verified, then that source's part of the lock rewritten."""
    opts, report = _fetched(s, flags, for_lock=True)
    if not report.ok:
        return 1
    path = project_path(s.gosu["lock_file"])
    lockfile.save(path, lockfile.updated(lockfile.load(path), opts, report.fetched))
    print(lockfile.summary(path, opts, report.fetched))
    return 0


def _built(s: ProjectSettings, fetch_flags: dict, targets: dict, local: Engine) -> tuple[pipeline.Request, list]:
    req = wiring.build_request(s, **targets, **fetch_flags)
    return req, pipeline.build(req, local, run=pipeline.plan(req, reads=wiring.seed(s, req)))


def build(s: ProjectSettings, fetch_flags: dict, **targets) -> list:
    """`invoke build`: the images, in the local engine. `targets`: flavor, arch, release, vuln_db."""
    return _built(s, fetch_flags, targets, Engine())[1]


def smoke(s: ProjectSettings, fetch_flags: dict, engine: str | None, **targets) -> None:
    """`invoke smoke`: build, then every check on each image under the engine asked for."""
    under = wiring.parsed(config.engine_for, s.engine, engine)
    local = Engine()
    req, built = _built(s, fetch_flags, targets, local)
    pipeline.smoke(req, local, built, under=under)


def push(s: ProjectSettings, digests_dir: str, fetch_flags: dict, options: shipping.PublishOptions, *, flavor, arch, release,
         vuln_db, registry, repository, sign_key, keyless, unsigned) -> None:
    """`invoke push`: one arch built, smoke-tested, pushed, signed and attested; a record per image, no tag."""
    req = wiring.build_request(s, flavor=flavor, arch=arch, release=release, vuln_db=vuln_db, **fetch_flags)
    dest, client = wiring.destination(s, registry, repository)
    options = dataclasses.replace(options, signer=wiring.signer(s, dest, sign_key, keyless, unsigned))
    children = shipping.push(req, Engine(), client, dest, sys.stdout, options, wiring.seed(s, req))
    for path in push_stage.write_records(cli_path(digests_dir), children):
        print(f"push: wrote {path}")


def assemble(s: ProjectSettings, digests_dir: str, options: shipping.PublishOptions, *, flavor, arch, release, registry,
             repository, sign_key, keyless, unsigned) -> None:
    """`invoke assemble`: every expected arch pushed, then each release's index written and its tags moved."""
    today = wiring.current_date()
    expected = wiring.parsed(matrix_stage.expected_targets, wiring.image_settings(s, today), flavor,
                            publishing.publish_arches(s.publish, arch), release, today)
    children = wiring.parsed(push_stage.read_records, cli_path(digests_dir))
    dest, client = wiring.destination(s, registry, repository)
    options = dataclasses.replace(options, signer=wiring.signer(s, dest, sign_key, keyless, unsigned))
    shipping.assemble(children, client, dest, expected, sys.stdout, options, today)


def matrix(s: ProjectSettings, release: str) -> None:
    """`invoke matrix`: the nightly's image jobs, one line of JSON."""
    today = wiring.current_date()
    print(matrix_stage.to_json(wiring.parsed(matrix_stage.jobs, wiring.image_settings(s, today), dict(s.ci_runners),
                                            s.ci_host, release, today)))


def test_mirror(s: ProjectSettings, arch: str, dest: str | None) -> None:
    """`invoke test-mirror`: a gosu mirror from Debian's verified packages, signed by a throwaway key."""
    root = cli_path(dest) or project_path(".cache/test-mirror")
    testmirror.make(root, wiring.fetch_options(s.gosu, source="debian", arch=arch), sys.stdout)


def test_archive(s: ProjectSettings, dest: str | None, orig_sha256: str, version: str) -> None:
    """`invoke test-archive`: a Debian-layout archive for --source rebuild, signed by a throwaway key."""
    root = cli_path(dest) or project_path(".cache/test-archive")
    made = testarchive.make(root, wiring.fetch_options(s.gosu, source="rebuild", arch="amd64"), version,
                            orig_sha256, sys.stderr)
    print(f"test-archive: use it with `invoke -f {made.config} fetch --source rebuild`")


def reproduce(s: ProjectSettings, ref: str, mirror: str | None, key: str | None, fingerprint: str | None) -> int:
    """`invoke reproduce`: each verdict printed; exit 1 unless every image is identical."""
    verdicts = wiring.reproduce(s, ref, mirror, key, fingerprint)
    print("\n".join(line for v in verdicts for line in v.lines()))
    return 0 if all(v.identical for v in verdicts) else 1


def sbom(ref: str, platform: str | None, output: str | None) -> None:
    """`invoke sbom`: the SBOM to standard output, or to a file."""
    text = wiring.show(ref, "sbom", platform)
    if output:
        cli_path(output).write_bytes(text)
    else:
        sys.stdout.write(text.decode())


def show(ref: str, kind: str, platform: str | None) -> None:
    """`invoke provenance` / `vex`: the document to standard output."""
    sys.stdout.write(wiring.show(ref, kind, platform).decode())


def verify(s: ProjectSettings, ref: str, key, identity: str | None, issuer: str | None, origin) -> int:
    """`invoke verify`: the table; exit 1 unless every check holds."""
    digest, rows = wiring.verify(s, ref, key, identity, issuer, origin)
    print("\n".join(verify_stage.table(ref, digest, rows)))
    return 0 if all(r.ok for r in rows) else 1
