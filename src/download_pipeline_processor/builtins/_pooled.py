"""The lean transport of the requests downloader: urllib3's pool, no per-request set-up.

``requests.Session.get`` spends more CPU preparing a request (merging
environment settings, cookies, hooks, re-parsing the URL) than a small file
takes to arrive.  For the plain case (no proxy, no credentials in the URL, no
``.netrc``) the requests downloader sends the GET straight through the urllib3
connection pool that requests itself is built on, with the same redirect,
status and length rules.
"""

from __future__ import annotations

import http.client
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader

from ..affinity import widened_for
from ..errors import PermanentDownloadError, TransientDownloadError
from ..http_rules import (
    CHUNKED,
    REDIRECT_STATUSES,
    body_framing,
    check_status,
    describe,
    invalid_content_length,
    keeps_credentials,
    network_error,
    redirect_target,
    too_many_redirects,
    truncated,
    truncated_chunked,
    without_credentials,
)
from ..options import merge_headers
from ._watched_pools import WATCHED_POOLS

if TYPE_CHECKING:
    from ..backend import DownloadRequest, StopFlag
    from ..sink import BodyWriter


def stream_to_file(
    response: urllib3.BaseHTTPResponse,
    writer: BodyWriter,
    should_stop: StopFlag,
    hops: Sequence[str],
    chunk_size: int,
) -> int:
    """Write the body of ``response`` through ``writer`` in chunks; return its size.

    The body is framed by :func:`.http_rules.body_framing`: a chunked body is
    read to its last chunk whatever a Content-Length beside it says, and an
    invalid Content-Length fails before anything is written.  A body shorter
    than its Content-Length, or a connection broken midway, is a
    :class:`TransientDownloadError`; a stop request interrupts between chunks.
    ``hops``: the URLs the attempt visited, kept out of messages.  A large
    body is copied with every core allowed (see ``affinity``).  The size
    returned is the whole file's, bytes kept from an earlier attempt included.
    """
    headers = response.headers
    try:
        length, _ = body_framing(
            response.status, headers.get("Transfer-Encoding"), headers.get("Content-Length")
        )
    except PermanentDownloadError:
        response.close()  # an unread body of unknown length: the connection is not reusable
        raise
    expected = length if length >= 0 else None
    try:
        writer.begin(response.status, headers.get, expected)
    except BaseException:
        response.close()
        raise
    # With a deadline, take what each receive brings: read(n) waits for n bytes,
    # and a server dripping bytes would keep it past --file-timeout.
    read = response.read1 if writer.deadline is not None else response.read
    written = 0
    try:
        with widened_for(expected) as widening:
            while True:
                chunk = read(chunk_size)
                if not chunk:
                    break
                if should_stop.is_set():
                    response.close()
                    raise should_stop.error()
                writer.write(chunk)
                written += len(chunk)
                widening.copied(len(chunk))
                if expected is not None and written >= expected:
                    break
    except HTTPError as exc:
        response.close()
        if expected is not None and written < expected:
            raise truncated(written, expected) from exc
        if length == CHUNKED:
            # http.client keeps the last read's bytes in the error, not in the file.
            raise truncated_chunked(written + _partial_length(exc)) from exc
        raise TransientDownloadError(
            f"connection broken after {written} bytes: {describe(exc, *hops)}"
        ) from exc
    except BaseException:
        response.close()  # cut off (too large, too slow): the rest stays unread
        raise
    finally:
        writer.close()
    if expected is not None and written != expected:
        raise truncated(written, expected)
    return writer.size


def request_hops(request: DownloadRequest) -> list[str]:
    """The URLs an attempt starts with, kept out of its messages: as sent and as written."""
    url, written = request.url, request.file_data.url
    return [url] if url == written else [url, written]


def _partial_length(error: BaseException) -> int:
    """Bytes of a body that http.client read before ``error`` and kept inside it."""
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, http.client.IncompleteRead) and isinstance(current.partial, bytes):
            return len(current.partial)
        if isinstance(current, BaseException):
            pending += [*current.args, current.__cause__, current.__context__]
    return 0


def framing_error(error: BaseException) -> PermanentDownloadError | None:
    """The error :func:`.http_rules.body_framing` gives for what urllib3 refused as ``error``.

    urllib3 refuses Content-Length values that differ before the body is read.
    """
    text = str(error)
    marker = "Content-Length contained multiple unmatching values ("
    at = text.find(marker)
    if at < 0:
        return None
    return invalid_content_length(text[at + len(marker) :].rpartition(")")[0])


class PooledTransport:
    """GETs over one shared, thread-safe urllib3 pool manager, streaming to a file."""

    def __init__(
        self,
        *,
        workers: int,
        timeout: float,
        chunk_size: int,
        max_redirects: int,
        headers: dict[str, str],
        ca_bundle: str | None,
    ) -> None:
        self.chunk_size = chunk_size
        self.max_redirects = max_redirects
        self.headers = headers
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.manager = urllib3.PoolManager(
            num_pools=max(workers, 10),
            maxsize=workers,
            block=False,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            # requests accepts a folder of certificates as the bundle too.
            **(
                {"ca_cert_dir": ca_bundle}
                if ca_bundle and Path(ca_bundle).is_dir()
                else {"ca_certs": ca_bundle}
            ),
        )
        # --file-timeout: an attempt's connection is hung up at its deadline (``_deadlines``).
        self.manager.pool_classes_by_scheme = WATCHED_POOLS

    def fetch(self, request: DownloadRequest) -> int:
        """One attempt: follow redirects, check the status, stream the body through its writer."""
        current = request.url
        hops = request_hops(request)
        writer = request.writer
        ranged = writer.range_headers()  # Range + If-Range on a resume: added per attempt only
        headers = merge_headers(request.headers, ranged) if ranged else request.headers
        for _ in range(self.max_redirects + 1):
            try:
                response = self.manager.urlopen(
                    "GET",
                    current,
                    headers=headers,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                    decode_content=False,
                    timeout=self.timeout,
                )
            except HTTPError as exc:
                if isinstance(exc, InvalidHeader) and (refused := framing_error(exc)):
                    raise refused from exc
                raise network_error(exc, *hops) from exc
            status = response.status
            if status in REDIRECT_STATUSES and response.headers.get("Location"):
                response.drain_conn()
                response.release_conn()
                location = redirect_target(current, response.headers["Location"])
                if not keeps_credentials(current, location):
                    headers = without_credentials(headers)
                current = location
                hops.append(location)
                continue
            try:
                if status >= 400:
                    response.drain_conn()
                check_status(status, response.reason or "", response.headers.get("Retry-After"))
                return stream_to_file(response, writer, request.stop, hops, self.chunk_size)
            finally:
                response.release_conn()
        raise too_many_redirects(self.max_redirects)

    def close(self) -> None:
        """Close every pooled connection."""
        self.manager.clear()
