"""A gosu mirror signed by a throwaway key, for machines that cannot reach GitHub.

Debian packages gosu for amd64 and arm64; this extracts those binaries, signs
them (and a SHA256SUMS) with a locally generated key, and writes a runtime
Invoke config that trusts exactly that key for exactly that mirror. It exists
for tests and offline demos; production stays pinned to the real key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .local import SetupError, _say, apt_install

VERSION = "1.14-debian"


@dataclass(frozen=True)
class TestMirror:
    root: Path
    version: str
    key_file: Path
    fingerprint: str
    config: Path


def _gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--yes", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], check=True, capture_output=True, text=True).stdout


def _key(home: Path) -> str:
    if not (home / "pubring.kbx").exists():
        home.mkdir(parents=True, exist_ok=True)
        home.chmod(0o700)
        _gpg(home, "--quick-gen-key", "base-gosu TEST mirror key (never trust in production) <test@invalid>",
             "ed25519", "sign", "2y")
    out = _gpg(home, "--with-colons", "--list-keys")
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def _debian_gosu(arch: str, workdir: Path, log) -> bytes:
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch != native and arch not in foreign:
        _say(log, f"test-mirror: dpkg --add-architecture {arch} && apt-get update")
        subprocess.run(["dpkg", "--add-architecture", arch], check=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    d = Path(tempfile.mkdtemp(dir=workdir))
    proc = subprocess.run(["apt-get", "download", "-qq", f"gosu:{arch}"], cwd=d, capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        proc = subprocess.run(["apt-get", "download", "-qq", f"gosu:{arch}"], cwd=d, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SetupError(f"apt-get download gosu:{arch} failed: {proc.stderr.strip()[-300:]}")
    [deb] = d.glob("*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(d / "x")], check=True)
    return (d / "x" / "usr" / "sbin" / "gosu").read_bytes()


def make(root: Path, arches: tuple[str, ...], log) -> TestMirror:
    apt_install(["gnupg"], log)
    root.mkdir(parents=True, exist_ok=True)
    fpr = _key(root / "gnupg")
    rel = root / VERSION
    rel.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        for arch in arches:
            dest = rel / f"gosu-{arch}"
            if not dest.exists():
                tmp = rel / f".gosu-{arch}.tmp"
                tmp.write_bytes(_debian_gosu(arch, work, log))
                os.replace(tmp, dest)
            _gpg(root / "gnupg", "--armor", "--output", f"{dest}.asc", "--detach-sign", str(dest))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sums = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n"
                   for f in sorted(rel.glob("gosu-*")) if not f.name.endswith(".asc"))
    (rel / "SHA256SUMS").write_text(sums)
    _gpg(root / "gnupg", "--armor", "--output", str(rel / "SHA256SUMS.asc"), "--detach-sign", str(rel / "SHA256SUMS"))
    key_file = root / "key.asc"
    key_file.write_text(_gpg(root / "gnupg", "--armor", "--export", fpr))
    config = root / "invoke.yaml"
    config.write_text(
        "# Written by `invoke test-mirror`: trust a throwaway key for this mirror only.\n"
        f"gosu:\n  version: '{VERSION}'\n  mirror: '{root}'\n  key_file: '{key_file}'\n  fingerprint: '{fpr}'\n"
    )
    _say(log, f"test-mirror: {rel} signed by test key {fpr} for {', '.join(arches)}")
    _say(log, f"test-mirror: use it with `invoke -f {config} TASK`")
    return TestMirror(root, VERSION, key_file, fpr, config)
