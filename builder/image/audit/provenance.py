"""The provenance of one image: an in-toto Statement v1 with a SLSA provenance v1 predicate.

The subject is the image manifest's digest. The build definition names every
input (the base by digest; gosu's source, version, sha256 and the key or
archive chain that vouched for it; the project revision; the settings), which
are also what the image's labels name, so `invoke reproduce` can rebuild it.
The builder says how it ran: the CI run's URL when one is set.
"""

from __future__ import annotations

import json
import os

from builder.image.audit.facts import LABEL, Facts

MEDIA_TYPE = "application/vnd.in-toto+json"
STATEMENT = "https://in-toto.io/Statement/v1"
PREDICATE = "https://slsa.dev/provenance/v1"


def ci_run_url(environ=os.environ) -> str:
    """The CI run that built the image, where the CI says so (GitHub Actions' variables)."""
    server, repo, run = (environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server and repo and run):
        return ""
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "")
    return f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def gosu_dependency(f: Facts) -> dict:
    g = f.gosu
    vouched = {"github": f"OpenPGP signature by key {g.trust_root}",
               "debian": f"Debian archive chain (InRelease signed by {g.trust_root}, Packages, .deb)",
               "rebuild": f"compiled here from inputs checked through Debian's archive chain (InRelease signed by "
                          f"{g.trust_root})"}.get(g.kind, g.trust_root)
    return {
        "name": "gosu", "uri": g.source, "digest": {"sha256": g.sha256},
        "annotations": {"source": g.kind, "version": g.version, "trustRoot": g.trust_root,
                        "trustRootPinned": g.pinned, "vouchedBy": vouched, "goVersion": f.go.go_version if f.go else "",
                        **{k: v for k, v in g.details}},
    }


def statement(f: Facts, repository: str, run_url: str = "") -> dict:
    base_repo = f.base_name.rsplit(":", 1)[0] if ":" in f.base_name.rsplit("/", 1)[-1] else f.base_name
    deps = [
        {"name": "base", "uri": f"oci://{base_repo}@{f.base_platform_digest}",
         "digest": {"sha256": _hex(f.base_platform_digest)},
         "annotations": {"index": f.base_digest, "standinFor": f.standin_for}},
        gosu_dependency(f),
        {"name": "project", "uri": f"git+{f.source_url}@{f.revision}", "digest": {"gitCommit": f.revision}},
        *({"name": "entrypoint" if source == "images/entrypoint.sh" else f"entrypoint/{source.rsplit('/', 1)[1]}",
           "uri": f"git+{f.source_url}@{f.revision}#{source}", "digest": {"sha256": sha}}
          for _, source, sha in f.entrypoint),
    ]
    if f.nss_wrapper:
        n = f.nss_wrapper
        deps.append({"name": "nss_wrapper", "uri": n.purl, "digest": {"sha256": n.sha256},
                     "annotations": {"debSha256": n.deb_sha256, "suite": n.suite,
                                     "vouchedBy": "Debian archive chain (InRelease signed by a pinned archive key, "
                                                  "Packages, .deb pinned in images.nss_wrapper)"}})
    return {
        "_type": STATEMENT,
        "subject": [{"name": repository, "digest": {"sha256": _hex(f.manifest_digest)}}],
        "predicateType": PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": f"{f.source_url}/build/assemble/v1",
                "externalParameters": {"flavor": f.flavor, "platform": f.platform, "title": f.title,
                                       "gosuSource": f.gosu.kind, "gosuVersion": f.gosu.version},
                "internalParameters": {"ops": f.labels.get(f"{LABEL}.ops", ""),
                                       "sourceDateEpoch": f.epoch,
                                       "inputs": f.labels.get(f"{LABEL}.inputs", ""),
                                       "trial": f.trial,
                                       **({"vulnScan": f"not scanned: {f.unscanned}"} if f.unscanned else {})},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": run_url or f"{f.source_url}#local",
                            "version": {"base-gosu": f.revision}},
                "metadata": {"invocationId": run_url} if run_url else {},
            },
        },
    }


def document(f: Facts, repository: str, run_url: str = "") -> bytes:
    return json.dumps(statement(f, repository, run_url), indent=2, sort_keys=True).encode() + b"\n"
