import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.core import arches
from builder.gosu import lock as lockfile
from builder.gosu.fetch import FetchOptions

from tests.support.fakerelease import make_release
from tests.support.gpgkit import GpgTestKey
from tests.support.httpmirror import Mirror

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BASE_GOSU_SHARED", ROOT.parent / "shared"))
# CI sets this so that a missing engine or missing shared/ fails instead of skipping.
STRICT = os.environ.get("BASE_GOSU_REQUIRE_ENGINE") == "1"
# Builds in tests do not scan gosu against the real Go vulnerability database (it changes daily, and CI may
# reach it): the tests that scan give a database they make (tests/support/vulndb.py).
os.environ.setdefault("INVOKE_VULN_DB", "")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Engine tests share one engine, one local registry and the host's qemu handlers: one worker runs them all,
    in order, while the other tests run beside them (pyproject.toml's --dist loadgroup). An engine test that
    names a group of its own keeps apart from the rest by itself (tests/publish/test_every_arch.py).

    A test that switches a qemu handler off waits until no foreign bootstrap or emulated smoke holds them
    (tests/support/binfmt.py): it goes first in its lane, while the other workers are still on the tests that
    need no emulator."""
    for item in items:
        if item.get_closest_marker("engine") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("engine"))
    items.sort(key=lambda item: item.get_closest_marker("emulation_off") is None)


def pytest_configure(config):
    """xdist passes a test's group to its scheduler inside the node id, which pytest 9.2 no longer lets it change
    (pytest-xdist issue 1386): the engine tests would be spread over both workers, against one engine."""
    grouping = config.getoption("dist", "no") == "loadgroup" and config.getoption("numprocesses", None)
    if grouping and tuple(int(p) for p in pytest.__version__.split(".")[:2]) >= (9, 2):
        raise pytest.UsageError(f"pytest {pytest.__version__} loses xdist's test groups, so engine tests would run at "
                                "once: install the pytest pyproject.toml allows (./run does), or pass -n 0")


def skip_or_fail(reason: str):
    if STRICT:
        pytest.fail(f"{reason} (BASE_GOSU_REQUIRE_ENGINE=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def alts(rig):
    """podman, rootless podman and a userns-remapped dockerd, opened on first use (tests/support/alt_engines.py)."""
    from tests.support.alt_engines import Alts
    a = Alts(rig)
    yield a
    a.close()


@pytest.fixture(scope="session")
def release_key():
    key = GpgTestKey.generate("Release Test <release@test.invalid>")
    yield key
    key.close()


@pytest.fixture(scope="session")
def attacker_key():
    key = GpgTestKey.generate("Attacker <attacker@test.invalid>")
    yield key
    key.close()


@pytest.fixture
def release(tmp_path, release_key):
    """A nine-arch release 'v9.9' signed by release_key, plus its public key file."""
    root = tmp_path / "mirror"
    digests = make_release(root, "9.9", release_key)
    key_file = release_key.export(tmp_path / "release-key.asc")
    return root, digests, key_file


@pytest.fixture
def mirror(release):
    with Mirror(release[0]) as m:
        yield m


@pytest.fixture
def options(tmp_path, release, release_key):
    """FetchOptions factory pointed at the test release and key."""
    root, digests, key_file = release

    def make(mirror: str | None = None, arch_names=None, lock=None, **kw) -> FetchOptions:
        args = dict(
            version="9.9",
            arches=tuple(arches.parse_list(arch_names)),
            mirror=mirror or str(root),
            key_file=key_file,
            fingerprint=release_key.fingerprint,
            cache_dir=tmp_path / "cache",
            lock=lock,
            retries=2,
            backoff=0.01,
            timeout=5,
        )
        args.update(kw)
        return FetchOptions(**args)
    return make


def lock_for(digests: dict[str, str], version: str = "9.9") -> lockfile.Lock:
    return lockfile.Lock(version, {a: lockfile.LockEntry(h, None, "test", "test") for a, h in digests.items()})


def cache_files(cache: Path) -> list[Path]:
    """Everything in the cache a later step could pick up (staging excluded, but must be empty)."""
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []
