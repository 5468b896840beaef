"""Fixtures of the ``fast`` downloader's tests: loopback servers, plain and over TLS."""

from __future__ import annotations

from download_pipeline_processor.pytest_fixtures import (  # noqa: F401 - fixtures
    authority,
    cache_root,
    cli_path,
    tls_server,
)
