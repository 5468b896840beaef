"""Processors that misbehave on purpose, importable by name.

The tests put this folder on ``sys.path`` (and on ``PYTHONPATH`` for a CLI
subprocess), so worker processes of process mode and ``module:ClassName`` on
the command line can import these classes like any user's processor.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData


class PluginBug(BaseException):
    """A plugin's own BaseException subclass, as a KeyboardInterrupt look-alike would be."""


#: What FaultyProcessor can do to a file whose id starts with "bad".
ACTIONS = (
    "raise-base-exception",
    "raise-system-exit",
    "close-raises",
    "replace-with-folder",
    "replace-with-full-folder",
    "replace-with-link-to-file",
    "replace-with-link-to-folder",
    "delete",
    "move-out",
)


class FaultyProcessor(BaseProcessor):
    """Does ``action`` to files whose id starts with "bad"; returns other files' sizes.

    ``outside`` is a folder outside the cache: links the processor plants point
    into it, and files it moves out land in it.
    """

    def __init__(self, action: str = "", outside: str = "") -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        self.action = action
        self.outside = Path(outside)

    def process(self, file_data: FileData) -> Any:
        path = file_data.local_path
        assert path is not None
        size = path.stat().st_size
        if not file_data.id.startswith("bad"):
            return size
        action = self.action
        if action == "raise-base-exception":
            raise PluginBug("processor bug")
        if action == "raise-system-exit":
            raise SystemExit(3)
        if action == "replace-with-folder":
            path.unlink()
            path.mkdir()
        elif action == "replace-with-full-folder":
            path.unlink()
            (path / "sub").mkdir(parents=True)
            (path / "sub" / "data.txt").write_text("left behind")
            (path / "link-out").symlink_to(self.outside)
        elif action == "replace-with-link-to-file":
            path.unlink()
            path.symlink_to(self.outside / "keep.txt")
        elif action == "replace-with-link-to-folder":
            path.unlink()
            path.symlink_to(self.outside)
        elif action == "delete":
            path.unlink()
        elif action == "move-out":
            shutil.move(str(path), str(self.outside / f"moved-{os.getpid()}-{file_data.id}"))
        return size

    def close(self) -> None:
        if self.action == "close-raises":
            raise PluginBug("close bug")


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


class LeakyProcessor(BaseProcessor):
    """Starts a non-daemon thread that never ends, as a careless library might."""

    def __init__(self) -> None:
        threading.Thread(target=_sleep_forever, name="leaked-by-plugin", daemon=False).start()

    def process(self, file_data: FileData) -> Any:
        assert file_data.local_path is not None
        return file_data.local_path.stat().st_size


class HangingProcessor(BaseProcessor):
    """Never returns from files whose id starts with "hang"; returns other files' worker PID.

    For ``--processing-timeout``: the hang is a plain sleep, which nothing but
    the timeout ends.
    """

    def process(self, file_data: FileData) -> Any:
        if file_data.id.startswith("hang"):
            _sleep_forever()
        return os.getpid()
