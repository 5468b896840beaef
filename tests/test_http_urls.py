"""One URL means one thing on every shipped downloader: hosts, escaping, proxies."""

from __future__ import annotations

import pytest

from download_helpers import StageFactory, download_error
from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.testing import FileServer

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


#: Full-width forms of the loopback host: UTS #46 maps them to ASCII.
FULL_WIDTH_HOSTS = [
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
]


class TestUrlRules:
    """One URL means one thing on every downloader (``urls``): the same host, or the same error."""

    @pytest.mark.parametrize("host", FULL_WIDTH_HOSTS, ids=["digits", "letters"])
    def test_full_width_host(
        self, file_server: FileServer, make_stage: StageFactory, host: str
    ) -> None:
        """A host name in full-width characters is fetched from its ASCII form."""
        url = file_server.add("/wide.bin", b"wide").replace("127.0.0.1", host, 1)
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"wide"

    @pytest.mark.parametrize(
        ("path", "message"),
        [
            ("/a\nb", "URL contains a control character (U+000A) at position"),
            ("/a\r\nX-Injected: 1", "URL contains a control character (U+000D) at position"),
            ("/a\tb", "URL contains a control character (U+0009) at position"),
            ("/a\x00b", "URL contains a control character (U+0000) at position"),
        ],
        ids=["lf", "crlf", "tab", "nul"],
    )
    def test_control_characters_refused(
        self, file_server: FileServer, make_stage: StageFactory, path: str, message: str
    ) -> None:
        """A URL with a control character fails for good before any request, in one wording."""
        file_server.add("/ab", b"dropped")
        error = download_error(make_stage(max_retries=2), file_server.url(path))
        assert isinstance(error, PermanentDownloadError)
        assert str(error).startswith(message)
        assert file_server.request_count() == 0

    def test_invalid_host_name(self, make_stage: StageFactory) -> None:
        """A Unicode host name with no IDNA form fails for good, in one wording, not retried."""
        error = download_error(make_stage(max_retries=2), "http://bad\u200d.example/x")
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == "URL has an invalid host name"

    def test_redirect_location_with_control_character(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A Location holding a TAB is refused, not followed with the TAB silently dropped."""
        file_server.add("/ab", b"dropped")
        url = file_server.add("/r", statuses=(302,), redirect_to=file_server.url("/a\tb"))
        error = download_error(make_stage(max_retries=2), url)
        assert isinstance(error, PermanentDownloadError)
        assert str(error).startswith(
            "redirected to an invalid URL: the target contains a control character (U+0009)"
        )
        assert file_server.request_count("/ab") == 0

    def test_non_ascii_path_sent_escaped(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A non-ASCII path goes out as escaped UTF-8, the same bytes on every downloader."""
        url = file_server.add("/caf\u00e9.bin", b"coffee")
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"coffee"
        ((_, path, _),) = file_server.request_log
        assert path.endswith("/caf%C3%A9.bin")

    def test_redirect_location_with_space(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A space in a Location is followed, sent as %20 by every downloader."""
        file_server.add("/a b.bin", b"spaced")
        url = file_server.add("/r", statuses=(302,), redirect_to=file_server.url("/a b.bin"))
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"spaced"
        assert file_server.request_log[-1][1].endswith("/a%20b.bin")

    def test_redirect_to_full_width_host(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """A redirect to a full-width host name is followed to its ASCII form."""
        target = file_server.add("/wide.bin", b"wide").replace("127.0.0.1", FULL_WIDTH_HOSTS[0], 1)
        # The server writes headers as Latin-1: these are the UTF-8 bytes of the target.
        url = file_server.add("/r", statuses=(302,), redirect_to=target.encode().decode("latin-1"))
        file_data = FileData(url)
        make_stage(max_retries=0).download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"wide"


class TestProxies:
    """Environment proxies are honoured, as requests honours them."""

    def test_http_proxy_from_environment(
        self, file_server: FileServer, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With HTTP_PROXY set, a URL on an unreachable host is fetched through the proxy."""
        file_server.add("/via-proxy.bin", b"proxied body")
        monkeypatch.setenv("HTTP_PROXY", file_server.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        # .invalid never resolves (RFC 2606): only the proxy can answer.
        file_data = FileData("http://files.invalid/via-proxy.bin")
        stage = make_stage()
        assert stage.download(0, file_data) == len(b"proxied body")
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"proxied body"
        assert file_server.request_count("/via-proxy.bin") == 1

    def test_no_proxy_goes_direct(
        self, file_server: FileServer, make_stage: StageFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A host listed in NO_PROXY is fetched directly even when a proxy is set."""
        url = file_server.add("/direct.bin", b"direct")
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        file_data = FileData(url)
        assert make_stage().download(0, file_data) == 6
