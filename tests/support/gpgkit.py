"""Real gpg keys and signatures made by the tests themselves (no fixtures from outside)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def _gpg(home: Path, *args: str, faked_time: str | None = None) -> str:
    cmd = ["gpg", "--homedir", str(home), "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    if faked_time:
        cmd += ["--faked-system-time", faked_time]
    return subprocess.run(cmd + list(args), check=True, capture_output=True, text=True).stdout


@dataclass
class GpgTestKey:
    home: Path
    fingerprint: str

    @classmethod
    def generate(cls, uid: str, expire: str = "1y", faked_time: str | None = None) -> "GpgTestKey":
        # Short path: gpg-agent's socket must fit in sun_path.
        home = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))
        home.chmod(0o700)
        _gpg(home, "--quick-gen-key", uid, "ed25519", "sign", expire, faked_time=faked_time)
        out = _gpg(home, "--with-colons", "--list-keys")
        fpr = next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))
        return cls(home, fpr)

    def add_signing_subkey(self) -> str:
        _gpg(self.home, "--quick-add-key", self.fingerprint, "ed25519", "sign", "1y")
        out = _gpg(self.home, "--with-colons", "--list-keys")
        return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")][-1]

    def export(self, dest: Path, armor: bool = True) -> Path:
        dest.write_bytes(subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch"] + (["--armor"] if armor else [])
            + ["--export", self.fingerprint], check=True, capture_output=True).stdout)
        return dest

    def sign(self, path: Path, armor: bool = True, out: Path | None = None, faked_time: str | None = None,
             signer: str | None = None) -> Path:
        out = out or path.with_name(path.name + ".asc")
        extra = ["--local-user", (signer or self.fingerprint) + "!"]
        _gpg(self.home, *extra, *(["--armor"] if armor else []), "--output", str(out), "--detach-sign", str(path),
             faked_time=faked_time)
        return out

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False,
                       capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def clearsign(key: GpgTestKey, path: Path, out: Path) -> Path:
    """An InRelease-style clearsigned copy of `path`, as Debian's archive publishes it."""
    _gpg(key.home, "--local-user", key.fingerprint + "!", "--digest-algo", "SHA256", "--output", str(out),
         "--clearsign", str(path))
    return out
