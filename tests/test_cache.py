"""Tests for cache.py: the run's private download folder."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from download_pipeline_processor.cache import (
    PART_SUFFIX,
    SHARDS,
    DownloadCache,
    mark_top_directory,
)
from download_pipeline_processor.file_data import FileData


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[DownloadCache]:
    """An opened cache under tmp_path/root, closed after the test."""
    download_cache = DownloadCache(tmp_path / "root")
    download_cache.open()
    yield download_cache
    download_cache.close()


class TestOpenClose:
    """The run folder exists between open() and close() only."""

    def test_path_before_open(self, tmp_path: Path) -> None:
        """Asking for the path before open() is an error."""
        with pytest.raises(RuntimeError, match="not open"):
            _ = DownloadCache(tmp_path).path

    def test_open_makes_run_folder_and_root(self, tmp_path: Path) -> None:
        """open() creates missing parents and a fresh run-* folder inside the root."""
        root = tmp_path / "a" / "b"
        cache = DownloadCache(root)
        path = cache.open()
        try:
            assert path.is_dir()
            assert path.parent == root
            assert path.name.startswith("run-")
            assert cache.path == path
        finally:
            cache.close()

    def test_two_runs_get_separate_folders(self, tmp_path: Path) -> None:
        """Two caches on one root never share a folder."""
        first, second = DownloadCache(tmp_path), DownloadCache(tmp_path)
        try:
            assert first.open() != second.open()
        finally:
            first.close()
            second.close()

    def test_close_removes_everything(self, tmp_path: Path) -> None:
        """close() removes the run folder with its shards, files and .part files."""
        cache = DownloadCache(tmp_path)
        run = cache.open()
        for sequence in (0, 1, 300):
            target = cache.target_for(sequence, FileData(f"https://h/{sequence}.bin"))
            target.write_bytes(b"x")
            cache.part_path(target).write_bytes(b"partial")
        cache.close()
        assert not run.exists()
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(RuntimeError):
            _ = cache.path

    def test_close_after_every_file_was_discarded(self, tmp_path: Path) -> None:
        """The usual end of a run: empty shards, removed with the run folder."""
        cache = DownloadCache(tmp_path)
        run = cache.open()
        for sequence in range(300):
            target = cache.target_for(sequence, FileData(f"https://h/{sequence}.bin"))
            target.write_bytes(b"x")
            cache.discard(target)
        cache.close()
        assert not run.exists()
        assert list(tmp_path.iterdir()) == []

    def test_close_removes_what_others_left_in_the_run_folder(self, tmp_path: Path) -> None:
        """A folder or file the cache did not make is removed too (rmtree fallback)."""
        cache = DownloadCache(tmp_path)
        run = cache.open()
        cache.discard(cache.target_for(0, FileData("https://h/a.bin")))
        (run / "extra" / "deeper").mkdir(parents=True)
        (run / "extra" / "deeper" / "file").write_bytes(b"x")
        cache.close()
        assert list(tmp_path.iterdir()) == []

    def test_close_twice(self, tmp_path: Path) -> None:
        """A second close() does nothing."""
        cache = DownloadCache(tmp_path)
        cache.open()
        cache.close()
        cache.close()

    def test_reopen_after_close(self, tmp_path: Path) -> None:
        """A closed cache can be opened again and remakes its shard folders."""
        cache = DownloadCache(tmp_path)
        cache.open()
        cache.target_for(1, FileData("https://h/x.bin"))
        cache.close()
        cache.open()
        try:
            target = cache.target_for(1, FileData("https://h/x.bin"))
            assert target.parent.is_dir()
        finally:
            cache.close()


class TestTargets:
    """Where each download lives."""

    @pytest.mark.parametrize(
        ("sequence", "shard"), [(0, "00"), (17, "11"), (255, "ff"), (256, "00"), (1000, "e8")]
    )
    def test_shards(self, cache: DownloadCache, sequence: int, shard: str) -> None:
        """Files are spread over 256 shard folders by sequence number."""
        target = cache.target_for(sequence, FileData("https://h/x.bin"))
        assert target.parent == cache.path / shard
        assert target.parent.is_dir()
        assert SHARDS == 256

    def test_name_has_sequence_name_and_extension(self, cache: DownloadCache) -> None:
        """The file name is ``<seq>-<name>.<url extension>``."""
        target = cache.target_for(5, FileData("https://h/a/talk.mp3?x=1"))
        assert target.name == "5-talk.mp3"

    def test_extension_not_doubled(self, cache: DownloadCache) -> None:
        """A name that already ends with the URL's extension keeps a single one."""
        target = cache.target_for(1, FileData("https://h/a/x.mp3", name="Talk.mp3"))
        assert target.name == "1-Talk.mp3"

    def test_no_extension(self, cache: DownloadCache) -> None:
        """A URL without an extension adds none."""
        assert cache.target_for(2, FileData("https://h/a/readme")).name == "2-readme"

    @pytest.mark.parametrize("name", ["../../evil", "/etc/passwd", "..", "", "a/../../b"])
    def test_odd_names_stay_inside(self, cache: DownloadCache, name: str) -> None:
        """Names from the input never lead outside the shard folder."""
        target = cache.target_for(3, FileData("https://h/x.bin", name=name or "\x00"))
        assert target.resolve().parent == (cache.path / "03").resolve()
        assert target.name.startswith("3-")

    def test_same_name_different_sequence(self, cache: DownloadCache) -> None:
        """Entries with one name but different sequence numbers never collide."""
        first = cache.target_for(1, FileData("https://h/a/x.bin"))
        second = cache.target_for(2, FileData("https://h/b/x.bin"))
        assert first != second

    def test_long_name_bounded(self, cache: DownloadCache) -> None:
        """A very long name gives a component well under the file-system limit."""
        target = cache.target_for(9, FileData("https://h/x.bin", name="n" * 1000))
        assert len(target.name.encode("utf-8")) <= 255
        assert target.name.endswith(".bin")


class TestPartFiles:
    """Temporary names and their cleanup."""

    def test_part_name(self, cache: DownloadCache) -> None:
        """The temporary name is the target's name plus .part, in the same folder."""
        target = cache.target_for(4, FileData("https://h/a/talk.mp3"))
        part = cache.part_path(target)
        assert part == target.with_name("4-talk.mp3" + PART_SUFFIX)
        assert PART_SUFFIX == ".part"

    def test_discard(self, cache: DownloadCache) -> None:
        """discard deletes a file and ignores a missing file or None."""
        target = cache.target_for(0, FileData("https://h/x.bin"))
        target.write_bytes(b"x")
        cache.discard(target)
        assert not target.exists()
        cache.discard(target)
        cache.discard(None)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the cache with one file, which nothing may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    return folder


class TestDiscard:
    """discard removes whatever a processor left at its file's path, following no link."""

    @pytest.mark.parametrize(
        "leave",
        ["file", "nothing", "empty-folder", "full-folder", "link-to-file", "link-to-folder"],
    )
    def test_removes_what_is_there(self, cache: DownloadCache, outside: Path, leave: str) -> None:
        """A file, a folder with its contents or a link goes, a link's target stays; None back."""
        target = cache.target_for(0, FileData("https://h/x.bin"))
        if leave == "file":
            target.write_bytes(b"x")
        elif leave == "empty-folder":
            target.mkdir()
        elif leave == "full-folder":
            (target / "sub").mkdir(parents=True)
            (target / "sub" / "data").write_bytes(b"d")
            (target / "sub" / "out").symlink_to(outside)
            (target / "file-out").symlink_to(outside / "keep.txt")
        elif leave == "link-to-file":
            target.symlink_to(outside / "keep.txt")
        elif leave == "link-to-folder":
            target.symlink_to(outside)
        assert cache.discard(target) is None
        assert not target.exists()
        assert not target.is_symlink()
        assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
        assert (outside / "keep.txt").read_text() == "keep"

    def test_failure_is_returned_not_raised(self, cache: DownloadCache, tmp_path: Path) -> None:
        """A path that cannot be removed gives back the OSError instead of raising it."""
        a_file = tmp_path / "plain"
        a_file.write_bytes(b"p")
        error = cache.discard(a_file / "below-a-file")
        assert isinstance(error, NotADirectoryError)
        assert a_file.read_bytes() == b"p"


#: Where Linux mounts its tmpfs for shared memory.
SHM = Path("/dev/shm")  # noqa: S108 - a file system to test against, not a temp file


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _filesystem(path: Path) -> str:
    """The file system type of ``path`` as coreutils names it ("ext2/ext3" covers ext4)."""
    return subprocess.run(
        [_tool("stat"), "-f", "-c", "%T", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def _has_top_flag(path: Path) -> bool:
    """Whether ``lsattr`` (e2fsprogs, not our ioctl code) shows the ``T`` flag."""
    listing = subprocess.run(
        [_tool("lsattr"), "-d", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return "T" in listing.split()[0]


@pytest.fixture
def ext_folder(tmp_path: Path) -> Path:
    """A folder on ext2/3/4: tmp_path on the CI machines, whose /tmp is ext4."""
    if _filesystem(tmp_path) != "ext2/ext3":
        pytest.skip("tmp_path is not on ext2/3/4 here")
    return tmp_path


class TestSpreadShards:
    """The run folder is marked so ext4 spreads the shards over block groups."""

    def test_run_folder_marked_on_ext4(self, ext_folder: Path) -> None:
        download_cache = DownloadCache(ext_folder / "root")
        run_folder = download_cache.open()
        try:
            assert _has_top_flag(run_folder)
            # Only the run's own folder: the user's cache root is left as it was.
            assert not _has_top_flag(ext_folder / "root")
        finally:
            download_cache.close()

    def test_marking_twice_keeps_the_flag(self, ext_folder: Path) -> None:
        assert mark_top_directory(str(ext_folder))
        assert mark_top_directory(str(ext_folder))
        assert _has_top_flag(ext_folder)

    def test_tmpfs_refuses_quietly(self) -> None:
        if not SHM.is_dir() or _filesystem(SHM) != "tmpfs":
            pytest.skip("no tmpfs at /dev/shm here")
        download_cache = DownloadCache(Path(tempfile.mkdtemp(dir=SHM)))
        try:
            run_folder = download_cache.open()
            assert not mark_top_directory(str(run_folder))
            target = download_cache.target_for(0, FileData(url="http://127.0.0.1/a.bin"))
            target.write_bytes(b"x")  # the cache works all the same
        finally:
            download_cache.close()
            shutil.rmtree(download_cache.root)

    def test_missing_folder(self, tmp_path: Path) -> None:
        assert not mark_top_directory(str(tmp_path / "missing"))

    def test_unknown_machine_is_left_alone(self, ext_folder: Path) -> None:
        # On a machine whose ioctl numbers use another layout (mips, powerpc,
        # sparc), nothing may be sent at all.
        assert not mark_top_directory(str(ext_folder), machine="mips")
        assert not _has_top_flag(ext_folder)
