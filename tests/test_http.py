"""Tests for builtins/http.py's helpers that need no network."""

from __future__ import annotations

import time

import pytest

from download_pipeline_processor.builtins._requests_downloader import parse_retry_after


class TestParseRetryAfter:
    """Reading the Retry-After header."""

    def test_seconds(self) -> None:
        """Delta-seconds are read as a number of seconds."""
        assert parse_retry_after("120") == 120.0
        assert parse_retry_after(" 3 ") == 3.0

    def test_http_date(self) -> None:
        """An HTTP-date gives the seconds until then, never negative."""
        future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))
        assert 95 <= (parse_retry_after(future) or 0) <= 101
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "\u00b2"])
    def test_unusable(self, value: str | None) -> None:
        """Missing or unparsable values give None, so the normal backoff applies."""
        assert parse_retry_after(value) is None
