"""Redirects on every shipped downloader: bad targets fail cleanly, credentials stay home."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from download_helpers import DOWNLOADER_NAMES, StageFactory, cached_files, download_error
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.http_rules import keeps_credentials
from download_pipeline_processor.testing import FileServer, run_command_bounded

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


class TestRedirectSafety:
    """Bad redirects fail the file cleanly and are not retried; credentials stay home."""

    def test_credentials_stay_with_their_host(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """Authorization follows a redirect on the same host, never one to another host."""
        elsewhere = file_server.add("/moved.bin", b"moved").replace("127.0.0.1", "localhost", 1)
        same = file_server.add("/same", statuses=(302,), redirect_to=file_server.url("/other"))
        file_server.add("/other", statuses=(302,), redirect_to=elsewhere)
        stage = make_stage(headers={"Authorization": "Bearer SECRET", "X-Kept": "yes"})
        file_data = FileData(same)
        stage.download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"moved"
        hops = {path.rpartition("/")[2]: headers for _, path, headers in file_server.request_log}
        assert hops["same"]["Authorization"] == "Bearer SECRET"
        assert hops["other"]["Authorization"] == "Bearer SECRET"
        assert "Authorization" not in hops["moved.bin"]
        assert hops["moved.bin"]["X-Kept"] == "yes"

    @pytest.mark.parametrize("where", ["other-host", "same-host"])
    def test_userinfo_in_a_location_is_never_sent(
        self, file_server: FileServer, make_stage: StageFactory, where: str
    ) -> None:
        """A Location carrying ``alice:pw@`` is followed without those credentials, anywhere."""
        with FileServer() as other:  # another port: another host
            server = other if where == "other-host" else file_server
            target = server.add("/x", b"there").replace("http://", "http://alice:pw@", 1)
            url = file_server.add("/away", statuses=(302,), redirect_to=target)
            file_data = FileData(url)
            make_stage().download(0, file_data)
            [request] = [seen for seen in server.requests if seen.path == "/x"]
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"there"
        assert "authorization" not in {name.lower() for name in request.headers}
        assert b"alice" not in request.head

    def test_the_entry_userinfo_still_goes_to_its_host(
        self, file_server: FileServer, make_stage: StageFactory
    ) -> None:
        """An entry's own ``user:pw@`` is sent to its host, on a hop there, never elsewhere."""
        with FileServer() as other:
            elsewhere = other.add("/far", b"far")
            file_server.add("/near", statuses=(302,), redirect_to=elsewhere)
            file_server.add("/start", statuses=(302,), redirect_to="/near")
            url = file_server.url("/start").replace("http://", "http://alice:pw@", 1)
            make_stage().download(0, FileData(url))
            [far] = other.requests
        basic = "Basic " + base64.b64encode(b"alice:pw").decode()
        hops = {seen.path: seen.headers for seen in file_server.requests}
        assert hops["/start"]["Authorization"] == basic
        assert hops["/near"]["Authorization"] == basic
        assert "authorization" not in {name.lower() for name in far.headers}

    def test_userinfo_in_a_location_through_the_command_line(
        self, file_server: FileServer, transport: str, tmp_path: Path, cli_path: Path
    ) -> None:
        """The real CLI sends no Location userinfo on, and logs and reports none of it."""
        with FileServer() as other:
            target = other.add("/x", statuses=(503,)).replace("http://", "http://alice:PWSECRET@")
            url = file_server.add(f"/away-{transport}", statuses=(302,), redirect_to=target)
            listing, report, log_file = (tmp_path / name for name in ("l.json", "r.jsonl", "log"))
            listing.write_text(json.dumps([{"url": url}]))
            done = run_command_bounded(
                [
                    str(cli_path),
                    "--files",
                    str(listing),
                    "--downloader",
                    DOWNLOADER_NAMES[transport],
                    "--max-retries",
                    "1",
                    "--retry-backoff",
                    "0",
                    "--download-cache",
                    str(tmp_path / "cache"),
                    "--post-processor",
                    "jsonl",
                    "--post-processor-option",
                    f"path={report}",
                    "--log-file",
                    str(log_file),
                    "--debug",
                ],
                env=os.environ,  # NETRC, as the transport fixture set it
            )
            seen = other.requests
        assert done.returncode == 1, done.stderr
        assert len(seen) == 2  # the first attempt and its retry
        for request in seen:
            assert "authorization" not in {name.lower() for name in request.headers}
        everything = done.stdout + done.stderr + log_file.read_text() + report.read_text()
        assert "503" in everything
        for secret in ("alice", "PWSECRET"):
            assert secret not in everything

    def test_redirect_loop(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A redirect loop fails permanently after at most max_redirects hops, with no retry."""
        url = file_server.add("/loop", statuses=(302,), redirect_to=file_server.url("/loop"))
        error = download_error(make_stage(max_redirects=3, max_retries=3), url)
        assert isinstance(error, PermanentDownloadError)
        assert "redirect" in str(error)
        assert file_server.request_count("/loop") <= 4

    @pytest.mark.parametrize("target", ["ftp://127.0.0.1/x.bin", "file:///etc/passwd"])
    def test_non_http_redirect_refused(
        self, file_server: FileServer, make_stage: StageFactory, cache: DownloadCache, target: str
    ) -> None:
        """A redirect to a scheme other than http or https is refused once, permanently."""
        url = file_server.add("/r", statuses=(302,), redirect_to=target)
        error = download_error(make_stage(), url)
        assert isinstance(error, PermanentDownloadError)
        assert "not http or https" in str(error)
        assert file_server.request_count("/r") == 1
        assert cached_files(cache) == []


class TestKeepsCredentials:
    """requests' rule for credentials headers on a redirect."""

    @pytest.mark.parametrize(
        ("current", "target", "kept"),
        [
            ("http://h/a", "http://h/b", True),
            ("http://h/a", "https://h/b", True),  # upgrade on the default ports
            ("http://h:80/a", "https://h:443/b", True),
            ("https://h/a", "http://h/b", False),  # downgrade: would go out in clear text
            ("http://h:8080/a", "http://h:9090/b", False),
            ("http://h/a", "http://other/b", False),
        ],
    )
    def test_rule(self, current: str, target: str, kept: bool) -> None:
        assert keeps_credentials(current, target) is kept

    def test_utf8_location(self, file_server: FileServer, make_stage: StageFactory) -> None:
        """A Location sent as raw UTF-8 is followed to the same path, not escaped twice."""
        file_server.add("/caf\u00e9.bin", b"coffee")
        # The server writes headers as Latin-1: these are the UTF-8 bytes of the path.
        raw_location = file_server.url("/caf\u00e9.bin").encode().decode("latin-1")
        url = file_server.add("/to-cafe", statuses=(302,), redirect_to=raw_location)
        file_data = FileData(url)
        make_stage().download(0, file_data)
        assert file_data.local_path is not None
        assert file_data.local_path.read_bytes() == b"coffee"
