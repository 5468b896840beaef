"""Fixtures: the framework's loopback FileServer, an HTTP/2 server, and raw answers.

The framework's FileServer speaks HTTP/1.1 only; HTTP/2 (ALPN over TLS)
comes from hypercorn, a real h2 server, serving the same kind of in-memory
files.  Answers no well-behaved server gives (two framings at once, a
garbage length) are FileServer scripts.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from download_pipeline_processor.pytest_fixtures import file_server  # noqa: F401 - a fixture
from download_pipeline_processor.testing import CLOSE, Answer, FileServer


@pytest.fixture(autouse=True)
def _no_netrc_or_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see neither the machine's .netrc nor its proxies, unless they set their own."""
    monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@dataclass
class H2Server:
    """An https server on 127.0.0.1 that offers HTTP/2 (ALPN), serving ``files`` by path."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    #: (client address, HTTP version) of every request.
    requests: list[tuple[tuple[str, int], str]] = field(default_factory=list)

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.base_url + path

    @property
    def connections(self) -> set[tuple[str, int]]:
        """The client ends of the connections requests came on."""
        return {client for client, _ in self.requests}


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
def ca_bundle(authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``authority`` as the CA bundle (REQUESTS_CA_BUNDLE), as a user would point to it."""
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    return bundle


@pytest.fixture
def h2_server(authority: trustme.CA, tmp_path: Path) -> Iterator[H2Server]:
    """hypercorn serving HTTP/2 and HTTP/1.1 over TLS on a loopback port."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    listener = socket.create_server(("127.0.0.1", 0))
    server = H2Server(f"https://127.0.0.1:{listener.getsockname()[1]}")
    pem = tmp_path / "server.pem"
    authority.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = Config()
    # hypercorn takes the listening socket over, and closes it at shutdown.
    config.bind = [f"fd://{listener.detach()}"]
    config.certfile = config.keyfile = str(pem)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        server.requests.append((tuple(scope["client"]), scope["http_version"]))
        body = server.files.get(scope["path"])
        status = 404 if body is None else 200
        body = b"not found" if body is None else body
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    started = threading.Event()
    loop_holder: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop_holder.append((asyncio.get_running_loop(), stop))
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield server
    finally:
        loop, stop = loop_holder[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


@pytest.fixture
def raw_server(file_server: FileServer) -> Callable[[bytes], str]:  # noqa: F811 - the fixture
    """``serve(answer)``: a URL whose server answers every request with ``answer`` and hangs up."""
    return lambda answer: file_server.script("/raw.bin", Answer(answer, CLOSE))
