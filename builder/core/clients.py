"""A run's registry clients: made once by the wiring, handed down to every stage that reads a registry."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from builder.core.registry import Registry, credentials_for


class Clients:
    """The registry clients of one run: one per host (and thread: a client's session is not shared between
    threads), each made on first use with the host's credentials (credentials_for). The wiring makes one per run
    and hands it down, so a stage reads every registry through it and builds no client of its own."""

    def __init__(self, environ: Mapping[str, str] = os.environ):
        self._environ = environ
        self._mine = threading.local()

    def _client(self, host: str, kind: str, **tries) -> Registry:
        if not hasattr(self._mine, "clients"):
            self._mine.clients = {}
        made = self._mine.clients
        if (host, kind) not in made:
            made[host, kind] = Registry(host, credentials_for(host, self._environ), **tries)
        return made[host, kind]

    def __call__(self, host: str) -> Registry:
        """The client for `host` (a callable of host, as the stages' `registry_for` is)."""
        return self._client(host, "")

    def probe(self, host: str) -> Registry:
        """A client for a registry that may not be there (a base candidate): one quick try, so no network or
        no mirror is one miss, not a retried error."""
        return self._client(host, "probe", retries=1, backoff=0.1, timeout=20)
