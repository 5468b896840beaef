"""Fixtures for the dpp-archive tests: archives built in memory and a watched workspace.

Tar entries are tuples: ``("file", name, data)``, ``("exec", name, data)``,
``("dir", name)``, ``("symlink", name, target)``, ``("hardlink", name, target)``,
``("fifo", name)``, ``("chardev", name)``, ``("blockdev", name)``.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import FileData
from dpp_archive import ExtractProcessor

TarEntry = tuple[Any, ...]

_TAR_TYPES = {
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
}


class Zeros(io.RawIOBase):
    """A readable stream of ``size`` zero bytes, so bombs need no memory to build."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = b"\0" * count
        self.left -= count
        return count


class Archives:
    """Builds zip and tar archives as bytes."""

    @staticmethod
    def zip(
        files: Mapping[str, bytes],
        compression: int = zipfile.ZIP_DEFLATED,
        modes: Mapping[str, int] | None = None,
    ) -> bytes:
        """A zip of ``files`` (name -> content); ``modes`` sets unix mode bits per name."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in files.items():
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 2, 3, 4, 5))
                info.compress_type = compression
                if modes and name in modes:
                    info.create_system = 3
                    info.external_attr = modes[name] << 16
                archive.writestr(info, data)
        return buffer.getvalue()

    @staticmethod
    def zip_of_zeros(name: str, size: int) -> bytes:
        """A zip holding one member of ``size`` zero bytes, written in chunks."""
        buffer = io.BytesIO()
        with (
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open(name, "w", force_zip64=True) as member,
        ):
            left = size
            while left:
                chunk = min(left, 1 << 20)
                member.write(b"\0" * chunk)
                left -= chunk
        return buffer.getvalue()

    @staticmethod
    def tar(entries: Iterable[TarEntry], compression: str = "") -> bytes:
        """A tar (``compression`` "", "gz", "bz2" or "xz") of ``entries``."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
            for kind, name, *rest in entries:
                info = tarfile.TarInfo(name)
                info.mtime = 1_700_000_000
                if kind in ("file", "exec", "zeros"):
                    info.mode = 0o755 if kind == "exec" else 0o644
                    if kind == "zeros":
                        info.size = rest[0]
                        archive.addfile(info, Zeros(rest[0]))
                    else:
                        info.size = len(rest[0])
                        archive.addfile(info, io.BytesIO(rest[0]))
                    continue
                info.type = _TAR_TYPES[kind]
                info.mode = 0o755 if kind == "dir" else 0o644
                if kind in ("symlink", "hardlink"):
                    info.linkname = rest[0]
                archive.addfile(info)
        return buffer.getvalue()


def snapshot(root: Path, skip: Iterable[Path] = ()) -> dict[str, str]:
    """Every entry under ``root`` but ``skip`` (links not followed) with its kind and hash."""
    skipped = set(skip)
    found: dict[str, str] = {}
    for folder, dirnames, filenames in os.walk(root):
        here = Path(folder)
        for name in [*dirnames, *filenames]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path in skipped:
                continue
            if path.is_symlink():
                found[relative] = "link -> " + str(path.readlink())
            elif path.is_dir():
                found[relative] = "dir"
            else:
                found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        dirnames[:] = [name for name in dirnames if here / name not in skipped]
    return found


def file_contents(root: Path) -> dict[str, bytes]:
    """The regular files under ``root`` (not following links) by relative posix path."""
    contents: dict[str, bytes] = {}
    for folder, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(folder) / name
            if not path.is_symlink():
                contents[path.relative_to(root).as_posix()] = path.read_bytes()
    return contents


def is_executable(path: Path) -> bool:
    """True when the owner may execute ``path``."""
    return bool(path.stat().st_mode & stat.S_IXUSR)


class Workspace:
    """``tmp_path`` laid out as archives/, dest/ and outside/ (bait that must stay intact)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dest = root / "tree" / "dest"
        self.archives = root / "archives"
        self.outside = root / "tree" / "outside"
        self.archives.mkdir()
        self.outside.mkdir(parents=True)
        (self.outside / "keep.txt").write_bytes(b"do not touch")
        self._count = 0

    def save(self, data: bytes) -> Path:
        """Write ``data`` as the next downloaded file (no telling extension)."""
        self._count += 1
        path = self.archives / f"download-{self._count}"
        path.write_bytes(data)
        return path

    def processor(self, **options: Any) -> ExtractProcessor:
        """An ``extract`` processor into ``dest`` with ``options``."""
        return ExtractProcessor(dest=self.dest, **options)

    def extract(self, data: bytes, name: str = "pkg", **options: Any) -> list[str]:
        """Run ``data`` through a new processor as a file called ``name``."""
        file_data = FileData(url=f"http://127.0.0.1/{name}", name=name, local_path=self.save(data))
        return self.processor(**options).process(file_data)

    def outside_dest(self) -> dict[str, str]:
        """A snapshot of the workspace but ``dest`` and the downloaded archives."""
        return snapshot(self.root, skip=(self.dest, self.archives))

    def dest_entries(self) -> list[str]:
        """The names directly in ``dest`` (hidden partial folders included)."""
        return sorted(entry.name for entry in self.dest.iterdir()) if self.dest.exists() else []


@pytest.fixture
def archives() -> Archives:
    """Builds archives as bytes."""
    return Archives()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh workspace with a dest folder and bait outside it."""
    return Workspace(tmp_path)


@pytest.fixture
def helpers() -> Any:
    """The snapshot helpers, for tests that build their own layout."""

    class Helpers:
        snapshot = staticmethod(snapshot)
        file_contents = staticmethod(file_contents)
        is_executable = staticmethod(is_executable)

    return Helpers()
