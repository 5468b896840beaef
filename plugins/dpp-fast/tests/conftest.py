"""Fixtures of the ``fast`` downloader's tests: loopback servers, plain and over TLS."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from download_pipeline_processor.testing import FileServer


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
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_server(authority: trustme.CA) -> Iterator[FileServer]:
    """An https FileServer whose certificate (for 127.0.0.1) ``authority`` signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with FileServer(ssl_context=context) as file_server:
        yield file_server
