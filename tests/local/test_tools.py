"""cosign and oras from Debian's archive: pinned by package version and .deb sha256, checked through the chain."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import lzma
import subprocess

import pytest

from builder.config.settings import Pin, Tool, ToolSettings
from builder.local import tools
from builder.core.emulation import native_arch

from tests.support.engine import project_config
from tests.support.fakearchive import make_deb
from tests.support.gpgkit import GpgTestKey, clearsign
from tests.support.httpmirror import Mirror


@pytest.fixture(scope="module")
def key():
    k = GpgTestKey.generate("Tools Archive <tools@test.invalid>")
    yield k
    k.close()


def fake_archive(root, key, version="2.5.0-1", payload=b"#!/bin/sh\necho cosign v2.5.0\n"):
    deb = make_deb({"./usr/bin/cosign": payload})
    filename = f"pool/main/c/cosign/cosign_{version}_amd64.deb"
    (root / filename).parent.mkdir(parents=True, exist_ok=True)
    (root / filename).write_bytes(deb)
    packages = (f"Package: cosign\nVersion: {version}\nArchitecture: amd64\nFilename: {filename}\n"
                f"Size: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\n").encode()
    dists = root / "dists" / "trixie"
    (dists / "main" / "binary-amd64").mkdir(parents=True, exist_ok=True)
    (dists / "main" / "binary-amd64" / "Packages.xz").write_bytes(lzma.compress(packages))
    xz = (dists / "main" / "binary-amd64" / "Packages.xz").read_bytes()
    (dists / "Release").write_text(
        "Suite: trixie\nSHA256:\n"
        f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/binary-amd64/Packages.xz\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-amd64/Packages\n")
    clearsign(key, dists / "Release", dists / "InRelease")
    return hashlib.sha256(deb).hexdigest()


def settings_for(tmp_path, key, mirror_url, version, deb_sha):
    tool = Tool("cosign", "cosign", "/usr/bin/cosign", {"amd64": Pin(version, deb_sha)})
    return ToolSettings(tmp_path / "tools", mirror_url, "trixie",
                              ((key.export(tmp_path / "k.asc"), key.fingerprint),), {"cosign": tool},
                              timeout=5, retries=1, backoff=0.01)


def test_pinned_tool_is_installed_once_and_rechecked(tmp_path, key):
    sha = fake_archive(tmp_path / "archive", key)
    with Mirror(tmp_path / "archive") as m:
        s = settings_for(tmp_path, key, m.url, "2.5.0-1", sha)
        path = tools.ensure(s, "cosign", "amd64", io.StringIO())
        assert path.read_bytes().startswith(b"#!/bin/sh") and path.stat().st_mode & 0o777 == 0o755
        m.requests.clear()
        assert tools.ensure(s, "cosign", "amd64", io.StringIO()) == path and m.requests == []
        path.write_bytes(b"#!/bin/sh\necho owned\n")  # altered on disk: installed again from the kept .deb,
        tools.ensure(s, "cosign", "amd64", io.StringIO())  # re-checked against the pin, no download
        assert b"owned" not in path.read_bytes() and m.requests == []
        shutil.rmtree(tmp_path / "tools" / "cache")  # and without it, from the archive
        path.write_bytes(b"#!/bin/sh\necho owned\n")
        tools.ensure(s, "cosign", "amd64", io.StringIO())
        assert b"owned" not in path.read_bytes() and m.requests


def test_other_version_or_sha256_is_refused(tmp_path, key):
    sha = fake_archive(tmp_path / "archive", key, version="2.5.1-1")
    with Mirror(tmp_path / "archive") as m:
        with pytest.raises(tools.ToolError, match="carries cosign 2.5.1-1, not the pinned 2.5.0-1"):
            tools.ensure(settings_for(tmp_path, key, m.url, "2.5.0-1", sha), "cosign", "amd64", io.StringIO())
        with pytest.raises(tools.ToolError, match="but tools.cosign pins 0000"):
            tools.ensure(settings_for(tmp_path, key, m.url, "2.5.1-1", "0" * 64), "cosign", "amd64", io.StringIO())
    assert not (tmp_path / "tools" / "bin" / "cosign").exists()


def test_archive_signed_by_another_key_is_refused(tmp_path, key):
    sha = fake_archive(tmp_path / "archive", key)
    other = GpgTestKey.generate("Other <other@test.invalid>")
    try:
        s = dataclasses.replace(settings_for(tmp_path, key, str(tmp_path / "archive"), "2.5.0-1", sha),
                                archive_keys=((other.export(tmp_path / "o.asc"), other.fingerprint),))
        with pytest.raises(tools.ToolError, match="wrong key"):
            tools.ensure(s, "cosign", "amd64", io.StringIO())
    finally:
        other.close()


def test_real_cosign_and_oras_from_debians_archive(tmp_path):
    from builder import config
    s = dataclasses.replace(config.tool_settings(project_config()), dir=tmp_path / "tools")
    cosign = tools.ensure(s, "cosign", native_arch(), io.StringIO())
    # Debian's build says GitVersion devel; the package version is in the record beside it.
    assert "GoVersion:" in subprocess.run([str(cosign), "version"], capture_output=True, text=True).stdout
    assert '"version": "2.5.0-' in (cosign.parent / ".cosign.json").read_text()
    oras = tools.ensure(s, "oras", native_arch(), io.StringIO())
    assert "1.2.0" in subprocess.run([str(oras), "version"], capture_output=True, text=True).stdout
