"""The built-in ``save`` processor: keeps each downloaded file in a folder."""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import string
import tempfile
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from ..base_processor import BaseProcessor
from ..file_data import FileData
from ..options import Option
from ..paths import safe_filename

COPY_CHUNK = 1024 * 1024

#: ``os.link`` errors that mean "this file system has no hard links", not "the name is taken".
_NO_HARD_LINKS = frozenset(
    code
    for code in (
        getattr(errno, "EPERM", None),
        getattr(errno, "ENOTSUP", None),
        getattr(errno, "EOPNOTSUPP", None),
        getattr(errno, "ENOSYS", None),
        getattr(errno, "EMLINK", None),
    )
    if code is not None
)


class SaveProcessor(BaseProcessor):
    """Keeps each downloaded file in the folder ``dest`` and returns its path.

    The file is named by the ``name`` template, rendered with
    :meth:`str.format_map` over the entry's fields: ``id``, ``name``,
    ``basename`` (the last segment of the URL's path, unquoted), ``ext`` (its
    extension without the dot) and every extra key of the input entry
    (``{lang}/{id}-{name}.{ext}``); the four built-in fields win over extra
    keys of the same name, and a field the entry lacks fails that file.
    Without a template the file is named after the entry's ``name``, plus the
    URL's extension when the name has none.

    Whatever the template renders is made one safe path component (separators,
    ``..``, absolute paths and control characters are neutralised), so a file
    never lands outside ``dest``.  The cached file is moved when ``dest`` is on
    the cache's file system and copied otherwise, through a hidden temporary
    name that is fsynced and renamed, so ``dest`` never holds a partial file.
    An existing file is a failure unless ``overwrite`` is set; the name is
    claimed atomically, so of two workers saving one name only one wins.
    """

    options = (
        Option("dest", type=Path, required=True, help="folder to keep files in (created)"),
        Option(
            "name",
            help="file name template such as '{id}-{name}'; fields: id, name, basename, ext"
            " and the input's extra keys (default: name plus the URL's extension)",
        ),
        Option("overwrite", type=bool, default=False, help="replace files that exist"),
    )

    def __init__(self, dest: Path | str, name: str | None = None, overwrite: bool = False) -> None:
        folder = Path(dest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"dest {str(folder)!r} exists and is not a folder") from None
        self.dest = folder.resolve()
        self.template = name or None
        if self.template is not None:
            _check_template(self.template)
        self.overwrite = overwrite

    def process(self, file_data: FileData) -> str:
        source = file_data.local_path
        if source is None:
            raise ValueError("the file has no local path; was it downloaded?")
        target = self._target(file_data)
        try:
            _move(source, target, self.overwrite)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy(source, target, self.overwrite)
            with contextlib.suppress(OSError):
                source.unlink()
        return str(target)

    def _target(self, file_data: FileData) -> Path:
        """The path inside ``dest`` this entry is saved under."""
        basename = unquote(posixpath.basename(urlsplit(file_data.url).path))
        extension = posixpath.splitext(basename)[1][1:]
        if self.template is None:
            component = _default_name(file_data.name, extension)
        else:
            fields: dict[str, Any] = dict(file_data.additional_fields)
            fields.update(id=file_data.id, name=file_data.name, basename=basename, ext=extension)
            component = safe_filename(_render(self.template, fields))
        target = self.dest / component
        # Defence in depth: safe_filename already yields a single component.
        if component in ("", ".", "..") or Path(component).name != component:
            raise ValueError(f"unsafe file name {component!r}")
        # dest was resolved once at start; a single component keeps target directly
        # in it, so a plain comparison (no per-file realpath syscalls) suffices.
        if target.parent != self.dest:
            raise ValueError(f"{target} is not inside {self.dest}")
        return target


def _default_name(name: str, extension: str) -> str:
    """The entry's name, plus the URL's extension when the name has none."""
    component = safe_filename(name)
    safe_extension = safe_filename(extension, fallback="", max_bytes=15)
    if safe_extension and not posixpath.splitext(component)[1]:
        component = safe_filename(f"{component}.{safe_extension}")
    return component


def _check_template(template: str) -> None:
    """Reject a template that can never render: bad braces or positional fields."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"name template {template!r}: {exc}") from exc
    for _, field, _, _ in parsed:
        if field is not None and (field == "" or field[0].isdigit()):
            raise ValueError(
                f"name template {template!r}: use named fields such as {{id}} or {{name}}"
            )


def _render(template: str, fields: dict[str, Any]) -> str:
    try:
        return template.format_map(fields)
    except KeyError as exc:
        available = ", ".join(sorted(fields))
        raise ValueError(
            f"name template {template!r}: unknown field {exc.args[0]!r};"
            f" this entry has: {available}"
        ) from None
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"name template {template!r}: {type(exc).__name__}: {exc}") from None


def _move(source: Path, target: Path, overwrite: bool) -> None:
    """Move ``source`` to ``target`` in one step; ``OSError(EXDEV)`` across file systems."""
    if overwrite:
        source.replace(target)
    else:
        _claim(source, target)


def _claim(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` unless ``target`` exists, atomically.

    A hard link fails with :class:`FileExistsError` when the name is taken, so
    of two workers claiming one name exactly one wins.  On a file system
    without hard links an exclusive create claims the name and a rename then
    fills it.
    """
    try:
        os.link(source, target)
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "file exists and overwrite is off", str(target)
        ) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    else:
        # The file is saved; a source that will not go is left for the cache to discard.
        with contextlib.suppress(OSError):
            source.unlink()
        return
    try:
        with target.open("xb"):
            pass
    except FileExistsError:
        raise FileExistsError(
            errno.EEXIST, "file exists and overwrite is off", str(target)
        ) from None
    try:
        source.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise


def _copy(source: Path, target: Path, overwrite: bool) -> None:
    """Copy ``source`` to a hidden temporary name beside ``target``, then rename it."""
    # safe_filename strips leading dots, so a hidden name never clashes with a saved one.
    handle, partial_name = tempfile.mkstemp(prefix=f".{target.name}.partial-", dir=target.parent)
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out, source.open("rb") as data:
            _write_copy(data, out)
        shutil.copymode(source, partial)
        if overwrite:
            partial.replace(target)
        else:
            _claim(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _write_copy(data: IO[bytes], out: IO[bytes]) -> None:
    """Copy in chunks (memory stays flat) and make the bytes durable before the rename."""
    shutil.copyfileobj(data, out, COPY_CHUNK)
    out.flush()
    os.fsync(out.fileno())
