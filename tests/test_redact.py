"""Tests for redact.py: secrets in URLs never reach logs, errors or reports."""

from __future__ import annotations

import pytest

from download_pipeline_processor.redact import (
    REDACTED,
    redact_url,
    scrub,
    scrub_error,
    scrub_urls,
    secrets_of,
)


class TestRedactUrl:
    """redact_url keeps scheme, host, port and path only."""

    def test_drops_userinfo_query_fragment(self) -> None:
        """Userinfo, query and fragment are gone; a marker shows a query was there."""
        redacted = redact_url("https://user:pw@host/a/b.mp3?token=x#frag")
        assert redacted == "https://host/a/b.mp3?REDACTED"
        for secret in ("user", "pw", "token", "frag"):
            assert secret not in redacted

    def test_keeps_port(self) -> None:
        """An explicit port is kept."""
        assert redact_url("http://u:p@127.0.0.1:8080/x?k=v") == "http://127.0.0.1:8080/x?REDACTED"

    def test_plain_url_unchanged(self) -> None:
        """A URL with nothing secret comes back as it was."""
        assert redact_url("https://example.com/a/b.mp3") == "https://example.com/a/b.mp3"

    def test_fragment_only(self) -> None:
        """A fragment alone is dropped without a query marker."""
        assert redact_url("https://h/x#section") == "https://h/x"

    def test_username_only(self) -> None:
        """A username without a password is dropped too."""
        assert redact_url("https://token123@h/x") == "https://h/x"

    def test_ipv6_host(self) -> None:
        """An IPv6 literal keeps its brackets."""
        assert redact_url("http://u:p@[::1]:8000/x?q=1") == "http://[::1]:8000/x?REDACTED"

    @pytest.mark.parametrize("url", ["http://[::1/x?token=s", "http://h:99999/x?token=s"])
    def test_unparsable(self, url: str) -> None:
        """A URL that cannot be parsed is replaced whole, not echoed."""
        assert redact_url(url) == "<unparsable URL>"


class TestScrub:
    """scrub removes a URL's secrets from any text."""

    def test_removes_query_and_credentials(self) -> None:
        """The query string, username and password are replaced in free text."""
        url = "http://alice:hunter2@h/x?token=SECRET&a=1"
        text = f"GET {url} failed for alice with hunter2"
        scrubbed = scrub(text, url)
        for secret in ("alice", "hunter2", "SECRET"):
            assert secret not in scrubbed
        assert REDACTED in scrubbed
        assert "failed for" in scrubbed

    def test_encoded_forms(self) -> None:
        """Percent-encoded and decoded forms of a secret are both removed."""
        url = "http://h/x?q=a%20b%2Fc"
        scrubbed = scrub("saw q=a%20b%2Fc and q=a b/c", url)
        assert scrubbed == f"saw {REDACTED} and {REDACTED}"

    def test_form_requests_puts_on_the_wire(self) -> None:
        """A query requests re-quotes (spaces, non-ASCII) is removed in that quoted form."""
        url = "http://h/x?token=my sécret&b=1"
        message = "Max retries exceeded with url: /x?token=my%20s%C3%A9cret&b=1 (refused)"
        scrubbed = scrub(message, url)
        assert "s%C3%A9cret" not in scrubbed
        assert scrubbed == f"Max retries exceeded with url: /x?{REDACTED} (refused)"

    def test_fragment(self) -> None:
        """A fragment counts as a secret."""
        assert "sig=1" not in scrub("x#sig=1", "http://h/x#sig=1")

    def test_nothing_secret(self) -> None:
        """Text is unchanged when the URL has no secrets."""
        assert scrub("error at http://h/x", "http://h/x") == "error at http://h/x"

    def test_longest_secret_first(self) -> None:
        """A secret containing another is removed whole, not left half-replaced."""
        url = "http://ab:abc@h/x"
        assert secrets_of(url)[0] == "abc"
        assert scrub("password abc", url) == f"password {REDACTED}"

    def test_unparsable_url_is_itself_the_secret(self) -> None:
        """With an unparsable URL the whole URL is scrubbed."""
        url = "http://[::1/x?token=s"
        assert scrub(f"failed: {url}", url) == f"failed: {REDACTED}"


class TestScrubUrls:
    """Library texts lose the query string and userinfo of any URL they quote."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "Max retries exceeded with url: /z?sig=abc%20d (Caused by X)",
                "Max retries exceeded with url: /z?REDACTED (Caused by X)",
            ),
            (
                "Invalid URL 'http://u:p@h/?a=b': No host",
                "Invalid URL 'http://h/?REDACTED': No host",
            ),
            ("what? no URL here", "what? no URL here"),
        ],
        ids=["request-target", "absolute-url", "plain-text"],
    )
    def test_scrub_urls(self, text: str, expected: str) -> None:
        """A path or URL followed by a query keeps the path; other text is left alone."""
        assert scrub_urls(text) == expected

    def test_scrub_knows_every_hop(self) -> None:
        """scrub removes the secrets of each URL it is given, even quoted without a URL."""
        text = "first token=ONE then sig=TWO"
        scrubbed = scrub(text, "http://h/a?token=ONE", "http://other/z?sig=TWO")
        assert "ONE" not in scrubbed
        assert "TWO" not in scrubbed

    def test_scrub_error_in_place(self) -> None:
        """An exception's one-text message is scrubbed where it is; others are left as they are."""
        error = RuntimeError("failed on http://h/z?sig=SECRET")
        assert scrub_error(error) is error
        assert str(error) == "failed on http://h/z?REDACTED"
        oserror = OSError(2, "No such file")
        assert scrub_error(oserror).args == (2, "No such file")
