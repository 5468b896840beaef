"""The run's private download cache folder."""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

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
        return self._path

    def target_for(self, sequence: int, file_data: FileData) -> Path:
        """Where the complete download of input entry ``sequence`` will live."""
        shard = sequence % SHARDS
        folder = self.path / f"{shard:02x}"
        if shard not in self._made_shards:
            folder.mkdir(exist_ok=True)
            self._made_shards.add(shard)
        # Keep the URL's extension: processors often dispatch on it.
        raw_extension = posixpath.splitext(urlsplit(file_data.url).path)[1][1:]
        extension = safe_filename(raw_extension, fallback="", max_bytes=15)
        name = safe_filename(file_data.name, fallback="file", max_bytes=120)
        if extension and not name.endswith("." + extension):
            name += "." + extension
        return folder / f"{sequence}-{name}"

    @staticmethod
    def part_path(target: Path) -> Path:
        """The temporary name a download is written under until it is complete."""
        return target.with_name(target.name + PART_SUFFIX)

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
