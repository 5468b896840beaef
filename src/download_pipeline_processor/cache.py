"""The run's private download cache folder."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote

from .file_data import FileData
from .paths import safe_filename

#: Sub-folders the cache spreads files over, so no one directory gets hot.
SHARDS = 256
PART_SUFFIX = ".part"


class DownloadCache:
    """A folder made for one run inside the cache root, removed whole at the end.

    Files are spread over ``SHARDS`` sub-folders by sequence number and named
    ``<seq>-<safe name><extension>``, so names from the input can neither
    collide nor point outside the cache.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._path: Path | None = None
        self._made_shards: set[int] = set()
        self._shard_folders: list[str] = []

    @property
    def path(self) -> Path:
        """The run's folder; only valid between :meth:`open` and :meth:`close`."""
        if self._path is None:
            raise RuntimeError("the download cache is not open")
        return self._path

    def open(self) -> Path:
        """Make the run's folder (and the root, if needed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._path = Path(tempfile.mkdtemp(prefix="run-", dir=self.root))
        self._shard_folders = [os.path.join(self._path, f"{shard:02x}") for shard in range(SHARDS)]  # noqa: PTH118
        return self._path

    def target_for(self, sequence: int, file_data: FileData) -> Path:
        """Where the complete download of input entry ``sequence`` will live."""
        # Built from strings with one Path at the end: this runs for every file,
        # and pathlib's parsing used to cost more than writing a small file.
        shard = sequence % SHARDS
        folder = self._shard_folders[shard]
        if shard not in self._made_shards:
            os.makedirs(folder, exist_ok=True)  # noqa: PTH103 - str path on purpose
            self._made_shards.add(shard)
        name = safe_filename(file_data.name, fallback="file", max_bytes=120)
        # Keep the URL's extension: processors often dispatch on it.
        path = file_data.url.partition("#")[0].partition("?")[0]
        raw_extension = posixpath.splitext(path.rpartition("/")[2])[1][1:]
        if raw_extension:
            extension = safe_filename(unquote(raw_extension), fallback="", max_bytes=15)
            if extension and not name.endswith("." + extension):
                name += "." + extension
        return Path(f"{folder}{os.sep}{sequence}-{name}")

    @staticmethod
    def part_path(target: Path) -> Path:
        """The temporary name a download is written under until it is complete."""
        return Path(f"{target}{PART_SUFFIX}")

    @staticmethod
    def discard(path: Path | None) -> None:
        """Delete a cached file if it is still there."""
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def close(self) -> None:
        """Remove the run's folder and everything left in it."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None
            self._made_shards.clear()
