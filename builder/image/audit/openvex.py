"""The OpenVEX (v0.2.0) document of one image: what the Go vulnerability database says about its gosu, and
whether each entry applies.

One statement per entry the database lists for gosu's Go release or modules
at the versions the binary carries: `affected` (with what to do) when
govulncheck finds a vulnerable function in the binary, else `not_affected`
with `vulnerable_code_not_present`. Where the project's reviewed assessments
(vuln-assessments.yaml) cover the binary and a present finding, the statement
takes the review's status, justification and words, and says who reviewed it
and when. The product is the image by its
manifest digest, the subcomponents gosu and Go's standard library by the
package URLs the SBOM gives them, so Trivy (`--vex`) and Grype (`--vex`)
match the statements to what they report. Nothing is said about an entry the
database does not list or has withdrawn.

Deterministic: the timestamp is the newest modification among those entries
(or the database's own), statements are sorted, and the document's @id is
derived from its content.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

from builder.image.audit.assessments import Assessment
from builder.image.audit.sbom import go_semver
from builder.image.audit.vulns import Scan, Vuln

MEDIA_TYPE = "application/openvex+json"
CONTEXT = "https://openvex.dev/ns/v0.2.0"
PREDICATE_TYPE = "https://openvex.dev/ns"  # what `cosign attest --type openvex` writes
NAMESPACE = uuid.UUID("8d0c2f3e-6c55-4a4e-9a55-3c2b1f0f7a11")  # this project's; fixed so @ids are stable


def image_purl(repository: str, digest: str, arch: str = "") -> str:
    """pkg:oci/<name>@<digest>?repository_url=<registry>/<repository> (the form Trivy and Grype give images)."""
    name = repository.rsplit("/", 1)[-1]
    qualifiers = [f"arch={arch}"] if arch else []
    qualifiers.append(f"repository_url={quote(repository, safe='/:')}")
    return f"pkg:oci/{name}@{quote(digest, safe='')}?{'&'.join(qualifiers)}"


def gosu_purl(module: str, module_version: str, version: str) -> str:
    v = module_version if module_version and module_version != "(devel)" else go_semver(version)
    return f"pkg:golang/{module or 'github.com/tianon/gosu'}@{v}"


def stdlib_purl(go_version: str) -> str:
    return f"pkg:golang/stdlib@v{go_version.removeprefix('go')}"


def _component(v: Vuln, gosu: str, stdlib: str) -> str:
    if v.module == "stdlib":
        return stdlib
    if v.module == gosu.removeprefix("pkg:golang/").split("@")[0]:
        return gosu
    return f"pkg:golang/{v.module}@{v.version}"


def _reviewed(v: Vuln, review: Assessment) -> dict:
    """A present finding as a person judged it: the status and words are theirs, the evidence the scan's."""
    notes = (f"Reviewed by {review.reviewed_by} on {review.reviewed_on} (the project's reviewed assessments, "
             f"vuln-assessments.yaml); govulncheck finds {', '.join(v.symbols)} present in the binary.")
    if review.status == "not_affected":
        return {"status": "not_affected", "justification": review.justification,
                "impact_statement": review.impact, "status_notes": notes}
    fix = f"upgrade {v.module} to {v.fixed}" if v.fixed else "no fixed version is known"
    return {"status": "affected", "status_notes": f"{notes} {review.impact}",
            "action_statement": review.action or (
                f"Build with --source rebuild (gosu compiled here with the newest Go toolchain Debian carries), or "
                f"use a gosu release built with a fixed Go ({fix}).")}


def _statement(v: Vuln, product: str, gosu: str, stdlib: str, symbols: bool = True,
               review: Assessment | None = None) -> dict:
    # The component the entry is about (stdlib, a module, gosu itself): a scanner matches it to what it reports.
    sub = [_component(v, gosu, stdlib)]
    out = {"vulnerability": {"@id": f"https://pkg.go.dev/vuln/{v.id}", "name": v.id,
                             **({"aliases": list(v.aliases)} if v.aliases else {})},
           "products": [{"@id": product, "subcomponents": [{"@id": s} for s in sub]}]}
    if not symbols:
        out.update(status="under_investigation", status_notes=(
            f"gosu carries {v.module} {v.version}, which the database lists as affected; the binary has no function "
            "table govulncheck can read, so whether the vulnerable code is present is not known. --source rebuild "
            "gives a binary that can be checked."))
    elif v.level == "symbol" and review:
        out.update(_reviewed(v, review))
    elif v.level == "symbol":
        fix = f"upgrade {v.module} to {v.fixed}" if v.fixed else "no fixed version is known"
        out.update(status="affected", action_statement=(
            f"gosu contains {', '.join(v.symbols)}. Build with --source rebuild (gosu compiled here with the newest "
            f"Go toolchain Debian carries), or use a gosu release built with a fixed Go ({fix})."))
    else:
        where = (f"packages {', '.join(v.packages)} are linked in but" if v.level == "package"
                 else "none of its vulnerable packages is linked in, and")
        out.update(status="not_affected", justification="vulnerable_code_not_present",
                   impact_statement=f"gosu carries {v.module} {v.version}, which the database lists as affected; "
                                    f"{where} govulncheck finds none of its vulnerable functions in the binary.")
    return out


def _where(db: str) -> str:
    # A local copy's path says nothing to a reader elsewhere, and would make the bytes depend on it.
    return db if db.startswith(("https://", "http://")) else "a local copy in vuln.go.dev's layout"


def document(scan: Scan, repository: str, digest: str, arch: str, module: str, module_version: str,
             version: str, go_version: str, author: str) -> bytes:
    """The image's OpenVEX document as canonical JSON bytes; `repository` is <registry>/<repository>."""
    product = image_purl(repository, digest, arch)
    gosu, stdlib = gosu_purl(module, module_version, version), stdlib_purl(go_version)
    statements = [_statement(v, product, gosu, stdlib, scan.symbols, scan.review_of(v.id))
                  for v in sorted(scan.vulns, key=lambda v: v.id)]
    when = scan.entries_modified or scan.db_modified
    body = {"@context": CONTEXT, "author": author, "timestamp": when, "version": 1,
            "tooling": f"base-gosu: govulncheck {scan.scanner} (binary mode), database {_where(scan.db)} "
                       f"modified {scan.db_modified}",
            "statements": statements}
    seed = json.dumps([body, digest], sort_keys=True)
    doc = {"@id": f"urn:uuid:{uuid.uuid5(NAMESPACE, seed)}", **body}
    return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
