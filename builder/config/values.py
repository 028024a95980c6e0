"""Values every section parses alike: yes/no flags, numbers of things done at once."""

from __future__ import annotations


def jobs(value, key: str, what: str) -> int:
    """A number of things done at once, 1 or more (1: one after another)."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{key} is {text!r}: give a whole number of {what} to run at once, 1 or more")
    return int(text)


def flag(value, key: str) -> bool:
    """A yes/no setting, strictly: a typo must not silently pick a side."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{key} is {value!r}: use true or false")
