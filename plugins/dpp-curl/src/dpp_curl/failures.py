"""What a libcurl error code means for a download: the error raised, and its text.

Texts follow the other downloaders' for the same situation (``TimeoutError:
timed out``, ``ConnectionRefusedError: [Errno 111] ...``, ``truncated body:
...``, ``[SSL: CERTIFICATE_VERIFY_FAILED]``), so failures group by the same
reason in a run's summary whichever downloader ran.  Every text passes
through the redaction of every URL the attempt visited.
"""

from __future__ import annotations

import os

import pycurl

from download_pipeline_processor.errors import (
    DownloadError,
    PermanentDownloadError,
    TransientDownloadError,
)

#: The text of a timeout, as the ``fast`` downloader words it.
TIMED_OUT = "TimeoutError: timed out"

_Kind = tuple[type[DownloadError], str]

#: A certificate check fails again on every attempt; the text carries the
#: marker of every downloader's certificate failure.
_CERTIFICATE: _Kind = (
    PermanentDownloadError,
    "SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {}",
)
#: Local TLS set-up that another attempt will not fix (a bad CA bundle, say).
_TLS_SETUP: _Kind = (PermanentDownloadError, "SSLError: {}")
_PROTOCOL: _Kind = (TransientDownloadError, "ProtocolError: {}")

#: libcurl's error codes -> the error and its text ({} is libcurl's message).
_KINDS: dict[int, _Kind] = {
    pycurl.E_OPERATION_TIMEDOUT: (TransientDownloadError, TIMED_OUT),
    pycurl.E_PEER_FAILED_VERIFICATION: _CERTIFICATE,  # also E_SSL_CACERT, E_SSL_PEER_CERTIFICATE
    pycurl.E_SSL_ISSUER_ERROR: _CERTIFICATE,
    pycurl.E_SSL_PINNEDPUBKEYNOTMATCH: _CERTIFICATE,
    pycurl.E_SSL_CACERT_BADFILE: _TLS_SETUP,
    pycurl.E_SSL_CERTPROBLEM: _TLS_SETUP,
    pycurl.E_SSL_CIPHER: _TLS_SETUP,
    pycurl.E_SSL_CRL_BADFILE: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_NOTFOUND: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_SETFAILED: _TLS_SETUP,
    pycurl.E_SSL_ENGINE_INITFAILED: _TLS_SETUP,
    # A handshake cut off (a busy balancer) is worth another attempt.
    pycurl.E_SSL_CONNECT_ERROR: (TransientDownloadError, "SSLError: {}"),
    pycurl.E_UNSUPPORTED_PROTOCOL: (
        PermanentDownloadError,
        "only http and https URLs can be downloaded",
    ),
    pycurl.E_URL_MALFORMAT: (PermanentDownloadError, "invalid URL: {}"),
    pycurl.E_FTP_WEIRD_SERVER_REPLY: _PROTOCOL,  # CURLE_WEIRD_SERVER_REPLY (8), by its old name
    pycurl.E_HTTP2: _PROTOCOL,
    92: _PROTOCOL,  # CURLE_HTTP2_STREAM
    95: _PROTOCOL,  # CURLE_HTTP3
    96: _PROTOCOL,  # CURLE_QUIC_CONNECT_ERROR
    97: _PROTOCOL,  # CURLE_PROXY
}
#: Connection trouble, and whatever else libcurl reports: retried.
_OTHER: _Kind = (TransientDownloadError, "ConnectionError: {}")
#: Failures to connect, which libcurl reports with the system's error number.
_CONNECT = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST})


def curl_error(code: int, message: str, os_errno: int = 0) -> DownloadError:
    """The download error of a transfer that libcurl ended with ``code`` and ``message``.

    ``message`` is libcurl's own text; the caller redacts it first.
    Truncated bodies and stopped transfers are the caller's to tell apart:
    they need to know what was received.
    """
    if code in _CONNECT and os_errno:
        # ConnectionRefusedError: [Errno 111] Connection refused, as Python words it.
        error = OSError(os_errno, os.strerror(os_errno))
        return TransientDownloadError(f"{type(error).__name__}: {error}")
    kind, text = _KINDS.get(code, _OTHER)
    return kind(text.format(message))
