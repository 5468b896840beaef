"""A download backend that touches no network, for dry runs and tests."""

from __future__ import annotations

import os
import random

from ..backend import Downloader, DownloadRequest
from ..errors import PipelineInterrupted
from ..settings import PipelineSettings
from ..sink import open_destination

#: The original tool's variable: set to 1 to make simulated downloads instant.
NO_SLEEP_ENV = "PIPELINE_NO_SLEEP"


def no_sleep_requested() -> bool:
    """True when ``PIPELINE_NO_SLEEP`` is set to a true value."""
    return os.environ.get(NO_SLEEP_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


class SimulatedDownloader(Downloader):
    """Waits a random delay, then writes a small placeholder file for the entry."""

    placeholder_bodies = True

    def __init__(self, settings: PipelineSettings) -> None:
        super().__init__(settings)
        self.delay = (0.0, 0.0) if no_sleep_requested() else settings.simulate_delay

    def fetch(self, request: DownloadRequest) -> int:
        low, high = self.delay
        if high > 0:
            delay = random.uniform(low, high)  # noqa: S311 - a delay, not a secret
            if request.stop.wait(delay):
                if request.stop.stopping:
                    raise PipelineInterrupted("run stopped during a simulated download")
                raise request.stop.error()
        file_data = request.file_data
        body = f"simulated download\nid: {file_data.id}\nname: {file_data.name}\n".encode()
        request.writer.make_room(len(body))  # --cache-size, in real bytes
        # os-level calls: three syscalls instead of the six of open()'s buffered
        # file object; each one hands the GIL to other workers and back.
        descriptor = open_destination(request.destination)
        try:
            os.write(descriptor, body)
        finally:
            os.close(descriptor)
        return len(body)
