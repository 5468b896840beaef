"""The built-in ``save`` processor: keeps each downloaded file in a folder."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import posixpath
import shutil
import string
import tempfile
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from .._integrity import expected_checks
from ..base_processor import DOWNLOAD, BaseProcessor
from ..errors import TransientDownloadError
from ..file_data import FileData
from ..options import Option
from ..paths import safe_filename
from ..sink import BodyWriter

logger = logging.getLogger(__name__)

#: What separates the components of a path here.
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)

COPY_CHUNK = 1024 * 1024

#: What ``if_exists`` may say about a file already at the destination.
IF_EXISTS = ("fail", "skip", "overwrite")

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

    ``if_exists`` says what happens to a file already at the destination:
    ``fail`` (the default) fails the entry before its download; ``overwrite``
    downloads it and replaces the file; ``skip`` keeps the file and does not
    download the entry at all, when the file matches the entry's ``size``
    and digests (``sha256``, ``md5``, ``checksum``) where the entry gives
    them, and otherwise (a corrupt or stale file) downloads it and replaces
    the file.  A name is claimed atomically, so of two workers saving one
    name only one wins.  ``overwrite=true`` is the deprecated spelling of
    ``if_exists=overwrite``.
    """

    options = (
        Option("dest", type=Path, required=True, help="folder to keep files in (created)"),
        Option(
            "name",
            help="file name template such as '{id}-{name}'; fields: id, name, basename, ext"
            " and the input's extra keys (default: name plus the URL's extension)",
        ),
        Option(
            "if_exists",
            default="fail",
            help="a file already at the destination: fail the entry; skip its download when"
            " the file matches the entry's size/digests (else replace it); or overwrite it",
        ),
        Option(
            "overwrite",
            type=bool,
            default=None,
            help="deprecated: overwrite=true is if_exists=overwrite",
        ),
    )

    def __init__(
        self,
        dest: Path | str,
        name: str | None = None,
        if_exists: str = "fail",
        overwrite: bool | None = None,
    ) -> None:
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be one of {', '.join(IF_EXISTS)}, not {if_exists!r}")
        if overwrite:
            if if_exists not in ("fail", "overwrite"):
                raise ValueError(f"overwrite=true contradicts if_exists={if_exists}")
            if_exists = "overwrite"
        elif overwrite is not None and if_exists == "overwrite":
            raise ValueError("overwrite=false contradicts if_exists=overwrite")
        folder = Path(dest)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"dest {str(folder)!r} exists and is not a folder") from None
        self.dest = folder.resolve()
        self._dest_name = str(self.dest)
        self.template = name or None
        if self.template is not None:
            _check_template(self.template)
        self.if_exists = if_exists

    def result_without_download(self, file_data: FileData) -> Any:
        """The path of a file ``skip`` keeps, so it is not downloaded; ``fail`` refuses one."""
        if self.if_exists == "overwrite":
            return DOWNLOAD
        name = self._target_name(file_data)  # a string: this runs before every download
        if not os.path.lexists(name):
            return DOWNLOAD
        target = Path(name)
        if self.if_exists == "fail":
            raise _exists_error(target)
        # A mismatch is reported by process(), which replaces the file.
        return name if self._keeps(target, file_data, report=False) else DOWNLOAD

    def process(self, file_data: FileData) -> str:
        source = file_data.local_path
        if source is None:
            raise ValueError("the file has no local path; was it downloaded?")
        target = self._target(file_data)
        try:
            _save(source, target, self.if_exists == "overwrite")
        except FileExistsError:
            if self.if_exists != "skip":
                raise
            # Checked before the download and found stale, or saved since by an
            # entry of the same name: kept if it matches, else replaced.
            if self._keeps(target, file_data):
                return str(target)
            _save(source, target, overwrite=True)
        return str(target)

    def _keeps(self, target: Path, file_data: FileData, report: bool = True) -> bool:
        """True when ``skip`` keeps the file at ``target``: it matches every check of the entry.

        ``report``: log a mismatch (the file is about to be replaced).
        """
        checks = expected_checks(file_data.additional_fields)
        if not target.is_file():
            mismatch = "is not a regular file"
        elif checks.size is not None and target.stat().st_size != checks.size:
            mismatch = f"has {target.stat().st_size} bytes, not {checks.size}"
        elif not checks.digests:
            return True
        else:
            # The download stage's own check, reading the file once.
            try:
                BodyWriter(target, checks).verify_file()
            except TransientDownloadError as exc:
                mismatch = f"does not match: {exc}"
            else:
                return True
        if report:
            logger.warning("%s exists but %s; replacing it with the download", target, mismatch)
        return False

    def _target(self, file_data: FileData) -> Path:
        """The path inside ``dest`` this entry is saved under."""
        return Path(self._target_name(file_data))

    def _target_name(self, file_data: FileData) -> str:
        """:meth:`_target` as a string, without building paths."""
        basename = unquote(posixpath.basename(urlsplit(file_data.url).path))
        extension = posixpath.splitext(basename)[1][1:]
        if self.template is None:
            component = _default_name(file_data.name, extension)
        else:
            fields: dict[str, Any] = dict(file_data.additional_fields)
            fields.update(id=file_data.id, name=file_data.name, basename=basename, ext=extension)
            component = safe_filename(_render(self.template, fields))
        # Defence in depth: safe_filename already yields a single component, so the
        # target is directly in dest (resolved once at start): no per-file realpath.
        if component in ("", ".", "..") or any(sep in component for sep in _SEPARATORS):
            raise ValueError(f"unsafe file name {component!r}")
        return os.path.join(self._dest_name, component)  # noqa: PTH118 - no Path per file


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


def _exists_error(target: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, "file exists and if_exists is fail", str(target))


def _save(source: Path, target: Path, overwrite: bool) -> None:
    """Move ``source`` to ``target``, or copy it across file systems."""
    try:
        _move(source, target, overwrite)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy(source, target, overwrite)
        with contextlib.suppress(OSError):
            source.unlink()


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
        raise _exists_error(target) from None
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
        raise _exists_error(target) from None
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
