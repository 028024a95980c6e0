"""Smoke checks beyond the general list, and what every check is written with (kit)."""
