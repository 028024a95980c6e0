#!/usr/bin/env python3
"""Registry HTTP requests, gosu fetch/verify calls and wall time of `invoke publish`, cold and no-op; prints a table.

Only the command line is used (`./run up`, `.venv/bin/invoke publish ...` as
subprocesses); nothing of the project is imported, so the same script
measures any version of the code that keeps those commands and config keys.

Set-up, not counted:

* a fresh docker-registry (Debian's `docker-registry serve`, as the project
  runs it) on a free 127.0.0.1 port, its data in a temporary directory, and
  in front of it a counting reverse proxy written here (127.0.0.1 only). The
  proxy is made *the* local registry of every run by environment overrides:
  INVOKE_LOCAL_REGISTRY_PORT=<proxy port> (publish's default destination,
  signed with the local key pair) and INVOKE_IMAGES_BASE_MIRROR=127.0.0.1:<proxy
  port> (where bases are resolved and read). INVOKE_IMAGES_REPOSITORY names
  the engine's local images bench/base-gosu, so the engine's
  org/base-gosu:<flavor>-<arch> tags are left alone.
* `./run up` with those overrides: finds the running engine, emulation and
  "registry" (the proxy answers, so it starts none), seeds the bases into the
  fresh registry and makes the local key pair and tools if missing. It refuses
  to go on when no Docker engine answers (so `up` never starts a dockerd).
* a warm-up publish into a throwaway repository (bench/warmup): the gosu
  cache and the engine are warm afterwards. Publish mounts only from base
  repositories, so this does not change what the cold run has to send.

Measured, each once in a row, every request through the proxy counted:

* cold: publish into a repository nothing was published to (bench/cold-1).
  The image store (images.store) is a new, empty temporary directory
  (INVOKE_IMAGES_STORE) unless --cold-store warm, which reuses the store the
  warm-up filled. The gosu cache is the project's (warm after the warm-up).
* no-op-1, no-op-2: the same command again; everything is already published.

Counted per run:

* registry requests: every HTTP request the proxy forwarded while the run
  was going, by method (HEAD, GET, PUT, POST, PATCH; DELETE and anything else
  under "other"), from every client: the project's own HTTP client, cosign
  (signing and attesting), base resolution and on-demand base seeding alike.
  TLS probes (cosign tries https before plain http on a loopback registry:
  TLS handshakes on the plain-http port) are not HTTP requests; they are
  reported apart and not in the totals. The registry's own access log is
  read as a cross-check ("log agrees"): it must count the same requests.
* gosu fetch/verify calls: the per-arch report lines the fetch stage prints,
  one per arch each time it runs (`<arch> <sha256>  <path>  (gosu ...;
  fetched|cached|built; verified ...)`). A line saying "cached" is a
  verification of the cached binary and its evidence (no download), "fetched"
  a download and verification. So the number is how many times gosu was
  fetched-or-verified for an arch during the run, e.g. 2 arches x 2 fetch
  stages = 4.
* seconds: wall time of the subprocess, start to exit. A cold run's time is
  mostly the smoke checks (arm64 under qemu) and moves with the machine's
  load; the request and gosu counts do not depend on it.

Requests are also attributed to a stage: the first line the task prints after
the request finished (the task runs unbuffered; stages report when they end),
labelled by that line's leading word (seed:, assembled, sign:, ...; a gosu
report line counts as "fetch"). A heuristic, good enough to see which stage
makes most requests.

    .venv/bin/python benchmarks/registry_requests.py [--json OUT] [--compare-with BEFORE.json]
        [--flavor minideb,ubuntu,alpine] [--arch amd64,arm64] [--source debian] [--cold-store empty|warm]
        [--noop-runs 2] [--keep]

--json OUT saves the numbers; --compare-with a saved file prints after/before
ratios beside the table. Needs a running Docker engine (`./run up`) and
Debian's docker-registry (`./run up` installs it).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Not named requests.py: run as a script, this file's directory is sys.path[0], and the other
# benchmarks' `import requests` would find it instead of the library.
ROOT = Path(__file__).resolve().parent.parent
METHODS = ("GET", "HEAD", "PUT", "POST", "PATCH")
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}
GOSU_LINE = re.compile(r"^\s*(?P<arch>[a-z0-9]+)\s+(?P<sha>[0-9a-f]{64})\s+\S+\s+\((?P<what>.*)\)\s*$")
HOW = re.compile(r";\s*(cached|fetched|built)\s*;")


# ---------------------------------------------------------------- the counting proxy

class Recorder:
    """Every request the proxy forwarded: (end time, method, path, status, user agent, label)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.label = "setup"
        self.requests: list[tuple[float, str, str, int, str, str]] = []
        self.tls_probes: Counter = Counter()

    def add(self, method: str, path: str, status: int, agent: str) -> None:
        with self.lock:
            self.requests.append((time.monotonic(), method, path, status, agent, self.label))

    def probe(self) -> None:
        with self.lock:
            self.tls_probes[self.label] += 1

    def of(self, label: str) -> list[tuple[float, str, str, int, str, str]]:
        with self.lock:
            return [r for r in self.requests if r[5] == label]


def make_proxy(upstream: tuple[str, int], rec: Recorder) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 300
        upstream_conn: http.client.HTTPConnection | None = None

        def log_message(self, *args):  # quiet
            pass

        def handle(self):
            try:
                first = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return
            if first[:1] == b"\x16":  # a TLS handshake on the plain-http port: not an HTTP request
                rec.probe()
                return
            try:
                super().handle()
            finally:
                if self.upstream_conn is not None:
                    self.upstream_conn.close()

        def _body(self) -> bytes | None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = self.headers.get("Content-Length")
            return self.rfile.read(int(length)) if length is not None else None

        def _forward(self):
            method = self.command
            body = self._body()
            status = 502
            try:
                for attempt in (1, 2):  # a kept-alive upstream connection may have been closed: retry once
                    if self.upstream_conn is None:
                        self.upstream_conn = http.client.HTTPConnection(*upstream, timeout=600)
                    conn = self.upstream_conn
                    try:
                        conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
                        for k, v in self.headers.items():
                            if k.lower() not in HOP and k.lower() != "content-length":
                                conn.putheader(k, v)
                        if body is not None:
                            conn.putheader("Content-Length", str(len(body)))
                        conn.endheaders(body)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                        conn.close()
                        self.upstream_conn = None
                        if attempt == 2:
                            raise
                status = resp.status
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if method == "HEAD":
                    if resp.getheader("Content-Length") is not None:
                        self.send_header("Content-Length", resp.getheader("Content-Length"))
                elif not (resp.status in (204, 304) or 100 <= resp.status < 200):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if method != "HEAD" and data:
                    self.wfile.write(data)
            except OSError as e:
                if self.upstream_conn is not None:
                    self.upstream_conn.close()
                    self.upstream_conn = None
                msg = f"proxy: upstream failed: {e}\n".encode()
                self.send_response_only(502, "Bad Gateway")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
            finally:
                rec.add(method, self.path, status, self.headers.get("User-Agent", ""))

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_OPTIONS = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="proxy", daemon=True).start()
    return server


# ---------------------------------------------------------------- the registry behind it

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/v2/")
        ok = conn.getresponse().status in (200, 401)
        conn.close()
        return ok
    except OSError:
        return False


class Registry:
    """Debian's docker-registry on 127.0.0.1:<port>, its data and logs under `state`."""

    def __init__(self, state: Path):
        self.state, self.port = state, free_port()
        (state / "data").mkdir(parents=True)
        config = state / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: warn, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: '{state / 'data'}'}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}'}}\n")
        self.access_log = state / "access.log"
        self._out = open(self.access_log, "ab")
        self._err = open(state / "registry.log", "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"docker-registry did not start; see {state / 'registry.log'}")
            time.sleep(0.2)

    def log_size(self) -> int:
        return self.access_log.stat().st_size

    def methods_since(self, offset: int) -> Counter:
        """Requests the registry's access log records after `offset` (combined log format), by method."""
        with open(self.access_log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        return Counter(m.group(1) for m in re.finditer(r'"([A-Z]+) \S+ HTTP/[0-9.]+" \d{3} ', text))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._err.close()


# ---------------------------------------------------------------- running the task

def run_task(cmd: list[str], env: dict[str, str], out_file: Path, timeout: float) -> tuple[int, float, list]:
    """Run `cmd` in the project root, output (both streams) to `out_file`; (exit code, seconds, [(time, line)])."""
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    with open(out_file, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                lines.append((time.monotonic(), line.rstrip("\n")))
                out.write(line)
                out.flush()
            code = proc.wait()
        finally:
            timer.cancel()
    return code, time.monotonic() - start, lines


def stage_of(line: str) -> str:
    if GOSU_LINE.match(line):
        return "fetch"
    m = re.match(r"\s*([A-Za-z][\w.-]*)(:|\s|$)", line)
    return m.group(1).lower() if m else "?"


def agent_of(ua: str) -> str:
    ua = ua.lower()
    for name in ("cosign", "oras", "docker", "python-requests", "go-http-client", "containerd", "skopeo", "curl"):
        if name in ua:
            return name
    return ua.split("/")[0] or "(none)"


def endpoint_of(method: str, path: str, dest_repo: str) -> str:
    p = path.split("?")[0]
    if p.rstrip("/") == "/v2":
        return "ping /v2/"
    m = re.match(r"/v2/(.+?)/(manifests|blobs/uploads|blobs|tags/list|referrers)(/|$)", p)
    if not m:
        return "other"
    repo, kind = m.group(1), m.group(2)
    where = "dest" if repo == dest_repo else "base" if not repo.startswith("bench/") else "other repo"
    if kind == "manifests":
        ref = p.rsplit("/", 1)[-1]
        kind = "manifests by digest" if ref.startswith("sha256:") else \
            "manifests .sig/.att tag" if re.match(r"sha256-[0-9a-f]{64}\.", ref) else "manifests by tag"
    if "mount=" in path:
        kind = "blob mount"
    return f"{where} {kind}"


def summarize(label: str, reqs: list, code: int, seconds: float, lines: list, probes: int, log_methods: Counter,
              dest_repo: str) -> dict:
    methods = Counter(r[1] for r in reqs)
    gosu = [GOSU_LINE.match(text) for _, text in lines]
    gosu = [g for g in gosu if g and "verified" in g.group("what")]
    how = Counter((HOW.search(g.group("what")).group(1) if HOW.search(g.group("what")) else "?") for g in gosu)
    stage = Counter()
    times = [t for t, _ in lines]
    for t_end, *_ in reqs:
        i = bisect.bisect_left(times, t_end)
        stage[stage_of(lines[i][1]) if i < len(lines) else "(after the last line)"] += 1
    text = "\n".join(line for _, line in lines)
    return {
        "run": label,
        "exit_code": code,
        "seconds": round(seconds, 2),
        "requests": {"total": len(reqs), **{m: methods.get(m, 0) for m in METHODS},
                     "other": sum(n for m, n in methods.items() if m not in METHODS)},
        "other_methods": {m: n for m, n in methods.items() if m not in METHODS},
        "status": dict(sorted(Counter(str(r[3]) for r in reqs).items())),
        "tls_probes": probes,
        "access_log": {"total": sum(log_methods.values()), **dict(log_methods)},
        "log_agrees": sum(log_methods.values()) == len(reqs) and all(
            log_methods.get(m, 0) == n for m, n in methods.items()),
        "gosu_calls": len(gosu),
        "gosu": {"fetched": how.get("fetched", 0), "cached": how.get("cached", 0), "built": how.get("built", 0),
                 "per_arch": dict(sorted(Counter(g.group("arch") for g in gosu).items()))},
        "by_client": dict(Counter(agent_of(r[4]) for r in reqs).most_common()),
        "by_endpoint": dict(Counter(f"{r[1]} {endpoint_of(r[1], r[2], dest_repo)}" for r in reqs).most_common()),
        "by_stage": dict(stage.most_common()),
        "noop_reported": "nothing changed" in text,
        "summary_line": next((line for _, line in reversed(lines) if line.startswith("publish:")), ""),
    }


# ---------------------------------------------------------------- output

def table(results: list[dict], before: dict | None) -> str:
    head = ["run", "requests total", "GET", "HEAD", "PUT", "POST", "PATCH", "other",
            "gosu fetch/verify calls", "seconds"]
    old = {r["run"]: r for r in (before or {}).get("runs", [])}

    def cells(r: dict) -> list[str]:
        q = r["requests"]
        g = r["gosu"]
        gosu = f"{r['gosu_calls']} ({g['fetched']} fetched, {g['cached']} cached" + \
            (f", {g['built']} built" if g["built"] else "") + ")"
        return [r["run"], str(q["total"]), *(str(q[m]) for m in METHODS), str(q["other"]), gosu,
                f"{r['seconds']:.1f}"]

    rows = [cells(r) for r in results]
    if before:
        head.append("after/before (total, gosu, seconds)")
        for row, r in zip(rows, results):
            o = old.get(r["run"])
            if not o:
                row.append("(no before)")
                continue

            def ratio(new, was):
                return f"{new / was:.2f}x" if was else ("=" if new == was else f"{new} vs 0")
            row.append(f"{ratio(r['requests']['total'], o['requests']['total'])} of {o['requests']['total']}, "
                       f"{ratio(r['gosu_calls'], o['gosu_calls'])} of {o['gosu_calls']}, "
                       f"{ratio(r['seconds'], o['seconds'])} of {o['seconds']:.1f}")
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*row) for row in rows]
    return "\n".join(out)


def details(results: list[dict], before: dict | None) -> str:
    out = []
    old = {r["run"]: r for r in (before or {}).get("runs", [])}
    for r in results:
        out.append(f"\n{r['run']}: exit {r['exit_code']}; {r['summary_line'] or '(no publish: summary line)'}")
        out.append(f"  registry access log: {r['access_log']['total']} requests "
                   f"({'agrees' if r['log_agrees'] else 'DIFFERS from the proxy: ' + json.dumps(r['access_log'])}); "
                   f"status codes {r['status']}; TLS probes (not counted) {r['tls_probes']}")
        out.append(f"  gosu report lines per arch: {r['gosu']['per_arch']}" + (
            "" if r["gosu_calls"] else " (none found: has the fetch stage's report line changed? see the output)"))
        for key, title in (("by_client", "by client"), ("by_stage", "by stage (next line printed)"),
                           ("by_endpoint", "by method and endpoint")):
            items = ", ".join(f"{k} {v}" for k, v in r[key].items())
            was = old.get(r["run"], {}).get(key)
            out.append(f"  {title}: {items}" + (f"\n    before: {', '.join(f'{k} {v}' for k, v in was.items())}"
                                                 if was is not None else ""))
    return "\n".join(out)


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flavor", default="minideb,ubuntu,alpine")
    ap.add_argument("--arch", default="amd64,arm64")
    ap.add_argument("--source", default="debian", help="gosu source passed to publish (default: debian)")
    ap.add_argument("--cold-store", choices=("empty", "warm"), default="empty",
                    help="cold run's image store: a new empty one (default) or the one the warm-up filled")
    ap.add_argument("--noop-runs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one task may take")
    ap.add_argument("--json", default="", help="write the results as JSON to this file")
    ap.add_argument("--compare-with", default="", help="a JSON file an earlier run wrote: print after/before ratios")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (registry data, task output)")
    a = ap.parse_args()
    before = json.loads(Path(a.compare_with).read_text()) if a.compare_with else None

    if shutil.which("docker-registry") is None:
        raise SystemExit("docker-registry is not installed: run `./run up` first")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        raise SystemExit("no Docker engine answers: run `./run up` first (this script never starts one)")
    if not (ROOT / ".venv" / "bin" / "invoke").exists():
        subprocess.run([str(ROOT / "run"), "--list"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    invoke = str(ROOT / ".venv" / "bin" / "invoke")

    tmp = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    rec = Recorder()
    reg = Registry(tmp / "registry")
    proxy = make_proxy(("127.0.0.1", reg.port), rec)
    port = proxy.server_address[1]
    warm_store, cold_store = tmp / "store-warmup", tmp / "store-cold"
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "INVOKE_LOCAL_REGISTRY_PORT": str(port), "INVOKE_IMAGES_BASE_MIRROR": f"127.0.0.1:{port}",
           "INVOKE_IMAGES_REPOSITORY": "bench/base-gosu", "INVOKE_IMAGES_STORE": str(warm_store)}
    for k in ("INVOKE_PUBLISH_REGISTRY", "INVOKE_PUBLISH_REPOSITORY", "REGISTRY_USERNAME", "REGISTRY_PASSWORD"):
        env.pop(k, None)
    common = ["publish", "--flavor", a.flavor, "--arch", a.arch, "--source", a.source]
    print(f"registry 127.0.0.1:{reg.port} (data {tmp / 'registry'}), counting proxy 127.0.0.1:{port}", file=sys.stderr)
    results: list[dict] = []
    try:
        def step(label: str, cmd: list[str], step_env: dict[str, str], measured: bool, dest_repo: str = "") -> None:
            rec.label = label
            offset = reg.log_size()
            print(f"{label}: {' '.join(cmd[1:] if cmd[0] == invoke else cmd)}", file=sys.stderr)
            code, seconds, lines = run_task(cmd, step_env, tmp / f"{label}.out", a.timeout)
            time.sleep(0.5)  # the registry writes its access log line after the response
            rec.label = "between"
            print(f"{label}: exit {code} in {seconds:.1f} s; {len(rec.of(label))} registry requests "
                  f"(output: {tmp / (label + '.out')})", file=sys.stderr)
            if code != 0:
                tail = "\n".join(text for _, text in lines[-25:])
                raise SystemExit(f"{label} failed (exit {code}):\n{tail}")
            if label == "up" and any("started dockerd" in text for _, text in lines):
                print("warning: `up` started a Docker engine", file=sys.stderr)
            if measured:
                results.append(summarize(label, rec.of(label), code, seconds, lines, rec.tls_probes[label],
                                         reg.methods_since(offset), dest_repo))

        step("up", [str(ROOT / "run"), "up"], env, False)
        step("warm-up", [invoke, *common, "--repository", "bench/warmup"], env, False)
        measured_env = {**env, "INVOKE_IMAGES_STORE": str(cold_store if a.cold_store == "empty" else warm_store)}
        cold = [invoke, *common, "--repository", "bench/cold-1"]
        step("cold", cold, measured_env, True, "bench/cold-1")
        for i in range(1, a.noop_runs + 1):
            step(f"no-op-{i}", cold, measured_env, True, "bench/cold-1")
    finally:
        rec.label = "teardown"
        proxy.shutdown()
        proxy.server_close()
        reg.stop()
        if a.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta = {"commit": commit, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["invoke", *common, "--repository", "bench/cold-1"]),
            "cold_store": a.cold_store, "gosu_cache": "the project's gosu.cache_dir, warm after the warm-up"}
    print(f"invoke publish of {a.flavor} x {a.arch} (--source {a.source}) at {commit[:12]}; cold: a fresh "
          f"repository, {'an empty' if a.cold_store == 'empty' else 'the warm-up'} image store, warm gosu cache"
          + (f"; compared with {before['meta'].get('commit', '?')[:12]} ({a.compare_with})" if before else ""))
    print(table(results, before))
    print(details(results, before))
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "runs": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
