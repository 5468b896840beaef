"""Helpers for testing the framework and plugins: a loopback file server and runners.

A plugin's test can be a few lines::

    from .testing import FileServer, run_pipeline

    def test_my_processor():
        with FileServer() as server:
            url = server.add("/a.txt", b"hello")
            outcome = run_pipeline([{"url": url}], processor=MyProcessor)
        assert outcome.exit_code == 0
        assert outcome.results == [...]

Everything here listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .base_post_processor import BasePostProcessor
from .file_data import FileData
from .plugins import PipelinePluginManager, PluginSource, create_plugin_manager

if TYPE_CHECKING:
    import ssl

__all__ = [
    "CollectingPostProcessor",
    "FileServer",
    "PipelineOutcome",
    "RangeOptions",
    "Route",
    "leftover_files",
    "make_plugin_manager",
    "run_pipeline",
]


@dataclass
class Route:
    """How :class:`FileServer` answers one path.

    ``statuses`` is consumed one per request, the last one repeating, so
    ``statuses=(500, 200)`` fails once and then succeeds.  ``truncate_to``
    announces the full length but sends only that many bytes and closes.
    """

    body: bytes = b""
    statuses: Sequence[int] = (200,)
    headers: dict[str, str] = field(default_factory=dict)
    truncate_to: int | None = None
    delay: float = 0.0
    redirect_to: str | None = None
    #: Byte ranges (see :class:`RangeOptions`); None: every answer is whole.
    range_options: RangeOptions | None = None


@dataclass
class RangeOptions:
    """Range requests, broken transfers and slow bodies, for resume and time-limit tests.

    With ``ranges``, ``Range: bytes=N-`` is answered ``206`` with the rest of
    the body, unless an ``If-Range`` does not match the answer's ETag (or
    Last-Modified): then ``200`` with the whole body.  ``bodies`` and
    ``etags`` are consumed one per request, the last repeating (a file that
    changes between attempts).  The first ``cut_requests`` answers stop
    after ``cut_after`` body bytes and close the connection.  ``drip``
    sends the body a byte at a time, that many seconds apart; ``chunked``
    sends it without a Content-Length.
    """

    ranges: bool = True
    bodies: Sequence[bytes] = ()
    etags: Sequence[str] = ()
    last_modified: str | None = None
    cut_after: int | None = None
    cut_requests: int = 1
    drip: float = 0.0
    chunked: bool = False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without this, Nagle's algorithm
    # and delayed ACKs add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        server = self.server
        path = self.path.split("?", 1)[0]
        if "://" in path:
            # An absolute URI: a client using this server as its HTTP proxy.
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        with server.lock:
            count = server.counts[path]
            server.counts[path] += 1
            server.log.append((self.command, self.path, dict(self.headers)))
        # A route matches the path as sent, or decoded (a test may add either).
        route = server.routes.get(path) or server.routes.get(unquote(path))
        if route is None:
            self._reply(404, b"not found", {})
            return
        if route.delay:
            time.sleep(route.delay)
        status = route.statuses[min(count, len(route.statuses) - 1)]
        headers = dict(route.headers)
        if route.range_options is not None and status == 200:
            self._ranged(route, route.range_options, count, headers)
            return
        if route.redirect_to is not None and 300 <= status < 400:
            headers["Location"] = route.redirect_to
            self._reply(status, b"", headers)
        elif status >= 400:
            self._reply(status, b"error", headers)
        elif route.truncate_to is not None:
            self._reply(status, route.body[: route.truncate_to], headers, len(route.body))
            self.close_connection = True
        else:
            self._reply(status, route.body, headers)

    def _ranged(
        self, route: Route, options: RangeOptions, count: int, headers: dict[str, str]
    ) -> None:
        """Answer as ``options`` says: a range, a cut, a drip, or chunks."""

        def nth(values: Sequence[Any], default: Any) -> Any:
            return values[min(count, len(values) - 1)] if values else default

        body: bytes = nth(options.bodies, route.body)
        etag: str | None = nth(options.etags, None)
        if etag is not None:
            headers["ETag"] = etag
        if options.last_modified is not None:
            headers["Last-Modified"] = options.last_modified
        status, start = 200, 0
        if options.ranges:
            headers["Accept-Ranges"] = "bytes"
            first = self._range_start(options, etag, len(body))
            if first is not None:
                status, start = 206, first
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        part = body[start:]
        cut = options.cut_after if count < options.cut_requests else None
        self.send_response(status)
        headers.setdefault("Content-Type", "application/octet-stream")
        if options.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(len(part))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        sent = part if cut is None else part[:cut]
        pieces = [sent[i : i + 1] for i in range(len(sent))] if options.drip else [sent]
        try:
            for piece in filter(None, pieces):
                self._send_piece(piece, options.chunked)
                time.sleep(options.drip)
            if cut is not None:
                self.close_connection = True
            elif options.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _range_start(self, options: RangeOptions, etag: str | None, length: int) -> int | None:
        """The first byte a ``Range: bytes=N-`` asks for, when it is served as a range."""
        asked = self.headers.get("Range", "")
        condition = self.headers.get("If-Range")
        if condition and condition not in (etag, options.last_modified):
            return None  # the file changed: the whole of it
        first = asked[6:-1] if asked.startswith("bytes=") and asked.endswith("-") else ""
        return int(first) if first.isdigit() and int(first) < length else None

    def _send_piece(self, data: bytes, chunked: bool) -> None:
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)
        self.wfile.flush()

    def _reply(
        self, status: int, body: bytes, headers: dict[str, str], length: int | None = None
    ) -> None:
        self.send_response(status)
        headers.setdefault("Content-Type", "application/octet-stream")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many concurrent workers connect at once in tests; the default backlog of 5 drops some.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping connections (timeouts, truncation tests) are expected: stay quiet."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, Route] = {}
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()


class FileServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving in-memory files.

    It also answers as an HTTP forward proxy: a request for an absolute URL is
    served from the route of that URL's path, whatever its host.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.  Given
    a server-side ``ssl_context``, it serves https instead.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server()
        self.scheme = "http"
        if ssl_context is not None:
            # Serve https: every accepted connection does the TLS handshake first.
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            # A short poll interval makes stop() quick: tests start many servers.
            target=lambda: self._server.serve_forever(poll_interval=0.05),
            name="dpp-test-server",
            daemon=True,
        )

    def start(self) -> FileServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` when given an SSL context)."""
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def add(
        self,
        path: str,
        body: bytes = b"",
        *,
        statuses: Sequence[int] = (200,),
        headers: dict[str, str] | None = None,
        truncate_to: int | None = None,
        delay: float = 0.0,
        redirect_to: str | None = None,
        range_options: RangeOptions | None = None,
    ) -> str:
        """Serve ``body`` at ``path`` (see :class:`Route`) and return its URL."""
        path = path if path.startswith("/") else "/" + path
        self._server.routes[path] = Route(
            body,
            tuple(statuses),
            dict(headers or {}),
            truncate_to,
            delay,
            redirect_to,
            range_options,
        )
        return self.url(path)

    def request_count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (ignoring the query), or in all."""
        with self._server.lock:
            if path is None:
                return sum(self._server.counts.values())
            return self._server.counts[path if path.startswith("/") else "/" + path]

    @property
    def request_log(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request received: (method, path with query, headers)."""
        with self._server.lock:
            return list(self._server.log)


class CollectingPostProcessor(BasePostProcessor):
    """Keeps every ``(result, file_data)`` pair it is given, in order."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[Any, FileData]] = []

    def post_process(self, result: Any, file_data: FileData) -> None:
        self.outcomes.append((result, file_data))


@dataclass
class PipelineOutcome:
    """What :func:`run_pipeline` saw."""

    exit_code: int
    outcomes: list[tuple[Any, FileData]]
    summary: Any

    @property
    def results(self) -> list[Any]:
        """The results of the files that succeeded, in the order they finished."""
        return [result for result, file_data in self.outcomes if not file_data.has_error]

    @property
    def failures(self) -> list[FileData]:
        """The files that failed, in the order they finished."""
        return [file_data for _, file_data in self.outcomes if file_data.has_error]


def leftover_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every file under ``root``: after a run, the cache root should have none."""
    base = Path(root)
    return sorted(path for path in base.rglob("*") if not path.is_dir()) if base.exists() else []


def make_plugin_manager(*plugins: object, load_entrypoints: bool = False) -> PipelinePluginManager:
    """A fresh manager with the built-ins and ``plugins`` (modules or objects with hooks).

    Installed entry points are left out unless ``load_entrypoints`` is true, so
    a test sees only what it registered.
    """
    manager = create_plugin_manager(load_entrypoints=load_entrypoints)
    for index, plugin in enumerate(plugins):
        name = getattr(plugin, "__name__", f"test-plugin-{index}")
        manager.register_source(plugin, PluginSource(name, f"test:{name}", "0"))
    return manager


def run_pipeline(
    files: Iterable[dict[str, Any]] | str,
    processor: Any = "dummy",
    *,
    plugins: Sequence[object] = (),
    processor_options: dict[str, Any] | None = None,
    **settings: Any,
) -> PipelineOutcome:
    """Run the pipeline in process with a collecting post-processor.

    ``settings`` are :class:`PipelineSettings` fields; retries wait 0 s
    unless ``retry_backoff`` is given.
    """
    from .pipeline import ProcessingPipeline

    settings.setdefault("retry_backoff", 0.0)
    collector = CollectingPostProcessor()
    pipeline = ProcessingPipeline(
        processor,
        collector,
        processor_options=processor_options,
        plugin_manager=make_plugin_manager(*plugins),
        **settings,
    )
    exit_code = pipeline.run(files if isinstance(files, str) else list(files))
    return PipelineOutcome(exit_code, collector.outcomes, pipeline.summary)
