"""Extraction of well-formed archives: every format, detected by content."""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dpp_archive import CorruptArchiveError, NotAnArchiveError

CONTENTS = {
    "README.txt": b"hello\n",
    "empty.dat": b"",
    "src/module.py": b"print('hi')\n" * 100,
    "src/deep/er/data.bin": bytes(range(256)) * 64,
    "caf\u00e9/\u6587\u4ef6.txt": b"unicode names",
}


def tar_entries(contents: dict[str, bytes]) -> list[tuple[Any, ...]]:
    return [("dir", "src"), *(("file", name, data) for name, data in contents.items())]


class TestFormats:
    """Zip and tar in every compression extract to exactly their contents."""

    @pytest.mark.parametrize(
        "compression",
        [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    )
    def test_zip(self, workspace: Any, archives: Any, helpers: Any, compression: int) -> None:
        """A zip extracts to dest/<name>/ with equal contents and returns the sorted members."""
        members = workspace.extract(archives.zip(CONTENTS, compression), name="bundle")
        assert members == sorted(CONTENTS)
        assert helpers.file_contents(workspace.dest / "bundle") == CONTENTS
        assert workspace.dest_entries() == ["bundle"]

    @pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
    def test_tar(self, workspace: Any, archives: Any, helpers: Any, compression: str) -> None:
        """A plain, gzip, bzip2 or xz tar extracts to equal contents, folders listed too."""
        data = archives.tar(tar_entries(CONTENTS), compression)
        members = workspace.extract(data, name="bundle")
        assert members == sorted([*CONTENTS, "src"])
        assert helpers.file_contents(workspace.dest / "bundle") == CONTENTS

    def test_executable_bit_kept_other_bits_dropped(
        self, workspace: Any, archives: Any, helpers: Any
    ) -> None:
        """Executable members stay executable; set-uid and world-writable bits are not restored."""
        zip_data = archives.zip(
            {"run.sh": b"#!/bin/sh\n", "plain.txt": b"x", "suid": b"x"},
            modes={"run.sh": 0o100755, "plain.txt": 0o100644, "suid": 0o104777},
        )
        workspace.extract(zip_data, name="z")
        tar_data = archives.tar([("exec", "run.sh", b"#!/bin/sh\n"), ("file", "plain.txt", b"x")])
        workspace.extract(tar_data, name="t")
        for folder in ("z", "t"):
            assert helpers.is_executable(workspace.dest / folder / "run.sh")
            assert not helpers.is_executable(workspace.dest / folder / "plain.txt")
        mode = (workspace.dest / "z" / "suid").stat().st_mode
        assert mode & 0o7000 == 0
        assert mode & 0o002 == 0

    def test_duplicate_member_last_wins(self, workspace: Any, archives: Any) -> None:
        """A tar holding a name twice ends with the later content, as tar does."""
        data = archives.tar([("file", "a.txt", b"first"), ("file", "a.txt", b"second")])
        assert workspace.extract(data) == ["a.txt"]
        assert (workspace.dest / "pkg" / "a.txt").read_bytes() == b"second"

    def test_internal_links(self, workspace: Any, archives: Any) -> None:
        """Symlinks resolving inside are kept as links; hard links become independent copies."""
        data = archives.tar(
            [
                ("file", "data/a.txt", b"A"),
                ("symlink", "latest.txt", "data/a.txt"),
                ("symlink", "data/here", "."),
                ("symlink", "data/up", "../data"),
                ("hardlink", "copy.txt", "data/a.txt"),
            ]
        )
        members = workspace.extract(data)
        root = workspace.dest / "pkg"
        assert members == ["copy.txt", "data/a.txt", "data/here", "data/up", "latest.txt"]
        assert (root / "latest.txt").readlink() == Path("data/a.txt")
        assert (root / "latest.txt").read_bytes() == b"A"
        assert (root / "copy.txt").read_bytes() == b"A"
        assert not (root / "copy.txt").samefile(root / "data" / "a.txt")

    def test_dot_slash_names(self, workspace: Any, archives: Any) -> None:
        """A tar made with ``tar -C dir .`` (``./`` entries) extracts without the prefix."""
        data = archives.tar([("dir", "./"), ("dir", "./sub"), ("file", "./sub/x.txt", b"x")])
        assert workspace.extract(data) == ["sub", "sub/x.txt"]


class TestDetection:
    """The format comes from the bytes, never from a name."""

    def test_tar_holding_a_zip_is_a_tar(self, workspace: Any, archives: Any) -> None:
        """A plain tar whose last member is a zip (which fools is_zipfile) extracts as a tar."""
        inner = archives.zip({"inner.txt": b"inner"})
        data = archives.tar([("file", "notes.txt", b"n"), ("file", "inner.zip", inner)])
        assert zipfile.is_zipfile(workspace.save(data))
        assert workspace.extract(data) == ["inner.zip", "notes.txt"]

    def test_name_does_not_matter(self, workspace: Any, archives: Any) -> None:
        """A tar.xz served under a .zip name still extracts; the folder keeps the given name."""
        data = archives.tar([("file", "x.txt", b"x")], "xz")
        assert workspace.extract(data, name="misnamed.zip") == ["x.txt"]
        assert (workspace.dest / "misnamed.zip" / "x.txt").read_bytes() == b"x"

    @pytest.mark.parametrize(
        "data",
        [
            b"just some text\n",
            b"",
            b"\1" * 10240,
            gzip.compress(b"a gzip of text, not of a tar\n"),
            os.urandom(4096),
            b"PK\x03\x04 not really a zip",
        ],
        ids=["text", "empty", "ones", "gzip-text", "random", "fake-zip"],
    )
    def test_not_an_archive(self, workspace: Any, data: bytes) -> None:
        """Anything else is refused with 'not a zip or tar archive' and leaves nothing."""
        with pytest.raises(NotAnArchiveError, match="not a zip or tar archive"):
            workspace.extract(data)
        assert workspace.dest_entries() == []

    def test_empty_tar(self, workspace: Any) -> None:
        """An empty tar (only end-of-archive zero blocks) gives an empty folder."""
        assert workspace.extract(b"\0" * 10240) == []
        assert list((workspace.dest / "pkg").iterdir()) == []

    def test_truncated_tar_gz(self, workspace: Any, archives: Any) -> None:
        """A tar.gz cut short fails as corrupt, naming where, and leaves nothing."""
        data = archives.tar([("file", "a.txt", b"a"), ("file", "b.bin", os.urandom(200_000))], "gz")
        with pytest.raises(CorruptArchiveError, match=r"b\.bin"):
            workspace.extract(data[: len(data) // 2])
        assert workspace.dest_entries() == []

    def test_bad_crc_zip(self, workspace: Any, archives: Any) -> None:
        """A zip member whose data does not match its CRC fails as corrupt."""
        data = bytearray(archives.zip({"a.txt": b"hello world"}, zipfile.ZIP_STORED))
        offset = bytes(data).index(b"hello world")
        data[offset] = ord("j")
        with pytest.raises(CorruptArchiveError, match=r"a\.txt"):
            workspace.extract(bytes(data))
        assert workspace.dest_entries() == []

    def test_encrypted_zip_member(self, workspace: Any, archives: Any) -> None:
        """A member flagged as encrypted is refused by name."""
        data = bytearray(archives.zip({"secret.txt": b"s"}, zipfile.ZIP_STORED))
        for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            position = bytes(data).index(signature) + flag_offset
            data[position] |= 0x1
        with pytest.raises(CorruptArchiveError, match=r"'secret\.txt' is encrypted"):
            workspace.extract(bytes(data))
