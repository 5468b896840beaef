"""pytest fixtures for testing plugins against real loopback servers.

Import the ones a test module or ``conftest.py`` needs::

    from download_pipeline_processor.pytest_fixtures import cache_root, file_server  # noqa: F401

``tls_server`` and ``authority`` need the ``trustme`` package (a throwaway
certificate authority); nothing here is imported by the framework itself.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .testing import FileServer

if TYPE_CHECKING:
    import trustme

__all__ = ["authority", "cache_root", "cli_path", "file_server", "tls_server"]


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    """A loopback HTTP server serving in-memory files, stopped after the test."""
    with FileServer() as server:
        yield server


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    """A cache root private to the test, so emptiness can be asserted afterwards."""
    return tmp_path / "cache"


@pytest.fixture
def cli_path() -> Path:
    """The installed console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("download-pipeline-processor")
    if not script.exists():
        pytest.fail(f"no console script next to {sys.executable}; pip install the project")
    return script


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    """A throwaway certificate authority."""
    import trustme

    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(authority: trustme.CA) -> Iterator[FileServer]:
    """An https FileServer whose certificate (for 127.0.0.1 and localhost) ``authority`` signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with FileServer(ssl_context=context) as server:
        yield server
