"""Tests for urls.py: the one rule of what URL every downloader can fetch."""

from __future__ import annotations

import pytest

from download_pipeline_processor.urls import URLProblem, canonical_url, check_url

#: The loopback address and localhost, in full-width characters.
FULL_WIDTH_LOOPBACK = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"
FULL_WIDTH_LOCALHOST = "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54"


class TestCanonicalUrl:
    """The URL a downloader requests: the host in ASCII, the rest as given."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            (f"http://{FULL_WIDTH_LOOPBACK}:8080/x?q=1", "http://127.0.0.1:8080/x?q=1"),
            (f"http://u:p@{FULL_WIDTH_LOCALHOST}/x", "http://u:p@localhost/x"),
            ("https://m\u00fcnchen.example/caf\u00e9", "https://xn--mnchen-3ya.example/caf\u00e9"),
            ("https://Example.COM/A b?c", None),  # ASCII hosts are kept as written
        ],
        ids=["digits", "letters-userinfo", "idna", "ascii"],
    )
    def test_host_normalised(self, url: str, expected: str | None) -> None:
        """UTS #46 maps a Unicode host to its ASCII form; port, userinfo and path are kept."""
        assert canonical_url(url, spaces=True) == (expected or url)

    def test_spaces_only_where_allowed(self) -> None:
        """A space is refused unless the caller allows it (a redirect's target)."""
        with pytest.raises(URLProblem, match="space at position 15"):
            check_url("https://h.com/a b")
        check_url("https://h.com/a b", spaces=True)

    @pytest.mark.parametrize("character", ["\n", "\r", "\t", "\x00", "\x1b", "\x7f"])
    def test_control_characters_never_allowed(self, character: str) -> None:
        """Control characters are refused even where spaces are allowed."""
        with pytest.raises(URLProblem, match=f"U\\+{ord(character):04X}"):
            check_url(f"https://h.com/a{character}b", spaces=True)
