"""A TCP proxy on loopback that adds a fixed delay to each request: a far object store, near.

On loopback MinIO answers in a fraction of a millisecond, so a fetcher that asks for one
object at a time looks as fast as a parallel one. In a cluster each request costs a round
trip and more; this proxy puts that cost back: every burst of bytes the client sends (an HTTP
request: its line, headers and, for a small body, the body) waits `delay` seconds before it
is forwarded. Answers flow back undelayed. Used by the dataset benchmark (tests/bench/).

    with serving("127.0.0.1", 9000, delay=0.02) as port:
        endpoint = f"http://127.0.0.1:{port}"

`serving` runs the proxy in a process of its own (`python -m retrainer_world.latency_proxy`),
so it never competes for the GIL with the client it delays; `LatencyProxy` is the same proxy
in a thread of the calling process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType

__all__ = ["LatencyProxy", "main", "serving"]

BUFFER = 256 * 1024


class LatencyProxy:
    """Forward 127.0.0.1:<port> to `host:port`, delaying each client-to-server burst."""

    def __init__(self, host: str, port: int, delay: float = 0.02) -> None:
        self.target = (host, port)
        self.delay = delay
        self.port = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        try:
            while data := await reader.read(BUFFER):
                if delayed:
                    self.requests += 1
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, delayed=True),
            self._pump(up_reader, writer, delayed=False),
        )

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> LatencyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def serving(host: str, port: int, delay: float = 0.02) -> Iterator[int]:
    """Run the proxy in a child process; yields its port, stops it on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "retrainer_world.latency_proxy", f"{host}:{port}", str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"the latency proxy did not start: {line!r}")
        yield int(line)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="retrainer_world.latency_proxy", description=__doc__)
    parser.add_argument("target", help="host:port to forward to")
    parser.add_argument("delay", type=float, nargs="?", default=0.02, help="seconds per request")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    proxy = LatencyProxy(host, int(port), args.delay).start()
    print(proxy.port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
