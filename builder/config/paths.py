"""Where configured and typed paths point: the project's own files, or where the user stands."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def project_path(value: str | Path) -> Path:
    """Config paths are relative to the project; absolute ones stay as given."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else ROOT / p


def cli_path(value: str | None) -> Path | None:
    """Paths typed on the command line are relative to where the user stands."""
    return Path(value).expanduser().resolve() if value else None
