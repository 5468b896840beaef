"""Extracting into a hidden sibling folder and moving it into place only when complete.

Everything happens inside ``dest``: the partial folder is
``dest/.<name>.partial-XXXXXXXX``, a replaced folder is moved aside to
``dest/.<name>.old-XXXXXXXX`` and removed after the new one is in place.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DestinationExistsError

__all__ = ["partial_folder", "publish", "remove"]


logger = logging.getLogger(__name__)

# Threads of one run may finish archives of the same name at once; checking
# for the destination and moving into place must not interleave.
_PUBLISH_LOCK = threading.Lock()


@contextmanager
def partial_folder(dest: Path, name: str) -> Iterator[Path]:
    """A new empty folder in ``dest`` for ``name``, removed if the block raises."""
    partial = _new_sibling(dest, f".{name}.partial-")
    try:
        yield partial
    except BaseException:
        _discard(partial)
        raise


def _new_sibling(dest: Path, prefix: str) -> Path:
    # Not tempfile.mkdtemp: its 0700 would end up on the published folder,
    # where a plain mkdir gets the umask's mode like every folder inside.
    for _ in range(100):
        candidate = dest / f"{prefix}{secrets.token_hex(4)}"
        try:
            candidate.mkdir(0o755)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"cannot create a unique {prefix}* folder in {dest}")


def publish(partial: Path, final: Path, *, overwrite: bool) -> None:
    """Rename the complete ``partial`` folder to ``final``.

    Without ``overwrite`` an existing ``final`` (of any kind) raises
    :class:`DestinationExistsError`.  With it, the old entry is moved aside,
    the new folder moved in, and only then the old one deleted (a symlink is
    removed, never followed).  ``partial`` is left for the caller to clean up
    on error.
    """
    with _PUBLISH_LOCK:
        aside: Path | None = None
        if os.path.lexists(final):
            if not overwrite:
                raise DestinationExistsError(final)
            aside = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
            final.rename(aside)
        try:
            _move_into_place(partial, final)
        except BaseException:
            if aside is not None:
                _restore(aside, final)
            raise
    if aside is not None:
        # The new folder is in place: a leftover old one is logged, not an error.
        _discard(aside)


def _move_into_place(partial: Path, final: Path) -> None:
    # Creating ``final`` first claims the name atomically, even against another
    # process; renaming a folder over an empty folder then replaces it on POSIX.
    try:
        final.mkdir()
    except FileExistsError:
        raise DestinationExistsError(final) from None
    try:
        if os.name == "nt":  # pragma: no cover - Windows cannot rename over a folder
            final.rmdir()
            partial.rename(final)
        else:
            partial.replace(final)
    except BaseException:
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        raise


def _restore(aside: Path, final: Path) -> None:
    try:
        aside.rename(final)
    except OSError as exc:
        logger.warning("could not move %s back to %s: %s", aside, final, exc)


def _discard(path: Path) -> None:
    try:
        remove(path)
    except OSError as exc:
        logger.warning("could not remove %s: %s", path, exc)


def remove(path: Path) -> None:
    """Delete ``path``: a folder tree, a file or a symlink (never what it points to)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()
