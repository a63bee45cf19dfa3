"""A headless Chromium for the browser tests (no tests here): open a page of a web UI as a
person would, wait until its text shows what they look for, read that text, take a screenshot.

Chromium is Debian's (`make browser`, tools/install-browser.sh). It is driven over its DevTools
protocol on a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL on fds 3 and 4), so
it needs no driver, no port and no package beyond the standard library.

    with Browser() as browser:
        page = browser.page()
        text = page.open(url, "Datasets", "shapes-v1")  # waits for both to show
        page.screenshot(path)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FLAGS", "Browser", "BrowserError", "BrowserMissing", "Page", "chromium", "is_png"]

NAMES = ("chromium", "chromium-browser")
# What works on a closed network: without the background-networking flags Chromium's own
# connections (updates, sync, field trials) are refused many at a time and slow every page.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrowserError(RuntimeError):
    """Chromium failed, or a page did not do what was asked in time."""


class BrowserMissing(BrowserError):
    """No chromium on PATH."""


def chromium() -> str:
    """The chromium executable; BrowserMissing (saying how to install it) when there is none."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissing(
        "no chromium on PATH: the browser tests need Debian's chromium; install it with "
        "`make browser` (tools/install-browser.sh, apt-get as root or with sudo)"
    )


def is_png(path: Path, min_bytes: int = 10_000) -> tuple[int, int] | None:
    """(width, height) of a PNG of at least `min_bytes` at `path`, else None."""
    data = path.read_bytes() if path.is_file() else b""
    if len(data) < min_bytes or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _flat(text: str) -> str:
    # Pages lay text out with line breaks, tabs and no-break spaces ("@\xa0champion"): a
    # looked-for text matches whatever whitespace separates its words.
    return " ".join(text.split())


class _Pipe:
    """The DevTools protocol on Chromium's pipe: calls by id, answers collected by a thread."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out = to_browser
        self._in = from_browser
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._closed = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:  # events (no id) are not needed: pages are polled
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:  # fmt: skip
        with self._cond:
            self._next += 1
            ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._out, data) :]
        except OSError as error:
            raise BrowserError(f"{method}: chromium's pipe is closed ({error})") from error
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    why = "chromium exited" if self._closed else f"no answer in {timeout:.0f}s"
                    raise BrowserError(f"{method}: {why}")
                self._cond.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
        result: dict[str, Any] = answer.get("result") or {}
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._out)
        self._reader.join(timeout=10)
        with contextlib.suppress(OSError):
            os.close(self._in)


class Page:
    """One tab with a fixed viewport."""

    def __init__(self, pipe: _Pipe, session: str) -> None:
        self._pipe = pipe
        self._session = session

    def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self._pipe.call(method, params, session=self._session, **kw)

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails'].get('text')}")
        return answer["result"].get("value")

    def text(self) -> str:
        """What the page shows as text (document.body.innerText: visible text only)."""
        return str(self.evaluate("document.body ? document.body.innerText : ''") or "")

    def open(self, url: str, *expected: str, timeout: float = 60) -> str:
        """Load `url` afresh (as a typed or clicked link: a new document, even for a hash
        route of the page already shown) and wait for every `expected` text; its text."""
        self.call("Page.navigate", {"url": "about:blank"})
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"{url}: {answer['errorText']}")
        return self.wait_for(*expected, timeout=timeout)

    def wait_for(self, *expected: str, timeout: float = 60, settle: float = 1.0) -> str:
        """The page's text once every `expected` text shows (any whitespace between its words)
        and the text stayed the same for `settle` seconds (loading is over), or at `timeout`
        whatever it shows (the caller's assertions then say what is missing)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            ready = self.evaluate("document.readyState") == "complete"
            text = self.text()
            if text != last:
                last, since = text, time.monotonic()
            shown = ready and all(_flat(e) in _flat(text) for e in expected)
            if shown and time.monotonic() - since >= settle:
                return text
            if time.monotonic() > deadline:
                return text
            time.sleep(0.25)

    def texts(self, selector: str) -> list[str]:
        """The text of each element matching `selector` (table rows: "tr, [role=row]")."""
        found = self.evaluate(
            f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.innerText)"
        )
        return [str(t) for t in found or []]

    def click_text(self, text: str, selector: str = "a, button, [role=button], [role=tab]") -> None:
        """Click the first `selector` element whose visible text is exactly `text`."""
        found = self.evaluate(
            f"""(() => {{
              const want = {json.dumps(text)};
              const hit = [...document.querySelectorAll({json.dumps(selector)})]
                .find(e => (e.innerText || '').trim() === want);
              if (!hit) return false;
              hit.scrollIntoView({{block: 'center'}});
              hit.click();
              return true;
            }})()"""
        )
        if not found:
            raise BrowserError(f"nothing to click showing {text!r}")

    def screenshot(self, path: Path) -> Path:
        """The viewport as a PNG at `path` (folders made)."""
        answer = self.call("Page.captureScreenshot", {"format": "png"}, timeout=60)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(answer["data"]))
        return path


class Browser:
    """A headless Chromium with a new empty profile, for the duration of a `with` block."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        self._profile: Path | None = None
        self.log: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: _Pipe | None = None

    def __enter__(self) -> Browser:
        executable = chromium()
        self._profile = Path(tempfile.mkdtemp(prefix="retrainer-chromium-"))
        self.log = self._profile.parent / f"{self._profile.name}.log"
        to_read, to_browser = os.pipe()  # Chromium reads its commands on fd 3
        from_browser, to_write = os.pipe()  # and writes its answers on fd 4

        def fds_3_and_4() -> None:  # in the child: above 4 first, so neither overwrites the other
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_read, to_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        argv = [
            executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={self.width},{self.height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        with self.log.open("wb") as log:
            # close_fds=False: fds 3 and 4 are made in preexec_fn, after which Popen would close
            # them; every other fd Python opens is close-on-exec anyway.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=fds_3_and_4,
                close_fds=False,
                start_new_session=True,
            )
        os.close(to_read)
        os.close(to_write)
        self._pipe = _Pipe(to_browser, from_browser)
        try:
            self._pipe.call("Browser.getVersion", timeout=60)
        except BrowserError as error:
            tail = self.log_tail()
            self.__exit__(None, None, None)
            raise BrowserError(f"chromium did not start: {error}\n{tail}") from error
        return self

    def log_tail(self, chars: int = 4000) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return self.log.read_text(errors="replace")[-chars:]

    def page(self) -> Page:
        """A new tab of `width` x `height` CSS pixels (device scale 1)."""
        assert self._pipe is not None, "use Browser in a `with` block"
        target = self._pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self._pipe, session["sessionId"])
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        proc, pipe = self._proc, self._pipe
        self._proc = self._pipe = None
        if pipe is not None:
            with contextlib.suppress(BrowserError):
                pipe.call("Browser.close", timeout=10)
        if proc is not None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its children
                proc.wait(timeout=15)
        if pipe is not None:
            pipe.close()
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
        if self.log is not None:
            self.log.unlink(missing_ok=True)
