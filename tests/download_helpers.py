"""What the download tests share: the shipped downloaders, and helpers to run one.

"Every downloader obeys the same rules, proven by the same tests run against
each": a test parametrized over :data:`SHIPPED_DOWNLOADERS` (or using the
``transport`` fixture of ``conftest.py``) runs once per shipped downloader.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Callable

import pytest

import dpp_curl.plugin
import dpp_fast.plugin
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor._download_stage import DownloadStage
from download_pipeline_processor._plugins import PipelinePluginManager
from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.builtins._requests_downloader import RequestsDownloader
from download_pipeline_processor.errors import DownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.testing import make_plugin_manager
from dpp_curl import CurlDownloader
from dpp_fast.fast import FastDownloader

#: Every shipped downloader set-up -> the downloader class that serves its plain URLs.
#: The requests downloader has two transports, a pool and a requests.Session: both count.
DOWNLOADER_CLASSES: dict[str, type[Downloader]] = {
    "pooled": RequestsDownloader,
    "session": RequestsDownloader,
    "fast": FastDownloader,
    "curl": CurlDownloader,
}

#: The names to parametrize a test over: one run per shipped downloader set-up.
SHIPPED_DOWNLOADERS: list[str] = list(DOWNLOADER_CLASSES)

#: A set-up -> the name its downloader is registered under (``--downloader``).
DOWNLOADER_NAMES: dict[str, str] = {
    "pooled": "requests",
    "session": "requests",
    "fast": "fast",
    "curl": "curl",
}

#: The plugin modules of the shipped downloaders that are not built in (for ``run_pipeline``).
SHIPPED_PLUGINS: tuple[object, ...] = (dpp_fast.plugin, dpp_curl.plugin)

#: The registered names of the shipped downloaders (``--downloader``), each once.
SHIPPED_DOWNLOADER_NAMES: list[str] = list(dict.fromkeys(DOWNLOADER_NAMES.values()))

StageFactory = Callable[..., DownloadStage]

#: One route per way a download can fail: permanent, transient, short body, timeout.
FAILING_ROUTES: list[dict[str, Any]] = [
    {"statuses": (404,)},
    {"statuses": (500,)},
    {"body": b"y" * 50_000, "truncate_to": 10},
    {"body": b"z", "delay": 0.4},
]
FAILING_ROUTE_IDS = ["404", "500", "truncated", "timeout"]


def use_downloader(setup: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the environment select ``setup``; return its downloader's registered name.

    A ``.netrc`` file (here an empty one, named by NETRC) is one of the things
    only a requests.Session honours, so its presence switches the requests
    downloader to the session transport: a real switch, not a patched one.
    """
    if setup == "session":
        netrc = tmp_path / "netrc"
        netrc.write_text("")
        monkeypatch.setenv("NETRC", str(netrc))
    else:
        monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    return DOWNLOADER_NAMES[setup]


def shipped_plugin_manager(*plugins: object) -> PipelinePluginManager:
    """A fresh manager with the built-ins, the shipped downloader plugins and ``plugins``."""
    return make_plugin_manager(*SHIPPED_PLUGINS, *plugins)


def cached_files(cache: DownloadCache) -> list[Path]:
    """Every file (not folder) in the cache's run folder."""
    return sorted(path for path in cache.path.rglob("*") if path.is_file())


def download_error(stage: DownloadStage, url: str) -> DownloadError:
    """Download ``url`` expecting failure; return the error raised."""
    with pytest.raises(DownloadError) as info:
        stage.download(0, FileData(url))
    return info.value


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_secrets(url: str) -> str:
    """``url`` with userinfo and a secret query string added."""
    return url.replace("http://", "http://user:secret@", 1) + "?token=SECRET"
