"""What a libcurl error code means for a download: the error raised, and its text.

The common failures read as on every other downloader, through the
framework's shared messages (:mod:`~download_pipeline_processor.http_rules`):
``timed out``, ``connection refused``, ``host name lookup failed: ...``,
``TLS certificate check failed: CERTIFICATE_VERIFY_FAILED: ...``; a failure
that carries the system's error number reads as Python words that error,
as the ``fast`` downloader reports it.  So failures group by the same reason
in a run's summary whichever downloader ran.  Every text is stripped of the
secrets of every URL the attempt visited.
"""

from __future__ import annotations

import os
import re

import pycurl

from download_pipeline_processor.errors import (
    DownloadError,
    PermanentDownloadError,
    TransientDownloadError,
)
from download_pipeline_processor.http_rules import (
    certificate_rejected,
    lookup_failed,
    network_error,
    timed_out,
)
from download_pipeline_processor.redact import scrub

__all__ = ["curl_error"]


_Kind = tuple[type[DownloadError], str]

#: libcurl's words for a failed chain check around OpenSSL's reason, which
#: is what Python's ``verify_message`` gives ("self-signed certificate"):
#: "SSL certificate problem: REASON" up to 8.x, "SSL certificate OpenSSL
#: verify result: REASON (20)" since.
_CERTIFICATE_PROBLEM = re.compile(
    r"SSL certificate (?:problem|OpenSSL verify result): (?P<reason>.+?)(?: \(\d+\))?"
)
#: A certificate check fails again on every attempt.
_CERTIFICATE = frozenset(
    {
        pycurl.E_PEER_FAILED_VERIFICATION,  # also E_SSL_CACERT, E_SSL_PEER_CERTIFICATE
        pycurl.E_SSL_ISSUER_ERROR,
        pycurl.E_SSL_PINNEDPUBKEYNOTMATCH,
    }
)
#: Host names that could not be resolved: the server's, or the proxy's.
_LOOKUP = frozenset({pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_RESOLVE_PROXY})
#: Failures of the connection that libcurl reports with the system's error number.
_SOCKET = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_RECV_ERROR, pycurl.E_SEND_ERROR})

#: Local TLS set-up that another attempt will not fix (a bad CA bundle, say).
_TLS_SETUP: _Kind = (PermanentDownloadError, "SSLError: {}")
_PROTOCOL: _Kind = (TransientDownloadError, "ProtocolError: {}")

#: The rest of libcurl's error codes -> the error and its text ({} is libcurl's message).
_KINDS: dict[int, _Kind] = {
    pycurl.E_SSL_CACERT_BADFILE: _TLS_SETUP,
    pycurl.E_SSL_CERTPROBLEM: _TLS_SETUP,
    pycurl.E_SSL_CIPHER: _TLS_SETUP,
    pycurl.E_SSL_CRL_BADFILE: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_NOTFOUND: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_SETFAILED: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_INITFAILED: _TLS_SETUP,
    # A handshake cut off (a busy balancer) is worth another attempt.
    pycurl.E_SSL_CONNECT_ERROR: (TransientDownloadError, "SSLError: {}"),
    # The URL rules (http_rules.request_url, redirect_target) refuse these
    # first; libcurl's own refusal is the same kind of failure.
    pycurl.E_UNSUPPORTED_PROTOCOL: (PermanentDownloadError, "URL {}"),
    pycurl.E_URL_MALFORMAT: (PermanentDownloadError, "URL {}"),
    pycurl.E_FTP_WEIRD_SERVER_REPLY: _PROTOCOL,  # CURLE_WEIRD_SERVER_REPLY (8), by its old name
    pycurl.E_HTTP2: _PROTOCOL,
    92: _PROTOCOL,  # CURLE_HTTP2_STREAM
    95: _PROTOCOL,  # CURLE_HTTP3
    96: _PROTOCOL,  # CURLE_QUIC_CONNECT_ERROR
    97: _PROTOCOL,  # CURLE_PROXY
}
#: Connection trouble, and whatever else libcurl reports: retried.
_OTHER: _Kind = (TransientDownloadError, "ConnectionError: {}")


def curl_error(code: int, message: str, os_errno: int, *urls: str) -> DownloadError:
    """The download error of a transfer that libcurl ended with ``code`` and ``message``.

    ``message`` is libcurl's own text, ``os_errno`` its CURLINFO_OS_ERRNO;
    ``urls``: every URL the attempt visited, whose secrets no text may show.
    Truncated bodies and stopped transfers are the caller's to tell apart:
    they need to know what was received.
    """
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return timed_out()
    if code in _CERTIFICATE:
        found = _CERTIFICATE_PROBLEM.fullmatch(message)
        return certificate_rejected(scrub(found["reason"] if found else message, *urls))
    if code in _LOOKUP:
        # libcurl's threaded resolver keeps getaddrinfo's reason to itself:
        # "Could not resolve host: NAME" is all it says.  The name is left
        # out, so that lookups group by reason as on the other downloaders.
        return lookup_failed(message.partition(":")[0] or "Could not resolve host")
    if code in _SOCKET and os_errno:
        # OSError(ECONNREFUSED, ...) is a ConnectionRefusedError, and so on:
        # the shared rule words it as for a Python socket.
        return network_error(OSError(os_errno, os.strerror(os_errno)), *urls)
    kind, text = _KINDS.get(code, _OTHER)
    return kind(scrub(text.format(message), *urls))
