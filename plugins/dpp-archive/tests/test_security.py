"""Hostile archives: nothing escapes dest, nothing half-extracted remains, limits hold."""

from __future__ import annotations

import stat
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dpp_archive import (
    CorruptArchiveError,
    ExtractionLimits,
    SpecialFileError,
    TooLargeError,
    TooManyMembersError,
    UnsafeLinkError,
    UnsafeMemberError,
    extract_archive,
)

MB = 1 << 20


def assert_refused(
    workspace: Any, data: bytes, error: type[Exception], match: str, **options: Any
) -> None:
    """Extracting ``data`` raises ``error`` and leaves no trace inside or outside dest."""
    before = workspace.outside_dest()
    with pytest.raises(error, match=match) as caught:
        workspace.extract(data, **options)
    assert "\n" not in str(caught.value)
    assert workspace.outside_dest() == before
    assert workspace.dest_entries() == []


def patch_zip_sizes(data: bytes, declared: int) -> bytes:
    """Make the first member claim ``declared`` uncompressed bytes in both headers."""
    patched = bytearray(data)
    struct.pack_into("<I", patched, patched.index(b"PK\x03\x04") + 22, declared)
    struct.pack_into("<I", patched, patched.index(b"PK\x01\x02") + 24, declared)
    return bytes(patched)


class TestPathTraversal:
    """Members whose path leaves the destination are refused, in zip and in tar."""

    @pytest.mark.parametrize(
        "evil",
        [
            "../evil.txt",
            "../../evil.txt",
            "../../outside/keep.txt",
            "/abs.txt",
            "/tmp/evil.txt",  # noqa: S108 - the path an attacker would aim at
            "sub/../../evil.txt",
            "..\\..\\evil.txt",
            "C:/evil.txt",
            "C:\\evil.txt",
            "\\\\server\\share\\evil.txt",
        ],
    )
    def test_zip_slip(self, workspace: Any, archives: Any, evil: str) -> None:
        """A zip member escaping dest fails the archive after a good member was written."""
        data = archives.zip({"good.txt": b"fine", evil: b"pwned"})
        assert_refused(workspace, data, UnsafeMemberError, "refusing member")
        assert not Path("/abs.txt").exists()

    @pytest.mark.parametrize("evil", ["../evil.txt", "../../evil.txt", "/abs.txt", "a/../../x"])
    def test_tar_slip(self, workspace: Any, archives: Any, evil: str) -> None:
        """A tar member escaping dest is refused the same way."""
        data = archives.tar([("file", "good.txt", b"fine"), ("file", evil, b"pwned")], "gz")
        assert_refused(workspace, data, UnsafeMemberError, "refusing member")

    def test_message_names_the_member(self, workspace: Any, archives: Any) -> None:
        """The error is one line naming the offending member."""
        data = archives.zip({"../evil.txt": b"x"})
        with pytest.raises(UnsafeMemberError) as caught:
            workspace.extract(data)
        assert str(caught.value) == (
            "refusing member '../evil.txt': '..' in the path could escape the destination"
        )


class TestSymlinks:
    """Links may never lead outside, and nothing is written through any link."""

    @pytest.mark.parametrize("target", ["/etc", "../..", "..", "../outside", "//host/share"])
    def test_link_out_then_write_through(self, workspace: Any, archives: Any, target: str) -> None:
        """A symlink pointing out is refused before a member can be written through it."""
        data = archives.tar([("symlink", "escape", target), ("file", "escape/evil.conf", b"x")])
        assert_refused(workspace, data, UnsafeLinkError, "refusing member 'escape'")
        assert not Path("/etc/evil.conf").exists()

    def test_write_through_inside_link_refused(self, workspace: Any, archives: Any) -> None:
        """Even a link pointing inside is never used as a path to write a member."""
        data = archives.tar(
            [("dir", "real"), ("symlink", "alias", "real"), ("file", "alias/x.txt", b"x")]
        )
        assert_refused(workspace, data, UnsafeLinkError, "goes through the symlink 'alias'")

    def test_chained_links_climbing_out(self, workspace: Any, archives: Any) -> None:
        """A link that looks inside but climbs out through another link is refused."""
        data = archives.tar(
            [("dir", "x"), ("symlink", "x/parent", ".."), ("symlink", "up", "x/parent/..")]
        )
        assert_refused(workspace, data, UnsafeLinkError, "refusing member 'up'")

    def test_chain_completed_by_a_later_member(self, workspace: Any, archives: Any) -> None:
        """A link made harmful by a member extracted after it is caught at the end."""
        data = archives.tar(
            [("symlink", "up", "x/parent/.."), ("dir", "x"), ("symlink", "x/parent", "..")]
        )
        assert_refused(workspace, data, UnsafeLinkError, "refusing member 'up'")

    def test_link_loop(self, workspace: Any, archives: Any) -> None:
        """Links pointing at each other are refused rather than left as a loop."""
        data = archives.tar([("symlink", "a", "b"), ("symlink", "b", "a")])
        assert_refused(workspace, data, UnsafeLinkError, "too many levels")

    def test_overly_complex_target(self, workspace: Any, archives: Any) -> None:
        """A target needing hundreds of resolution steps is refused, bounding the work."""
        target = "/".join(["."] * 300 + ["x"])
        data = archives.tar([("file", "x", b"x"), ("symlink", "deep", target)])
        assert_refused(workspace, data, UnsafeLinkError, "too complex to resolve")

    def test_file_replacing_a_link_does_not_follow_it(self, workspace: Any, archives: Any) -> None:
        """A file member named like an earlier link replaces the link, not its target."""
        data = archives.tar(
            [
                ("file", "target.txt", b"original"),
                ("symlink", "alias.txt", "target.txt"),
                ("file", "alias.txt", b"replacement"),
            ]
        )
        workspace.extract(data)
        root = workspace.dest / "pkg"
        assert (root / "target.txt").read_bytes() == b"original"
        assert not (root / "alias.txt").is_symlink()
        assert (root / "alias.txt").read_bytes() == b"replacement"

    def test_zip_symlink_refused(self, workspace: Any, archives: Any) -> None:
        """A zip member with the symlink mode is refused, not written as a file."""
        data = archives.zip({"ok.txt": b"ok", "link": b"/etc/passwd"}, modes={"link": 0o120777})
        assert_refused(workspace, data, UnsafeLinkError, "refusing member 'link'")


class TestHardLinks:
    """Hard links only copy a regular file extracted earlier from the same archive."""

    @pytest.mark.parametrize(
        "target", ["/etc/passwd", "../../outside/keep.txt", "../pkg/x", "..\\..\\outside\\keep.txt"]
    )
    def test_escape(self, workspace: Any, archives: Any, target: str) -> None:
        """A hard link to a path outside is refused and the file outside is untouched."""
        data = archives.tar([("file", "x", b"x"), ("hardlink", "stolen", target)])
        assert_refused(workspace, data, UnsafeLinkError, "refusing member 'stolen': hard link")

    def test_through_a_symlink(self, workspace: Any, archives: Any) -> None:
        """A hard link whose target is (or passes through) a symlink is refused."""
        data = archives.tar(
            [("file", "a.txt", b"a"), ("symlink", "s", "a.txt"), ("hardlink", "h", "s")]
        )
        assert_refused(workspace, data, UnsafeLinkError, "not a file extracted before it")

    def test_missing_target(self, workspace: Any, archives: Any) -> None:
        """A hard link to a member that does not (yet) exist is refused."""
        data = archives.tar([("hardlink", "h", "later.txt"), ("file", "later.txt", b"x")])
        assert_refused(workspace, data, UnsafeLinkError, "not a file extracted before it")


class TestSpecialFiles:
    """Devices and FIFOs are never created."""

    @pytest.mark.parametrize("kind", ["fifo", "chardev", "blockdev"])
    def test_refused(self, workspace: Any, archives: Any, kind: str) -> None:
        """Each special member type fails the archive."""
        data = archives.tar([("file", "ok.txt", b"ok"), (kind, "dev/thing")])
        assert_refused(workspace, data, SpecialFileError, "refusing member 'dev/thing'")

    def test_zip_fifo_mode(self, workspace: Any, archives: Any) -> None:
        """A zip member with a FIFO mode is refused."""
        data = archives.zip({"pipe": b""}, modes={"pipe": stat.S_IFIFO | 0o644})
        assert_refused(workspace, data, SpecialFileError, "refusing member 'pipe'")


class TestSizeLimit:
    """max_bytes counts the bytes really written and stops at once."""

    def test_zip_bomb(self, workspace: Any, archives: Any) -> None:
        """50 MB of compressed zeros with max_bytes=1 MB fails and leaves nothing."""
        data = archives.zip_of_zeros("zeros.bin", 50 * MB)
        assert len(data) < MB // 4
        expected = r"'zeros\.bin'.*max_bytes=1048576"
        assert_refused(workspace, data, TooLargeError, expected, max_bytes=MB)

    def test_tar_gz_bomb(self, workspace: Any, archives: Any) -> None:
        """The same bomb as a tar.gz is stopped the same way."""
        data = archives.tar([("zeros", "zeros.bin", 50 * MB)], "gz")
        assert_refused(workspace, data, TooLargeError, "'zeros.bin'", max_bytes=MB)

    def test_never_writes_past_the_limit(self, tmp_path: Path, archives: Any) -> None:
        """When the limit trips, at most max_bytes bytes are on disk."""
        archive = tmp_path / "bomb"
        archive.write_bytes(archives.zip_of_zeros("zeros.bin", 10 * MB))
        root = tmp_path / "root"
        root.mkdir()
        limit = MB + 12345
        with pytest.raises(TooLargeError):
            extract_archive(archive, root, ExtractionLimits(max_bytes=limit))
        assert 0 < (root / "zeros.bin").stat().st_size <= limit

    def test_total_across_members(self, workspace: Any, archives: Any) -> None:
        """Many members each under the limit still trip it together."""
        data = archives.zip({f"part{i}.bin": b"\0" * 300_000 for i in range(5)})
        assert_refused(workspace, data, TooLargeError, "'part3.bin'", max_bytes=MB)

    def test_hard_link_copies_count(self, workspace: Any, archives: Any) -> None:
        """Hard links are copies, and their bytes count too."""
        entries = [("file", "a.bin", b"\0" * 600_000), ("hardlink", "b.bin", "a.bin")]
        assert_refused(workspace, archives.tar(entries), TooLargeError, "'b.bin'", max_bytes=MB)

    def test_exact_limit_passes(self, workspace: Any, archives: Any) -> None:
        """An archive writing exactly max_bytes is fine."""
        assert workspace.extract(archives.zip({"a": b"x" * 1000}), max_bytes=1000) == ["a"]

    def test_patch_helper(self, archives: Any, tmp_path: Path) -> None:
        """The size-patching helper really changes what zipfile believes."""
        path = tmp_path / "z"
        path.write_bytes(patch_zip_sizes(archives.zip({"a": b"abc"}), 99))
        with zipfile.ZipFile(path) as archive:
            assert archive.getinfo("a").file_size == 99

    def test_declared_small_is_not_trusted(self, workspace: Any, archives: Any) -> None:
        """A member declaring 10 bytes but holding 2 MB is never written beyond its claim."""
        data = patch_zip_sizes(archives.zip({"liar.bin": b"\0" * 2 * MB}), 10)
        assert_refused(workspace, data, CorruptArchiveError, "'liar.bin'", max_bytes=MB)

    def test_declared_huge_is_not_trusted(self, workspace: Any, archives: Any) -> None:
        """A member declaring 4 GB is judged by what it really holds, either way."""
        data = patch_zip_sizes(archives.zip({"big.bin": b"\0" * 2 * MB}), 4_000_000_000)
        assert_refused(workspace, data, TooLargeError, "'big.bin'", max_bytes=MB)
        assert workspace.extract(data, max_bytes=3 * MB) == ["big.bin"]
        assert (workspace.dest / "pkg" / "big.bin").stat().st_size == 2 * MB


class TestMemberLimit:
    """max_members bounds files, folders and links alike."""

    def test_zip_over(self, workspace: Any, archives: Any) -> None:
        """A zip with one member too many is refused before anything is written."""
        data = archives.zip({f"f{i}": b"x" for i in range(11)})
        assert_refused(workspace, data, TooManyMembersError, "max_members=10", max_members=10)

    def test_tar_over(self, workspace: Any, archives: Any) -> None:
        """A tar is counted while streaming and stops at the first member too many."""
        data = archives.tar([("file", f"f{i}", b"x") for i in range(11)], "bz2")
        assert_refused(workspace, data, TooManyMembersError, "max_members=10", max_members=10)

    @pytest.mark.parametrize("kind", ["zip", "tar"])
    def test_exactly_at_limit(self, workspace: Any, archives: Any, kind: str) -> None:
        """An archive with exactly max_members members extracts."""
        files = {f"f{i}": b"x" for i in range(10)}
        if kind == "zip":
            data = archives.zip(files)
        else:
            data = archives.tar([("file", name, body) for name, body in files.items()])
        assert len(workspace.extract(data, max_members=10)) == 10


class TestNothingOutside:
    """A whole mixed attack leaves the disk exactly as it was outside dest."""

    def test_symlinked_dest_entry_is_not_followed(
        self, workspace: Any, archives: Any, helpers: Any
    ) -> None:
        """With overwrite, an existing dest/<name> symlink is replaced, its target untouched."""
        workspace.dest.mkdir(parents=True)
        (workspace.dest / "pkg").symlink_to(workspace.outside, target_is_directory=True)
        before = helpers.snapshot(workspace.outside)
        workspace.extract(archives.zip({"a.txt": b"a"}), overwrite=True)
        assert helpers.snapshot(workspace.outside) == before
        assert not (workspace.dest / "pkg").is_symlink()
        assert (workspace.dest / "pkg" / "a.txt").read_bytes() == b"a"

    def test_refusal_after_many_members(self, workspace: Any, archives: Any) -> None:
        """Failing late in a big archive removes every member already written."""
        files = {f"dir{i}/file{j}.txt": b"data" for i in range(20) for j in range(20)}
        files["../../outside/keep.txt"] = b"overwritten"
        assert_refused(workspace, archives.zip(files), UnsafeMemberError, "outside/keep.txt")
        assert (workspace.outside / "keep.txt").read_bytes() == b"do not touch"

    def test_bad_zip_permissions_still_cleaned(self, workspace: Any, archives: Any) -> None:
        """A member with no permission bits at all is still removed on failure."""
        data = archives.zip({"locked": b"x", "../x": b"x"}, modes={"locked": 0o100000})
        assert_refused(workspace, data, UnsafeMemberError, r"'\.\./x'")
