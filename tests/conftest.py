"""Fixtures shared by the framework's tests."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from download_helpers import DOWNLOADER_CLASSES, SHIPPED_DOWNLOADERS, StageFactory, use_downloader
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor._download_stage import DownloadStage
from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.pytest_fixtures import (  # noqa: F401 - fixtures
    authority,
    cache_root,
    cli_path,
    file_server,
    tls_server,
)
from download_pipeline_processor.settings import PipelineSettings


@pytest.fixture(params=SHIPPED_DOWNLOADERS)
def transport(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run the test once per shipped downloader set-up (see ``download_helpers``)."""
    use_downloader(request.param, tmp_path, monkeypatch)
    return str(request.param)


@pytest.fixture
def downloader_class(transport: str) -> type[Downloader]:
    """The downloader class of the set-up under test."""
    return DOWNLOADER_CLASSES[transport]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DownloadCache]:
    """An opened download cache under tmp_path, closed after the test."""
    download_cache = DownloadCache(tmp_path / "cache")
    download_cache.open()
    yield download_cache
    download_cache.close()


@pytest.fixture
def make_stage(cache: DownloadCache, downloader_class: type[Downloader]) -> Iterator[StageFactory]:
    """Build a DownloadStage over the downloader under test; settings default to no backoff."""
    downloaders: list[Downloader] = []

    def factory(stop_event: threading.Event | None = None, **settings: Any) -> DownloadStage:
        settings.setdefault("retry_backoff", 0)
        settings.setdefault("timeout", 5.0)
        pipeline_settings = PipelineSettings(**settings)
        downloader = downloader_class(pipeline_settings)
        downloaders.append(downloader)
        return DownloadStage(downloader, cache, pipeline_settings, stop_event or threading.Event())

    yield factory
    for downloader in downloaders:
        downloader.close()


@pytest.fixture(scope="session")
def other_user() -> Iterator[pwd.struct_passwd]:
    """A real second user made with useradd for the session, removed after; skip without it."""
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    if os.geteuid() != 0 or useradd is None or userdel is None:
        pytest.skip("needs root and useradd to make a second user")
    # One name per test process: other test runs on the machine may make theirs too.
    name = f"dpp-test-{os.getpid()}"
    for _ in range(20):  # useradd fails while another one holds the passwd lock
        made = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode == 0:
            break
        time.sleep(0.2)
    else:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        for _ in range(20):
            if subprocess.run([userdel, name], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2)
