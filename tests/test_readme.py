"""The console examples of README.md and docs/*.md, run as written and compared with what they say they print.

A block marked `<!-- readme-test: KIND -->` is a transcript: `$ ` lines are
commands, the lines under one are output it must print (a line ending in
` ...` matches by its start). Every `entrypoint:` line a command prints must
be in its transcript, and a command exits non-zero exactly when its transcript
shows an error. `docker` blocks run under docker and under rootful podman
(`podman` for `docker`); `podman-rootless` blocks as the rootless user;
`docker-userns` blocks against the userns-remapped dockerd. The blocks of one
kind run in one shell and one directory, in the order of `docs()` and of each file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.engine import rig  # noqa: F401 - fixture

BLOCK = re.compile(r"<!-- readme-test: (\S+) -->\n```console\n(.*?)```", re.S)
MARKER = re.compile(r"^<!-- readme-test:", re.M)
IMAGE = re.compile(r"org/base-gosu:(minideb|ubuntu|alpine)\b")


def docs() -> list[Path]:
    """The README, then every page under docs/ by name."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Command:
    line: str
    want: list[str]


def transcripts(kind: str) -> list[Command]:
    commands: list[Command] = []
    for block_kind, body in (b for doc in docs() for b in BLOCK.findall(doc.read_text())):
        if block_kind != kind:
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:], []))
            elif line.strip():
                commands[-1].want.append(line)
    return commands


def test_readme_has_the_transcripts():
    for kind in ("docker", "podman-rootless", "docker-userns"):
        assert len(transcripts(kind)) >= 3, kind
    blocks = {doc.name: BLOCK.findall(doc.read_text()) for doc in docs()}
    for doc in docs():  # a marker that does not open a console block would be skipped silently
        assert len(MARKER.findall(doc.read_text())) == len(blocks[doc.name]), doc
    assert sum(map(len, blocks.values())) >= 9, blocks  # as many blocks as when they all were in the README
    assert sum(len(transcripts(k)) for k in ("docker", "podman-rootless", "docker-userns")) >= 33


def names_in(commands: list[Command]) -> list[str]:
    """Containers and volumes the transcript creates: renamed per run, so runs never collide."""
    return [m for c in commands for m in re.findall(r"(?:--name|volume create) (\S+)", c.line)]


def rename(text: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        text = re.sub(rf"(?<![/\w-]){re.escape(old)}(?![/\w-])", new, text)
    return text


def matches(want: str, got: list[str]) -> bool:
    if want.endswith(" ..."):
        return any(g.startswith(want[:-4]) for g in got)
    return want in got


def run_transcript(alts, kind: str, runner: str, tmp: Path) -> None:
    engine = alts.engine(runner)
    commands = transcripts(kind)
    tags = {f: alts.subject(runner, f)[1].image for f in set(IMAGE.findall("".join(c.line for c in commands)))}
    names = {n: f"{n}-{uuid.uuid4().hex[:8]}" for n in names_in(commands)}
    script = ["exec 2>&1"]
    for i, c in enumerate(commands):
        line = rename(IMAGE.sub(lambda m: tags[m.group(1)], c.line), names)
        if runner == "podman":
            line = re.sub(r"^docker ", "podman ", line)
        script += [f"echo '@@CMD {i}'", line, f"echo \"@@RC {i} $?\""]
    (tmp / "transcript.sh").write_text("\n".join(script) + "\n")
    if engine.wrapper:
        shutil.chown(tmp, engine.idmap[0][1], engine.idmap[0][1])
    try:
        proc = subprocess.run([*engine.wrapper, "bash", str(tmp / "transcript.sh")], cwd=tmp, capture_output=True,
                              text=True, timeout=900, env={**os.environ, **engine.env})
    finally:
        binary = "podman" if runner.startswith("podman") else "docker"
        for n in names.values():
            subprocess.run([*engine.wrapper, binary, "rm", "-f", "-v", n], capture_output=True,
                           env={**os.environ, **engine.env})
            subprocess.run([*engine.wrapper, binary, "volume", "rm", "-f", n], capture_output=True,
                           env={**os.environ, **engine.env})
    sections = re.split(r"^@@CMD (\d+)\n", proc.stdout, flags=re.M)[1:]
    seen = {int(sections[i]): sections[i + 1] for i in range(0, len(sections), 2)}
    for i, c in enumerate(commands):
        out = seen.get(i, "")
        rc = re.search(rf"^@@RC {i} (\d+)$", out, re.M)
        got = [l.rstrip() for l in out.splitlines() if not l.startswith("@@RC")]
        want = [rename(w, names) for w in c.want]
        failing = any(w.startswith("entrypoint: error") or "Permission denied" in w for w in want)
        where = f"{runner}: `{c.line}` printed {got!r}"
        assert rc, f"{where}; the transcript stopped here (stdout {proc.stdout[-500:]!r})"
        assert (rc.group(1) != "0") == failing, f"{where}, exit {rc.group(1)}"
        for w in want:
            assert matches(w, got), f"{where}; want {w!r}"
        for g in got:
            if g.startswith("entrypoint:"):
                assert any(matches(w, [g]) for w in want), f"{where}; unexpected {g!r}"


@pytest.mark.engine
@pytest.mark.parametrize("kind,runner", [("docker", "docker"), ("docker", "podman"),
                                         ("podman-rootless", "podman-rootless"), ("docker-userns", "docker-userns")])
def test_readme_transcripts(alts, kind, runner):
    tmp = Path(tempfile.mkdtemp(prefix="readme-"))
    try:
        tmp.chmod(0o755)
        run_transcript(alts, kind, runner, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
