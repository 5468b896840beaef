"""The run's private download cache folder."""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import struct
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote

from .cache_budget import CacheBudget
from .file_data import FileData
from .paths import safe_filename

#: Sub-folders the cache spreads files over, so no one directory gets hot.
SHARDS = 256
PART_SUFFIX = ".part"
#: ext2/3/4's "top of a directory hierarchy" flag (``chattr +T``), from linux/fs.h.
FS_TOPDIR_FL = 0x00020000
#: Machines whose ioctl numbers use the generic layout (asm-generic/ioctl.h).
_GENERIC_IOCTL_MACHINES = frozenset(
    {"x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "armv7l", "riscv64", "s390x"}
)


def _flags_ioctls(machine: str) -> tuple[int, int] | None:
    """``FS_IOC_GETFLAGS`` and ``FS_IOC_SETFLAGS`` on ``machine``, or None where unknown."""
    if not sys.platform.startswith("linux") or machine not in _GENERIC_IOCTL_MACHINES:
        return None
    size = struct.calcsize("l")  # declared as long, though the kernel reads an int
    read, write = 2, 1
    return (read << 30) | (size << 16) | (ord("f") << 8) | 1, (
        (write << 30) | (size << 16) | (ord("f") << 8) | 2
    )


def mark_top_directory(path: str, machine: str | None = None) -> bool:
    """Ask ext2/3/4 to spread ``path``'s sub-folders over block groups; False if not done.

    The Orlov allocator puts a new folder in its parent's block group unless
    the parent is marked as the top of a hierarchy, in which case it picks a
    group with the most room.  Files are created in their folder's group, so
    spread shards spread inode allocation: on ext4 without a journal, each
    creation scans its group past every inode freed in the last minute, and a
    group where thousands of files were just deleted (the previous run's output,
    the run's own processed files) costs about 0.5 ms per file instead of 0.03.
    Other file systems refuse the flag or ignore it; both are fine.  ``machine``
    is the CPU architecture as ``os.uname().machine`` names it (default: this
    one); on one whose ioctl numbers are not known, nothing is sent.
    """
    if machine is None:
        machine = os.uname().machine if hasattr(os, "uname") else ""
    numbers = _flags_ioctls(machine)
    if numbers is None:
        return False
    import fcntl  # POSIX only; numbers is None elsewhere

    get_flags, set_flags = numbers
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        buffer = bytearray(struct.calcsize("l"))
        fcntl.ioctl(fd, get_flags, buffer)
        (flags,) = struct.unpack_from("i", buffer)
        if flags & FS_TOPDIR_FL:
            return True
        struct.pack_into("i", buffer, 0, flags | FS_TOPDIR_FL)
        fcntl.ioctl(fd, set_flags, buffer)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class DownloadCache:
    """A folder made for one run inside the cache root, removed whole at the end.

    Files are spread over ``SHARDS`` sub-folders by sequence number and named
    ``<seq>-<safe name><extension>``, so names from the input can neither
    collide nor point outside the cache.  On ext2/3/4 the run's folder is marked
    as a top directory (see :func:`mark_top_directory`), so the shards, and the
    files in them, spread over the disk's block groups.  ``budget`` counts the
    bytes the cache holds; :meth:`discard` gives a file's room back.
    """

    def __init__(self, root: Path, budget: CacheBudget | None = None) -> None:
        self.root = root
        self.budget = budget if budget is not None else CacheBudget()
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
        folder = tempfile.mkdtemp(prefix="run-", dir=self.root)
        mark_top_directory(folder)
        self._path = Path(folder)
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

    def discard(self, path: Path | None) -> OSError | None:
        """Remove whatever is at ``path`` and give its room back; the error if something is left.

        A processor may have deleted or moved its file, or put a link or a
        folder in its place.  A link is removed itself, never followed; a
        folder goes with everything in it, links inside removed, not followed.
        Never raises :class:`OSError`: clean-up must not end a pipeline thread.
        What is left goes with the run's folder in :meth:`close`, so its room
        is given back either way: a download waiting for it would wait until then.
        """
        if path is None:
            return None
        try:
            return _remove(path)
        finally:
            self.budget.release(str(path))

    def close(self) -> None:
        """Remove the run's folder and everything left in it."""
        if self._path is None:
            return
        try:
            # After a normal run every file was discarded already: one rmdir per
            # shard made costs a fraction of rmtree's walk (open, stat, list,
            # close per folder), which took ~10 ms of every run's end.
            for shard in list(self._made_shards):  # list(): a late worker may add one
                os.rmdir(self._shard_folders[shard])  # noqa: PTH106 - str paths, as above
            self._path.rmdir()
        except OSError:  # something is left (a stop, a processor's extra file)
            shutil.rmtree(self._path, ignore_errors=True)
        self._path = None
        self._made_shards.clear()


def _remove(path: Path) -> OSError | None:
    """Remove the file, link or folder at ``path``, following no link; the error if any."""
    try:
        path.unlink()  # a file or a link: unlink never follows a link
    except FileNotFoundError:
        return None
    except OSError as exc:
        try:
            # EISDIR on Linux, EPERM elsewhere: lstat says whether a folder is there.
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return exc
            # Removes links inside without following them (and, where the
            # platform allows, without a race that would make it follow one).
            shutil.rmtree(path)
        except FileNotFoundError:
            return None
        except OSError as rmtree_exc:
            return rmtree_exc
    return None
