"""builtins/http_rules.py: the rules every downloader shares (most are pinned in test_download)."""

from __future__ import annotations

import pytest

from download_pipeline_processor.http_rules import quoted_url


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
