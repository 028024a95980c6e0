"""`invoke releases`: what a downstream team can pin, one row per configured release of each flavor."""

from __future__ import annotations

import datetime as dt

from builder.config.settings import Flavor, ImageSettings

HEADER = ("flavor", "release", "default", "end of life", "days left", "arches", "seedable here", "EOL date from")


def row(f: Flavor, today: dt.date, seedable: str) -> tuple[str, ...]:
    if f.eol is None:
        date, left, source = "unknown", "-", "not announced"
    else:
        days = f.eol.days_left(today)
        date, source = f.eol.date.isoformat(), f.eol.source
        left = f"{days}" if days > 0 else f"EOL ({-days} ago)" if days < 0 else "EOL (today)"
    return (f.name, f.release, "yes" if f.default else "", date, left, ",".join(f.arches), seedable, source)


def lines(settings: ImageSettings, today: dt.date, seedable) -> list[str]:
    """The table as Markdown (the README's tag table has the same columns); `seedable(Flavor)` says whether
    and from what this machine can seed the release's base."""
    rows = [HEADER] + [row(f, today, seedable(f)) for rels in settings.releases.values() for f in rels.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    out = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return [f"releases on {today.isoformat()} (a release past its end of life is refused beyond the local "
            "registry without --allow-eol; `--release all` takes every release not past it):", *out]
