"""Where shards go: a local folder or any fsspec URL, each file published whole.

A shard's files are written to temporary files first and only then given
their final names, never over an existing file.  For a local folder the
temporary file is a hidden one in that folder (created exclusively, never
through a link), given its name by a hard link (``os.link`` fails when the
name exists) and then unlinked: the name appears with every byte behind it.
For remote storage it is a private local temporary file, uploaded to the
final key in one ``put`` after checking the key is free: object stores show
an object only once its upload completed, but the check and the upload are
two requests, so there it is best effort.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["SHARD_FILE", "ShardStore"]

#: The names a shard's files take: ``00012.tar``, ``00012.parquet``, ``00012_stats.json``.
SHARD_FILE = re.compile(r"^(\d{5,})(?:\.tar|\.parquet|_stats\.json)$")
#: The hidden prefix of a local shard file still being written.
TEMP_PREFIX = ".dpp-shard-"
#: Present while a run writes into the output, naming that run; removed when
#: it closed cleanly.  Found at start, it names a live run (which the new run
#: leaves alone) or a killed one.
RUN_MARKER = ".dpp-shards-running.json"


class ShardStore:
    """One output location: lists its shards, hands out temporary files, publishes them."""

    def __init__(self, output: str, storage_options: Mapping[str, Any] | None = None) -> None:
        # Loaded when a run builds the post-processor, not when plugins register.
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.output = output
        fs, root = fsspec.core.url_to_fs(output, **dict(storage_options or {}))
        self.fs = fs
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.local = isinstance(fs, LocalFileSystem)
        if self.local:
            folder = Path(self.root)
            folder.mkdir(parents=True, exist_ok=True)
            if folder.is_symlink() or not folder.is_dir():
                raise NotADirectoryError(f"{output!r} is not a folder")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{output!r} cannot be written")

    def path(self, name: str) -> str:
        """The full path or URL path of ``name`` in the output."""
        return f"{self.root}/{name}" if self.root else name

    def shard_names(self) -> list[str]:
        """The names of the shard files already in the output."""
        try:
            entries = self.fs.ls(self.root, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except TypeError:  # a file system whose ls takes no refresh
            entries = self.fs.ls(self.root, detail=False)
        names = (str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries)
        return sorted(name for name in names if SHARD_FILE.match(name))

    def temporary(self, suffix: str) -> str:
        """A new, empty, private temporary file's path, where a shard file is written."""
        folder = self.root if self.local else None
        handle, path = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
        os.close(handle)
        return path

    def publish(self, temporary: str, name: str) -> None:
        """Give ``temporary``'s content the new ``name``, whole; the temporary is gone after.

        Raises :class:`FileExistsError` when ``name`` exists: nothing is ever
        overwritten.
        """
        target = self.path(name)
        try:
            if self.local:
                # mkstemp made it private; a published shard is readable as any file here.
                Path(temporary).chmod(0o644)
                # On disk before it has its name: a power loss leaves no empty shard.
                _fsync(temporary)
                _link_new(temporary, target, name)
            else:
                self.fs.invalidate_cache(target)
                if self.fs.exists(target):
                    raise _exists(name)
                self.fs.put_file(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)

    def open_read(self, name: str) -> Any:
        """A binary file object of the published ``name``."""
        return self.fs.open(self.path(name), "rb")

    def remove(self, name: str) -> None:
        """Remove the published ``name``."""
        self.fs.rm_file(self.path(name))

    def remove_leftover_temporaries(self) -> None:
        """Remove the hidden temporary files a killed run left in a local output folder."""
        if not self.local:
            return  # a remote output's temporaries were private local files
        for entry in os.scandir(self.root):
            if entry.name.startswith(TEMP_PREFIX) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)

    def read_marker(self) -> bytes | None:
        """The run marker's content, or None when there is none."""
        try:
            return bytes(self.fs.cat_file(self.path(RUN_MARKER)))
        except FileNotFoundError:
            return None

    def write_marker(self, content: bytes) -> None:
        """Write the run marker, whole; :class:`FileExistsError` when there is one already."""
        temporary = self.temporary(".json")
        Path(temporary).write_bytes(content)
        self.publish(temporary, RUN_MARKER)

    def remove_marker(self) -> None:
        """Remove the run marker (the run closed cleanly)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(RUN_MARKER))


def _exists(name: str) -> FileExistsError:
    return FileExistsError(
        errno.EEXIST, f"{name} is already in the output, not overwritten (one run per output)"
    )


def _link_new(temporary: str, target: str, name: str) -> None:
    """Give ``temporary`` the name ``target`` unless that name exists."""
    try:
        os.link(temporary, target, follow_symlinks=False)
    except FileExistsError:
        raise _exists(name) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # A file system without hard links (FAT, some network mounts): look,
        # then rename; two runs in that instant is the one gap left.
        if os.path.lexists(target):
            raise _exists(name) from None
        Path(temporary).rename(target)


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
