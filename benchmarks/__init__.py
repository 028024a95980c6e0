"""Benchmarks, each run as a script: `.venv/bin/python benchmarks/NAME.py` (docs/development.md).

A package only so that they can share benchmarks/common.py; they never import tests/.
"""
