"""Tests for redact.py: secrets in URLs never reach logs, errors or reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from download_pipeline_processor.redact import (
    REDACTED,
    SHOWN_LENGTH,
    redact_url,
    scrub,
    scrub_error,
    scrub_urls,
    secrets_of,
    shorten,
    shorten_words,
)
from download_pipeline_processor.testing import FileServer


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


class TestShorten:
    """Ids and URLs over 200 characters are shortened in messages, never in results."""

    def test_short_text_unchanged(self) -> None:
        """200 characters or fewer are shown whole."""
        assert shorten("a" * 200) == "a" * 200

    def test_long_text_keeps_both_ends_and_says_its_length(self) -> None:
        """A 1 MB value becomes about 200 characters: its start, its length, its end."""
        text = "s" * 500_000 + "middle" + "e" * 500_000 + "tail.bin"
        shown = shorten(text)
        assert len(shown) <= SHOWN_LENGTH
        assert shown.startswith("sss")
        assert shown.endswith("tail.bin")
        assert f"[{len(text)} characters]" in shown

    def test_long_words_in_a_message(self) -> None:
        """A long URL quoted inside a library's message is shortened, the words around kept."""
        message = "cannot reach http://h/" + "p" * 100_000 + " after 3 tries"
        shown = shorten_words(message)
        assert shown.startswith("cannot reach http://h/pp")
        assert shown.endswith(" after 3 tries")
        assert len(shown) < 250


def _cli_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    }
    env["DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"] = ""
    return env


class TestLongValuesThroughTheCli:
    """A 1 MB URL and a 1 MB id: small messages, whole values in the results."""

    def test_megabyte_url_and_id(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """stderr (log lines and summary) stays small; jsonl keeps the id and URL whole."""
        long_id = "i" * 1_000_000
        long_url = file_server.url("/" + "u" * 1_000_000)
        files = [
            {"id": long_id, "url": file_server.add("/ok", b"fine")},
            {"id": "long-url", "url": long_url},
            {"id": "i" * 999_999 + "j", "url": long_url + "?token=SECRET"},
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(files), encoding="utf-8")
        out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(listing),
                "--max-retries",
                "0",
                "--download-cache",
                str(tmp_path / "cache"),
                "--post-processor",
                "jsonl",
                "--post-processor",
                "dummy",
                "--post-processor-option",
                f"jsonl.path={out}",
                "--summary-json",
                str(summary),
                "--log-file",
                str(tmp_path / "run.log"),
            ],
            capture_output=True,
            text=True,
            env=_cli_env(),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert len(proc.stderr) < 20_000, proc.stderr[:2000]
        assert (tmp_path / "run.log").stat().st_size < 20_000
        assert summary.stat().st_size < 20_000
        assert "SECRET" not in proc.stderr
        rows = {row["index"]: row for row in map(json.loads, out.read_text().splitlines())}
        assert rows[0]["id"] == long_id
        assert rows[0]["status"] == "succeeded"
        assert rows[1]["url"] == long_url
        assert rows[1]["status"] == rows[2]["status"] == "failed"
        assert rows[2]["id"] == files[2]["id"]
