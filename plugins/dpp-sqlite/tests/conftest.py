"""Shared fixtures: a database path, a reader for it, and a loopback server with files."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from download_pipeline_processor.testing import FileServer
from dpp_sqlite import SqlitePostProcessor

Query = Callable[..., list[sqlite3.Row]]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test's database goes."""
    return tmp_path / "results.db"


@pytest.fixture
def query(db: Path) -> Query:
    """Run SQL on ``db`` through a separate, short-lived connection."""

    def run(sql: str, parameters: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        connection = sqlite3.connect(str(db))
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, parameters).fetchall()
        finally:
            connection.close()

    return run


@pytest.fixture
def make_processor(db: Path) -> Iterator[Callable[..., SqlitePostProcessor]]:
    """Build post-processors on ``db``; any left open are closed after the test."""
    built: list[SqlitePostProcessor] = []

    def make(**options: Any) -> SqlitePostProcessor:
        options.setdefault("db", db)
        processor = SqlitePostProcessor(**options)
        built.append(processor)
        return processor

    yield make
    for processor in built:
        processor.close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A loopback HTTP server."""
    with FileServer() as file_server:
        yield file_server


@pytest.fixture
def secret() -> str:
    """The token in one served URL's query string; it must never reach the database."""
    return "SECRET-a1b2c3"


@pytest.fixture
def bodies() -> dict[str, bytes]:
    """The files ``entries`` serves, by id."""
    return {"alpha": b"alpha", "bravo": b"bravo" * 1000, "secret": b"classified"}


@pytest.fixture
def entries(server: FileServer, bodies: dict[str, bytes], secret: str) -> list[dict[str, Any]]:
    """Three files served with 200 (one behind a secret token) and one that answers 404."""
    listed: list[dict[str, Any]] = [
        {"id": name, "url": server.add(f"/{name}.bin", body)} for name, body in bodies.items()
    ]
    listed[2]["url"] += f"?token={secret}"
    listed[2]["language"] = "en"
    listed.append({"id": "missing", "url": server.url("/missing.bin")})
    return listed
