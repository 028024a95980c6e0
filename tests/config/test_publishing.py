"""Where to publish parses first: a malformed registry is named before anything else is asked of the user."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from builder import wiring
from builder.config import publishing
from tests.conftest import ROOT


@pytest.mark.parametrize("registry, ok", [
    ("ghcr.io", True), ("127.0.0.1:5000", True), ("[::1]:5000", True), ("registry.example:443", True),
    ("localhost", True), ("::bad", False), ("host:99999", False), ("host:0", False), ("a_b.com", False),
    ("https://ghcr.io", False), ("ghcr.io/org", False), ("ghcr.io ", True), ("-ghcr.io", False), ("", True),
], ids=lambda v: repr(v))
def test_a_registry_is_host_and_optional_port(registry, ok):
    try:
        dest = publishing.destination(wiring.settings(wiring.project_config()).publish, registry or None)[0]
    except ValueError as e:
        assert not ok and str(e).startswith(f"registry {registry.strip()!r}: give HOST[:PORT]"), e
    else:
        assert ok and dest.registry == (registry.strip() or "127.0.0.1:5000")


def test_publish_names_a_malformed_registry_before_signing_advice():
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    done = subprocess.run([sys.executable, "-m", "invoke", "publish", "--registry", "::bad", "--dry-run"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == ("publish: error: registry '::bad': give HOST[:PORT] "
                                                            "without scheme or path, e.g. ghcr.io or 127.0.0.1:5000")
