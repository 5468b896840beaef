"""What a libcurl error code is reported as: the shared texts of every downloader.

The common failures (timeout, refused connection, untrusted certificate) are
pinned over real connections by the framework's download suite, which runs
against ``curl`` too.  These call :func:`curl_error` with libcurl's codes and
words directly: a failed host name lookup cannot be caused without asking a
real DNS server, and each of libcurl's wordings (older and newer releases)
and system error numbers is pinned one by one.
"""

from __future__ import annotations

import errno

import pycurl
import pytest

from download_pipeline_processor.errors import PermanentDownloadError, TransientDownloadError
from dpp_curl.failures import curl_error


class TestCurlError:
    """libcurl's codes and messages -> the framework's errors and texts."""

    @pytest.mark.parametrize(
        ("code", "message", "expected"),
        [
            (pycurl.E_COULDNT_RESOLVE_HOST, "Could not resolve host: files.invalid", "host"),
            (pycurl.E_COULDNT_RESOLVE_PROXY, "Could not resolve proxy: proxy.invalid", "proxy"),
        ],
    )
    def test_lookup_failure(self, code: int, message: str, expected: str) -> None:
        """A failed lookup is the shared, retried lookup error, without the host name."""
        error = curl_error(code, message, 0)
        assert isinstance(error, TransientDownloadError)
        assert str(error) == f"host name lookup failed: Could not resolve {expected}"

    @pytest.mark.parametrize(
        "message",
        [
            "SSL certificate problem: certificate has expired",
            "SSL certificate OpenSSL verify result: certificate has expired (10)",
        ],
        ids=["older-libcurl", "newer-libcurl"],
    )
    def test_certificate_reason(self, message: str) -> None:
        """A failed certificate check carries OpenSSL's reason alone, as Python words it."""
        error = curl_error(pycurl.E_PEER_FAILED_VERIFICATION, message, 0)
        assert isinstance(error, PermanentDownloadError)
        assert str(error) == (
            "TLS certificate check failed: CERTIFICATE_VERIFY_FAILED: certificate has expired"
        )

    def test_timeout(self) -> None:
        """libcurl's timeout, whatever its words, is the shared text."""
        error = curl_error(pycurl.E_OPERATION_TIMEDOUT, "Operation timed out after 300 ms", 0)
        assert isinstance(error, TransientDownloadError)
        assert str(error) == "timed out"

    @pytest.mark.parametrize(
        ("code", "os_errno", "expected"),
        [
            (pycurl.E_COULDNT_CONNECT, errno.ECONNREFUSED, "connection refused"),
            (pycurl.E_COULDNT_CONNECT, errno.ETIMEDOUT, "timed out"),
            (
                pycurl.E_RECV_ERROR,
                errno.ECONNRESET,
                "ConnectionResetError: [Errno 104] Connection reset by peer",
            ),
        ],
        ids=["refused", "connect-timeout", "reset"],
    )
    def test_system_errors(self, code: int, os_errno: int, expected: str) -> None:
        """A failure with the system's error number reads as a Python socket's would."""
        error = curl_error(code, "Failed to connect or receive", os_errno)
        assert isinstance(error, TransientDownloadError)
        assert str(error) == expected

    def test_secrets_of_every_hop_removed(self) -> None:
        """libcurl's own words lose the query string and userinfo of every visited URL."""
        first = "http://127.0.0.1/a?sig=FIRST"
        hop = "http://u:HOPPASS@127.0.0.1/b?sig=SECOND"
        message = f"Empty reply from {first} via {hop}"
        error = curl_error(pycurl.E_GOT_NOTHING, message, 0, first, hop)
        assert isinstance(error, TransientDownloadError)
        for secret in ("FIRST", "SECOND", "HOPPASS"):
            assert secret not in str(error)
        assert str(error).startswith("ConnectionError: Empty reply from http://127.0.0.1/a")
