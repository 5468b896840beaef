"""Recognising an archive by its content and feeding its members to the writer.

Tar is tried before zip: a tar header carries a checksum at offset 0, while
``zipfile.is_zipfile`` looks for its end record anywhere in the last 64 KiB,
so an uncompressed tar whose last member is a zip would pass for a zip.
Neither ``extractall`` nor ``extract`` is used: every member goes through
:mod:`.names` and :class:`.writer.ExtractionTarget`.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import (
    ArchiveError,
    CorruptArchiveError,
    MemberWriteError,
    NotAnArchiveError,
    SpecialFileError,
    TooManyMembersError,
    UnsafeLinkError,
    one_line,
)
from .names import member_parts
from .writer import READ_ERRORS, ExtractionTarget

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MEMBERS", "ExtractionLimits", "extract_archive"]


#: Default ``max_bytes``: 1 GiB written in total.
DEFAULT_MAX_BYTES = 1 << 30
#: Default ``max_members``.
DEFAULT_MAX_MEMBERS = 100_000

_ZIP_ENCRYPTED_FLAG = 0x1


@dataclass(frozen=True)
class ExtractionLimits:
    """How much one archive may write."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS


def extract_archive(archive: Path, root: Path, limits: ExtractionLimits) -> list[str]:
    """Extract ``archive`` into the existing folder ``root``; return the sorted member paths.

    Raises an :class:`~dpp_archive.errors.ArchiveError` at the first refused
    member or exceeded limit, leaving what was written so far in ``root``
    for the caller to discard.
    """
    target = ExtractionTarget(root, limits.max_bytes)
    tar = _open_tar(archive)
    if tar is not None:
        with tar:
            _extract_tar(tar, target, limits.max_members)
    elif zipfile.is_zipfile(archive):
        _extract_zip(archive, target, limits.max_members)
    else:
        raise NotAnArchiveError("not a zip or tar archive (plain, gzip, bzip2 or xz)")
    target.verify_links()
    return target.members


@contextmanager
def _member_errors(member: str) -> Iterator[None]:
    """Turn a file system error while extracting ``member`` into a one-line ArchiveError."""
    try:
        yield
    except ArchiveError:
        raise
    except OSError as exc:
        raise MemberWriteError(f"cannot extract member {member!r}: {one_line(exc)}") from exc


def _too_many(max_members: int, member: str) -> TooManyMembersError:
    return TooManyMembersError(
        f"archive has more than max_members={max_members} members (stopped at {member!r})"
    )


# -- tar ------------------------------------------------------------------------------


def _open_tar(archive: Path) -> tarfile.TarFile | None:
    """The archive opened as a tar (any compression), or None if it is not one."""
    try:
        return tarfile.open(archive, mode="r:*")
    except (tarfile.ReadError, tarfile.CompressionError):
        return None
    except READ_ERRORS as exc:
        raise CorruptArchiveError(f"cannot read the archive: {one_line(exc)}") from exc


def _extract_tar(tar: tarfile.TarFile, target: ExtractionTarget, max_members: int) -> None:
    count = 0
    previous = None
    while True:
        try:
            member = tar.next()
        except READ_ERRORS as exc:
            where = "first entry" if previous is None else f"entry after {previous!r}"
            raise CorruptArchiveError(f"cannot read the tar {where}: {one_line(exc)}") from exc
        if member is None:
            return
        count += 1
        if count > max_members:
            raise _too_many(max_members, member.name)
        with _member_errors(member.name):
            _extract_tar_member(tar, member, target)
        previous = member.name


def _extract_tar_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: ExtractionTarget
) -> None:
    name = member.name
    if member.ischr() or member.isblk():
        raise SpecialFileError(name, "device files are not extracted")
    if member.isfifo():
        raise SpecialFileError(name, "FIFOs are not extracted")
    parts = member_parts(name)
    if member.isdir():
        target.make_dir(name, parts)
    elif member.issym():
        target.make_symlink(name, parts, member.linkname)
    elif member.islnk():
        target.copy_file(name, parts, member.linkname)
    elif member.isreg():
        try:
            source = tar.extractfile(member)
        except READ_ERRORS as exc:
            raise CorruptArchiveError(f"member {name!r}: {one_line(exc)}") from exc
        if source is None:  # pragma: no cover - isreg() members always have data
            raise CorruptArchiveError(f"member {name!r}: no data")
        with source:
            target.write_file(name, parts, source, executable=bool(member.mode & 0o111))
    else:
        raise SpecialFileError(name, f"unsupported tar member type {member.type!r}")


# -- zip ------------------------------------------------------------------------------


def _extract_zip(archive: Path, target: ExtractionTarget, max_members: int) -> None:
    try:
        zip_file = zipfile.ZipFile(archive)
    except READ_ERRORS as exc:
        raise CorruptArchiveError(f"cannot read the zip archive: {one_line(exc)}") from exc
    with zip_file:
        infos = zip_file.infolist()
        if len(infos) > max_members:
            raise _too_many(max_members, infos[max_members].filename)
        for info in infos:
            with _member_errors(info.filename):
                _extract_zip_member(zip_file, info, target)


def _extract_zip_member(
    zip_file: zipfile.ZipFile, info: zipfile.ZipInfo, target: ExtractionTarget
) -> None:
    name = info.filename
    unix_mode = info.external_attr >> 16
    file_type = stat.S_IFMT(unix_mode)
    if file_type == stat.S_IFLNK:
        raise UnsafeLinkError(name, "symbolic links in zip archives are not extracted")
    parts = member_parts(name)
    if info.is_dir() or file_type == stat.S_IFDIR:
        target.make_dir(name, parts)
        return
    if file_type not in (0, stat.S_IFREG):
        raise SpecialFileError(name, "not a regular file, folder or link")
    if info.flag_bits & _ZIP_ENCRYPTED_FLAG:
        raise CorruptArchiveError(f"member {name!r} is encrypted")
    try:
        source = zip_file.open(info)
    except READ_ERRORS as exc:
        raise CorruptArchiveError(f"member {name!r}: {one_line(exc)}") from exc
    with source:
        target.write_file(name, parts, source, executable=bool(unix_mode & 0o111))
