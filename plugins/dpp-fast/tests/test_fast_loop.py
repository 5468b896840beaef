"""The ``fast`` downloader's event loop (builtins/fast_loop.py), end to end over 127.0.0.1.

Every test runs the real pipeline with ``downloader="fast"`` against the
scripted ``testing.FileServer``, which writes each answer byte for byte and
records what it saw: connections accepted, requests per path, requests in flight at once.  What the
loop does itself (small plain-http 2xx bodies) and what it hands to a worker
thread (redirects, errors, chunked, to-the-close and big bodies, https, host
names not yet resolved) must both arrive whole, with one request per hop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from download_pipeline_processor import BaseProcessor, FileData, ProcessingPipeline, affinity
from download_pipeline_processor._cache import PART_SUFFIX
from download_pipeline_processor.backend import DownloadRequest
from download_pipeline_processor.errors import (
    PermanentDownloadError,
    PipelineInterrupted,
    TransientDownloadError,
)
from download_pipeline_processor.sink import BodyWriter
from download_pipeline_processor.testing import (
    CLOSE,
    Answer,
    CollectingPostProcessor,
    FileServer,
    Pause,
    PipelineOutcome,
    Wait,
    download_request,
    leftover_files,
    make_plugin_manager,
    raw_ok,
    run_pipeline,
)
from dpp_fast import fast_loop
from dpp_fast import plugin as fast_plugin
from dpp_fast.fast import FastDownloader
from dpp_fast.socket_transport import SocketTransport

#: Generous bound on a run that must not hang; the runs themselves take well under a second.
HANG = 10.0


#: A 200 promising 1000 bytes that sends 10 and hangs up.
CUT = Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10, CLOSE)


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A scripted loopback server, stopped after the test."""
    with FileServer() as loopback:
        yield loopback


@pytest.fixture(autouse=True)
def plain_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No .netrc and no proxy: plain URLs are the loop's, whatever the machine has set."""
    # A .netrc or a proxy sends every URL through a requests.Session, i.e. a worker thread.
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def resumed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """URLs whose answer the loop handed to a worker thread (SocketTransport.resume).

    A spy around the real method: whether the loop or a worker thread read a
    body leaves no trace on the wire, and the hand-off is the behaviour pinned.
    """
    urls: list[str] = []
    real = SocketTransport.resume

    def spy(self: SocketTransport, request: DownloadRequest, *args: Any) -> int:
        urls.append(request.file_data.url)
        return real(self, request, *args)

    monkeypatch.setattr(SocketTransport, "resume", spy)
    return urls


@pytest.fixture
def fetched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """URLs the fast downloader's blocking fetch() was called for (a worker thread's attempt).

    A spy around the real method, for the same reason as ``resumed``.
    """
    urls: list[str] = []
    real = FastDownloader.fetch

    def spy(self: FastDownloader, request: DownloadRequest) -> int:
        urls.append(request.file_data.url)
        return real(self, request)

    monkeypatch.setattr(FastDownloader, "fetch", spy)
    return urls


def run_fast(
    files: list[dict[str, Any]], cache_root: Path, processor: Any = "checksum", **settings: Any
) -> PipelineOutcome:
    """Run the pipeline in process with the fast downloader and short timeouts."""
    settings.setdefault("timeout", 5.0)
    return run_pipeline(
        files,
        processor,
        downloader="fast",
        plugins=[fast_plugin],
        download_cache=cache_root,
        **settings,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body_of(index: int, size: int = 3000) -> bytes:
    """Distinct content for file ``index``."""
    return (f"<{index}>".encode() * size)[:size]


def failure_of(outcome: PipelineOutcome, file_id: str) -> BaseException:
    """The error the file ``file_id`` failed with (it must have failed in download)."""
    (file_data,) = [fd for _, fd in outcome.outcomes if fd.id == file_id]
    assert file_data.error is not None, f"{file_id} did not fail"
    assert file_data.error.stage == "download"
    return file_data.error.error


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def download_threads(before: set[threading.Thread]) -> set[str]:
    """Names of the download stage's threads started since ``before`` was taken."""
    return {
        thread.name
        for thread in threading.enumerate()
        if thread not in before and thread.name.startswith("dpp-download")
    }


class TestManyFiles:
    """The common case, all in the loop: many small files, each whole and checked."""

    def test_three_hundred_files(self, server: FileServer, cache_root: Path) -> None:
        """300 distinct bodies arrive byte for byte; exit 0, no .part, an empty cache after."""
        files = []
        expected = {}
        for index in range(300):
            body = body_of(index, 500 + index * 13)
            files.append({"id": f"f{index}", "url": server.add(f"/f{index}.bin", body)})
            expected[f"f{index}"] = sha256(body)
        seen_parts: list[Path] = []

        class Checking(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                path = file_data.local_path
                assert path is not None
                part = path.with_name(path.name + PART_SUFFIX)
                if part.exists():
                    seen_parts.append(part)
                return {"sha256": sha256(path.read_bytes()), "name": path.name}

        outcome = run_fast(files, cache_root, Checking, download_workers=8)
        assert outcome.exit_code == 0, outcome.failures[:3]
        assert {fd.id: result["sha256"] for result, fd in outcome.outcomes} == expected
        assert not any(result["name"].endswith(PART_SUFFIX) for result in outcome.results)
        assert seen_parts == []
        assert outcome.summary.succeeded == 300
        assert outcome.summary.bytes_downloaded == sum(500 + i * 13 for i in range(300))
        assert server.request_count() == 300
        assert leftover_files(cache_root) == []
        assert list(cache_root.iterdir()) == []  # the run's folder is gone too


class TestWritingThreads:
    """Longer bodies are written and hashed beside the loop, whole and checked."""

    def test_bodies_are_written_off_the_loop(
        self, server: FileServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Bodies longer than a read are written on the writing threads and arrive whole."""
        files = []
        expected = {}
        for index in range(10):
            body = os.urandom(100_000 + index * 40_000)
            files.append({"id": f"w{index}", "url": server.add(f"/w{index}.bin", body)})
            expected[f"w{index}"] = sha256(body)
        writing: set[str] = set()
        write_many = BodyWriter.write_many

        def noting(writer: BodyWriter, chunks: Any) -> None:
            # A spy on the real writer: which thread writes (nothing is replaced).
            writing.add(threading.current_thread().name)
            write_many(writer, chunks)

        monkeypatch.setattr(BodyWriter, "write_many", noting)
        outcome = run_fast(files, cache_root, "checksum", download_workers=4, chunk_size=65_536)
        assert outcome.exit_code == 0, outcome.failures[:3]
        assert {fd.id: fd.download.sha256 for _, fd in outcome.outcomes} == expected
        assert writing
        assert all(name.startswith("dpp-fast-writes-") for name in writing), writing
        assert leftover_files(cache_root) == []


class TestMultiplexing:
    """One thread keeps up to download_workers requests going, on kept connections."""

    def test_workers_limit_requests_in_flight(self, server: FileServer, cache_root: Path) -> None:
        """With 4 workers the server sees 4 requests at once, never 5, all from one thread."""
        threads_seen: list[set[str]] = []
        before = set(threading.enumerate())
        server.on_request = lambda _path: threads_seen.append(download_threads(before))
        files = [
            {"id": str(i), "url": server.script(f"/slow{i}", Answer(Pause(0.1), raw_ok(b"s" * i)))}
            for i in range(16)
        ]
        outcome = run_fast(files, cache_root, download_workers=4)
        assert outcome.exit_code == 0
        assert server.most_in_flight == 4
        assert server.request_count() == 16
        # One download thread, no worker or helper threads: the loop did all of it.
        assert threads_seen
        assert all(names == {"dpp-download"} for names in threads_seen), threads_seen

    def test_connections_kept_alive(self, server: FileServer, cache_root: Path) -> None:
        """50 files over 4 workers reuse a handful of connections, not one per file."""
        files = [{"url": server.add(f"/k{i}", body_of(i, 100))} for i in range(50)]
        outcome = run_fast(files, cache_root, download_workers=4)
        assert outcome.exit_code == 0
        assert server.request_count() == 50
        assert 1 <= server.connections <= 8


class TestHandedOff:
    """What the loop does not read itself goes to a worker thread, never requested twice."""

    def test_redirect(self, server: FileServer, cache_root: Path, resumed: list[str]) -> None:
        """A 302 is followed on a worker thread: one request per hop, the target's content."""
        target = server.add("/target.bin", b"the target")
        head = f"HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n"
        url = server.script("/moved.bin", Answer(head.encode()))
        outcome = run_fast([{"url": url}], cache_root)
        assert outcome.exit_code == 0
        assert outcome.results[0]["sha256"] == sha256(b"the target")
        assert server.request_count("/moved.bin") == 1
        assert server.request_count("/target.bin") == 1
        assert resumed == [url]

    @pytest.mark.parametrize(
        ("answer", "body"),
        [
            (
                Answer(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"6\r\nchunky\r\n7\r\n body!\n\r\n0\r\n\r\n"
                ),
                b"chunky body!\n",
            ),
            (
                Answer(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"to the close " * 400,
                    CLOSE,
                ),
                b"to the close " * 400,
            ),
        ],
        ids=["chunked", "close-delimited"],
    )
    def test_body_without_length(
        self,
        server: FileServer,
        cache_root: Path,
        resumed: list[str],
        answer: Answer,
        body: bytes,
    ) -> None:
        """A chunked or to-the-close body is finished on a worker thread from the same answer."""
        url = server.script("/unframed.bin", answer)
        after = server.add("/after.bin", b"after")  # the loop carries on meanwhile
        outcome = run_fast(
            [{"id": "unframed", "url": url}, {"id": "after", "url": after}], cache_root
        )
        assert outcome.exit_code == 0
        sums = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
        assert sums == {"unframed": sha256(body), "after": sha256(b"after")}
        assert server.request_count("/unframed.bin") == 1
        assert resumed == [url]

    def test_big_body(
        self,
        server: FileServer,
        cache_root: Path,
        resumed: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A body above HAND_OFF_ABOVE moves to a worker thread with the bytes read so far."""
        # HAND_OFF_ABOVE is a tuning knob (8 MiB); lowered so the test moves 200 KB, not 9 MiB.
        monkeypatch.setattr(fast_loop, "HAND_OFF_ABOVE", 64 * 1024)
        big = os.urandom(200_000)
        small = body_of(1, 60_000)
        # The head and the first bytes come in one write, the rest a moment later.
        big_url = server.script(
            "/big.bin",
            Answer(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big[:5000],
                Pause(0.05),
                big[5000:],
            ),
        )
        small_url = server.add("/small.bin", small)
        outcome = run_fast(
            [{"id": "big", "url": big_url}, {"id": "small", "url": small_url}], cache_root
        )
        assert outcome.exit_code == 0
        sums = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
        assert sums == {"big": sha256(big), "small": sha256(small)}
        assert server.request_count("/big.bin") == 1
        assert resumed == [big_url]  # the small one stayed in the loop

    @pytest.mark.skipif(
        len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
        reason="pinning is only observable with two cores or more",
    )
    def test_big_body_uses_every_core_when_pinned(
        self, server: FileServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Under --pin-threads the worker thread that takes a big body over is widened.

        It is started by the pinned loop thread and inherits its one CPU: it
        must widen to the run's whole set, not to that one CPU.
        """
        monkeypatch.setattr(fast_loop, "HAND_OFF_ABOVE", 64 * 1024)  # as in test_big_body
        everything = frozenset(os.sched_getaffinity(0))
        big = os.urandom(4 * affinity.WIDEN_ABOVE)
        first = 2 * affinity.WIDEN_ABOVE
        url = server.script(
            "/big.bin",
            Answer(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(big)}\r\n\r\n".encode() + big[:first],
                Pause(1.5),
                big[first:],
            ),
        )
        outcomes: list[PipelineOutcome] = []
        run = threading.Thread(
            target=lambda: outcomes.append(
                run_fast([{"id": "big", "url": url}], cache_root, pin_threads=True)
            )
        )
        run.start()
        seen: set[frozenset[int]] = set()
        deadline = time.monotonic() + HANG
        while run.is_alive() and time.monotonic() < deadline:
            for thread in threading.enumerate():
                if thread.name.startswith("dpp-download-helper") and thread.native_id:
                    with contextlib.suppress(OSError):  # the thread may just have ended
                        seen.add(frozenset(os.sched_getaffinity(thread.native_id)))
            if everything in seen:
                break
            time.sleep(0.01)
        run.join(HANG)
        assert everything in seen
        (outcome,) = outcomes
        assert outcome.exit_code == 0
        assert [result["sha256"] for result, _ in outcome.outcomes] == [sha256(big)]

    def test_a_handed_over_connection_replaces_the_kept_one(
        self, server: FileServer, tmp_path: Path
    ) -> None:
        """The worker thread keeps one connection per origin: the one it had is closed."""
        transport = SocketTransport(
            timeout=5.0, chunk_size=64 * 1024, max_redirects=3, headers={}, ca_bundle=None
        )
        urls = [server.add(f"/k{i}", body_of(i)) for i in range(3)]
        stop = threading.Event()
        try:
            # An ordinary fetch leaves this thread a kept connection...
            first = download_request(urls[0], tmp_path / "k0", stop=stop)
            assert transport.fetch(first) == len(body_of(0))
            sockets = []
            for index in (1, 2):
                # ... and each hand-over brings one more, as the loop would.
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.sendall(f"GET /k{index} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                handed = download_request(urls[index], tmp_path / f"k{index}", stop=stop)
                size = transport.resume(handed, sock, b"")
                assert size == len(body_of(index))
                sockets.append(sock)
            assert sockets[0].fileno() == -1  # replaced by the second: closed, not leaked
            assert sockets[1].fileno() >= 0  # the one kept
        finally:
            transport.close()
        assert (tmp_path / "k2").read_bytes() == body_of(2)

    def test_not_found(self, server: FileServer, cache_root: Path) -> None:
        """A 404 fails at once and for good: one request, the error names HTTP 404."""
        url = server.url("/missing.bin")
        fine = server.add("/fine.bin", b"fine")
        outcome = run_fast(
            [{"id": "missing", "url": url}, {"id": "fine", "url": fine}], cache_root, max_retries=3
        )
        assert outcome.exit_code == 1
        error = failure_of(outcome, "missing")
        assert isinstance(error, PermanentDownloadError)
        assert "HTTP 404" in str(error)
        assert server.request_count("/missing.bin") == 1
        assert outcome.summary.succeeded == 1

    def test_unavailable_then_ok(self, server: FileServer, cache_root: Path) -> None:
        """A 503 is retried once the worker thread read it; the second answer succeeds."""
        busy = Answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
        url = server.script("/flaky.bin", busy, raw_ok(b"finally"))
        outcome = run_fast([{"url": url}], cache_root, max_retries=2, retry_backoff=0)
        assert outcome.exit_code == 0
        assert outcome.results[0]["sha256"] == sha256(b"finally")
        assert server.request_count("/flaky.bin") == 2


def assert_then_next(server: FileServer, cache_root: Path, url: str, body: bytes) -> None:
    """``url`` arrives as ``body``, and its connection then carries one more file."""
    next_url = server.add("/next.bin", b"next")
    outcome = run_fast(
        [{"id": "first", "url": url}, {"id": "next", "url": next_url}],
        cache_root,
        download_workers=1,
    )
    assert outcome.exit_code == 0
    sums = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
    assert sums == {"first": sha256(body), "next": sha256(b"next")}
    assert server.connections == 1


class TestReadingTheHead:
    """The loop reads heads that arrive in pieces, after interim answers, or with no body."""

    @pytest.mark.parametrize(
        "after_blank_line",
        [-30, -2, 0, 5],
        ids=["in-status-line", "in-blank-line", "at-body", "in-body"],
    )
    def test_head_in_pieces(
        self, server: FileServer, cache_root: Path, resumed: list[str], after_blank_line: int
    ) -> None:
        """A head split over two writes anywhere: the body after it arrives whole."""
        answer = raw_ok(b"0123456789" * 3)
        split = answer.index(b"\r\n\r\n") + 4 + after_blank_line
        url = server.script("/split.bin", Answer(answer[:split], Pause(0.05), answer[split:]))
        assert_then_next(server, cache_root, url, b"0123456789" * 3)
        assert resumed == []

    @pytest.mark.parametrize(
        "head",
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"],
        ids=["length-0", "204"],
    )
    def test_empty_body(
        self, server: FileServer, cache_root: Path, resumed: list[str], head: bytes
    ) -> None:
        """No body at all is an empty file, and the connection carries the next request."""
        url = server.script("/empty.bin", Answer(head))
        assert_then_next(server, cache_root, url, b"")
        assert resumed == []

    @pytest.mark.parametrize("apart", [False, True], ids=["one-write", "two-writes"])
    def test_continue_skipped(
        self, server: FileServer, cache_root: Path, resumed: list[str], apart: bool
    ) -> None:
        """100 Continue, then the 200: the loop reads the body, one request, the right content."""
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        final = raw_ok(b"after the interim answer")
        answer = Answer(interim, Pause(0.05), final) if apart else Answer(interim + final)
        url = server.script("/interim.bin", answer)
        outcome = run_fast([{"url": url}], cache_root)
        assert outcome.exit_code == 0
        assert outcome.results[0]["sha256"] == sha256(b"after the interim answer")
        assert server.request_count("/interim.bin") == 1
        assert resumed == []


class TestBrokenConnections:
    """Truncation, silence, refusal and stale keep-alive connections."""

    @pytest.mark.parametrize("retries", [0, 2])
    def test_truncated_body(self, server: FileServer, cache_root: Path, retries: int) -> None:
        """A body cut short fails after max_retries + 1 attempts, named 'truncated body'."""
        url = server.script("/cut.bin", CUT)
        outcome = run_fast([{"id": "cut", "url": url}], cache_root, max_retries=retries)
        assert outcome.exit_code == 1
        error = failure_of(outcome, "cut")
        assert isinstance(error, TransientDownloadError)
        assert "truncated body: got 10 of 1000 bytes" in str(error)
        assert server.request_count("/cut.bin") == retries + 1
        assert leftover_files(cache_root) == []

    @pytest.mark.parametrize("retries", [0, 2])
    def test_truncation_fails_that_file_alone(
        self, server: FileServer, cache_root: Path, retries: int
    ) -> None:
        """A file in flight beside a truncated one, and the files after them, all succeed."""
        processed: list[str] = []

        class Recording(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                processed.append(file_data.id)

        files = [
            {"id": "cut", "url": server.script("/cut.bin", CUT)},
            # Still on its way when the other body breaks off.
            {"id": "slow", "url": server.script("/slow.bin", Answer(Pause(0.3), raw_ok(b"slow")))},
        ]
        files += [{"id": f"later{i}", "url": server.add(f"/later{i}", b"later")} for i in range(4)]
        outcome = run_fast(files, cache_root, Recording, download_workers=2, max_retries=retries)
        reported = {
            fd.id: None if fd.error is None else str(fd.error) for _, fd in outcome.outcomes
        }
        assert sorted(reported) == sorted(entry["id"] for entry in files), reported
        assert [fd.id for fd in outcome.failures] == ["cut"], reported
        assert sorted(processed) == sorted(entry["id"] for entry in files[1:])
        assert outcome.exit_code == 1
        assert server.request_count("/cut.bin") == retries + 1
        assert server.request_count("/slow.bin") == 1

    def test_silent_server_times_out(self, server: FileServer, cache_root: Path) -> None:
        """A server that never answers fails the file with 'timed out' after the timeout."""
        url = server.script("/silent.bin", Answer(Wait(), CLOSE))
        fine = server.add("/fine.bin", b"fine")
        began = time.monotonic()
        outcome = run_fast(
            [{"id": "silent", "url": url}, {"id": "fine", "url": fine}],
            cache_root,
            timeout=0.5,
            max_retries=0,
        )
        elapsed = time.monotonic() - began
        assert outcome.exit_code == 1
        error = failure_of(outcome, "silent")
        assert isinstance(error, TransientDownloadError)
        assert "timed out" in str(error)
        assert outcome.summary.succeeded == 1
        assert 0.4 < elapsed < HANG

    def test_stale_kept_connections_replaced(self, server: FileServer, cache_root: Path) -> None:
        """A server that hangs up after each answer, promising keep-alive: no file fails."""
        files = [
            {
                "id": str(i),
                "url": server.script(f"/h{i}", Answer(raw_ok(body_of(i, 200)), CLOSE)),
            }
            for i in range(40)
        ]
        outcome = run_fast(files, cache_root, download_workers=2, max_retries=0)
        assert outcome.exit_code == 0, [str(fd.error) for fd in outcome.failures[:3]]
        assert {fd.id: r["sha256"] for r, fd in outcome.outcomes} == {
            str(i): sha256(body_of(i, 200)) for i in range(40)
        }
        # The request on a dead connection never reached the server: one per file.
        assert all(server.request_count(f"/h{i}") == 1 for i in range(40))
        assert server.connections >= 40

    def test_stray_answer_on_a_kept_connection(self, server: FileServer, cache_root: Path) -> None:
        """A 408 a server sends on an idle connection before hanging up is not the next answer.

        With one worker, a queue of one and a slow processor, the loop takes
        no new file after /s2 until the processor frees the queue (~0.3 s);
        meanwhile the 408 arrives unseen on the kept connection, which must be
        checked before /s3 is requested on it.
        """
        timeout_answer = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"
        urls = [server.add(f"/s{i}", body_of(i)) for i in range(4)]
        server.script("/s2", Answer(raw_ok(body_of(2)), Pause(0.05), timeout_answer, CLOSE))
        files = [{"id": str(i), "url": url} for i, url in enumerate(urls)]

        class Slow(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                time.sleep(0.3)

        outcome = run_fast(
            files,
            cache_root,
            processor=Slow,
            download_workers=1,
            download_queue_size=1,
            processing_limit=1,
            max_retries=0,
        )
        assert outcome.exit_code == 0, [str(fd.error) for fd in outcome.failures]
        assert [server.request_count(f"/s{i}") for i in range(4)] == [1, 1, 1, 1]
        assert server.connections == 2  # /s3 on a new one, after the stray answer

    def test_connection_refused(self, server: FileServer, cache_root: Path) -> None:
        """Nothing listening fails that file (transient, 'refused'); the others succeed."""
        refused = f"http://127.0.0.1:{closed_port()}/nobody.bin"
        files = [{"id": "refused", "url": refused}] + [
            {"id": str(i), "url": server.add(f"/r{i}", body_of(i))} for i in range(5)
        ]
        # No retries: the error is the loop's own, not that of a retry on a worker thread.
        outcome = run_fast(files, cache_root, max_retries=0)
        assert outcome.exit_code == 1
        error = failure_of(outcome, "refused")
        assert isinstance(error, TransientDownloadError)
        assert "refused" in str(error).lower()
        assert outcome.summary.succeeded == 5


class TestFramingInTheLoop:
    """The loop frames bodies by the rule every downloader shares (``http_rules.body_framing``)."""

    @pytest.mark.parametrize("length", ["-1", "ten", "3, 4"])
    def test_invalid_content_length_fails_for_good(
        self, server: FileServer, cache_root: Path, length: str
    ) -> None:
        """A negative or garbage Content-Length fails that file once, with the shared message."""
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nabcd"
        files = [
            {"id": "bad", "url": server.script("/bad.bin", Answer(head.encode(), CLOSE))},
            {"id": "good", "url": server.add("/good.bin", b"good")},
        ]
        outcome = run_fast(files, cache_root, max_retries=2)
        error = failure_of(outcome, "bad")
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == f"invalid Content-Length {length!r} in the response"
        assert server.request_count("/bad.bin") == 1
        assert [fd.id for fd in outcome.failures] == ["bad"]
        assert leftover_files(cache_root) == []

    def test_chunked_wins_over_content_length(self, server: FileServer, cache_root: Path) -> None:
        """A chunked body with a smaller Content-Length beside it arrives whole."""
        body = body_of(7, 20_000)
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[at : at + 4096]), body[at : at + 4096])
            for at in range(0, len(body), 4096)
        )
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n"
        url = server.script("/both.bin", Answer(head + chunks + b"0\r\n\r\n", CLOSE))
        outcome = run_fast([{"id": "both", "url": url}], cache_root, max_retries=0)
        assert outcome.exit_code == 0, outcome.failures
        assert outcome.summary.bytes_downloaded == len(body)
        assert [result["sha256"] for result in outcome.results] == [sha256(body)]


class TestBackpressure:
    """A slow processor holds downloads back; finished files do not pile up in the cache."""

    def test_cache_bounded_by_queue_and_workers(self, server: FileServer, cache_root: Path) -> None:
        """At most queue + workers + processors complete files are ever in the cache."""
        queue_size, workers, processors = 2, 4, 1
        most: list[int] = []

        class Slow(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                complete = [
                    path
                    for path in cache_root.rglob("*")
                    if path.is_file() and not path.name.endswith(PART_SUFFIX)
                ]
                most.append(len(complete))
                time.sleep(0.02)

        files = [{"url": server.add(f"/b{i}", body_of(i, 500))} for i in range(40)]
        outcome = run_fast(
            files,
            cache_root,
            Slow,
            download_queue_size=queue_size,
            download_workers=workers,
            processing_limit=processors,
        )
        assert outcome.exit_code == 0
        assert len(most) == 40
        # The file being processed, the queued ones, one finished per download slot.
        assert max(most) <= queue_size + workers + processors
        assert max(most) > queue_size  # the downloads did run ahead of the processor


class TestStop:
    """A stop ends the loop's downloads at once and reports them interrupted."""

    @pytest.mark.parametrize(
        "paused",
        [
            Answer(Wait(), CLOSE),
            # A chunked body that stops after its first chunk: it is on a worker thread.
            Answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                Wait(),
                CLOSE,
            ),
        ],
        ids=["in-the-loop", "handed-off"],
    )
    def test_stop_during_downloads(
        self, server: FileServer, cache_root: Path, paused: Answer
    ) -> None:
        """Four downloads paused by the server: stop(143) returns 143, each reported once."""
        files = [{"id": str(i), "url": server.script(f"/held{i}", paused)} for i in range(10)]
        collector = CollectingPostProcessor()
        pipeline = ProcessingPipeline(
            "checksum",
            collector,
            plugin_manager=make_plugin_manager(fast_plugin),
            downloader="fast",
            download_cache=cache_root,
            download_workers=4,
            stop_grace=1.0,
        )
        codes: list[int] = []
        runner = threading.Thread(target=lambda: codes.append(pipeline.run(files)))
        runner.start()
        try:
            deadline = time.monotonic() + HANG
            while server.in_flight < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.in_flight == 4
            began = time.monotonic()
            pipeline.stop(143)
            runner.join(HANG)
            stopped_in = time.monotonic() - began
        finally:
            server.release.set()
            runner.join(HANG)
        assert codes == [143]
        assert stopped_in < 5
        reported = {fd.id: fd.error for _, fd in collector.outcomes}
        assert len(reported) == len(collector.outcomes) == 4
        for error in reported.values():
            assert error is not None
            assert error.stage == "download"
            assert isinstance(error.error, PipelineInterrupted)
        assert pipeline.summary.not_started == 6
        assert list(cache_root.iterdir()) == []


def files_by_name(server: FileServer, prefix: str, count: int, host: str) -> list[Any]:
    """``count`` distinct files served by ``server``, their URLs naming ``host``."""
    return [
        {"id": str(i), "url": server.add(f"/{prefix}{i}", body_of(i)).replace("127.0.0.1", host)}
        for i in range(count)
    ]


def assert_all_arrived(outcome: PipelineOutcome, count: int) -> None:
    """Exit 0 and every file ``files_by_name`` made arrived byte for byte."""
    assert outcome.exit_code == 0, [str(fd.error) for fd in outcome.failures[:3]]
    assert {fd.id: r["sha256"] for r, fd in outcome.outcomes} == {
        str(i): sha256(body_of(i)) for i in range(count)
    }


def resolve_as(monkeypatch: pytest.MonkeyPatch, name: str, *addresses: tuple[str, int]) -> None:
    """Make ``name`` resolve to ``addresses``, in order.

    The one fake part of these tests: no name on a test machine resolves to a
    dead and a live loopback address, so the resolver answers for made-up names.
    """
    real_getaddrinfo = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real_getaddrinfo(host, port, *args, **kwargs)
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, address) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)


class TestHostNames:
    """Names are looked up off the loop's thread; files wait on worker threads meanwhile."""

    def test_localhost(self, server: FileServer, cache_root: Path, fetched: list[str]) -> None:
        """Every localhost URL succeeds: the first on worker threads, later ones in the loop."""
        files = files_by_name(server, "n", 40, "localhost")
        # No retries: the first attempt, the loop's or a worker thread's, must succeed.
        outcome = run_fast(files, cache_root, download_workers=4, max_retries=0)
        assert_all_arrived(outcome, 40)
        assert server.request_count() == 40
        assert 1 <= len(fetched) < 40

    def test_next_address_after_a_refusal(
        self,
        server: FileServer,
        cache_root: Path,
        fetched: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A name whose first address refuses is served from its next address, in the loop too."""
        dead = ("127.0.0.1", closed_port())
        resolve_as(monkeypatch, "two-addresses.test", dead, ("127.0.0.1", server.port))
        files = files_by_name(server, "a", 20, "two-addresses.test")
        outcome = run_fast(files, cache_root, download_workers=2, max_retries=0)
        assert_all_arrived(outcome, 20)
        assert len(fetched) < 20  # most went through the loop's own connect

    def test_next_address_after_a_silent_one(
        self, server: FileServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A first address that never answers a connect times out into the next one."""
        # A listener whose accept queue is full: the kernel drops new SYNs, so a
        # connect to it hangs, like one to a blackholed address.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        fillers = [socket.socket() for _ in range(4)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(hole.getsockname())
            time.sleep(0.2)
            with socket.socket() as probe:
                probe.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    probe.connect(hole.getsockname())  # the premise: connects hang
            resolve_as(
                monkeypatch, "silent-first.test", hole.getsockname(), ("127.0.0.1", server.port)
            )
            files = files_by_name(server, "q", 4, "silent-first.test")
            outcome = run_fast(files, cache_root, download_workers=2, max_retries=0, timeout=0.5)
        finally:
            for filler in fillers:
                filler.close()
            hole.close()
        assert_all_arrived(outcome, 4)
        assert server.request_count() == 4


@pytest.fixture
def trusted(authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``authority`` in REQUESTS_CA_BUNDLE, the bundle the downloaders verify against."""
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))


class TestTls:
    """https is not the loop's: a worker thread fetches it."""

    @pytest.mark.usefixtures("trusted")
    def test_https_goes_to_a_worker_thread(
        self,
        tls_server: FileServer,
        server: FileServer,
        cache_root: Path,
        fetched: list[str],
    ) -> None:
        """An https URL is fetched by a worker thread; plain ones beside it stay in the loop."""
        secure = tls_server.add("/secure.bin", b"secure" * 1000)
        plain = server.add("/plain.bin", b"plain")
        outcome = run_fast(
            [{"id": "secure", "url": secure}, {"id": "plain", "url": plain}],
            cache_root,
            max_retries=0,  # a failed first attempt in the loop would not be hidden by a retry
        )
        assert outcome.exit_code == 0
        sums = {fd.id: result["sha256"] for result, fd in outcome.outcomes}
        assert sums == {"secure": sha256(b"secure" * 1000), "plain": sha256(b"plain")}
        assert fetched == [secure]
        assert tls_server.request_count("/secure.bin") == 1


class TestCommandLine:
    """The real command with --downloader fast, in a subprocess."""

    def test_subprocess(self, server: FileServer, tmp_path: Path, cli_path: Path) -> None:
        """A real process with --downloader fast checksums every file and exits 0."""
        bodies = {str(i): body_of(i, 100 + i) for i in range(6)}
        entries = [{"id": key, "url": server.add(f"/c{key}", body)} for key, body in bodies.items()]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        cache = tmp_path / "cache"
        command = [str(cli_path), "--files", str(listing), "--downloader", "fast"]
        command += ["--processor", "checksum", "--post-processor", "jsonl"]
        command += ["--download-cache", str(cache)]
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **os.environ,
                "NETRC": str(tmp_path / "no-such-netrc"),
                "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "fast",
            },
        )
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        assert {line["id"]: line["result"]["sha256"] for line in lines} == {
            key: sha256(body) for key, body in bodies.items()
        }
        assert "6 files: 6 succeeded, 0 failed" in proc.stderr
        assert server.request_count() == 6
        assert leftover_files(cache) == []
