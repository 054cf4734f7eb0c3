"""The HTTP server's own thread and event loop, beside the recorder.

Recording must never wait for HTTP (issue: "the server runs its own event loop
in its own thread"), so ``WebServer`` starts an asyncio loop in a daemon
thread and serves an aiohttp application there; the recorder's threads only
ever hand it frames through ``moonfire.ingest.live``, which never blocks them.
``start`` returns once the socket is bound (or raises the bind error in the
caller's thread, naming the address), ``stop`` closes it and joins the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from aiohttp import web

from moonfire.errors import MoonfireError

log = logging.getLogger(__name__)

#: How long ``stop`` waits for in-flight requests before closing their connections.
SHUTDOWN_TIMEOUT_SEC = 5.0


class ListenError(MoonfireError):
    """The HTTP address can't be listened on (in use, not local, bad syntax)."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as given to ``moonfire run --listen``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"--listen wants HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


class WebServer:
    """An aiohttp application served from its own thread; see the module docstring."""

    def __init__(self, make_app: Callable[[], web.Application], host: str, port: int) -> None:
        self._make_app = make_app
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stop_requested: asyncio.Event | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Bind and start serving; raises ``ListenError`` if the address can't be used."""
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise ListenError(f"the web server did not start within {timeout:g} s")
        if self._start_error is not None:
            raise ListenError(
                f"can't listen on {self.host}:{self.port}: {self._start_error}"
            ) from self._start_error

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_SEC + 5) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        if loop.is_running() and self._stop_requested is not None:
            loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the web server did not stop within %g s", timeout)

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the server's loop (thread-safe; for hooks that must touch it)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to start() or logged
            if not self._started.is_set():
                self._start_error = e
                self._started.set()
            else:
                log.exception("the web server failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        runner = web.AppRunner(
            self._make_app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SEC
        )
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
            if self.port == 0:  # the tests' "any free port": say which one was taken
                server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor
                sockets = getattr(server, "sockets", None) or []
                if sockets:
                    self.port = int(sockets[0].getsockname()[1])
            self._stop_requested = asyncio.Event()
            log.info("serving the API and web UI on %s", self.url)
            self._started.set()
            await self._stop_requested.wait()
        finally:
            await runner.cleanup()
