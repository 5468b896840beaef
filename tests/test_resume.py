"""Range resume within a run, on every downloader: a broken transfer continues from the cache."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from download_pipeline_processor.testing import FileServer, RangeOptions, leftover_files

from .integrity_support import DOWNLOADER_NAMES, run, sha256, transport_fixture

BODY = bytes(range(256)) * 400  # 102 400 bytes, every offset distinct
CUT = 40_000
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.fixture(autouse=True, params=list(DOWNLOADER_NAMES))
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


def requests_for(server: FileServer, route: str) -> list[dict[str, str]]:
    """The headers of every request for ``route``, in order."""
    return [headers for _, target, headers in server.request_log if target == route]


def serve(server: FileServer, options: RangeOptions) -> tuple[str, str]:
    route = f"/{uuid.uuid4().hex}/file.bin"
    return route, server.add(route, BODY, range_options=options)


class TestResume:
    def test_a_cut_body_continues_from_the_cached_bytes(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """The retry asks bytes=N- with If-Range (the ETag); the 206 is appended; sha256 fits."""
        route, url = serve(server, RangeOptions(etags=('"v1"',), cut_after=CUT))
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(BODY)
        assert file_data.download.sha256 == sha256(BODY)
        assert file_data.download.size == len(BODY)
        assert file_data.download.attempts == 2
        assert file_data.download.http_status == 206
        first, second = requests_for(server, route)
        assert "Range" not in first
        assert second["Range"] == f"bytes={CUT}-"
        assert second["If-Range"] == '"v1"'

    def test_last_modified_is_the_validator_without_an_etag(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """Without an ETag, If-Range carries the Last-Modified date."""
        route, url = serve(server, RangeOptions(last_modified=LAST_MODIFIED, cut_after=CUT))
        outcome = run(transport, [{"url": url, "size": len(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        assert outcome.results == [sha256(BODY)]
        _, second = requests_for(server, route)
        assert second["Range"] == f"bytes={CUT}-"
        assert second["If-Range"] == LAST_MODIFIED

    def test_a_changed_file_starts_over(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A new ETag makes the server answer 200 to the If-Range: the new file, whole."""
        new = bytes(reversed(BODY))
        route, url = serve(
            server, RangeOptions(etags=('"v1"', '"v2"'), bodies=(BODY, new), cut_after=CUT)
        )
        outcome = run(transport, [{"url": url}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(new)
        assert file_data.download.sha256 == sha256(new)
        assert file_data.download.http_status == 200
        _, second = requests_for(server, route)
        assert second["If-Range"] == '"v1"'

    def test_no_validator_starts_over(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """Without ETag or Last-Modified the retry asks for the whole file again."""
        route, url = serve(server, RangeOptions(cut_after=CUT))
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        assert outcome.results == [sha256(BODY)]
        assert all("Range" not in headers for headers in requests_for(server, route))

    def test_a_server_ignoring_the_range_restarts_cleanly(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """A 200 answer to a Range request replaces the cached bytes instead of appending."""
        route, url = serve(server, RangeOptions(ranges=False, etags=('"v1"',), cut_after=CUT))
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(BODY)
        assert file_data.download.size == len(BODY)
        _, second = requests_for(server, route)
        assert second["Range"] == f"bytes={CUT}-"

    def test_cut_twice_resumes_twice(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """Two broken transfers in a row: the third request asks from where the second stopped."""
        route, url = serve(server, RangeOptions(etags=('"v1"',), cut_after=CUT, cut_requests=2))
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        assert outcome.results == [sha256(BODY)]
        ranges = [headers.get("Range") for headers in requests_for(server, route)]
        assert ranges == [None, f"bytes={CUT}-", f"bytes={2 * CUT}-"]
        assert leftover_files(tmp_path / "cache") == []


class TestResumeInSmallBlocks:
    def test_a_body_cut_between_blocks_continues_where_it_stopped(
        self, server: FileServer, transport: str, tmp_path: Path
    ) -> None:
        """Written in small blocks, every byte before the cut is kept: the retry asks from CUT."""
        route, url = serve(server, RangeOptions(etags=('"v1"',), cut_after=CUT))
        outcome = run(transport, [{"url": url, "sha256": sha256(BODY)}], tmp_path, chunk_size=4096)
        assert outcome.exit_code == 0, outcome.failures
        [(result, file_data)] = outcome.outcomes
        assert result == sha256(BODY)
        assert file_data.download.attempts == 2
        _, second = requests_for(server, route)
        assert second["Range"] == f"bytes={CUT}-"
