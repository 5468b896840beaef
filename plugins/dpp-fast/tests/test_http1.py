"""builtins/http1.py: how the fast downloader reads request URLs and response heads."""

from __future__ import annotations

import pytest

from download_pipeline_processor.errors import PermanentDownloadError
from dpp_fast.http1 import (
    CHUNKED,
    UNTIL_CLOSE,
    ProtocolError,
    Request,
    framing,
    head_end,
    interim,
    parse_head,
    split_head,
)


class TestParseHead:
    def test_status_headers_and_keep_alive(self) -> None:
        head = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2"
        status, reason, headers, closes = parse_head(split_head(head))
        assert (status, reason, closes) == (200, "OK", False)
        assert headers == {"content-length": "3", "x-a": "1, 2"}

    @pytest.mark.parametrize(
        ("head", "closes"),
        [
            ("HTTP/1.1 200 OK\nConnection: close", True),
            ("HTTP/1.0 200 OK", True),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive", False),
        ],
    )
    def test_when_the_server_closes(self, head: str, closes: bool) -> None:
        assert parse_head(split_head(head))[3] is closes

    @pytest.mark.parametrize(
        "head",
        ["HTTP/2 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 ²00 OK", "HTTP/1.1 200 OK\r\nno colon"],
    )
    def test_malformed_heads_are_protocol_errors(self, head: str) -> None:
        with pytest.raises(ProtocolError):
            parse_head(split_head(head))


class TestFraming:
    def test_lengths_and_their_absence(self) -> None:
        assert framing(200, {"content-length": "10"}) == (10, False)
        assert framing(200, {"content-length": "10, 10"}) == (10, False)
        assert framing(204, {}) == (0, False)
        assert framing(200, {}) == (UNTIL_CLOSE, True)

    def test_chunked_wins_and_distrusts_a_length_beside_it(self) -> None:
        assert framing(200, {"transfer-encoding": "chunked"}) == (CHUNKED, False)
        both = {"transfer-encoding": "gzip, chunked", "content-length": "5"}
        assert framing(200, both) == (CHUNKED, True)

    @pytest.mark.parametrize("value", ["10, 11", "-1", "1e3", "9" * 19])
    def test_bad_lengths_are_permanent_errors(self, value: str) -> None:
        """A Content-Length no body can be framed by fails the file, not retried (RFC 9112 6.3)."""
        with pytest.raises(PermanentDownloadError, match="invalid Content-Length"):
            framing(200, {"content-length": value})


def test_interim_answers_are_skipped_and_101_refused() -> None:
    assert interim(100)
    assert interim(103)
    assert not interim(200)
    with pytest.raises(ProtocolError, match="101"):
        interim(101)


def test_head_end_finds_crlf_and_bare_lf_heads() -> None:
    data = bytearray(b"xxHTTP/1.1 200 OK\r\n\r\nbody")
    assert head_end(data, 2, len(data)) == (17, 21)
    bare = bytearray(b"HTTP/1.1 200 OK\n\nbody")
    assert head_end(bare, 0, len(bare)) == (15, 17)
    assert head_end(bytearray(b"HTTP/1.1 200 OK\r\n"), 0, 17) == (-1, -1)


class TestRequest:
    def test_origin_and_request_line(self) -> None:
        request = Request("http://Example.org:8080/a b?q=1 2", None)
        assert request.origin == (False, "example.org", 8080)
        assert request.start == b"GET /a%20b?q=1%202 HTTP/1.1\r\nHost: example.org:8080\r\n"

    def test_https_default_port_and_a_host_header(self) -> None:
        request = Request("https://example.org/", "other.test")
        assert request.origin == (True, "example.org", 443)
        assert request.start.endswith(b"Host: other.test\r\n")

    @pytest.mark.parametrize("url", ["ftp://example.org/x", "http:///x", "http://a:99999/"])
    def test_urls_that_cannot_be_requested(self, url: str) -> None:
        with pytest.raises(PermanentDownloadError):
            Request(url, None)
