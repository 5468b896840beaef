"""Where a body ends, and answers no well-behaved server gives, on every shipped downloader."""

from __future__ import annotations

import pytest

from download_helpers import StageFactory, cached_files, download_error
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor.errors import DownloadError, PermanentDownloadError
from download_pipeline_processor.file_data import FileData, StageError
from download_pipeline_processor.testing import CLOSE, Answer, FileServer, raw_chunked

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


def serve_raw(server: FileServer, answer: bytes) -> str:
    """A URL on ``server`` answered with ``answer`` byte for byte, then a hang-up."""
    return server.script("/odd.bin", Answer(answer, CLOSE))


class TestOddAnswers:
    """Answers that break the rules fail the file or are read; they never crash the stage."""

    def test_non_ascii_length_digits(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache
    ) -> None:
        """A Content-Length of superscript digits is never a raw ValueError."""
        url = serve_raw(file_server, b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab")
        file_data = FileData(url)
        try:
            make_stage(max_retries=0).download(0, file_data)
        except DownloadError:
            pass  # refusing the answer is fine; crashing is not
        else:
            assert file_data.local_path is not None
            assert file_data.local_path.read_bytes() == b"ab"


class TestFraming:
    """Where a body ends is decided by one rule on every downloader (RFC 9112 section 6.3)."""

    @pytest.mark.parametrize("announced", [1024 * 1024, 3 * 1024 * 1024], ids=["smaller", "larger"])
    def test_chunked_wins_over_content_length(
        self, file_server: FileServer, make_stage: StageFactory, announced: int
    ) -> None:
        """A chunked body with a Content-Length beside it is read to its last chunk, whole."""
        body = bytes(range(256)) * (8 * 1024)  # 2 MiB
        head = (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Length: {announced}\r\nConnection: close\r\n\r\n"
        )
        url = serve_raw(file_server, head.encode() + raw_chunked(body))
        file_data = FileData(url)
        size = make_stage(max_retries=0).download(0, file_data)
        assert size == len(body)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == body

    @pytest.mark.parametrize("length", ["-1", "ten", "3, 4", "0x10"])
    def test_invalid_content_length_fails_for_good(
        self,
        file_server: FileServer,
        make_stage: StageFactory,
        cache: DownloadCache,
        length: str,
        transport: str,
    ) -> None:
        """A negative or garbage Content-Length fails the file at once, not retried, same text."""
        answer = f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\nabcd"
        url = serve_raw(file_server, answer.encode())
        error = download_error(make_stage(max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        if transport == "curl":
            # libcurl refuses such a header before any callback sees it, so
            # the value cannot be quoted: the shared text without it.
            assert str(error) == "invalid Content-Length in the response"
        else:
            assert str(error) == f"invalid Content-Length {length!r} in the response"
        assert cached_files(cache) == []

    def test_truncated_body_message(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A body cut short is reported in the same words on every downloader, by a public type."""
        url = file_server.add("/short", b"y" * 50_000, truncate_to=10)
        error = download_error(make_stage(max_retries=0), url)
        assert StageError("download", error).message == ("truncated body: got 10 of 50000 bytes")

    def test_truncated_chunked_body_message(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A chunked body cut off before its last chunk is one message on every downloader."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        url = serve_raw(file_server, head + raw_chunked(b"z" * 5000, 1000)[:-5])
        error = download_error(make_stage(max_retries=0), url)
        assert StageError("download", error).message == (
            "truncated body: connection closed after 5000 bytes of a chunked body"
        )
