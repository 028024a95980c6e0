"""A small Go vulnerability database in vuln.go.dev's layout, made by the tests (govulncheck reads it as -db
file:///...): plain JSON files index/db.json, index/modules.json, index/vulns.json and ID/<id>.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MODIFIED = "2026-08-21T00:00:00Z"


@dataclass(frozen=True)
class Entry:
    id: str
    module: str        # stdlib or a module path
    package: str
    symbols: tuple[str, ...]
    fixed: str         # semver without the v
    withdrawn: str = ""
    modified: str = MODIFIED

    def osv(self) -> dict:
        d = {"schema_version": "1.3.1", "id": self.id, "modified": self.modified,
             "published": "2026-01-01T00:00:00Z", "aliases": [f"CVE-2099-{self.id[-4:]}"],
             "summary": f"test entry {self.id}", "details": "made by the tests",
             "affected": [{"package": {"name": self.module, "ecosystem": "Go"},
                           "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": self.fixed}]}],
                           "ecosystem_specific": {"imports": [{"path": self.package,
                                                               "symbols": list(self.symbols)}]}}],
             "database_specific": {"url": f"https://pkg.go.dev/vuln/{self.id}"}}
        if self.withdrawn:
            d["withdrawn"] = self.withdrawn
        return d


# gosu (Debian's 1.17, Go 1.24.4) calls os/exec.LookPath; it links no net/http; 0003 is withdrawn; 0004 is
# for a module gosu does not carry.
PRESENT = Entry("GO-2099-0001", "stdlib", "os/exec", ("LookPath",), "1.99.0")
ABSENT = Entry("GO-2099-0002", "stdlib", "net/http", ("Get",), "1.99.0")
WITHDRAWN = Entry("GO-2099-0003", "stdlib", "os/exec", ("LookPath",), "1.99.0", withdrawn="2026-02-01T00:00:00Z")
OTHER = Entry("GO-2099-0004", "example.com/other", "example.com/other", ("F",), "1.0.0")
ENTRIES = (PRESENT, ABSENT, WITHDRAWN, OTHER)


def make(root: Path, entries=ENTRIES, modified: str = MODIFIED) -> Path:
    (root / "index").mkdir(parents=True, exist_ok=True)
    (root / "ID").mkdir(exist_ok=True)
    modules: dict[str, list[dict]] = {}
    for e in entries:
        (root / "ID" / f"{e.id}.json").write_text(json.dumps(e.osv()))
        modules.setdefault(e.module, []).append({"id": e.id, "modified": e.modified, "fixed": e.fixed})
    (root / "index" / "modules.json").write_text(json.dumps([{"path": m, "vulns": v} for m, v in modules.items()]))
    (root / "index" / "vulns.json").write_text(json.dumps(
        [{"id": e.id, "modified": e.modified, "aliases": [f"CVE-2099-{e.id[-4:]}"]} for e in entries]))
    (root / "index" / "db.json").write_text(json.dumps({"modified": modified}))
    return root
