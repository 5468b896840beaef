"""builtins/_deadlines.py: one thread hangs up each attempt's sockets at its deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from download_pipeline_processor.builtins._deadlines import DeadlineWatcher, watch_socket


@pytest.fixture
def watcher() -> Iterator[DeadlineWatcher]:
    """A watcher, closed after the test."""
    deadlines = DeadlineWatcher()
    yield deadlines
    deadlines.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of real sockets, every wait on them bounded."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


class TestDeadlineWatcher:
    """What the watcher hangs up, and when."""

    def test_a_blocked_recv_wakes_at_the_deadline(
        self, watcher: DeadlineWatcher, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """A recv waiting on a watched socket returns (EOF) at the attempt's deadline."""
        ours, theirs = pair
        started = time.monotonic()
        with watcher.attempt(started + 0.3) as attempt:
            watch_socket(ours)
            assert ours.recv(1) == b""
        assert 0.25 <= time.monotonic() - started < 2
        assert attempt.fired
        assert theirs.recv(1) == b""  # the other end sees the hang-up

    def test_a_socket_watched_past_the_deadline_is_hung_up_at_once(
        self, watcher: DeadlineWatcher, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """A socket the attempt takes after its deadline struck is shut down as it is noted."""
        ours, _ = pair
        with watcher.attempt(time.monotonic()) as attempt:
            for _ in range(250):
                if attempt.fired:
                    break
                time.sleep(0.02)
            watch_socket(ours)
            assert ours.recv(1) == b""

    def test_an_ended_attempt_is_never_hung_up(
        self, watcher: DeadlineWatcher, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """After the attempt's block, its deadline passes without touching its socket."""
        ours, theirs = pair
        with watcher.attempt(time.monotonic() + 0.2) as attempt:
            watch_socket(ours)
        time.sleep(0.4)
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"
        assert not attempt.fired

    def test_other_threads_sockets_are_not_the_attempts(
        self, watcher: DeadlineWatcher, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        """A socket noted on a thread with no watched attempt is left alone."""
        ours, theirs = pair
        with watcher.attempt(time.monotonic() + 0.2) as attempt:
            noting = threading.Thread(target=watch_socket, args=(ours,))
            noting.start()
            noting.join(5)
            time.sleep(0.4)
        assert attempt.fired
        theirs.sendall(b"x")
        assert ours.recv(1) == b"x"

    def test_ended_attempts_do_not_pile_up(self, watcher: DeadlineWatcher) -> None:
        """Thousands of quick attempts under an hour's deadline leave a short queue."""
        for _ in range(5000):
            with watcher.attempt(time.monotonic() + 3600):
                pass
        assert watcher.queued <= 2 * 65
