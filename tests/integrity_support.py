"""What the integrity and resume tests share: the downloader under test and a run over it."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor.testing import PipelineOutcome, run_pipeline
from dpp_curl import plugin as curl_plugin
from dpp_fast import plugin as fast_plugin

#: The transport under test -> the downloader name a run selects (as tests/test_download.py).
DOWNLOADER_NAMES = {"pooled": "requests", "session": "requests", "fast": "fast", "curl": "curl"}


def transport_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Select a transport: a ``.netrc`` (NETRC) switches the requests downloader to its session."""
    if request.param == "session":
        netrc = tmp_path / "netrc"
        netrc.write_text("")
        monkeypatch.setenv("NETRC", str(netrc))
    else:
        monkeypatch.setenv("NETRC", str(tmp_path / "no-such-netrc"))
    return str(request.param)


class DigestingProcessor(BaseProcessor):
    """Returns the sha256 of every file it is given, and records that it saw it."""

    seen: ClassVar[list[str]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        digest = hashlib.sha256(file_data.local_path.read_bytes()).hexdigest()
        with self.lock:
            DigestingProcessor.seen.append(file_data.id)
        return digest


def run(
    transport: str, entries: list[dict[str, Any]], tmp_path: Path, **settings: Any
) -> PipelineOutcome:
    """Run ``entries`` through the downloader of ``transport``, the digesting processor after it."""
    DigestingProcessor.seen = []
    settings.setdefault("timeout", 5.0)
    settings.setdefault("download_cache", tmp_path / "cache")
    return run_pipeline(
        entries,
        DigestingProcessor,
        plugins=[fast_plugin, curl_plugin],
        downloader=DOWNLOADER_NAMES[transport],
        **settings,
    )


def sha256(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
