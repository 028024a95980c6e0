"""The embedded default: a local Docker engine, emulators and a loopback registry, seeded with bases.

Idempotent: every step first checks whether its job is already done. Nothing
here listens on, or sends to, anything but 127.0.0.1 (the Debian mirror used
by apt and debootstrap aside).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from . import emulation, oci
from .emulation import native_arch
from .engine import Engine
from .registry import Registry, RegistryError, is_loopback

IMAGES = Path(__file__).resolve().parent.parent / "images"



class SetupError(Exception):
    pass


@dataclass(frozen=True)
class LocalSettings:
    state_dir: Path
    registry_port: int
    arches: tuple[str, ...]
    debian_mirror: str
    debian_suite: str
    alpine_dir: Path
    alpine_version: str
    minideb_seed: str  # repo:tag
    ubuntu_seed: str
    alpine_seed: str

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"


def _say(log, text: str) -> None:
    log.write(text + "\n")
    log.flush()


def apt_install(packages: list[str], log) -> list[str]:
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout.find("ok installed") < 0]
    if not missing:
        return []
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        raise SetupError(f"need {', '.join(missing)}: install them (as root on Debian, `invoke up` does it)")
    _say(log, f"up: apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return missing


def _start(cmd: list[str], pidfile: Path, logfile: Path) -> int:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc.pid


def _wait(ready, what: str, seconds: float, logfile: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    raise SetupError(f"{what} did not become ready in {seconds:.0f} s; see {logfile}")


def ensure_engine(s: LocalSettings, engine: Engine, log) -> None:
    if engine.available():
        _say(log, f"up: engine: using the running Docker engine ({engine.info().get('ServerVersion')})")
        return
    apt_install(["docker.io"], log)
    logfile = s.state_dir / "dockerd.log"
    pid = _start(["dockerd"], s.state_dir / "dockerd.pid", logfile)
    _wait(engine.available, "dockerd", 90, logfile)
    _say(log, f"up: engine: started dockerd (pid {pid}, log {logfile}); undo: invoke down")


def ensure_emulation(s: LocalSettings, log) -> None:
    enabled = emulation.ensure(s.arches, log, "up", install=lambda pkgs: apt_install(pkgs, log))
    if not enabled and emulation.foreign(s.arches):
        _say(log, f"up: emulation: qemu binfmt handlers already enabled for {', '.join(emulation.foreign(s.arches))}")


def registry_answers(addr: str) -> bool:
    try:
        return requests.get(f"http://{addr}/v2/", timeout=2).status_code in (200, 401)
    except requests.RequestException:
        return False


def registry_up(s: LocalSettings) -> bool:
    return registry_answers(s.registry)


def start_registry(state: Path, addr: str, htpasswd: Path | None = None) -> int:
    """Run Debian's docker-registry on a loopback address with its data under `state`; returns the pid.

    `htpasswd` (bcrypt entries, `htpasswd -B`) turns on basic auth, as a
    private registry would have it.
    """
    if not is_loopback(addr):
        raise SetupError(f"refusing to serve a registry on {addr}: the local registry binds loopback only")
    (state / "data").mkdir(parents=True, exist_ok=True)
    auth = f"auth: {{htpasswd: {{realm: base-gosu, path: '{htpasswd}'}}}}\n" if htpasswd else ""
    config = state / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: '{state / 'data'}'}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{addr}'}}\n" + auth
    )
    logfile = state / "registry.log"
    pid = _start(["docker-registry", "serve", str(config)], state / "registry.pid", logfile)
    _wait(lambda: registry_answers(addr), "docker-registry", 30, logfile)
    return pid


def ensure_registry(s: LocalSettings, log) -> None:
    if registry_up(s):
        _say(log, f"up: registry: already answering on {s.registry}")
        return
    apt_install(["docker-registry"], log)
    d = s.state_dir / "registry"
    pid = start_registry(d, s.registry)
    _say(log, f"up: registry: started docker-registry on {s.registry} (pid {pid}, data {d / 'data'}); "
              "undo: invoke down")


def down(s: LocalSettings, log) -> None:
    """Stop what `up` started (and only that); installed packages stay."""
    for name, pidfile in (("docker-registry", s.state_dir / "registry" / "registry.pid"),
                          ("dockerd", s.state_dir / "dockerd.pid")):
        if not pidfile.exists():
            _say(log, f"down: {name}: not started by `invoke up`, left alone")
            continue
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        pidfile.unlink()
        _say(log, f"down: {name}: stopped pid {pid}")
    _say(log, "down: packages installed by `up` stay; remove with apt-get remove docker.io docker-registry "
              "qemu-user-static binfmt-support debootstrap")


# --- seeding the local registry with multi-arch bases ---

def _recipe_digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _seeded(registry: Registry, ref: str, recipe: str) -> bool:
    repo, tag = ref.rsplit(":", 1)
    try:
        got = oci.read_index(registry, repo, tag)
    except RegistryError:
        return False
    return bool(got) and got[0].get("annotations", {}).get("org.base-gosu.seed.recipe") == recipe


def _debian_rootfs(s: LocalSettings, arch: str, log) -> Path:
    out = s.state_dir / "rootfs" / f"debian-{s.debian_suite}-{arch}.tar.gz"
    if out.exists():
        return out
    apt_install(["debootstrap"], log)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"debootstrap-{arch}-", dir=out.parent))
    try:
        _say(log, f"up: seed: debootstrap --variant=minbase {s.debian_suite} {arch} (a minute or two)")
        subprocess.run(["debootstrap", "--variant=minbase", f"--arch={arch}", s.debian_suite, str(target),
                        s.debian_mirror], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # What minideb trims too: package caches and lists are dead weight in an image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (target / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        tmp = out.with_suffix(".tmp")
        subprocess.run(["tar", "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                        "-C", str(target), "-czf", str(tmp), "."], check=True)
        os.replace(tmp, out)
    except subprocess.CalledProcessError as e:
        raise SetupError(f"debootstrap of {s.debian_suite}/{arch} failed: {(e.stderr or b'')[-400:]!r}") from None
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return out


def _alpine_rootfs(s: LocalSettings, arch: str) -> Path:
    from .arches import get
    name = f"alpine-minirootfs-{s.alpine_version}-{get(arch).alpine}.tar.gz"
    tarball = s.alpine_dir / name
    sums = s.alpine_dir / "checksums.sha512"
    if not tarball.is_file() or not sums.is_file():
        raise SetupError(f"{tarball} or {sums} is missing; the Alpine release tarballs live in ../shared/rootfs/")
    expected = next((l.split()[0] for l in sums.read_text().splitlines() if l.split()[-1:] == [name]), None)
    actual = hashlib.sha512(tarball.read_bytes()).hexdigest()
    if expected != actual:
        raise SetupError(f"{tarball}: sha512 {actual[:16]}... does not match {sums} ({(expected or 'no entry')[:16]}...); "
                         "refusing to seed from it")
    return tarball


def _build_seed(engine: Engine, dockerfile: str, context_files: dict[str, Path], tag: str, arch: str,
                build_args: dict[str, str] | None = None) -> None:
    from .arches import get
    with tempfile.TemporaryDirectory(prefix="seed-") as ctx:
        for name, src in context_files.items():
            # A rootfs tarball is tens of MB: link it when the filesystem allows.
            if _same_fs(src, ctx):
                os.link(src, Path(ctx) / name)
            else:
                shutil.copyfile(src, Path(ctx) / name)
        engine.build(Path(ctx), tag, str(get(arch).platform), dockerfile=IMAGES / "seed" / dockerfile,
                     build_args=build_args)


def _same_fs(a: Path, b: str) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def seed(s: LocalSettings, engine: Engine, log) -> None:
    registry = Registry(s.registry)
    rootfs_df = (IMAGES / "seed" / "Dockerfile.rootfs").read_text()
    ubuntu_df = (IMAGES / "seed" / "Dockerfile.ubuntu-standin").read_text()
    alpine_sums = (s.alpine_dir / "checksums.sha512").read_text() if s.alpine_dir.exists() else ""
    plans = [
        (s.minideb_seed, _recipe_digest(rootfs_df, "debian", s.debian_suite, *s.arches), "debian"),
        (s.ubuntu_seed, _recipe_digest(rootfs_df, ubuntu_df, "ubuntu", s.debian_suite, *s.arches), "ubuntu"),
        (s.alpine_seed, _recipe_digest(rootfs_df, alpine_sums, s.alpine_version, *s.arches), "alpine"),
    ]
    for ref, recipe, kind in plans:
        if _seeded(registry, ref, recipe):
            _say(log, f"up: seed: {s.registry}/{ref} already seeded for {', '.join(s.arches)}")
            continue
        start = time.monotonic()
        repo, tag = ref.rsplit(":", 1)
        children = []
        for arch in s.arches:
            local = f"base-gosu-seed/{kind}:{arch}"
            if kind == "alpine":
                _build_seed(engine, "Dockerfile.rootfs", {"rootfs.tar.gz": _alpine_rootfs(s, arch)}, local, arch)
            else:
                debian = f"base-gosu-seed/debian:{arch}"
                if engine.inspect(debian) is None or kind == "debian":
                    _build_seed(engine, "Dockerfile.rootfs", {"rootfs.tar.gz": _debian_rootfs(s, arch, log)},
                                debian, arch)
                if kind == "ubuntu":
                    _build_seed(engine, "Dockerfile.ubuntu-standin", {}, local, arch, {"BASE": debian})
                else:
                    local = debian
            children.append(oci.push_image(engine, local, registry, repo))
        tags = [tag] + ([s.alpine_version] if kind == "alpine" else [])
        oci.push_index(registry, repo, tags, children, {"org.base-gosu.seed.recipe": recipe})
        _say(log, f"up: seed: pushed {s.registry}/{repo}:{','.join(tags)} for {', '.join(s.arches)} "
                  f"({time.monotonic() - start:.0f} s)")


def up(s: LocalSettings, engine: Engine, log) -> None:
    s.state_dir.mkdir(parents=True, exist_ok=True)
    ensure_engine(s, engine, log)
    ensure_emulation(s, log)
    ensure_registry(s, log)
    seed(s, engine, log)
    _say(log, "up: ready. Undo with `invoke down` (stops what up started; seeded data stays in "
              f"{s.state_dir})")
