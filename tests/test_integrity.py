"""Integrity from the input (size, sha256, md5, checksum) and the limits, on every downloader."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from download_pipeline_processor.cli import main
from download_pipeline_processor.testing import (
    Answer,
    FileServer,
    Pause,
    PipelineOutcome,
    RangeOptions,
    leftover_files,
    make_plugin_manager,
    raw_ok,
    run_command_bounded,
)

from .integrity_support import DOWNLOADER_NAMES, DigestingProcessor, run, sha256, transport_fixture

BODY = b"integrity " * 5000  # 50 000 bytes


@pytest.fixture(params=list(DOWNLOADER_NAMES))
def transport(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run every test over each transport: pooled, session, fast and curl."""
    return transport_fixture(request, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    """One loopback file server for the module; each test uses its own paths."""
    with FileServer() as file_server:
        yield file_server


def path() -> str:
    return f"/{uuid.uuid4().hex}/file.bin"


class TestChecksPass:
    def test_matching_checks_let_the_file_through(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A body matching size, sha256, md5 and checksum reaches the processor, digest recorded."""
        route = path()
        entry = {
            "url": server.add(route, BODY),
            "size": len(BODY),
            "sha256": sha256(BODY).upper(),
            "md5": hashlib.md5(BODY).hexdigest(),  # noqa: S324 - a checksum, not security
            "checksum": "sha1:" + hashlib.sha1(BODY).hexdigest(),  # noqa: S324
        }
        outcome = run(transport, [entry], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(BODY)
        assert file_data.download.sha256 == sha256(BODY)
        assert file_data.download.size == len(BODY)
        assert file_data.download.attempts == 1
        assert server.request_count(route) == 1


MISMATCHES = {
    "sha256": (
        {"sha256": "0" * 64},
        "sha256 mismatch: expected " + "0" * 64 + ", got " + sha256(BODY),
    ),
    "md5": ({"md5": "f" * 32}, "md5 mismatch: expected " + "f" * 32 + ", got "),
    "checksum": ({"checksum": "blake2b:" + "a" * 128}, "blake2b mismatch: expected " + "a" * 128),
    "size": (
        {"size": len(BODY) + 1},
        f"size mismatch: expected {len(BODY) + 1} bytes, got {len(BODY)} bytes",
    ),
}


class TestMismatch:
    @pytest.mark.parametrize("check", list(MISMATCHES))
    def test_a_mismatch_is_retried_then_fails_naming_the_check(
        self, server: FileServer, transport: str, tmp_path: Path, check: str
    ) -> None:
        """A wrong body is retried, then fails at download naming check, expected and actual."""
        fields, message = MISMATCHES[check]
        route = path()
        outcome = run(
            transport, [{"url": server.add(route, BODY), **fields}], tmp_path, max_retries=2
        )
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert failed.error.stage == "download"
        assert message in str(failed.error.error)
        assert server.request_count(route) == 3
        assert failed.download.attempts == 3
        assert DigestingProcessor.seen == []
        assert leftover_files(tmp_path / "cache") == []

    def test_a_mismatch_then_the_right_body_succeeds(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A corrupt first answer and a right second one: the file passes on the retry."""
        route = path()
        url = server.add(
            route, BODY, range_options=RangeOptions(ranges=False, bodies=(b"x" * len(BODY), BODY))
        )
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        assert outcome.results == [sha256(BODY)]
        assert server.request_count(route) == 2


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(
        main, args, obj={"plugin_manager": make_plugin_manager()}, catch_exceptions=False
    )


BAD_VALUES = [
    ({"sha256": "abc"}, "field 'sha256' must be 64 hex digits"),
    ({"sha256": "g" * 64}, "field 'sha256' must be 64 hex digits"),
    ({"md5": 12}, "field 'md5' must be a string of hex digits"),
    ({"checksum": "nosuch:00"}, "field 'checksum' unknown checksum algorithm 'nosuch'"),
    ({"checksum": "shake_128:00"}, "has no fixed digest length"),
    ({"checksum": "sha1"}, "field 'checksum' must be \"ALGORITHM:HEX\""),
    ({"checksum": "sha1:abcd"}, "must be 40 hex digits for sha1"),
    ({"size": -1}, "field 'size' must be a non-negative integer"),
    ({"size": "12"}, "field 'size' must be a non-negative integer"),
    ({"size": True}, "field 'size' must be a non-negative integer"),
]


class TestBadInputValues:
    @pytest.mark.parametrize(("fields", "message"), BAD_VALUES)
    def test_bad_check_values_are_exit_2_before_any_request(
        self,
        server: FileServer,
        tmp_path: Path,
        fields: dict[str, Any],
        message: str,
    ) -> None:
        """A malformed size or digest: one line naming entry and field, exit 2, no request."""
        route = path()
        listing = tmp_path / "files.json"
        good = {"url": server.add(route, BODY)}
        listing.write_text(json.dumps([good, {"url": server.url(route), **fields}]))
        result = invoke(["--files", str(listing), "--download-cache", str(tmp_path / "cache")])
        assert result.exit_code == 2
        assert f"{listing}: entry 1: " in result.output
        assert message in result.output
        assert "Traceback" not in result.output
        assert server.request_count(route) == 0


class TestMaxFileSize:
    def test_a_file_announced_larger_fails_at_once(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A Content-Length past --max-file-size fails without writing the body, not retried."""
        route = path()
        outcome = run(transport, [{"url": server.add(route, BODY)}], tmp_path, max_file_size=1000)
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert f"file too large: {len(BODY)} bytes announced, --max-file-size is 1000 bytes" in str(
            failed.error.error
        )
        assert server.request_count(route) == 1
        assert DigestingProcessor.seen == []

    def test_an_entry_announcing_a_larger_size_is_never_requested(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """An entry whose size is past --max-file-size fails with no request at all."""
        route = path()
        entry = {"url": server.add(route, BODY), "size": len(BODY)}
        outcome = run(transport, [entry], tmp_path, max_file_size=1000)
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert "file too large" in str(failed.error.error)
        assert server.request_count(route) == 0

    def test_a_body_growing_past_the_limit_is_cut_off(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A chunked body (no length) past --max-file-size is cut off and fails, not retried."""
        route = path()
        url = server.add(route, BODY, range_options=RangeOptions(ranges=False, chunked=True))
        outcome = run(transport, [{"url": url}], tmp_path, max_file_size=20_000)
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert "file too large: cut off past --max-file-size of 20000 bytes" in str(
            failed.error.error
        )
        assert server.request_count(route) == 1
        assert leftover_files(tmp_path / "cache") == []

    def test_a_file_at_the_limit_passes(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A body exactly --max-file-size long is accepted."""
        outcome = run(
            transport, [{"url": server.add(path(), BODY)}], tmp_path, max_file_size=len(BODY)
        )
        assert outcome.exit_code == 0, outcome.failures


class TestFileTimeout:
    def test_a_dripping_server_fails_the_attempt_at_the_deadline(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A body dripping a byte per 0.2 s fails each attempt at --file-timeout, then the file."""
        route = path()
        url = server.add(route, b"d" * 200, range_options=RangeOptions(ranges=False, drip=0.2))
        outcome = run(
            transport, [{"url": url}], tmp_path, file_timeout=0.7, timeout=3.0, max_retries=1
        )
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert failed.error.stage == "download"
        assert "file timeout: attempt took longer than 0.7 s" in str(failed.error.error)
        assert server.request_count(route) == 2
        assert failed.download.attempts == 2


#: A head and body the server sends a byte a second: 40 s in all, long past any deadline.
TRICKLED = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def stalling_answer(stall: str) -> Answer:
    """``trickle``: the status line a byte a second; ``continue``: 100 Continue every 0.5 s;
    ``body``: the head, one byte of the body, then nothing for 25 s; ``large-body``: the
    same with a 20 MB length (a body some downloaders copy on another thread).

    Each byte, each interim answer, comes well within ``--timeout``: only the
    attempt's deadline can end the wait.
    """
    if stall == "trickle":
        return Answer(*(step for byte in TRICKLED for step in (bytes([byte]), Pause(1.0))))
    if stall == "continue":
        return Answer(*[b"HTTP/1.1 100 Continue\r\n\r\n", Pause(0.5)] * 40, raw_ok(b"ok"))
    length = 2 if stall == "body" else 20_000_000
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length
    return Answer(head + b"o", Pause(25), b"k")


class StallingServer:
    """A loopback server whose one route stalls; notes when the request arrived."""

    def __init__(self, stall: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = FileServer(ssl_context)
        self.arrived: list[float] = []
        self.server.on_request = lambda request: self.arrived.append(time.monotonic())
        self.url = self.server.script("/stall", stalling_answer(stall))

    def __enter__(self) -> StallingServer:
        self.server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()

    def check_hang_up(self, started: float) -> None:
        """The client hung up once: not before a deadline 1 s after ``started``, and within
        1.5 s of the deadline of the attempt (at the latest 1 s after the request arrived)."""
        [arrived] = self.arrived
        waited_until = time.monotonic() + 2  # the server's thread may not have looked yet
        while not self.server.hang_ups and time.monotonic() < waited_until:
            time.sleep(0.01)
        hang_ups = self.server.hang_ups
        assert len(hang_ups) == 1, hang_ups
        assert started + 1.0 <= hang_ups[0] < arrived + 1.0 + 1.5


def assert_timed_out(outcome: PipelineOutcome, took: float) -> None:
    """The one file failed with the file timeout, in a run that ended promptly."""
    assert outcome.exit_code == 1
    [failed] = outcome.failures
    assert failed.error is not None
    assert failed.error.stage == "download"
    assert "file timeout: attempt took longer than 1 s" in str(failed.error.error)
    assert took < 6


def hung_up_at_the_deadline(stalling: StallingServer, transport: str, tmp_path: Path) -> None:
    """One file from ``stalling`` with --file-timeout 1: timed out, the server hung up on."""
    started = time.monotonic()
    outcome = run(
        transport,
        [{"url": stalling.url}],
        tmp_path,
        file_timeout=1.0,
        timeout=30.0,
        max_retries=0,
    )
    took = time.monotonic() - started
    stalling.check_hang_up(started)
    assert_timed_out(outcome, took)


class TestFileTimeoutHangsUp:
    """At --file-timeout the attempt's connection is closed, on every downloader."""

    @pytest.mark.parametrize("stall", ["trickle", "continue", "body", "large-body"])
    def test_the_server_sees_the_hang_up_at_the_deadline(
        self, transport: str, tmp_path: Path, stall: str
    ) -> None:
        """A head trickled a byte a second, 100 Continue each 0.5 s, a stalled body: cut at 1 s."""
        with StallingServer(stall) as stalling:
            hung_up_at_the_deadline(stalling, transport, tmp_path)

    def test_over_tls_too(
        self,
        transport: str,
        tmp_path: Path,
        authority: trustme.CA,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Over https, a status line trickled a byte a second is hung up at the deadline too."""
        bundle = tmp_path / "ca.pem"
        authority.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        with StallingServer("trickle", context) as stalling:
            assert stalling.url.startswith("https://")
            hung_up_at_the_deadline(stalling, transport, tmp_path)

    def test_a_kept_connection_outlives_the_deadline_of_its_earlier_file(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A file on the connection an earlier file used is not hung up at that file's deadline."""
        first = server.add(path(), b"first", delay=0.6)
        second = server.add(path(), b"second", delay=0.7)  # in flight at the first's deadline
        outcome = run(
            transport,
            [{"url": first}, {"url": second}],
            tmp_path,
            file_timeout=1.0,
            download_workers=1,
            max_retries=0,
        )
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert sorted(outcome.results) == sorted([sha256(b"first"), sha256(b"second")])

    def test_through_the_command_line(self, transport: str, tmp_path: Path, cli_path: Path) -> None:
        """The real CLI in a process hangs up a trickling server at the deadline and ends."""
        report, listing = tmp_path / "report.jsonl", tmp_path / "files.json"
        with StallingServer("trickle") as stalling:
            listing.write_text(json.dumps([{"id": "slow", "url": stalling.url}]))
            started = time.monotonic()
            done = run_command_bounded(
                [
                    str(cli_path),
                    "--files",
                    str(listing),
                    "--downloader",
                    DOWNLOADER_NAMES[transport],
                    "--file-timeout",
                    "1",
                    "--timeout",
                    "30",
                    "--max-retries",
                    "0",
                    "--download-cache",
                    str(tmp_path / "cache"),
                    "--post-processor",
                    "jsonl",
                    "--post-processor-option",
                    f"path={report}",
                ],
                env=os.environ,  # NETRC, as the transport fixture set it
                timeout=30,
            )
            took = time.monotonic() - started
            stalling.check_hang_up(started)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        [line] = [json.loads(text) for text in report.read_text().splitlines()]
        assert line["id"] == "slow"
        assert "file timeout: attempt took longer than 1 s" in line["error"]["message"]
        assert took < 20


class TestInSmallBlocks:
    """A body of many blocks (``chunk_size`` small): the same rules, block after block.

    An event-loop downloader writes such a body on its writing thread
    (``write_behind``): the checks and the limit must hold there too.
    """

    def test_checks_hold_across_blocks(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A body written in a dozen blocks matches its size, sha256 and md5."""
        entry = {
            "url": server.add(path(), BODY),
            "size": len(BODY),
            "sha256": sha256(BODY),
            "md5": hashlib.md5(BODY).hexdigest(),  # noqa: S324 - a checksum, not security
        }
        outcome = run(transport, [entry], tmp_path, chunk_size=4096)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(BODY)
        assert file_data.download.size == len(BODY)

    def test_a_mismatch_across_blocks_fails(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A wrong sha256 over a body of many blocks fails naming the check."""
        fields, message = MISMATCHES["sha256"]
        entry = {"url": server.add(path(), BODY), **fields}
        outcome = run(transport, [entry], tmp_path, chunk_size=4096, max_retries=0)
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert message in str(failed.error.error)
        assert leftover_files(tmp_path / "cache") == []

    def test_a_body_growing_past_the_limit_is_cut_off_between_blocks(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A chunked body past --max-file-size fails, in small blocks too."""
        url = server.add(path(), BODY, range_options=RangeOptions(ranges=False, chunked=True))
        outcome = run(transport, [{"url": url}], tmp_path, max_file_size=20_000, chunk_size=4096)
        assert outcome.exit_code == 1
        [failed] = outcome.failures
        assert failed.error is not None
        assert "file too large: cut off past --max-file-size of 20000 bytes" in str(
            failed.error.error
        )
        assert leftover_files(tmp_path / "cache") == []
