"""Tests for testing.py: FileServer (files, scripted answers, what it saw) and run_pipeline."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import BasePostProcessor, FileData, Option, hookimpl
from download_pipeline_processor.testing import (
    CLOSE,
    RECEIVE,
    RESET,
    Answer,
    FileServer,
    Pause,
    RangeOptions,
    Wait,
    raw_chunked,
    raw_ok,
    run_pipeline,
)


def connect(server: FileServer) -> socket.socket:
    """A client connection to ``server`` with a bound on every wait."""
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def get(path: str, *headers: str) -> bytes:
    """The bytes of a GET for ``path``."""
    lines = "".join(f"{line}\r\n" for line in headers)
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{lines}\r\n".encode()


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it hangs up."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def fetch(server: FileServer, path: str, **headers: str) -> http.client.HTTPResponse:
    """A GET through http.client, which reads each framing the standard way."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    # Keyword names stand for header names: If_Range is If-Range.
    fields = {name.replace("_", "-"): value for name, value in headers.items()}
    connection.request("GET", path, headers=fields)
    return connection.getresponse()


class TestFiles:
    """add() serves a body the way a well-behaved server does, in the framing asked for."""

    def test_chunked(self, file_server: FileServer) -> None:
        """framing="chunked" sends the body in chunks of chunk_size, no Content-Length."""
        file_server.add("/c", b"x" * 100, framing="chunked", chunk_size=30)
        with connect(file_server) as sock:
            sock.sendall(get("/c", "Connection: close"))
            answer = read_to_close(sock)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head
        assert b"Content-Length" not in head
        assert body == raw_chunked(b"x" * 100, 30)

    def test_close_delimited(self, file_server: FileServer) -> None:
        """framing="close" sends no length and ends the body with the connection."""
        file_server.add("/c", b"to the close", framing="close")
        response = fetch(file_server, "/c")
        assert response.getheader("Content-Length") is None
        assert response.read() == b"to the close"

    def test_content_length_override(self, file_server: FileServer) -> None:
        """content_length is sent as given, beside chunks when the framing is chunked."""
        file_server.add("/c", b"abc", framing="chunked", content_length="ten")
        with connect(file_server) as sock:
            sock.sendall(get("/c", "Connection: close"))
            head = read_to_close(sock).partition(b"\r\n\r\n")[0].split(b"\r\n")
        assert b"Content-Length: ten" in head
        assert b"Transfer-Encoding: chunked" in head

    def test_statuses_in_turn(self, file_server: FileServer) -> None:
        """statuses are used one per request, the last one repeating."""
        file_server.add("/s", b"ok", statuses=(503, 200))
        assert [fetch(file_server, "/s").status for _ in range(3)] == [503, 200, 200]


BODY = bytes(range(100))
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


class TestRanges:
    """range_options answers byte ranges, and cuts, drips or chunks a file's body."""

    def test_a_range_is_answered_206_with_the_rest(self, file_server: FileServer) -> None:
        """Range: bytes=N- gets a 206 with the bytes from N, a Content-Range and their length."""
        file_server.add("/r", BODY, range_options=RangeOptions(etags=(ETAG,)))
        response = fetch(file_server, "/r", Range="bytes=30-")
        assert response.status == 206
        assert response.getheader("Content-Range") == "bytes 30-99/100"
        assert response.getheader("Content-Length") == "70"
        assert response.getheader("Accept-Ranges") == "bytes"
        assert response.getheader("ETag") == ETAG
        assert response.read() == BODY[30:]

    @pytest.mark.parametrize(
        ("options", "validator", "status"),
        [
            (RangeOptions(etags=(ETAG,)), ETAG, 206),
            (RangeOptions(etags=(ETAG,)), '"v0"', 200),
            (RangeOptions(last_modified=LAST_MODIFIED), LAST_MODIFIED, 206),
            (RangeOptions(last_modified=LAST_MODIFIED), "Tue, 20 Oct 2015 07:28:00 GMT", 200),
        ],
        ids=["etag-match", "etag-mismatch", "date-match", "date-mismatch"],
    )
    def test_if_range(
        self, file_server: FileServer, options: RangeOptions, validator: str, status: int
    ) -> None:
        """An If-Range matching the ETag or Last-Modified gets the range; any other, all of it."""
        file_server.add("/r", BODY, range_options=options)
        response = fetch(file_server, "/r", Range="bytes=30-", If_Range=validator)
        assert response.status == status
        assert response.read() == (BODY[30:] if status == 206 else BODY)

    def test_without_ranges_a_range_is_ignored(self, file_server: FileServer) -> None:
        """ranges=False answers a Range with 200 and the whole body, no Accept-Ranges."""
        file_server.add("/r", BODY, range_options=RangeOptions(ranges=False))
        response = fetch(file_server, "/r", Range="bytes=30-")
        assert response.status == 200
        assert response.getheader("Accept-Ranges") is None
        assert response.read() == BODY

    def test_bodies_and_etags_in_turn(self, file_server: FileServer) -> None:
        """bodies and etags are used one per request, the last one repeating."""
        options = RangeOptions(bodies=(b"old", b"new"), etags=('"1"', '"2"'))
        file_server.add("/r", b"unused", range_options=options)
        answers = [fetch(file_server, "/r") for _ in range(3)]
        assert [(a.getheader("ETag"), a.read()) for a in answers] == [
            ('"1"', b"old"),
            ('"2"', b"new"),
            ('"2"', b"new"),
        ]

    def test_cut_on_the_first_request_only(self, file_server: FileServer) -> None:
        """The first answer announces the whole length, sends cut_after bytes and hangs up."""
        file_server.add("/r", BODY, range_options=RangeOptions(cut_after=10))
        with connect(file_server) as sock:
            sock.sendall(get("/r"))
            head, _, body = read_to_close(sock).partition(b"\r\n\r\n")
        assert b"Content-Length: 100" in head.split(b"\r\n")
        assert body == BODY[:10]
        assert fetch(file_server, "/r").read() == BODY

    def test_cut_requests(self, file_server: FileServer) -> None:
        """cut_requests=2 cuts the first two answers, each after cut_after bytes of its body."""
        file_server.add("/r", BODY, range_options=RangeOptions(cut_after=10, cut_requests=2))
        bodies = []
        for range_header in ((), ("Range: bytes=10-",)):
            with connect(file_server) as sock:
                sock.sendall(get("/r", *range_header))
                bodies.append(read_to_close(sock).partition(b"\r\n\r\n")[2])
        assert bodies == [BODY[:10], BODY[10:20]]
        assert fetch(file_server, "/r", Range="bytes=20-").read() == BODY[20:]

    def test_drip(self, file_server: FileServer) -> None:
        """drip sends the head at once, then the body a byte per write, drip seconds apart."""
        file_server.add("/r", b"abc", range_options=RangeOptions(ranges=False, drip=0.1))
        with connect(file_server) as sock:
            sock.sendall(get("/r", "Connection: close"))
            reads = []
            while piece := sock.recv(65536):
                reads.append(piece)
        assert reads[0].endswith(b"\r\n\r\n")  # the head comes before any byte of body
        assert b"".join(reads[1:]) == b"abc"
        # Three writes 0.1 s apart; a busy machine may still merge two reads, not all three.
        assert len(reads) >= 3

    def test_chunked(self, file_server: FileServer) -> None:
        """chunked sends the body in the chunked framing, with no Content-Length."""
        file_server.add("/r", BODY, range_options=RangeOptions(ranges=False, chunked=True))
        with connect(file_server) as sock:
            sock.sendall(get("/r", "Connection: close"))
            head, _, body = read_to_close(sock).partition(b"\r\n\r\n")
        assert b"Transfer-Encoding: chunked" in head.split(b"\r\n")
        assert b"Content-Length" not in head
        assert body == raw_chunked(BODY)

    def test_chunked_and_cut(self, file_server: FileServer) -> None:
        """A cut chunked body ends after cut_after bytes of body, without the last chunk."""
        file_server.add("/r", BODY, range_options=RangeOptions(cut_after=10, chunked=True))
        with connect(file_server) as sock:
            sock.sendall(get("/r"))
            body = read_to_close(sock).partition(b"\r\n\r\n")[2]
        assert body == raw_chunked(BODY[:10]).removesuffix(b"0\r\n\r\n")

    def test_an_error_status_stays_an_error(self, file_server: FileServer) -> None:
        """Range options shape the 200 answers only: a scripted 503 is answered as such."""
        file_server.add("/r", BODY, statuses=(503, 200), range_options=RangeOptions())
        assert fetch(file_server, "/r", Range="bytes=30-").status == 503
        assert fetch(file_server, "/r", Range="bytes=30-").status == 206


class TestScripts:
    """script() writes answers byte for byte, step by step."""

    def test_answers_in_turn_and_star(self, file_server: FileServer) -> None:
        """A path's answers go in turn; "*" answers every other path, counted together."""
        file_server.script("/a", raw_ok(b"a1"), raw_ok(b"a2"))
        file_server.script("*", raw_ok(b"any1"), raw_ok(b"any2"))
        bodies = [fetch(file_server, path).read() for path in ("/a", "/x", "/a", "/y", "/a")]
        assert bodies == [b"a1", b"any1", b"a2", b"any2", b"a2"]

    def test_kept_connection_then_close(self, file_server: FileServer) -> None:
        """Without CLOSE the connection carries the next request; CLOSE then hangs up."""
        file_server.script("/k", raw_ok(b"one"))
        file_server.script("/c", Answer(raw_ok(b"two"), CLOSE))
        with connect(file_server) as sock:
            sock.sendall(get("/k"))
            assert sock.recv(65536) == raw_ok(b"one")
            sock.sendall(get("/c"))
            assert read_to_close(sock) == raw_ok(b"two")
        assert [request.connection for request in file_server.requests] == [1, 1]

    def test_reset(self, file_server: FileServer) -> None:
        """RESET aborts the connection: the client's next read fails instead of ending."""
        file_server.script("/r", Answer(b"HTTP/1.1 200 OK\r\n", Pause(0.05), RESET))
        with connect(file_server) as sock:
            sock.sendall(get("/r"))
            with pytest.raises(ConnectionResetError):
                read_to_close(sock)

    def test_wait_for_release_and_generator(self, file_server: FileServer) -> None:
        """Wait() holds the answer until server.release; a generator's pieces follow."""
        arrived = threading.Event()
        pieces = (piece for piece in (b"b" * 3, b"c" * 3))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\naaa"
        file_server.script("/w", Answer(head, arrived.set, Wait(), pieces, CLOSE))
        with connect(file_server) as sock:
            sock.sendall(get("/w"))
            assert arrived.wait(5)
            assert file_server.in_flight == 1
            file_server.release.set()
            assert read_to_close(sock).endswith(b"aaabbbccc")

    def test_script_connections(self, file_server: FileServer) -> None:
        """A connection script plays before any request: RECEIVE reads, CLOSE hangs up."""
        received = threading.Event()
        file_server.script_connections(Answer(RECEIVE, received.set, CLOSE), b"hello ")
        file_server.script("/after", Answer(raw_ok(b"x"), CLOSE))
        with connect(file_server) as sock:
            sock.sendall(b"\x16\x03\x01 a ClientHello")
            assert read_to_close(sock) == b""
        assert received.is_set()
        with connect(file_server) as sock:
            sock.sendall(get("/after"))
            assert read_to_close(sock) == b"hello " + raw_ok(b"x")
        assert file_server.request_count() == 1


class TestObservations:
    """What the server saw: requests, their connections, concurrency, hang-ups."""

    def test_request_record(self, file_server: FileServer) -> None:
        """Each request keeps its method, target, path, headers, connection and raw head."""
        file_server.add("/f", b"x")
        with connect(file_server) as sock:
            sock.sendall(get("/f?token=1", "X-Test: yes", "Connection: close"))
            read_to_close(sock)
        (request,) = file_server.requests
        assert (request.method, request.target, request.path) == ("GET", "/f?token=1", "/f")
        assert request.headers["X-Test"] == "yes"
        assert request.connection == 1
        assert request.head.startswith(b"GET /f?token=1 HTTP/1.1\r\n")
        assert file_server.request_log == [("GET", "/f?token=1", request.headers)]

    def test_most_in_flight(self, file_server: FileServer) -> None:
        """Requests held at once are counted, in all and per Host header."""
        arrived = threading.Semaphore(0)
        file_server.script("/held", Answer(arrived.release, Wait(), raw_ok(b"x"), CLOSE))
        sockets = [connect(file_server) for _ in range(3)]
        try:
            for sock in sockets:
                sock.sendall(get("/held"))
            for _ in sockets:
                assert arrived.acquire(timeout=5)
            file_server.release.set()
            for sock in sockets:
                assert read_to_close(sock) == raw_ok(b"x")
        finally:
            for sock in sockets:
                sock.close()
        assert file_server.most_in_flight == 3
        assert file_server.most_in_flight_for("test") == 3
        assert file_server.most_in_flight_for("elsewhere") == 0
        assert file_server.connections == 3

    def test_closed_by_client(self, file_server: FileServer) -> None:
        """A connection the client hangs up between requests is counted as such."""
        file_server.script("/f", raw_ok(b"x"))
        with connect(file_server) as sock:
            sock.sendall(get("/f"))
            sock.recv(65536)
        for _ in range(250):
            if file_server.closed_by_client:
                break
            threading.Event().wait(0.02)
        assert file_server.closed_by_client == 1

    @pytest.mark.parametrize("hang_up", ["close", "reset"])
    def test_a_hang_up_during_a_pause_is_seen_at_once(
        self, file_server: FileServer, hang_up: str
    ) -> None:
        """A client that closes or resets while its answer pauses ends the answer, noted in time."""
        file_server.script("/slow", Answer(b"H", Pause(10), b"TTP/1.1 200 OK\r\n"))
        with connect(file_server) as sock:
            sock.sendall(get("/slow"))
            assert sock.recv(1) == b"H"
            if hang_up == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            hung_up = time.monotonic()
        for _ in range(250):
            if file_server.hang_ups and file_server.in_flight == 0:
                break
            threading.Event().wait(0.02)
        [seen] = file_server.hang_ups
        assert 0 <= seen - hung_up < 0.5
        assert file_server.in_flight == 0


@pytest.fixture
def stopped_server() -> Iterator[FileServer]:
    """A started server the test stops itself (stopping twice is harmless)."""
    server = FileServer().start()
    yield server
    server.stop()


class TestStop:
    """stop() ends everything at once: the listener, kept connections, held answers."""

    def test_stop_hangs_up(self, stopped_server: FileServer) -> None:
        """A kept connection and a held answer both end when the server stops."""
        stopped_server.script("/f", raw_ok(b"x"))
        arrived = threading.Event()
        stopped_server.script("/held", Answer(arrived.set, Wait(), raw_ok(b"late")))
        with connect(stopped_server) as kept, connect(stopped_server) as held:
            kept.sendall(get("/f"))
            kept.recv(65536)
            held.sendall(get("/held"))
            assert arrived.wait(5)
            stopped_server.stop()
            assert read_to_close(kept) == b""
            assert read_to_close(held) == b""
        with pytest.raises(ConnectionRefusedError):
            connect(stopped_server)


class LinesPostProcessor(BasePostProcessor):
    """Writes each file's id to ``path`` and closes it at the end of the run."""

    options = (Option("path", required=True, output=True),)

    def __init__(self, path: str) -> None:
        self.out = Path(path).open("w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def post_process(self, result: Any, file_data: FileData) -> None:
        self.out.write(f"{file_data.id}\n")

    def close(self) -> None:
        self.out.close()


class LinesPlugin:
    """Registers ``lines``."""

    @hookimpl
    def register_post_processors(self, register: Any) -> None:
        register("lines", LinesPostProcessor)


class TestRunPipeline:
    """run_pipeline runs real post-processors next to its collector."""

    def test_named_post_processor_runs_and_is_closed(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A registered post-processor gets every file with its options, and is closed."""
        out = tmp_path / "ids.txt"
        files = [{"id": f"f{i}", "url": file_server.add(f"/f{i}", b"x")} for i in range(3)]
        outcome = run_pipeline(
            files,
            plugins=[LinesPlugin()],
            post_processors=["lines"],
            post_processor_options={"path": str(out)},
        )
        assert outcome.exit_code == 0
        assert sorted(out.read_text(encoding="utf-8").split()) == ["f0", "f1", "f2"]
        assert len(outcome.outcomes) == 3

    def test_options_one_per_post_processor(self, tmp_path: Path, file_server: FileServer) -> None:
        """A sequence of option mappings gives each post-processor its own."""
        files = [{"id": "a", "url": file_server.add("/a", b"x")}]
        outcome = run_pipeline(
            files,
            post_processors=[LinesPostProcessor, "jsonl"],
            post_processor_options=[{"path": str(tmp_path / "ids")}, {"path": str(tmp_path / "r")}],
        )
        assert outcome.exit_code == 0
        assert (tmp_path / "ids").read_text(encoding="utf-8") == "a\n"
        assert json.loads((tmp_path / "r").read_text(encoding="utf-8"))["id"] == "a"
