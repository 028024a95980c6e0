"""End of life of a base release: the date, where it came from, and what a run does about it.

Parse only: Debian's and Ubuntu's dates come from distro-info-data's CSVs
(the wiring fetches the pinned package through Debian's verified archive
chain and hands the text in); Alpine's come from configuration.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

# A release this close to its end of life gets a warning line on every build.
WARN_DAYS = 90


class EolError(ValueError):
    """An end-of-life date or table that does not parse; the message names the key."""


@dataclass(frozen=True)
class Eol:
    date: dt.date
    source: str    # where the date came from: a distro-info-data table and column, or a configuration key

    def __str__(self) -> str:
        """The label's value: `2026-04-01 (source)`."""
        return f"{self.date.isoformat()} ({self.source})"

    def days_left(self, today: dt.date) -> int:
        return (self.date - today).days

    def past(self, today: dt.date) -> bool:
        """Support ends on the date: from that day on the release gets no fixes."""
        return self.days_left(today) <= 0


@dataclass(frozen=True)
class DistroInfo:
    """distro-info-data's tables, as /usr/share/distro-info/<name>.csv holds them."""
    version: str                          # the Debian package version they came from
    tables: dict[str, str]                # name (debian, ubuntu) -> CSV text


def parse_date(text: str, key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise EolError(f"{key} is {text!r}: give the end-of-life date as YYYY-MM-DD") from None


def from_label(text: str) -> Eol | None:
    """The `org.base-gosu.base.eol` label read back ("" or absent: none known)."""
    if not text:
        return None
    date, _, rest = text.partition(" ")
    return Eol(parse_date(date, "label org.base-gosu.base.eol"), rest.strip().removeprefix("(").removesuffix(")"))


def rows(text: str, name: str) -> list[dict[str, str]]:
    """A distro-info CSV's rows; a table without its header columns is refused."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"version", "series", "eol"} <= set(reader.fieldnames):
        raise EolError(f"distro-info-data's {name}.csv has no version, series and eol columns "
                       f"(header: {reader.fieldnames}); is tools.distro_info the right package?")
    return list(reader)


def lookup(info: DistroInfo, spec: str, release: str, key: str) -> Eol | None:
    """`spec` is TABLE/COLUMN (debian/eol-lts): the release's date there; None when the table leaves it empty
    (not announced yet). A release the table does not list is an error naming `key`."""
    table, sep, column = str(spec).partition("/")
    if not sep or table not in info.tables:
        raise EolError(f"{key} is {spec!r}: give TABLE/COLUMN, TABLE one of {', '.join(sorted(info.tables))} "
                       "(e.g. debian/eol-lts)")
    found = rows(info.tables[table], table)
    if found and column not in found[0]:
        raise EolError(f"{key} is {spec!r}: {table}.csv has no column {column!r} "
                       f"(it has {', '.join(found[0])})")
    for row in found:
        # Debian's releases go by series (trixie), Ubuntu's by version (`24.04 LTS`).
        if release in (row.get("series"), (row.get("version") or "").split(" ")[0]):
            value = (row.get(column) or "").strip()
            if not value:
                return None
            return Eol(parse_date(value, f"distro-info-data {table}.csv {release} {column}"),
                       f"distro-info-data {info.version} {table}.csv {column}")
    raise EolError(f"{key}: release {release!r} is not in distro-info-data {info.version}'s {table}.csv; "
                   "check the release name, or give its date in the release's eol and eol_source")


def notice(what: str, eol: Eol | None, today: dt.date) -> str:
    """The warning a build prints for a base past or near its end of life ("" when neither)."""
    if eol is None:
        return ""
    left = eol.days_left(today)
    if left <= 0:
        return (f"warning: {what} reached its end of life on {eol.date} ({eol.source}); its images are built and "
                "tested, but publishing them beyond the local registry needs --allow-eol")
    if left <= WARN_DAYS:
        return f"warning: {what} reaches its end of life in {left} day(s), on {eol.date} ({eol.source})"
    return ""
