"""Measuring tools for the scale benchmark (test_scale_bench.py): counting proxies, raw watches,
process readings, apiserver metrics, a sampling profiler hook.

- `CountingProxy`: a process (this file run as a script) that forwards one TCP port to an
  upstream HTTP server and counts the HTTP requests it forwards, by verb and resource (the
  apiserver, TLS to the upstream with the world's admin certificate) or by method and path
  (MLflow). The operator is pointed at it, so the counts are the operator's own, whatever
  else uses the world at the same time. The counts are read from a second port
  (`snapshot()`), never through the proxied stream.
- `RawWatch`: a cluster-wide watch of one resource as plain JSON (no model classes), calling
  back with each event and when it arrived.
- `ProcStats`, `apiserver_requests`, `percentile`, `profiler_env`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3

__all__ = [
    "CountingProxy",
    "ProcStats",
    "RawWatch",
    "apiserver_requests",
    "delta",
    "percentile",
    "profiler_env",
    "proxy_kubeconfig",
]

BUFFER = 256 * 1024
_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]$")


# ---- the proxy (runs in its own process) -----------------------------------------------------


def api_key(method: str, target: str) -> tuple[str, str | None]:
    """(`verb resource[/subresource]`, `namespace/name` of a ModelLine written, else None) of
    an apiserver request, the way apiserver_request_total names verbs."""
    path, _, query = target.partition("?")
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return f"{method} discovery", None
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) != 2:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return f"{method} discovery", None
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    watching = re.search(r"(^|&)watch=(true|1)", query) is not None
    verb = {
        "GET": "get" if name else ("watch" if watching else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, method.lower())
    key = f"{verb} {resource}{'/' + sub if sub else ''}"
    written = None
    if resource == "modellines" and name and verb in ("patch", "update"):
        written = f"{sub or 'main'} {namespace}/{name}"
    return key, written


def mlflow_key(method: str, target: str) -> tuple[str, str | None]:
    return f"{method} {target.partition('?')[0]}", None


class _Parser:
    """Finds the HTTP/1.1 requests in one client's byte stream (bodies by Content-Length or
    chunked), counting each into `stats`; `pending` holds (key, start) of each request until
    the first bytes of its answer come back (clients here never pipeline)."""

    def __init__(self, stats: _Stats) -> None:
        self.stats = stats
        self.pending: collections.deque[tuple[str, float]] = collections.deque()
        self.buffer = b""
        self.skip = 0  # body bytes still to pass over
        self.chunked = False

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                self.buffer, self.skip = self.buffer[taken:], self.skip - taken
                if self.skip:
                    return
            if self.chunked:
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(self.buffer[:line_end].split(b";")[0] or b"0", 16)
                self.buffer = self.buffer[line_end + 2 :]
                if size == 0:
                    self.chunked = False
                    self.skip = 2  # the empty trailer's CRLF
                else:
                    self.skip = size + 2
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 1 << 20:  # not HTTP we understand: stop parsing
                    self.buffer = b""
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            lines = head.split(b"\r\n")
            match = _REQUEST_LINE.match(lines[0])
            if match is None:
                continue
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            key = self.stats.count(match.group(1).decode(), match.group(2).decode("latin-1"))
            self.pending.append((key, time.time()))
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                self.chunked = True
            else:
                self.skip = int(headers.get(b"content-length", b"0") or b"0")


class _Stats:
    def __init__(self, key: Callable[[str, str], tuple[str, str | None]]) -> None:
        self.key = key
        self.requests: collections.Counter[str] = collections.Counter()
        self.objects: collections.Counter[str] = collections.Counter()
        self.bytes_down = 0
        # (start, key, seconds to the first byte of the answer), the newest ones.
        self.latencies: collections.deque[tuple[float, str, float]] = collections.deque(
            maxlen=300_000
        )

    def count(self, method: str, target: str) -> str:
        key, written = self.key(method, target)
        self.requests[key] += 1
        if written:
            self.objects[written] += 1
        return key

    def answered(self, parser: _Parser) -> None:
        if parser.pending:
            key, start = parser.pending.popleft()
            self.latencies.append((start, key, time.time() - start))

    def snapshot(self, since: float = 0.0) -> dict[str, Any]:
        by_key: dict[str, list[float]] = collections.defaultdict(list)
        for start, key, seconds in list(self.latencies):
            if start >= since and not key.startswith("watch "):
                by_key[key].append(seconds)
        latency = {key: [len(v), percentile(v, 50), percentile(v, 99)] for key, v in by_key.items()}
        return {
            "requests": dict(self.requests),
            "objects": dict(self.objects),
            "bytes_down": self.bytes_down,
            "latency": latency,
        }


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    peer: asyncio.StreamWriter,
    parser: _Parser | None,
    stats: _Stats,
    answering: _Parser | None = None,
) -> None:
    """Copy `reader` to `writer` until either side ends; then close both connections (`peer`
    is the one `reader` reads from), so the opposite pump ends too. `parser` reads requests
    (client to server); `answering` is the parser whose requests this stream answers."""
    try:
        while data := await reader.read(BUFFER):
            if parser is not None:
                parser.feed(data)
            else:
                stats.bytes_down += len(data)
            if answering is not None:
                stats.answered(answering)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
        pass
    finally:
        for end in (writer, peer):
            with contextlib.suppress(Exception):
                end.close()


async def _serve(args: argparse.Namespace) -> None:
    host, _, port = args.upstream.rpartition(":")
    context = None
    if args.tls:
        ca, cert, key = args.tls
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(cert, key)
    stats = _Stats(api_key if args.kind == "apiserver" else mlflow_key)

    # asyncio keeps only weak references to the connection tasks: hold them, or one whose
    # client hung up is collected while pending ("Task was destroyed but it is pending!").
    live: set[asyncio.Task[Any]] = set()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            live.add(task)
            task.add_done_callback(live.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                host, int(port), ssl=context, server_hostname=host if context else None
            )
        except OSError:
            writer.close()
            return
        requests = _Parser(stats)
        await asyncio.gather(
            _pump(reader, up_writer, writer, requests, stats),
            _pump(up_reader, writer, up_writer, None, stats, requests),
        )

    async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            head = await reader.readuntil(b"\r\n\r\n")
            query = urllib.parse.urlsplit(head.split(b" ")[1].decode()).query
            since = float(urllib.parse.parse_qs(query).get("since", ["0"])[0])
            body = json.dumps(stats.snapshot(since)).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(client, "127.0.0.1", 0, limit=BUFFER)
    stats_server = await asyncio.start_server(report, "127.0.0.1", 0)
    ports = [s.sockets[0].getsockname()[1] for s in (proxy, stats_server)]
    print(f"PORTS {ports[0]} {ports[1]}", flush=True)
    async with proxy, stats_server:
        await asyncio.gather(proxy.serve_forever(), stats_server.serve_forever())


class CountingProxy:
    """A counting proxy process in front of `upstream` (host:port); `tls` = (ca, cert, key)
    speaks TLS with that client certificate to the upstream (the apiserver)."""

    def __init__(
        self, kind: str, upstream: str, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.kind, self.upstream, self.tls = kind, upstream, tls
        self.proc: subprocess.Popen[str] | None = None
        self.port = self.stats_port = 0

    def __enter__(self) -> CountingProxy:
        argv = [sys.executable, __file__, "proxy", self.kind, self.upstream]
        if self.tls:
            argv += ["--tls", *map(str, self.tls)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if line[:1] != ["PORTS"]:
            raise RuntimeError(f"counting proxy did not start: {line}")
        self.port, self.stats_port = int(line[1]), int(line[2])
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self, since: float = 0.0) -> dict[str, Any]:
        """Counts so far, and answer times (count, p50, p99) of requests started `since`."""
        url = f"http://127.0.0.1:{self.stats_port}/?since={since}"
        with urllib.request.urlopen(url, timeout=30) as r:
            found: dict[str, Any] = json.loads(r.read())
            return found


def proxy_kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig naming the plain-HTTP proxy (it presents the credentials upstream)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "proxy", "cluster": {"server": url}}],
        "users": [{"name": "proxy", "user": {}}],
        "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        "current-context": "proxy",
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """Counter difference, zeros left out."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


# ---- watches, process readings, metrics ----------------------------------------------------


class RawWatch:
    """Watch `path` (a cluster-wide list path) with `label_selector`; calls
    `on_event(type, object, monotonic, wall)` for each event, from its own thread."""

    def __init__(
        self,
        api_client: Any,
        path: str,
        label_selector: str,
        on_event: Callable[[str, dict[str, Any], float, float], None],
    ) -> None:
        self.api = api_client
        self.path, self.selector, self.on_event = path, label_selector, on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch {path}")
        self.errors = 0

    def _call(self, params: list[tuple[str, str]], timeout: float) -> Any:
        # The client's own connection pool (it holds the world's admin certificate).
        url = f"{self.api.configuration.host}{self.path}?{urllib.parse.urlencode(params)}"
        resp = self.api.rest_client.pool_manager.request(
            "GET",
            url,
            headers={"Accept": "application/json"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout),
        )
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: HTTP {resp.status}")
        return resp

    def _list_version(self) -> str:
        resp = self._call([("labelSelector", self.selector), ("limit", "1")], 30)
        try:
            return str(json.loads(resp.read())["metadata"]["resourceVersion"])
        finally:
            resp.release_conn()

    def _run(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        version = self._list_version()
        self._ready.set()
        while not self._stop.is_set():
            params = [
                ("watch", "true"),
                ("labelSelector", self.selector),
                ("resourceVersion", version),
                ("allowWatchBookmarks", "true"),
                ("timeoutSeconds", "30"),
            ]
            try:
                resp = self._call(params, 45)
                for line in iter_resp_lines(resp):
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            version = self._list_version()  # events in between are lost
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self.on_event(event["type"], obj, time.monotonic(), time.time())
                    if self._stop.is_set():
                        break
                resp.release_conn()
            except Exception:  # connection reset, timeouts: watch again from `version`
                self.errors += 1
                time.sleep(0.5)

    def __enter__(self) -> RawWatch:
        self._ready = threading.Event()
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"watch of {self.path} did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()


class ProcStats:
    """Readings of one process from /proc: resident memory and CPU time."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def rss_mib(self) -> float:
        return self._status("VmRSS") / 1024

    def peak_mib(self) -> float:
        return self._status("VmHWM") / 1024

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.TICK


class PeakSampler:
    """Samples a process's RSS every `interval` seconds in a thread; `peak` is the largest."""

    def __init__(self, stats: ProcStats, interval: float = 1.0) -> None:
        self.stats, self.interval = stats, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, self.stats.rss_mib())

    def __enter__(self) -> PeakSampler:
        self.peak = self.stats.rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()


_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def apiserver_requests(server: str, context: ssl.SSLContext) -> dict[str, int]:
    """apiserver_request_total summed over codes, as `verb resource[/subresource]` -> count
    (every client of the apiserver, not only the operator)."""
    with urllib.request.urlopen(f"{server}/metrics", context=context, timeout=30) as r:
        text = r.read().decode()
    found: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = _METRIC.match(line)
        if match is None:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        sub = labels.get("subresource")
        key = f"{labels.get('verb', '').lower()} {labels.get('resource', '')}"
        found[key + (f"/{sub}" if sub else "")] += int(float(match.group("value")))
    return dict(found)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


# ---- a sampling profiler for the operator process (an env hook, no operator change) --------

_SITECUSTOMIZE = """
import atexit, collections, os, sys, threading, time
_out = os.environ.get("RETRAINER_SCALE_PROFILE_OUT")
if _out:
    _self, _cum, _threads = collections.Counter(), collections.Counter(), collections.Counter()
    _samples = [0]
    _stop = threading.Event()

    def _name(frame):
        code = frame.f_code
        return f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_name}"

    def _sample():
        me = threading.get_ident()
        while not _stop.wait(0.01):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                leaf = _name(frame)
                if leaf.endswith((":wait", ":select", ":_worker", ":poll", ":sleep")):
                    continue  # idle threads
                _samples[0] += 1
                _self[leaf] += 1
                _threads[names.get(ident, "?").split("-")[0].split("_")[0]] += 1
                seen = set()
                while frame is not None:
                    key = _name(frame)
                    if key not in seen:
                        seen.add(key)
                        _cum[key] += 1
                    frame = frame.f_back

    def _memory():
        # glibc's view of the heap (in use vs kept free in its arenas), Python's blocks and
        # the most numerous objects: what the resident memory is made of.
        lines = []
        try:
            import ctypes

            class _Info(ctypes.Structure):
                _fields_ = [(n, ctypes.c_size_t) for n in (
                    "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                    "uordblks", "fordblks", "keepcost")]

            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _Info
            info = libc.mallinfo2()
            mib = 1 << 20
            lines.append(
                f"malloc: arenas {info.arena / mib:.0f} MiB, "
                f"mmapped {info.hblkhd / mib:.0f} MiB, in use {info.uordblks / mib:.0f} MiB, "
                f"free in arenas {info.fordblks / mib:.0f} MiB"
            )
        except Exception as error:
            lines.append(f"malloc: unknown ({error!r})")
        import gc
        sys._debugmallocstats()  # pymalloc's arenas, to stderr (the operator's log)
        lines.append(f"python allocated blocks: {sys.getallocatedblocks()}")
        kinds = collections.Counter(type(o).__name__ for o in gc.get_objects())
        lines.append("objects: " + ", ".join(f"{k}={v}" for k, v in kinds.most_common(12)))
        return "\\n".join(lines) + "\\n\\n"

    def _dump():
        _stop.set()
        memory = _memory()
        with open(_out, "w") as f:
            f.write(memory)
            f.write(f"busy samples (10 ms): {_samples[0]}\\n\\nby thread group:\\n")
            for k, v in _threads.most_common(15):
                f.write(f"{v:8d}  {k}\\n")
            f.write("\\nself:\\n")
            for k, v in _self.most_common(40):
                f.write(f"{v:8d}  {k}\\n")
            f.write("\\ncumulative:\\n")
            for k, v in _cum.most_common(80):
                f.write(f"{v:8d}  {k}\\n")

    def _live(signum, frame):
        # SIGUSR1: what the memory is made of now, with the objects' own sizes by type.
        import gc
        sizes, counts = collections.Counter(), collections.Counter()
        for o in gc.get_objects():
            kind = type(o).__name__
            counts[kind] += 1
            try:
                sizes[kind] += sys.getsizeof(o)
            except Exception:
                pass
        with open(_out + ".live", "w") as f:
            f.write(_memory())
            f.write("by own size (MiB, count):\\n")
            for k, v in sizes.most_common(25):
                f.write(f"  {v / (1 << 20):7.1f}  {counts[k]:8d}  {k}\\n")

    import signal
    signal.signal(signal.SIGUSR1, _live)
    threading.Thread(target=_sample, daemon=True, name="bench-profiler").start()
    atexit.register(_dump)

_traced = os.environ.get("RETRAINER_SCALE_TRACEMALLOC_OUT")
if _traced:
    # Where the operator's Python memory is at its highest: a snapshot every 20 s, the one
    # holding the most kept, its biggest allocation sites (by traceback) written at exit.
    import tracemalloc

    tracemalloc.start(12)
    _kept = [0, None]

    def _watch():
        while True:
            time.sleep(20)
            current = tracemalloc.get_traced_memory()[0]
            if current > _kept[0]:
                _kept[0], _kept[1] = current, tracemalloc.take_snapshot()
                _write()  # now: a stop that outlasts its grace period skips atexit

    def _write():
        snapshot = _kept[1] or tracemalloc.take_snapshot()
        with open(_traced, "w") as f:
            f.write(f"peak traced {_kept[0] / (1 << 20):.0f} MiB\\n")
            for stat in snapshot.statistics("traceback")[:25]:
                f.write(f"\\n{stat.size / (1 << 20):8.1f} MiB in {stat.count} blocks\\n")
                for frame in stat.traceback.format(limit=12):
                    f.write(f"    {frame}\\n")

    threading.Thread(target=_watch, daemon=True, name="bench-tracemalloc").start()
"""


def profiler_env(folder: Path, out: Path, memory: bool = False) -> dict[str, str]:
    """Environment that makes a Python process sample its threads' stacks every 10 ms and
    write the busiest functions to `out` when it exits (a sitecustomize on PYTHONPATH); with
    `memory`, instead trace its allocations and write where most memory was held at the
    highest point to `out`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    variable = "RETRAINER_SCALE_TRACEMALLOC_OUT" if memory else "RETRAINER_SCALE_PROFILE_OUT"
    return {"PYTHONPATH": path, variable: str(out)}


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("kind", choices=("apiserver", "mlflow"))
    proxy.add_argument("upstream", help="host:port")
    proxy.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"))
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
