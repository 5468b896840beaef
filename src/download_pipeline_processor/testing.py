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
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from ._loopback import (
    CLOSE,
    RECEIVE,
    RESET,
    Answer,
    LoopbackServer,
    Pause,
    RangeOptions,
    Request,
    Route,
    Wait,
    raw_chunked,
    raw_ok,
)
from ._plugins import PipelinePluginManager, PluginSource, create_plugin_manager
from .backend import DownloadRequest
from .base_post_processor import BasePostProcessor
from .file_data import FileData

if TYPE_CHECKING:
    import ssl

    from .settings import PipelineSettings

__all__ = [
    "CLOSE",
    "RECEIVE",
    "RESET",
    "Answer",
    "CollectingPostProcessor",
    "FileServer",
    "Pause",
    "PipelineOutcome",
    "RangeOptions",
    "Request",
    "Route",
    "Wait",
    "download_request",
    "leftover_files",
    "make_plugin_manager",
    "raw_chunked",
    "raw_ok",
    "run_command_bounded",
    "run_pipeline",
]


def download_request(
    entry: FileData | str,
    destination: str | os.PathLike[str],
    settings: PipelineSettings | None = None,
    stop: threading.Event | None = None,
) -> DownloadRequest:
    """A request for one attempt at ``entry`` (a URL or a :class:`FileData`), as a run makes it.

    For calling a downloader's ``fetch(request)`` directly in a test: the
    body writer checks the entry's size and digests and keeps ``settings``'
    limits, and the attempt's ``--file-timeout`` clock has started.  ``stop``:
    the run's stop event (a fresh one when None).
    """
    from .settings import PipelineSettings

    file_data = FileData(entry) if isinstance(entry, str) else entry
    request = DownloadRequest.for_file(
        file_data,
        os.fspath(destination),
        settings or PipelineSettings(),
        stop if stop is not None else threading.Event(),
    )
    request.writer.new_attempt()
    request.stop.deadline = request.writer.deadline
    return request


class FileServer:
    """A scripted HTTP/1.1 server on 127.0.0.1: files, raw answers, and what it saw.

    Serve a file the way a well-behaved server does (:meth:`add`), or script
    the answer byte for byte (:meth:`script`) for what no well-behaved server
    says::

        with FileServer() as server:
            url = server.add("/a.txt", b"hello")                      # a file
            url = server.add("/b", b"x" * 100, statuses=(503, 200))  # fails once
            url = server.add("/c", b"x" * 100, truncate_to=10)       # cut short
            url = server.add("/d", b"x" * 100, framing="chunked")    # in chunks
            url = server.add("/e", b"x" * 100, range_options=RangeOptions(cut_after=10))
            # ^ cut after 10 bytes once, then a "Range: bytes=10-" gets a 206
            url = server.script("/f", Answer(raw_ok(b"hi"), Pause(0.1), b"stray", CLOSE))

    Each connection is served on its own thread; a connection stays open
    between requests unless the client or the answer ends it.  It also
    answers as an HTTP forward proxy: a request for an absolute URL is served
    from the route of that URL's path, whatever its host.  Unknown paths get
    a 404; the path ``"*"`` scripts or serves every path without a route.

    What it saw: :attr:`requests` (each :class:`Request` with the connection
    it came on), :attr:`connections` accepted, :attr:`closed_by_client`
    connections the client hung up, :attr:`hang_ups` (when a client hung up
    on an answer that paused), and :meth:`most_in_flight` (the most
    requests answered at once).

    Use as a context manager, or call :meth:`start` and :meth:`stop`; both
    are quick.  Given a server-side ``ssl_context``, it serves https instead.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = LoopbackServer(ssl_context)
        self.scheme = self._server.scheme
        #: Set it to let every answer waiting on ``Wait(server.release)`` go on.
        self.release = self._server.release

    def start(self) -> FileServer:
        """Start serving in a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the socket, hang up every connection, wait for the threads."""
        self._server.stop()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` when given an SSL context)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """The absolute URL of ``path`` on this server, naming it ``host``."""
        path = _route_path(path)
        return f"{self.scheme}://{host}:{self.port}{'/' if path == '*' else path}"

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
        framing: Literal["length", "chunked", "close"] = "length",
        content_length: int | str | None = None,
        chunk_size: int = 64 * 1024,
        range_options: RangeOptions | None = None,
    ) -> str:
        """Serve ``body`` at ``path`` (see :class:`Route`) and return its URL."""
        path = _route_path(path)
        self._server.routes[path] = Route(
            body,
            tuple(statuses),
            dict(headers or {}),
            truncate_to,
            delay,
            redirect_to,
            framing,
            content_length,
            chunk_size,
            range_options,
        )
        return self.url(path)

    def script(self, path: str, *answers: Answer | bytes) -> str:
        """Answer requests for ``path`` with ``answers`` (bytes: one write); return its URL.

        The answers are used one per request, the last one repeating.
        """
        path = _route_path(path)
        self._server.routes[path] = [
            answer if isinstance(answer, Answer) else Answer(answer) for answer in answers
        ]
        return self.url(path)

    def script_connections(self, *answers: Answer | bytes) -> None:
        """Play ``answers`` on new connections, one per connection, before any request is read.

        The last one repeats.  One that ends in ``CLOSE`` or ``RESET`` ends its
        connection there (``Answer(RECEIVE, CLOSE)``: a TLS handshake dropped
        after the ClientHello); any other goes on to answer requests.
        """
        self._server.greetings = [
            answer if isinstance(answer, Answer) else Answer(answer) for answer in answers
        ]

    @property
    def on_request(self) -> Callable[[Request], object] | None:
        """Called on the server's thread with every request as it arrives (settable)."""
        return self._server.on_request

    @on_request.setter
    def on_request(self, callback: Callable[[Request], object] | None) -> None:
        self._server.on_request = callback

    def request_count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (ignoring the query), or in all."""
        with self._server.lock:
            if path is None:
                return sum(self._server.counts.values())
            return self._server.counts[path if path.startswith("/") else "/" + path]

    @property
    def request_log(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request received: (method, path with query, headers)."""
        return [(r.method, r.target, r.headers) for r in self.requests]

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order."""
        with self._server.lock:
            return list(self._server.log)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._server.lock:
            return self._server.connections

    @property
    def closed_by_client(self) -> int:
        """Connections the client hung up (while the server waited for a request)."""
        with self._server.lock:
            return self._server.closed_by_client

    @property
    def hang_ups(self) -> list[float]:
        """When (``time.monotonic()``) a client hung up while its answer paused or waited.

        A scripted :class:`Pause` or :class:`Wait`, a ``delay`` or a ``drip``
        watches the connection: the client's EOF or reset ends the answer at
        once and is noted here (over TLS, where Linux reports it).
        """
        with self._server.lock:
            return list(self._server.hang_ups)

    @property
    def in_flight(self) -> int:
        """Requests being answered now."""
        with self._server.lock:
            return self._server.in_flight[""]

    @property
    def most_in_flight(self) -> int:
        """The most requests answered at once."""
        with self._server.lock:
            return self._server.most_in_flight[""]

    def most_in_flight_for(self, host: str) -> int:
        """The most requests with the Host header ``host`` answered at once."""
        with self._server.lock:
            return self._server.most_in_flight["host:" + host]


def _route_path(path: str) -> str:
    return path if path.startswith("/") or path == "*" else "/" + path


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
    post_processors: Sequence[Any] = (),
    post_processor_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    **settings: Any,
) -> PipelineOutcome:
    """Run the pipeline in process; a collecting post-processor sees every file.

    ``post_processors`` (registered names, classes or instances) run before
    the collector, each built and closed by the run as the CLI does: a test
    of a post-processor reads what it wrote once this returns.
    ``post_processor_options`` is one mapping for all of them or one per
    post-processor.  ``settings`` are :class:`PipelineSettings` fields;
    retries wait 0 s unless ``retry_backoff`` is given.
    """
    from .pipeline import ProcessingPipeline

    settings.setdefault("retry_backoff", 0.0)
    collector = CollectingPostProcessor()
    if post_processor_options is None or isinstance(post_processor_options, Mapping):
        options = [post_processor_options or {} for _ in post_processors]
    else:
        options = list(post_processor_options)
    pipeline = ProcessingPipeline(
        processor,
        [*post_processors, collector],
        processor_options=processor_options,
        # The collector is a ready instance: it takes no options.
        post_processor_options=[*options, {}],
        plugin_manager=make_plugin_manager(*plugins),
        **settings,
    )
    exit_code = pipeline.run(files if isinstance(files, str) else list(files))
    return PipelineOutcome(exit_code, collector.outcomes, pipeline.summary)


def run_command_bounded(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a command (the console script, say) as a real process and capture its output.

    Raises :class:`AssertionError` (a test failure) after killing that
    process, by its handle, if it is still running ``timeout`` seconds after
    it was started: a hang fails the test instead of the suite.
    """
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(
            f"{argv[0]} was still running {timeout:.0f} s after it was started"
        ) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
