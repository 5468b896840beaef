"""What a transfer does with answers: lengths, redirects, headers, credentials, secrets."""

from __future__ import annotations

import base64
import gzip
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

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
    download_request,
    run_pipeline,
)
from dpp_curl import CurlDownloader, plugin
from dpp_curl.config import CurlConfig
from dpp_curl.transfer import Transfer

Serve = Callable[[bytes], str]


def fetch(url: str, destination: Path, **settings: Any) -> int:
    """One blocking attempt at ``url`` with a fresh downloader."""
    run = PipelineSettings(**settings)
    downloader = CurlDownloader(run)
    try:
        return downloader.fetch(download_request(url, destination, run))
    finally:
        downloader.close()


def fetch_error(url: str, destination: Path, **settings: Any) -> DownloadError:
    """The error of one attempt at ``url`` that must fail."""
    with pytest.raises(DownloadError) as info:
        fetch(url, destination, **settings)
    return info.value


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestLengths:
    """The body is as long as its framing says, and never decoded."""

    def test_transfer_encoding_wins_over_content_length(
        self, raw_server: Serve, tmp_path: Path
    ) -> None:
        """A chunked body that also announces a Content-Length is read by its chunks."""
        url = raw_server(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\na\r\n0123456789\r\n0\r\n\r\n"
        )
        assert fetch(url, tmp_path / "out") == 10
        assert (tmp_path / "out").read_bytes() == b"0123456789"

    @pytest.mark.parametrize(
        ("length", "expected"),
        [
            # libcurl refuses these itself, without showing the value to any callback.
            (b"-5", "invalid Content-Length in the response"),
            (b"abc", "invalid Content-Length in the response"),
            (b"\xb2", "invalid Content-Length in the response"),
            (b"3, 4", "invalid Content-Length in the response"),
            # libcurl takes this for "unknown"; the shared rule refuses it.
            (b"9" * 20, f"invalid Content-Length {'9' * 20!r} in the response"),
        ],
    )
    def test_garbage_content_length_fails(
        self, raw_server: Serve, tmp_path: Path, length: bytes, expected: str
    ) -> None:
        """A Content-Length that is not one decimal number fails the file for good, shared text."""
        url = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\nabc")
        error = fetch_error(url, tmp_path / "out")
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == expected
        assert not (tmp_path / "out").exists()

    def test_truncated_chunked_body(self, raw_server: Serve, tmp_path: Path) -> None:
        """A chunked body cut off before its last chunk is truncated, and says how much came."""
        url = raw_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n")
        error = fetch_error(url, tmp_path / "out")
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "truncated body: connection closed after 5 bytes of a chunked body"

    def test_compressed_body_kept_as_bytes(self, file_server: FileServer, tmp_path: Path) -> None:
        """A gzip Content-Encoding is written as served, not decompressed."""
        packed = gzip.compress(b"plain text " * 100)
        url = file_server.add("/z", packed, headers={"Content-Encoding": "gzip"})
        assert fetch(url, tmp_path / "out") == len(packed)
        assert (tmp_path / "out").read_bytes() == packed
        ((_, _, headers),) = file_server.request_log
        assert headers["Accept-Encoding"] == "identity"

    def test_large_body_in_blocks(self, file_server: FileServer, tmp_path: Path) -> None:
        """A body bigger than a block is written whole, block after block."""
        body = bytes(range(256)) * 12_000
        url = file_server.add("/big", body)
        assert fetch(url, tmp_path / "out", chunk_size=64 * 1024) == len(body)
        assert (tmp_path / "out").read_bytes() == body


class TestRedirects:
    """Redirects are followed hop by hop under the pipeline's rules, on the loop too."""

    def test_credentials_dropped_on_the_loop(self, file_server: FileServer) -> None:
        """In a run, Authorization and Cookie reach the same host, never the next host."""
        elsewhere = file_server.add("/there", b"moved").replace("127.0.0.1", "localhost", 1)
        start = file_server.add("/here", statuses=(302,), redirect_to=elsewhere)
        outcome = run_pipeline(
            [{"url": start}],
            plugins=[plugin],
            downloader="curl",
            headers={"Authorization": "Bearer SECRET", "Cookie": "c=SECRET", "X-Kept": "1"},
        )
        assert outcome.exit_code == 0
        hops = {path: headers for _, path, headers in file_server.request_log}
        assert hops["/here"]["Authorization"] == "Bearer SECRET"
        assert hops["/here"]["Cookie"] == "c=SECRET"
        assert "Authorization" not in hops["/there"]
        assert "Cookie" not in hops["/there"]
        assert hops["/there"]["X-Kept"] == "1"

    def test_redirect_target_secrets_stay_out(
        self, file_server: FileServer, tmp_path: Path
    ) -> None:
        """A failure after a redirect shows none of the target's query string or userinfo."""
        target = f"http://hop:HOPPASS@127.0.0.1:{closed_port()}/next?sig=HOPSECRET"
        url = file_server.add("/r", statuses=(302,), redirect_to=target)
        error = fetch_error(url, tmp_path / "out", max_retries=0)
        assert isinstance(error, TransientDownloadError)
        assert "HOPSECRET" not in str(error)
        assert "HOPPASS" not in str(error)

    def test_every_hop_is_redacted(self, tmp_path: Path) -> None:
        """After a redirect, the secrets of both the first URL and the target are removed."""
        config = CurlConfig.from_settings(PipelineSettings())
        transfer = Transfer(config, download_request("http://h/a?sig=FIRST", tmp_path / "out"))
        transfer._follow("http://u:HOPPASS@other/b?sig=SECOND")  # what a 302 would do
        text = transfer.redacted(
            "failed: http://h/a?sig=FIRST then http://u:HOPPASS@other/b?sig=SECOND"
        )
        assert "FIRST" not in text
        assert "SECOND" not in text
        assert "HOPPASS" not in text

    def test_big_error_body_not_read(self, tmp_path: Path) -> None:
        """A 404 with a huge body fails on its status without the body being read to the end."""
        sent: list[int] = [0]

        def error_body() -> Iterator[bytes]:
            block = b"e" * 65536
            while sent[0] < 200_000_000:
                sent[0] += len(block)
                yield block

        with FileServer() as server:
            head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 200000000\r\n\r\n"
            url = server.script("/big-error", Answer(head, error_body(), CLOSE))
            error = fetch_error(url, tmp_path / "out")
        # Stopped: the server's thread wrote its last block, or failed to.
        assert str(error) == "HTTP 404 Not Found"
        assert sent[0] < 100_000_000

    def test_redirect_limit(self, file_server: FileServer, tmp_path: Path) -> None:
        """More hops than max_redirects fail permanently with the shared text."""
        url = file_server.add("/loop", statuses=(301,), redirect_to=file_server.url("/loop"))
        error = fetch_error(url, tmp_path / "out", max_redirects=2)
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == "redirect loop or more than 2 redirects"
        assert file_server.request_count("/loop") == 3


class TestRequestHeaders:
    """What goes out with each request."""

    def test_empty_header_value_is_sent(self, file_server: FileServer, tmp_path: Path) -> None:
        """A header with an empty value is sent empty (libcurl would drop ``Name:``)."""
        url = file_server.add("/x", b"x")
        fetch(url, tmp_path / "out", headers={"X-Empty": ""})
        ((_, _, headers),) = file_server.request_log
        assert headers["X-Empty"] == ""

    def test_user_agent_overridable(self, file_server: FileServer, tmp_path: Path) -> None:
        """The User-Agent defaults to the project's and a configured one replaces it."""
        url = file_server.add("/x", b"x")
        fetch(url, tmp_path / "a")
        fetch(url, tmp_path / "b", headers={"user-agent": "mine/1"})
        default, configured = [headers for _, _, headers in file_server.request_log]
        assert default["User-Agent"].startswith("download-pipeline-processor/")
        assert [v for k, v in configured.items() if k.lower() == "user-agent"] == ["mine/1"]

    @pytest.mark.parametrize("header", [{"X-Bad": "a\r\nInjected: 1"}, {"Bad:Name": "v"}])
    def test_header_injection_refused(self, header: dict[str, str]) -> None:
        """A header that would split the request is refused when the downloader is built."""
        with pytest.raises(ValueError, match="invalid request header"):
            CurlDownloader(PipelineSettings(headers=header))

    def test_netrc_credentials(
        self, file_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The .netrc named by NETRC gives the host's login, as Basic authentication."""
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
        monkeypatch.setenv("NETRC", str(netrc))
        url = file_server.add("/x", b"x")
        fetch(url, tmp_path / "out")
        ((_, _, headers),) = file_server.request_log
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()

    def test_upper_case_proxy_variable(
        self, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTP_PROXY in capitals is honoured in a run, as requests honours it."""
        file_server.add("/via", b"proxied")
        monkeypatch.setenv("HTTP_PROXY", file_server.base_url)
        outcome = run_pipeline(
            [{"url": "http://files.invalid/via"}], plugins=[plugin], downloader="curl"
        )
        assert outcome.exit_code == 0
        assert file_server.request_count("/via") == 1
