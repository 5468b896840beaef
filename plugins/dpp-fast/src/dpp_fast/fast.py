"""The ``fast`` download backend: HTTP/1.1 on plain sockets.

:class:`FastDownloader` is the ``requests`` downloader with the blocking
:class:`~.socket_transport.SocketTransport` for plain URLs on worker threads,
and the event loop of :mod:`.fast_loop` for every plain-http download of a
run.  The imports point one way: this module uses both, the loop uses the
transport, and the transport uses neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from download_pipeline_processor.builtins import RequestsDownloader, Transport

from .fast_loop import EventLoop
from .socket_transport import ConnectionClosed, ProtocolError, SocketTransport

if TYPE_CHECKING:
    from download_pipeline_processor.backend import DownloadFeed


class FastDownloader(RequestsDownloader):
    """The requests downloader with :class:`SocketTransport` for plain URLs.

    A run drives it through :meth:`fetch_many`: one thread multiplexes every
    plain-http download (:mod:`.fast_loop`), and worker threads take the rest
    with :meth:`fetch`.
    """

    _sockets: SocketTransport

    def plain_transport(self) -> Transport:
        self._sockets = SocketTransport(**self.transport_options())
        return self._sockets

    def fetch_many(self, feed: DownloadFeed) -> None:
        EventLoop(self, self._sockets, feed).run()


__all__ = ["ConnectionClosed", "FastDownloader", "ProtocolError", "SocketTransport"]
