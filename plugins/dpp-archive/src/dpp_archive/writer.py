"""Writing archive members under one root folder, and never anywhere else.

:class:`ExtractionTarget` is the only code that touches the file system while
extracting.  Its rules:

* every folder on the way to a member is a real folder created here: a path
  that goes through a symbolic link (even one pointing inside) is refused, so
  no member is ever written through a link;
* files are created with ``O_CREAT | O_EXCL`` (and ``O_NOFOLLOW`` where the
  platform has it) after removing whatever an earlier member left at that
  name, so an existing link is never followed;
* symbolic links are resolved step by step against what is on disk, refusing
  any that climbs above the root or is absolute, when created and once more
  after the last member (a later member may change what an earlier link
  resolves to);
* hard links become copies of a regular file extracted earlier;
* every byte written counts against ``max_bytes``; a chunk that would go past
  it is not written;
* permissions are 0644, or 0755 when the member had an executable bit (before
  the umask); owners, set-uid/set-gid bits and timestamps are not restored.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections import deque
from pathlib import Path
from typing import IO

from .errors import (
    CorruptArchiveError,
    TooLargeError,
    UnsafeLinkError,
    UnsafeMemberError,
    one_line,
)
from .names import display, is_absolute, member_parts, split_path

__all__ = ["CHUNK_SIZE", "MAX_LINK_HOPS", "MAX_RESOLVE_STEPS", "READ_ERRORS", "ExtractionTarget"]


#: Bytes read and written at a time: memory does not grow with member size.
CHUNK_SIZE = 64 * 1024
#: Symbolic links followed while resolving one path, as Linux's ELOOP limit.
MAX_LINK_HOPS = 40
#: Path components looked at while resolving one link: real links need a few
#: dozen; the cap keeps a crafted archive from making verification quadratic.
MAX_RESOLVE_STEPS = 256

#: What reading a damaged, truncated, encrypted or unsupported archive raises.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
)

_COMMON_FLAGS = (
    getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _COMMON_FLAGS
_READ_FLAGS = os.O_RDONLY | _COMMON_FLAGS


class ExtractionTarget:
    """The folder one archive is extracted into, with its byte budget."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.bytes_written = 0
        self._members: set[str] = set()
        self._symlinks: dict[tuple[str, ...], str] = {}
        # Folders created here stay folders (nothing may replace one), so a
        # folder checked once need not be checked again for the next member.
        self._folders: set[tuple[str, ...]] = {()}

    @property
    def members(self) -> list[str]:
        """Every member extracted so far, as sorted relative posix paths."""
        return sorted(self._members)

    # -- member kinds ---------------------------------------------------------------

    def make_dir(self, member: str, parts: tuple[str, ...]) -> None:
        """Create the folder ``parts`` (``./`` itself, with no parts, is the root)."""
        if parts:
            self._ensure_dirs(member, parts)
            self._members.add(display(parts))

    def write_file(
        self, member: str, parts: tuple[str, ...], source: IO[bytes], *, executable: bool
    ) -> None:
        """Stream ``source`` into a new regular file at ``parts``, counting every byte."""
        path = self._fresh_path(member, parts)
        descriptor = os.open(path, _CREATE_FLAGS, 0o755 if executable else 0o644)
        with os.fdopen(descriptor, "wb") as output:
            while True:
                try:
                    chunk = source.read(CHUNK_SIZE)
                except READ_ERRORS as exc:
                    raise CorruptArchiveError(
                        f"member {member!r}: cannot read its data: {one_line(exc)}"
                    ) from exc
                if not chunk:
                    break
                self._charge(member, len(chunk))
                output.write(chunk)
        self._members.add(display(parts))

    def copy_file(self, member: str, parts: tuple[str, ...], link_target: str) -> None:
        """A hard link: copy the regular file ``link_target`` extracted earlier."""
        try:
            target_parts = member_parts(link_target)
        except UnsafeMemberError as exc:
            raise UnsafeLinkError(
                member, f"hard link target {link_target!r}: {exc.reason}"
            ) from None
        source_path = self._extracted_file(member, target_parts, link_target)
        descriptor = os.open(source_path, _READ_FLAGS)
        with os.fdopen(descriptor, "rb") as source:
            executable = bool(os.fstat(descriptor).st_mode & 0o111)
            self.write_file(member, parts, source, executable=executable)

    def make_symlink(self, member: str, parts: tuple[str, ...], link_target: str) -> None:
        """A symbolic link whose target must resolve inside the root."""
        if not link_target or "\x00" in link_target:
            raise UnsafeLinkError(member, f"invalid symlink target {link_target!r}")
        if is_absolute(link_target):
            raise UnsafeLinkError(member, f"symlink target {link_target!r} is an absolute path")
        normalized = "/".join(split_path(link_target))
        self._resolve(member, [*parts[:-1], *split_path(normalized)], link_target)
        path = self._fresh_path(member, parts)
        path.symlink_to(normalized)
        self._symlinks[parts] = member
        self._members.add(display(parts))

    def verify_links(self) -> None:
        """Check again that every symlink still on disk resolves inside the root."""
        for parts, member in self._symlinks.items():
            path = self.root.joinpath(*parts)
            if path.is_symlink():
                self._resolve(member, list(parts), str(path.readlink()))

    # -- helpers --------------------------------------------------------------------

    def _charge(self, member: str, size: int) -> None:
        if self.bytes_written + size > self.max_bytes:
            raise TooLargeError(
                f"member {member!r}: extracting it would write more than"
                f" max_bytes={self.max_bytes} bytes in total"
            )
        self.bytes_written += size

    def _ensure_dirs(self, member: str, parts: tuple[str, ...]) -> Path:
        """Create the folders ``parts`` as needed, refusing to pass a link or a file."""
        if parts in self._folders:
            return self.root.joinpath(*parts)
        path = self.root
        for depth, part in enumerate(parts, start=1):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                path.mkdir(0o755)
                mode = stat.S_IFDIR
            if stat.S_ISLNK(mode):
                raise UnsafeLinkError(
                    member, f"path goes through the symlink {display(parts[:depth])!r}"
                )
            if not stat.S_ISDIR(mode):
                raise UnsafeMemberError(
                    member, f"{display(parts[:depth])!r} was extracted as a file, not a folder"
                )
            self._folders.add(parts[:depth])
        return path

    def _fresh_path(self, member: str, parts: tuple[str, ...]) -> Path:
        """The path for a new file or link at ``parts``, after removing an earlier one."""
        if not parts:
            raise UnsafeMemberError(member, "empty file name")
        path = self._ensure_dirs(member, parts[:-1]) / parts[-1]
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if stat.S_ISDIR(mode):
            raise UnsafeMemberError(member, "a folder of that name was extracted before")
        # A later member replaces an earlier one, as tar does; unlinking (not
        # opening) the old entry means a link left there is never followed.
        path.unlink()
        return path

    def _extracted_file(self, member: str, parts: tuple[str, ...], link_target: str) -> Path:
        """The regular file at ``parts``, reached through real folders only."""
        path = self.root
        for depth, part in enumerate(parts, start=1):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                mode = 0
            wanted = stat.S_ISREG if depth == len(parts) else stat.S_ISDIR
            if not wanted(mode):
                break
        else:
            if parts:
                return path
        raise UnsafeLinkError(
            member, f"hard link target {link_target!r} is not a file extracted before it"
        )

    def _resolve(self, member: str, parts: list[str], link_target: str) -> list[str]:
        """Resolve ``parts`` from the root as the OS would, never leaving the root."""
        pending = deque(parts)
        resolved: list[str] = []
        hops = steps = 0
        while pending:
            steps += 1
            if steps > MAX_RESOLVE_STEPS:
                raise UnsafeLinkError(
                    member, f"symlink target {link_target!r} is too complex to resolve"
                )
            part = pending.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise UnsafeLinkError(
                        member, f"symlink target {link_target!r} points outside the destination"
                    )
                resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            if not candidate.is_symlink():
                resolved.append(part)
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise UnsafeLinkError(
                    member, f"symlink target {link_target!r}: too many levels of symbolic links"
                )
            target = str(candidate.readlink())
            if is_absolute(target):
                raise UnsafeLinkError(
                    member, f"symlink target {link_target!r} points outside the destination"
                )
            pending.extendleft(reversed(split_path(target)))
        return resolved
