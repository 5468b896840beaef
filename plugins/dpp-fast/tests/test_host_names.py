"""builtins/host_names.py: lookups off the event loop's thread, kept for a while."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from dpp_fast.host_names import DNS_TTL, HostNames


def wait_for(names: HostNames, host: str, now: float) -> list[Any]:
    """Ask until the lookup is done (it runs on the pool's threads)."""
    deadline = time.monotonic() + 10
    while (found := names.addresses(host, 80, now)) is None:
        assert time.monotonic() < deadline, "the lookup never finished"
        time.sleep(0.01)
    return found


@pytest.fixture
def names() -> Any:
    host_names = HostNames()
    yield host_names
    host_names.close()


class TestHostNames:
    def test_ip_literals_need_no_lookup(self, names: HostNames) -> None:
        assert names.addresses("127.0.0.1", 8080, 0.0) == [(socket.AF_INET, ("127.0.0.1", 8080))]
        assert names.addresses("::1", 8080, 0.0) == [(socket.AF_INET6, ("::1", 8080))]

    def test_a_name_is_looked_up_on_another_thread(self, names: HostNames) -> None:
        """None at first (the caller must not wait), then the resolver's answer."""
        assert names.addresses("localhost", 80, 0.0) is None
        found = wait_for(names, "localhost", 0.0)
        expected = [
            (entry[0], entry[4])
            for entry in socket.getaddrinfo("localhost", 80, 0, socket.SOCK_STREAM)
        ]
        assert found == expected

    def test_an_expired_answer_serves_while_it_is_renewed(
        self, names: HostNames, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []
        real = socket.getaddrinfo
        release = threading.Event()

        def counted(host: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(host)
            if len(calls) > 1:
                release.wait(5)  # the renewal is still running when asked again
            return real(host, *args, **kwargs)

        # Counting lookups needs a wrapper: the real resolver answers underneath.
        monkeypatch.setattr(socket, "getaddrinfo", counted)
        first = wait_for(names, "localhost", 0.0)
        assert names.addresses("localhost", 80, DNS_TTL - 1) == first  # still fresh: no lookup
        assert calls == ["localhost"]
        assert names.addresses("localhost", 80, DNS_TTL + 1) == first  # expired: renewal starts
        assert names.addresses("localhost", 80, DNS_TTL + 2) == first  # ... and it still serves
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:  # it runs on the pool
            time.sleep(0.01)
        assert calls == ["localhost", "localhost"]
        release.set()

    def test_a_failed_lookup_is_none_and_tried_again(
        self, names: HostNames, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[str] = []

        def failing(host: Any, *args: Any, **kwargs: Any) -> Any:
            calls.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        # No name fails to resolve quickly and surely on every machine: a fake one.
        monkeypatch.setattr(socket, "getaddrinfo", failing)
        deadline = time.monotonic() + 5
        while len(calls) < 2:  # a failure is not kept: asking again looks it up again
            assert names.addresses("nowhere.test", 80, 0.0) is None  # worker threads report it
            assert time.monotonic() < deadline, "the name was never looked up again"
            time.sleep(0.01)
        assert calls == ["nowhere.test", "nowhere.test"]
