"""A download backend that touches no network, for dry runs and tests."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

from ..backend import Downloader
from ..errors import PipelineInterrupted
from ..file_data import FileData
from ..settings import PipelineSettings
from ..sink import body_writer, open_destination


class SimulatedDownloader(Downloader):
    """Waits a random delay, then writes a small placeholder file for the entry."""

    placeholder_bodies = True

    def __init__(self, settings: PipelineSettings) -> None:
        super().__init__(settings)
        # PIPELINE_NO_SLEEP is read by the settings, as simulate_delay's default.
        self.delay = settings.simulate_delay

    def fetch(self, file_data: FileData, destination: Path, should_stop: threading.Event) -> int:
        low, high = self.delay
        if high > 0:
            delay = random.uniform(low, high)  # noqa: S311 - a delay, not a secret
            if should_stop.wait(delay):
                raise PipelineInterrupted("run stopped during a simulated download")
        body = f"simulated download\nid: {file_data.id}\nname: {file_data.name}\n".encode()
        body_writer(destination).make_room(len(body))  # --cache-size, in real bytes
        # os-level calls: three syscalls instead of the six of open()'s buffered
        # file object; each one hands the GIL to other workers and back.
        descriptor = open_destination(destination)
        try:
            os.write(descriptor, body)
        finally:
            os.close(descriptor)
        return len(body)
