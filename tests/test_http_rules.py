"""builtins/http_rules.py: the rules every downloader shares (most are pinned in test_download)."""

from __future__ import annotations

import pytest

from download_pipeline_processor.http_rules import quoted_url, redirect_target


class TestQuotedUrl:
    """A whole URL re-quoted as requests re-quotes it, for a transport handed whole URLs."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://h/a b?q=c d", "http://h/a%20b?q=c%20d"),
            ("http://h/caf\u00e9?x=\u00e9", "http://h/caf%C3%A9?x=%C3%A9"),
            ("http://h/a%20b?sig=x%2By&k=v", "http://h/a%20b?sig=x%2By&k=v"),
            ("http://u:p@h:8080/a#frag", "http://u:p@h:8080/a"),
            ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ],
        ids=["space", "non-ascii", "escapes-kept", "userinfo-no-fragment", "ipv6"],
    )
    def test_quoted(self, url: str, expected: str) -> None:
        """Spaces and non-ASCII become escapes; escapes, userinfo and ports stay; no fragment."""
        assert quoted_url(url) == expected


class TestRedirectTarget:
    """Where a Location leads: userinfo a server hands out is dropped, the entry's kept."""

    @pytest.mark.parametrize(
        ("current", "location", "expected"),
        [
            ("http://h/a", "http://alice:pw@o:81/x", "http://o:81/x"),
            ("http://h/a", "//alice:pw@o/x", "http://o/x"),
            ("http://h/a", "http://alice@o/x?u=a@b", "http://o/x?u=a@b"),
            ("http://h/a", "http://a:p@q@o/x", "http://o/x"),
            ("http://u:p@h/a", "/b", "http://u:p@h/b"),
            ("http://u:p@h/a", "http://h/b", "http://h/b"),
        ],
        ids=["absolute", "scheme-relative", "at-in-query", "at-in-password", "relative", "no-info"],
    )
    def test_userinfo(self, current: str, location: str, expected: str) -> None:
        """A Location's own userinfo is dropped; a relative one keeps the current authority."""
        assert redirect_target(current, location) == expected
