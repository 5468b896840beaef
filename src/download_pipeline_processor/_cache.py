"""The run's private download cache folder.

Safety rules (DESIGN.md): the cache root must be a real folder of the user
running the tool, writable by nobody else, so no one can swap what is inside
it; the run's folder in it is made as ``mkdtemp`` makes folders (0700, a fresh
random name); nothing in it is created through a symbolic link or over an
existing file.  A lock (flock) held on the run folder for the run's life
tells later runs which folders belong to runs that are gone.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import shutil
import stat
import struct
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from ._cache_budget import CacheBudget
from .errors import CacheError
from .file_data import FileData
from .paths import safe_filename
from .settings import user_cache_folder

logger = logging.getLogger(__name__)

#: Sub-folders the cache spreads files over, so no one directory gets hot.
SHARDS = 256
PART_SUFFIX = ".part"
#: Run folders are named ``run-<random hex>``; only such folders are ever cleaned up.
RUN_PREFIX = "run-"
#: A run folder is made under this prefix, locked, then renamed to ``run-*``.
STARTING_PREFIX = "new-"
#: Seconds after which a ``new-*`` folder counts as left by a run killed while
#: starting: a live run renames its own within microseconds of making it.
STARTING_GRACE = 60.0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: A cache file is always new: O_EXCL fails on any existing name, a symbolic
#: link included (O_NOFOLLOW says so explicitly for the last component).
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_OPEN_FOLDER_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC


def _user_id() -> int:
    return os.geteuid()


def create_cache_file(path: str | os.PathLike[str]) -> int:
    """Create ``path`` anew for writing and return its descriptor.

    Never opens an existing file and never follows a symbolic link.  A name
    already taken (the ``.part`` file of an earlier attempt at the same file,
    which a retry starts over) is unlinked first: unlinking removes a link
    itself, never what it points to.
    """
    try:
        return os.open(path, _CREATE_FLAGS, 0o644)
    except FileExistsError:
        os.unlink(path)  # noqa: PTH108 - str or PathLike on purpose
        return os.open(path, _CREATE_FLAGS, 0o644)


def cache_root_in(folder: Path) -> Path:
    """The cache root a run uses when asked for ``folder``.

    A sticky folder others may write to (mode 1777: ``/tmp``, ``/dev/shm``, a
    fresh tmpfs mount) is where users put caches, but a root anyone can
    write to could be tampered with: the run uses the user's private folder
    inside it instead, named and checked as the default root in the temp dir
    is.  The sticky bit keeps others from renaming or removing that folder;
    the folder's owner could, so it must be root or the user.  Anything else
    is the root itself, checked by :func:`open_cache_root`.
    """
    try:
        info = folder.lstat()
    except OSError:
        return folder  # missing or unreadable: open_cache_root names the problem
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if (
        stat.S_ISDIR(info.st_mode)
        and info.st_mode & stat.S_ISVTX
        and shared
        and info.st_uid in (0, _user_id())
    ):
        return user_cache_folder(folder)
    return folder


def _refuse(root: Path, reason: str) -> CacheError:
    return CacheError(f"download cache {root}: {reason}")


def open_cache_root(root: Path) -> int:
    """Make ``root`` if missing (mode 0700), check it is safe, and return a descriptor of it.

    Raises :class:`CacheError` when it cannot be made or opened, or when it is
    a symbolic link, not a folder, someone else's, or writable by group or
    others: any of those would let another user swap what the run puts there.
    """
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a file or a dangling link: the checks below name it
    except OSError as exc:
        raise _refuse(root, f"cannot be created: {exc.strerror}") from exc
    try:
        descriptor = os.open(root, _OPEN_FOLDER_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP or root.is_symlink():
            raise _refuse(root, "is a symbolic link; refused") from exc
        if exc.errno == errno.ENOTDIR:
            raise _refuse(root, "is not a folder") from exc
        raise _refuse(root, f"cannot be opened: {exc.strerror}") from exc
    try:
        _check_root(root, os.fstat(descriptor))
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def check_cache_root(root: Path) -> bool:
    """Check ``root`` as :func:`open_cache_root` would, without making anything.

    Returns whether it exists (a run would make a missing one).  For a dry
    run, which must not write: raises :class:`CacheError` for a root a run
    would refuse.  ``root`` is the folder asked for: in a sticky shared one,
    the user's folder inside it is checked (see :func:`cache_root_in`).
    """
    root = cache_root_in(root)
    try:
        info = root.lstat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _refuse(root, f"cannot be opened: {exc.strerror}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise _refuse(root, "is a symbolic link; refused")
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(root, "is not a folder")
    _check_root(root, info)
    return True


def _check_root(root: Path, info: os.stat_result) -> None:
    user = _user_id()
    if info.st_uid != user:
        raise _refuse(root, f"belongs to another user (uid {info.st_uid}, not {user}); refused")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(
            root,
            f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
            "refused (chmod go-w it, or choose another folder)",
        )


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
    the run's own processed files) makes every creation many times slower
    (benchmarks/README.md has the profile).
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
        self._lock: int | None = None

    @property
    def path(self) -> Path:
        """The run's folder; only valid between :meth:`open` and :meth:`close`."""
        if self._path is None:
            raise RuntimeError("the download cache is not open")
        return self._path

    @property
    def is_open(self) -> bool:
        """Whether the run's folder exists (between :meth:`open` and :meth:`close`)."""
        return self._path is not None

    def open(self) -> Path:
        """Make the run's folder (and the root, if needed); remove folders of dead runs.

        Raises :class:`CacheError` when the root is unsafe or unusable.
        """
        root = cache_root_in(self.root)
        root_fd = open_cache_root(root)
        try:
            name, self._lock = _make_run_folder(root, root_fd)
            try:
                remove_abandoned_runs(root, root_fd)
            except OSError:  # housekeeping: it never stops the run
                logger.debug("could not clean up %s", root, exc_info=True)
        finally:
            os.close(root_fd)
        folder = os.path.join(root, name)  # noqa: PTH118 - str for the shard paths
        mark_top_directory(folder)
        self._path = Path(folder)
        self._shard_folders = [os.path.join(self._path, f"{shard:02x}") for shard in range(SHARDS)]  # noqa: PTH118
        return self._path

    def target_for(self, sequence: int, file_data: FileData) -> str:
        """Where the complete download of input entry ``sequence`` will live.

        A string, as every per-file path of the cache: pathlib's parsing, paid
        for each file, used to cost more than writing a small one.
        """
        shard = sequence % SHARDS
        folder = self._shard_folders[shard]
        if shard not in self._made_shards:
            _make_shard(folder)
            self._made_shards.add(shard)
        name = safe_filename(file_data.name, fallback="file", max_bytes=120)
        # Keep the URL's extension: processors often dispatch on it.
        path = file_data.url.partition("#")[0].partition("?")[0]
        raw_extension = posixpath.splitext(path.rpartition("/")[2])[1][1:]
        if raw_extension:
            extension = safe_filename(unquote(raw_extension), fallback="", max_bytes=15)
            if extension and not name.endswith("." + extension):
                name += "." + extension
        return f"{folder}{os.sep}{sequence}-{name}"

    @staticmethod
    def part_path(target: str) -> str:
        """The temporary name a download is written under until it is complete."""
        return target + PART_SUFFIX

    @staticmethod
    def commit(part: str, target: str) -> None:
        """Give a complete download its final name: one rename.

        A rename replaces whatever has the name already, but nothing can: the
        name is unique to its entry (its sequence number leads it) in a shard
        of the run's own folder, made 0700 inside a checked root, so no one
        else can put anything there, and no link in the way is ever written
        through (rename replaces a name; it follows no link).
        """
        os.rename(part, target)  # noqa: PTH104 - str paths: this runs for every file

    def discard(self, path: str | os.PathLike[str] | None) -> OSError | None:
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
        name = os.fspath(path)
        try:
            return _remove(name)
        finally:
            self.budget.release(name)

    def close(self) -> None:
        """Remove the run's folder and everything left in it."""
        if self._path is None:
            return
        try:
            # After a normal run every file was discarded already: one rmdir per
            # shard made costs a fraction of rmtree's walk (open, stat, list,
            # close per folder), a cost every run's end would pay.
            for shard in list(self._made_shards):  # list(): a late worker may add one
                os.rmdir(self._shard_folders[shard])  # noqa: PTH106 - str paths, as above
            self._path.rmdir()
        except OSError:  # something is left (a stop, a processor's extra file)
            shutil.rmtree(self._path, ignore_errors=True)
        finally:
            # Released only once the folder is gone: no later run may take it
            # for a dead run's while this one still removes it.
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None
        self._path = None
        self._made_shards.clear()


def _make_run_folder(root: Path, root_fd: int) -> tuple[str, int | None]:
    """Make a fresh ``run-*`` folder in the root as mkdtemp would; its name and lock.

    Made relative to the checked root's descriptor, so the folder lands in the
    very folder that was checked.  It is made as ``new-*``, locked, and only
    then renamed: a ``run-*`` folder whose lock is free belongs to a run that
    is gone, never to one that is starting.
    """
    for _ in range(100):
        suffix = os.urandom(6).hex()
        name, starting = RUN_PREFIX + suffix, STARTING_PREFIX + suffix
        if _exists(name, root_fd):
            continue
        try:
            os.mkdir(starting, 0o700, dir_fd=root_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise _refuse(root, f"cannot make a folder in it: {exc.strerror}") from exc
        break
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise _refuse(root, "no free run folder name")
    folder_fd: int | None = None
    try:
        folder_fd = os.open(starting, _OPEN_FOLDER_FLAGS, dir_fd=root_fd)
        # Not locked (a file system without flock): no later run will remove it.
        locked = _try_lock(folder_fd)
        os.rename(starting, name, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    except OSError as exc:
        if folder_fd is not None:
            os.close(folder_fd)
        with contextlib.suppress(OSError):
            os.rmdir(starting, dir_fd=root_fd)
        raise _refuse(root, f"cannot make a folder in it: {exc.strerror}") from exc
    if not locked:
        os.close(folder_fd)
        return name, None
    return name, folder_fd


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _try_lock(descriptor: int) -> bool:
    """Take the exclusive lock of ``descriptor`` without waiting; False if it is held.

    flock, not a PID file: the kernel drops the lock when its process dies,
    however it dies, and a reused PID cannot pass for the dead run.  Where
    flock is refused (some network file systems), False too: a folder whose
    run cannot be known to be gone is left alone.
    """
    import fcntl  # POSIX only

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _make_shard(folder: str) -> None:
    """Make a shard folder; one another worker just made is fine, anything else is not."""
    try:
        os.mkdir(folder, 0o700)  # noqa: PTH102 - str path on purpose
    except FileExistsError:
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != _user_id():
            raise


def remove_abandoned_runs(root: Path, root_fd: int) -> tuple[int, int]:
    """Remove the run folders in ``root`` whose run is gone; return (folders, bytes) freed.

    A run folder is the user's own ``run-*`` folder (never a link) whose lock
    no process holds, or a ``new-*`` one (a run killed while starting) older
    than :data:`STARTING_GRACE`.  Live runs keep theirs; nothing here follows
    a link.
    """
    removed = freed = 0
    user = _user_id()
    now = time.time()
    with os.scandir(root_fd) as entries:
        candidates = [
            entry.name
            for entry in entries
            if entry.name.startswith((RUN_PREFIX, STARTING_PREFIX))
            and entry.is_dir(follow_symlinks=False)
        ]
    for name in candidates:
        try:
            folder_fd = os.open(name, _OPEN_FOLDER_FLAGS, dir_fd=root_fd)
        except OSError:
            continue  # gone meanwhile, or turned into something else
        try:
            info = os.fstat(folder_fd)
            if info.st_uid != user:
                continue
            if name.startswith(STARTING_PREFIX) and now - info.st_mtime < STARTING_GRACE:
                continue  # a run may be about to lock it
            if not _try_lock(folder_fd):
                continue  # a live run
            size = _tree_size(folder_fd)
            # rmtree walks by descriptors and never follows a link (where
            # shutil.rmtree.avoids_symlink_attacks, as on Linux).
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)  # noqa: PTH118
            removed += 1
            freed += size
        finally:
            os.close(folder_fd)  # releases the lock, once the folder is gone
    if removed:
        logger.debug(
            "removed %d run folder(s) left in %s by runs that ended without cleaning up: "
            "%d bytes freed",
            removed,
            root,
            freed,
        )
    return removed, freed


def _tree_size(folder_fd: int) -> int:
    """Bytes in the files under an open folder, links not followed."""
    total = 0
    for _, _, files, dir_fd in os.fwalk(".", dir_fd=folder_fd, follow_symlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    return total


def _remove(path: str) -> OSError | None:
    """Remove the file, link or folder at ``path``, following no link; the error if any."""
    try:
        os.unlink(path)  # noqa: PTH108 - a file or a link: unlink never follows a link
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
