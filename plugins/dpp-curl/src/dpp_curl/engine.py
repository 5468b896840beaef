"""libcurl's multi interface driven from one thread: :class:`Engine`.

libcurl tells which sockets it waits on (``M_SOCKETFUNCTION``) and when it
next needs the clock (``M_TIMERFUNCTION``); the engine waits on those sockets
in a selector (epoll on Linux) and hands each ready one back with
``socket_action``, as an event loop around libcurl does.  The cost of a wake-up
is then the sockets that are ready, not every transfer in flight, and
HTTP/2 streams share their connection inside libcurl.

The engine also keeps the pipeline's timeout: ``--timeout`` is per network
operation, so a transfer that has seen no byte for that long is ended,
to the tenth of a second that libcurl's own low-speed limit (whole seconds)
cannot give.
"""

from __future__ import annotations

import selectors
import time
from typing import TYPE_CHECKING, Any

import pycurl

from download_pipeline_processor.errors import TransientDownloadError
from download_pipeline_processor.write_behind import WriteBehind

from .transfer import new_handle

if TYPE_CHECKING:
    from .config import CurlConfig
    from .transfer import Transfer

__all__ = ["CLOSING_POLL", "SWEEP_INTERVAL", "Engine"]


#: How often transfers are checked for the timeout, at most, in seconds.
SWEEP_INTERVAL = 0.1
#: How often, at most, bodies finishing on the writing threads are looked at, in seconds.
CLOSING_POLL = 0.001

_now = time.monotonic


class Engine:
    """A CurlMulti and the transfers in it; every method is called from one thread."""

    def __init__(self, config: CurlConfig, connections: int) -> None:
        self.config = config
        self.multi = pycurl.CurlMulti()
        self.multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
        self.multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        # Idle connections kept for reuse: one per transfer that may run at once.
        self.multi.setopt(pycurl.M_MAXCONNECTS, connections)
        self.multi.setopt(pycurl.M_PIPELINING, pycurl.PIPE_MULTIPLEX)
        self.selector = selectors.DefaultSelector()
        self.watched: dict[int, int] = {}  # socket -> selector events
        self.timer: float | None = None  # when libcurl wants socket_action(TIMEOUT)
        self.transfers: dict[pycurl.Curl, Transfer] = {}
        #: Transfers whose bodies' last blocks are on the writing threads.
        self.closing: list[Transfer] = []
        self.spare: list[pycurl.Curl] = []
        self.spare_limit = connections
        self.ended: list[Transfer] = []
        self.next_sweep = 0.0
        self.sweep_interval = min(SWEEP_INTERVAL, config.timeout / 4)
        self.callback_error: BaseException | None = None
        #: Writes and hashes the large bodies beside this thread (started by the first);
        #: a body is at most two blocks ahead of its file, the third being gathered.
        self.behind = WriteBehind(2 * config.block_size, name="curl-writes")

    @property
    def busy(self) -> bool:
        """True while any transfer is in flight, or its body is still being written."""
        return bool(self.transfers or self.closing)

    # -- libcurl's callbacks (they must not raise: pycurl would print it) -----------------

    def _on_socket(self, what: int, sock: int, multi: Any, data: Any) -> None:
        try:
            selector = self.selector
            watched = self.watched
            if what == pycurl.POLL_REMOVE:
                if watched.pop(sock, None) is not None:
                    selector.unregister(sock)
                return
            events = (selectors.EVENT_READ if what & pycurl.POLL_IN else 0) | (
                selectors.EVENT_WRITE if what & pycurl.POLL_OUT else 0
            )
            previous = watched.get(sock)
            if previous == events:
                return
            if previous is None:
                selector.register(sock, events)
            else:
                selector.modify(sock, events)
            watched[sock] = events
        except BaseException as exc:  # noqa: BLE001 - raised again by step()
            self.callback_error = exc

    def _on_timer(self, milliseconds: int) -> None:
        self.timer = None if milliseconds < 0 else _now() + milliseconds / 1000

    # -- transfers --------------------------------------------------------------------------

    def start(self, transfer: Transfer) -> bool:
        """Set ``transfer``'s current hop going; False when that failed and ended it."""
        handle = self.spare.pop() if self.spare else new_handle(self.config)
        transfer.behind = self.behind
        try:
            transfer.setup(handle)
            self.multi.add_handle(handle)
        except BaseException as exc:  # noqa: BLE001 - the file's error (a NUL in the URL...)
            self._release(handle)
            transfer.fail(exc)
            return False
        self.transfers[handle] = transfer
        return True

    def step(self, wait: float) -> list[Transfer]:
        """Wait up to ``wait`` seconds for the network, act on it; the transfers that ended."""
        multi = self.multi
        now = _now()
        if self.timer is not None:
            wait = min(wait, max(self.timer - now, 0.0))
        if self.closing:
            wait = min(wait, CLOSING_POLL)
        if not self.ended:
            for key, mask in self.selector.select(wait):
                flags = (pycurl.CSELECT_IN if mask & selectors.EVENT_READ else 0) | (
                    pycurl.CSELECT_OUT if mask & selectors.EVENT_WRITE else 0
                )
                multi.socket_action(key.fd, flags)
        timer = self.timer
        if timer is not None and _now() >= timer:
            self.timer = None  # the callback may set the next one during the call
            multi.socket_action(pycurl.SOCKET_TIMEOUT, 0)
        self._collect()
        if self.closing:
            self._complete_written()
        if self.callback_error is not None:
            error, self.callback_error = self.callback_error, None
            raise error
        now = _now()
        if now >= self.next_sweep:
            self.next_sweep = now + self.sweep_interval
            self._sweep(now)
        ended, self.ended = self.ended, []
        return ended

    def _collect(self) -> None:
        """Finish the transfers libcurl reports done; follow redirects."""
        multi = self.multi
        while True:
            queued, succeeded, failed = multi.info_read()
            for handle in succeeded:
                self._hop_ended(handle, 0, "")
            for handle, code, message in failed:
                self._hop_ended(handle, code, message)
            if not queued:
                return

    def _hop_ended(self, handle: pycurl.Curl, code: int, message: str) -> None:
        transfer = self.transfers.pop(handle)
        os_errno = handle.getinfo(pycurl.OS_ERRNO) if code else 0
        self.multi.remove_handle(handle)
        self._release(handle)
        self._after_hop(transfer, transfer.finish(code, message, os_errno))

    def _after_hop(self, transfer: Transfer, more: bool) -> None:
        """Start the next hop, or end the transfer, or wait for its body's last blocks."""
        if more:
            if not self.start(transfer):
                self.ended.append(transfer)  # its next redirect hop could not start
        elif transfer.finished:
            self.ended.append(transfer)  # done or failed
        else:
            self.closing.append(transfer)

    def _complete_written(self) -> None:
        """End the transfers whose bodies the writing threads have finished."""
        still = []
        for transfer in self.closing:
            if transfer.written:
                transfer.complete()
                self.ended.append(transfer)
            else:
                still.append(transfer)
        self.closing = still

    def _timed_out(self, handle: pycurl.Curl, transfer: Transfer) -> None:
        """End a hop that saw no byte for the timeout, as libcurl's own timeout would end it.

        So a redirect or error answer whose body stalls still counts by its status.
        """
        del self.transfers[handle]
        self.multi.remove_handle(handle)
        self._release(handle)
        self._after_hop(transfer, transfer.finish(pycurl.E_OPERATION_TIMEDOUT, "timed out", 0))

    def _release(self, handle: pycurl.Curl) -> None:
        if len(self.spare) < self.spare_limit:
            self.spare.append(handle)
        else:
            handle.close()

    def _sweep(self, now: float) -> None:
        """End the transfers that have seen no byte for longer than the timeout."""
        limit = now - self.config.timeout
        for handle, transfer in list(self.transfers.items()):
            if transfer.seen < limit:
                self._timed_out(handle, transfer)

    def abort(
        self, transfer: Transfer, error: BaseException, handle: pycurl.Curl | None = None
    ) -> None:
        """End ``transfer`` now with ``error``; it is returned by the next :meth:`step`."""
        if transfer in self.closing:
            self.closing.remove(transfer)  # its body is being written: fail() waits for it
        else:
            if handle is None:
                handle = next(h for h, t in self.transfers.items() if t is transfer)
            del self.transfers[handle]
            self.multi.remove_handle(handle)  # closes its connection unless it can be kept
            self._release(handle)
        transfer.fail(error)
        self.ended.append(transfer)

    def abort_all(self, error: BaseException) -> list[Transfer]:
        """End every transfer with ``error``; return them, and those ended but not yet returned."""
        for handle, transfer in list(self.transfers.items()):
            self.abort(transfer, error, handle)
        for transfer in list(self.closing):
            self.abort(transfer, error)
        ended, self.ended = self.ended, []
        return ended

    def close(self) -> None:
        """Abandon the transfers in flight and close every handle and connection."""
        self.abort_all(TransientDownloadError("the downloader was closed"))
        self.behind.close()
        for handle in self.spare:
            handle.close()
        self.spare.clear()
        self.multi.close()
        self.selector.close()
        self.watched.clear()
