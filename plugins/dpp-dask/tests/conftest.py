"""Fixtures: a real local Dask cluster (2 worker processes on 127.0.0.1) and a loopback server.

This folder goes on ``sys.path`` first thing: the cluster's worker processes
are spawned with this process's ``sys.path`` and import the test processors
(``dask_test_processors``) from it by name.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pytest  # noqa: E402 - after the path set-up above, which the helpers need
from dask_helpers import DaskClient, start_cluster  # noqa: E402

from download_pipeline_processor.pytest_fixtures import file_server  # noqa: E402,F401 - a fixture


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[tuple[Any, DaskClient]]:
    """One cluster for every test that does not kill its workers."""
    cluster, client = start_cluster()
    try:
        yield cluster, client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def scheduler(shared_cluster: tuple[Any, DaskClient]) -> str:
    """The shared cluster's scheduler address (``--executor-option scheduler=...``)."""
    cluster, client = shared_cluster
    # A test before may have lost a worker; wait for its replacement.
    client.wait_for_workers(2, timeout=60)
    return str(cluster.scheduler_address)
