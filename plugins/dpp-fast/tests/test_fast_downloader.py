"""The ``fast`` downloader's own HTTP/1.1 reading, against a scripted server on 127.0.0.1.

``tests/test_download_*.py`` run the shared download rules (statuses, retries,
redirects, truncation, stopping, secrets) over this backend too; the tests
here cover what only a hand-written client has to get right: message framing
(chunked, to-the-close, interim answers), keep-alive and stale connections,
and answers that are not HTTP.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from download_pipeline_processor.errors import (
    DownloadError,
    PermanentDownloadError,
    TransientDownloadError,
)
from download_pipeline_processor.settings import PipelineSettings
from download_pipeline_processor.testing import (
    CLOSE,
    Answer,
    FileServer,
    Pause,
    download_request,
    raw_ok,
)
from dpp_fast.fast import FastDownloader
from dpp_fast.http1 import MAX_HEAD
from dpp_fast.socket_transport import MAX_IDLE_PER_THREAD, SocketTransport


@pytest.fixture
def scripted() -> Iterator[list[FileServer]]:
    """Servers made by a test, stopped after it."""
    servers: list[FileServer] = []
    yield servers
    for server in servers:
        server.stop()


def serve(servers: list[FileServer], *answers: Answer | bytes) -> FileServer:
    """A server answering the n-th request, whatever its path, with ``answers[n]``."""
    server = FileServer().start()
    server.script("*", *answers)
    servers.append(server)
    return server


@pytest.fixture
def transport() -> Iterator[SocketTransport]:
    """A SocketTransport with short timeouts."""
    transport = SocketTransport(
        timeout=2.0, chunk_size=1024, max_redirects=3, headers={"User-Agent": "t"}, ca_bundle=None
    )
    yield transport
    transport.close()


def fetch(transport: SocketTransport, url: str, tmp_path: Path) -> bytes:
    destination = tmp_path / "out.part"
    size = transport.fetch(download_request(url, destination))
    data = destination.read_bytes()
    assert size == len(data)
    return data


def assert_refused(
    scripted: list[FileServer],
    transport: SocketTransport,
    tmp_path: Path,
    answer: bytes,
    message: str,
    *,
    error: type[DownloadError] = TransientDownloadError,
) -> None:
    """The one answer ``answer``, then a close, fails the fetch with ``message``.

    The error is transient (retried) unless ``error`` says otherwise.
    """
    server = serve(scripted, Answer(answer, CLOSE))
    with pytest.raises(error, match=message):
        fetch(transport, server.url(), tmp_path)


class TestFraming:
    """Where a body ends: Content-Length, chunks, or the end of the connection."""

    def test_chunked_body_decoded(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """Chunk sizes, extensions and trailers never reach the file; the connection is kept."""
        chunked = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b"1\r\n \r\n"
            b"0005\r\nworld\r\n"
            b"0\r\nX-Trailer: yes\r\n\r\n"
        )
        server = serve(scripted, Answer(chunked), raw_ok(b"second"))
        assert fetch(transport, server.url(), tmp_path) == b"hello world"
        assert fetch(transport, server.url(), tmp_path) == b"second"
        assert server.connections == 1

    def test_chunked_with_connection_close_is_still_decoded(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """Connection: close says nothing about framing: chunks are still decoded."""
        chunked = (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        server = serve(scripted, Answer(chunked, CLOSE))
        assert fetch(transport, server.url(), tmp_path) == b"abc"

    def test_body_to_the_close(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """No length and no chunks: the body runs to the close, and a new connection follows."""
        server = serve(
            scripted,
            Answer(b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n" + b"r" * 5000, CLOSE),
            raw_ok(b"next"),
        )
        assert fetch(transport, server.url(), tmp_path) == b"r" * 5000
        assert fetch(transport, server.url(), tmp_path) == b"next"
        assert server.connections == 2

    def test_http10_answer_closes(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """An HTTP/1.0 answer without keep-alive ends the connection."""
        server = serve(
            scripted,
            Answer(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nv1", CLOSE),
            raw_ok(b"v2"),
        )
        assert fetch(transport, server.url(), tmp_path) == b"v1"
        assert fetch(transport, server.url(), tmp_path) == b"v2"
        assert server.connections == 2

    def test_interim_answers_skipped(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """100 Continue and 103 Early Hints come before the real answer and are skipped."""
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        server = serve(scripted, Answer(interim + raw_ok(b"final")))
        assert fetch(transport, server.url(), tmp_path) == b"final"

    def test_no_content_answer(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """204 has no body even without a length: an empty file, the connection kept."""
        server = serve(scripted, Answer(b"HTTP/1.1 204 No Content\r\n\r\n"), raw_ok(b"after"))
        assert fetch(transport, server.url(), tmp_path) == b""
        assert fetch(transport, server.url(), tmp_path) == b"after"
        assert server.connections == 1

    def test_large_body_through_small_buffer(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A body many times the buffer arrives whole."""
        body = bytes(range(256)) * 4096  # 1 MiB
        server = serve(scripted, raw_ok(body))
        assert fetch(transport, server.url(), tmp_path) == body


class TestKeepAlive:
    """Connections are reused per worker thread and replaced when the server dropped them."""

    def test_one_connection_for_many_files(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        server = serve(scripted, raw_ok(b"same"))
        for _ in range(20):
            assert fetch(transport, server.url(), tmp_path) == b"same"
        assert server.connections == 1
        assert len(server.requests) == 20

    def test_stale_connection_replaced_once(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A kept connection the server closed meanwhile costs a reconnect, not a failure."""
        # The first answer claims keep-alive, then the server hangs up anyway.
        server = serve(scripted, Answer(raw_ok(b"one"), CLOSE), raw_ok(b"two"))
        assert fetch(transport, server.url(), tmp_path) == b"one"
        assert fetch(transport, server.url(), tmp_path) == b"two"
        assert server.connections == 2
        assert len(server.requests) == 2  # the dead connection never got the request

    def test_fresh_connection_closed_without_answer_fails(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A new connection closed before any answer is a transient error, not retried here."""
        server = serve(scripted, Answer(b"", CLOSE))
        with pytest.raises(TransientDownloadError, match="without a response"):
            fetch(transport, server.url(), tmp_path)
        assert len(server.requests) == 1

    def test_idle_connections_bounded(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A thread keeps one idle connection for each of its last few origins only."""
        servers = [serve(scripted, raw_ok(b"x")) for _ in range(MAX_IDLE_PER_THREAD + 1)]
        for server in servers:
            fetch(transport, server.url(), tmp_path)
        first = servers[0]
        deadline = threading.Event()
        for _ in range(50):
            if first.closed_by_client:
                break
            deadline.wait(0.02)
        assert first.closed_by_client == 1
        assert all(server.closed_by_client == 0 for server in servers[1:])

    def test_close_ends_every_connection(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        server = serve(scripted, raw_ok(b"x"))
        threads = [
            threading.Thread(target=fetch, args=(transport, server.url(), tmp_path / str(i)))
            for i in range(3)
        ]
        for index, thread in enumerate(threads):
            (tmp_path / str(index)).mkdir()
            thread.start()
        for thread in threads:
            thread.join()
        transport.close()
        waiter = threading.Event()
        for _ in range(50):
            if server.closed_by_client == server.connections:
                break
            waiter.wait(0.02)
        assert server.connections >= 1
        assert server.closed_by_client == server.connections


class TestNotHttp:
    """Answers this client cannot read are transient errors that name the problem."""

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"),
            (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "invalid chunk size",
            ),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101"),
        ],
        ids=["not-http", "status", "header", "chunk", "upgrade"],
    )
    def test_protocol_errors(
        self,
        scripted: list[FileServer],
        transport: SocketTransport,
        tmp_path: Path,
        data: bytes,
        message: str,
    ) -> None:
        assert_refused(scripted, transport, tmp_path, data, message)

    @pytest.mark.parametrize(
        "length",
        [b"ten", b"3, 4", b"\xb9", b"9" * 5000, b"-1"],
        ids=["word", "two-lengths", "superscript", "huge", "negative"],
    )
    def test_invalid_content_length_is_permanent(
        self,
        scripted: list[FileServer],
        transport: SocketTransport,
        tmp_path: Path,
        length: bytes,
    ) -> None:
        """A Content-Length no body can be framed by fails the file for good (RFC 9112 6.3)."""
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\nabcd"
        assert_refused(
            scripted,
            transport,
            tmp_path,
            answer,
            "invalid Content-Length",
            error=PermanentDownloadError,
        )

    def test_head_too_long(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A head longer than MAX_HEAD is refused instead of filling memory."""
        header = b"X-Big: " + b"a" * (MAX_HEAD + 10) + b"\r\n"
        head = b"HTTP/1.1 200 OK\r\n" + header + b"\r\n"
        assert_refused(scripted, transport, tmp_path, head, "response head longer")

    def test_duplicate_equal_lengths_accepted(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """The same Content-Length twice (some proxies do that) is one length."""
        server = serve(
            scripted, Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
        )
        assert fetch(transport, server.url(), tmp_path) == b"ok"

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
                "truncated body: got 5 of 100 bytes",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\nshort",
                "connection closed after 5 bytes of a chunked body",
            ),
            (
                # The commonest break of all: at a chunk boundary, before the last chunk.
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
                "connection closed after 3 bytes of a chunked body",
            ),
        ],
        ids=["length", "chunked", "chunk-boundary"],
    )
    def test_truncated_bodies(
        self,
        scripted: list[FileServer],
        transport: SocketTransport,
        tmp_path: Path,
        data: bytes,
        message: str,
    ) -> None:
        assert_refused(scripted, transport, tmp_path, data, message)


class TestRequest:
    """What goes on the wire."""

    def test_request_bytes(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """One GET with Host and the configured headers; odd characters escaped as requests does."""
        server = serve(scripted, raw_ok(b"x"))
        fetch(transport, server.url("/a%20b/\u00e9.bin?q=1|2#fragment"), tmp_path)
        (request,) = server.requests
        head = request.head
        lines = head.split(b"\r\n")
        assert lines[0] == b"GET /a%20b/%C3%A9.bin?q=1%7C2 HTTP/1.1"
        assert f"Host: 127.0.0.1:{server.port}".encode() in lines
        assert b"User-Agent: t" in lines

    def test_downloader_sends_identity_encoding(
        self, scripted: list[FileServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The registered downloader asks for the bytes as served, under its own name."""
        monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
        server = serve(scripted, raw_ok(b"x"))
        downloader = FastDownloader(PipelineSettings())
        try:
            downloader.fetch(download_request(server.url(), tmp_path / "out"))
        finally:
            downloader.close()
        (request,) = server.requests
        head = request.head
        assert b"Accept-Encoding: identity" in head.split(b"\r\n")
        assert b"User-Agent: download-pipeline-processor/" in head

    @pytest.mark.parametrize("name", ["Bad\r\nName", "Colon:", " space"])
    def test_header_injection_refused(self, name: str) -> None:
        with pytest.raises(ValueError, match="invalid request header"):
            SocketTransport(
                timeout=1, chunk_size=1024, max_redirects=1, headers={name: "v"}, ca_bundle=None
            )

    def test_header_value_injection_refused(self) -> None:
        with pytest.raises(ValueError, match="invalid request header"):
            SocketTransport(
                timeout=1,
                chunk_size=1024,
                max_redirects=1,
                headers={"X-Ok": "v\r\nHost: evil"},
                ca_bundle=None,
            )


class TestStrayBytes:
    """A kept connection is checked before reuse, so an answer never lands on the wrong file."""

    def test_bytes_after_the_body_retire_the_connection(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A body longer than its Content-Length (a growing file): each file keeps its own body."""
        tail_sent = threading.Event()
        server = serve(
            scripted,
            Answer(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none",
                Pause(0.1),
                b"EXTRA BYTES",
                tail_sent.set,
            ),
            raw_ok(b"two"),
            raw_ok(b"three"),
        )
        assert fetch(transport, server.url("/a"), tmp_path) == b"one"
        tail_sent.wait(2)
        assert fetch(transport, server.url("/b"), tmp_path) == b"two"
        assert fetch(transport, server.url("/c"), tmp_path) == b"three"
        assert server.connections == 2

    def test_timeout_answer_on_an_idle_connection(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A 408 a server writes on an idle connection before closing it is not the next answer."""
        tail_sent = threading.Event()
        server = serve(
            scripted,
            Answer(
                raw_ok(b"one"),
                Pause(0.1),
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n",
                tail_sent.set,
                CLOSE,
            ),
            raw_ok(b"two"),
        )
        assert fetch(transport, server.url("/a"), tmp_path) == b"one"
        tail_sent.wait(2)
        assert fetch(transport, server.url("/b"), tmp_path) == b"two"

    def test_interim_answer_then_close_is_not_sent_twice(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A request the server acknowledged (100 Continue) is never sent again by the transport."""
        server = serve(scripted, raw_ok(b"one"), Answer(b"HTTP/1.1 100 Continue\r\n\r\n", CLOSE))
        fetch(transport, server.url("/a"), tmp_path)
        with pytest.raises(TransientDownloadError, match="closed the connection"):
            fetch(transport, server.url("/b"), tmp_path)
        assert len(server.requests) == 2


class TestLenientReading:
    """Answers that requests reads, this transport reads too."""

    def test_bare_line_feeds(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        server = serve(scripted, Answer(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"))
        assert fetch(transport, server.url(), tmp_path) == b"ok"

    def test_folded_header(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        data = b"HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\nContent-Length: 2\r\n\r\nok"
        server = serve(scripted, Answer(data))
        assert fetch(transport, server.url(), tmp_path) == b"ok"

    def test_identity_transfer_coding_uses_the_length(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """Transfer-Encoding: identity means no coding: the Content-Length still frames the body."""
        data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nok"
        server = serve(scripted, Answer(data), raw_ok(b"next"))
        assert fetch(transport, server.url(), tmp_path) == b"ok"
        assert fetch(transport, server.url(), tmp_path) == b"next"
        assert server.connections == 1


class TestStatusesSurviveBrokenBodies:
    """The status decides, even when the body of an error or redirect breaks off."""

    def test_not_found_with_short_body(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nshort"
        server = serve(scripted, Answer(data, CLOSE))
        with pytest.raises(PermanentDownloadError, match="HTTP 404"):
            fetch(transport, server.url(), tmp_path)

    def test_retry_after_kept(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        data = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 50\r\n\r\nx"
        server = serve(scripted, Answer(data, CLOSE))
        with pytest.raises(TransientDownloadError, match="HTTP 503") as info:
            fetch(transport, server.url(), tmp_path)
        assert info.value.retry_after == 7

    def test_redirect_with_short_body_followed(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        target = serve(scripted, raw_ok(b"there"))
        data = f"HTTP/1.1 302 Found\r\nLocation: {target.url()}\r\nContent-Length: 9\r\n\r\nx"
        server = serve(scripted, Answer(data.encode(), CLOSE))
        assert fetch(transport, server.url(), tmp_path) == b"there"


class TestOddInput:
    """Odd numbers, hosts and locations are download errors, never raw exceptions."""

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "malformed status line|invalid status"),
            (b"HTTP/1.1 099 Odd\r\n\r\n", "malformed status line"),
        ],
        ids=["superscript-status", "status-below-100"],
    )
    def test_odd_numbers(
        self,
        scripted: list[FileServer],
        transport: SocketTransport,
        tmp_path: Path,
        data: bytes,
        message: str,
    ) -> None:
        assert_refused(scripted, transport, tmp_path, data, message)

    @pytest.mark.parametrize("url", ["http://a..b/x", f"http://{'a' * 64}.example/x"])
    def test_bad_host_names(self, transport: SocketTransport, tmp_path: Path, url: str) -> None:
        with pytest.raises(PermanentDownloadError, match="invalid host name"):
            fetch(transport, url, tmp_path)

    def test_bad_redirect_location(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        data = b"HTTP/1.1 302 Found\r\nLocation: http://[::1/x\r\nContent-Length: 0\r\n\r\n"
        server = serve(scripted, Answer(data))
        with pytest.raises(PermanentDownloadError, match="redirected to an invalid URL"):
            fetch(transport, server.url(), tmp_path)

    def test_local_file_errors_are_not_network_errors(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """A destination that cannot be written is the file system's error, not retried."""
        server = serve(scripted, raw_ok(b"x"))
        with pytest.raises(FileNotFoundError):
            transport.fetch(download_request(server.url(), tmp_path / "missing" / "out"))


class TestThreads:
    def test_finished_thread_closes_its_connections(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """Idle connections belong to their thread's state and close when the thread ends."""
        server = serve(scripted, raw_ok(b"x"))
        worker = threading.Thread(target=fetch, args=(transport, server.url(), tmp_path))
        worker.start()
        worker.join()
        del worker
        gc.collect()
        waiter = threading.Event()
        for _ in range(100):
            if server.closed_by_client:
                break
            waiter.wait(0.02)
        assert server.closed_by_client == 1


class TestRequestHeaders:
    def test_quoting_matches_requests(
        self, scripted: list[FileServer], transport: SocketTransport, tmp_path: Path
    ) -> None:
        """Characters requests escapes are escaped whatever else the URL holds."""
        server = serve(scripted, raw_ok(b"x"))
        fetch(transport, server.url('/a|b"c<d>{e}^`/%41'), tmp_path)
        assert server.requests[0].head.split(b"\r\n")[0] == (
            b"GET /a%7Cb%22c%3Cd%3E%7Be%7D%5E%60/%41 HTTP/1.1"
        )

    def test_host_and_case(self, scripted: list[FileServer], tmp_path: Path) -> None:
        """A configured Host is sent instead; one header per name, the last spelling winning."""
        server = serve(scripted, raw_ok(b"x"))
        transport = SocketTransport(
            timeout=2,
            chunk_size=1024,
            max_redirects=1,
            headers={"User-Agent": "a", "user-agent": "b", "Host": "files.example"},
            ca_bundle=None,
        )
        try:
            fetch(transport, server.url(), tmp_path)
        finally:
            transport.close()
        lines = server.requests[0].head.split(b"\r\n")
        assert b"Host: files.example" in lines
        assert [line for line in lines if line.lower().startswith(b"user-agent")] == [
            b"user-agent: b"
        ]

    @pytest.mark.parametrize(
        "headers",
        [{"": "v"}, {"X": "\u20ac"}],
        ids=["empty-name", "not-latin-1"],
    )
    def test_more_bad_headers(self, headers: dict[str, str]) -> None:
        with pytest.raises(ValueError, match="invalid request header"):
            SocketTransport(
                timeout=1, chunk_size=1024, max_redirects=1, headers=headers, ca_bundle=None
            )
