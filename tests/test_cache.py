"""Tests for cache.py: the run's private download folder."""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from download_helpers import DOWNLOADER_CLASSES, use_downloader
from download_pipeline_processor._cache import (
    PART_SUFFIX,
    SHARDS,
    STARTING_GRACE,
    DownloadCache,
    create_cache_file,
    mark_top_directory,
)
from download_pipeline_processor._download_stage import DownloadStage
from download_pipeline_processor.backend import Downloader
from download_pipeline_processor.builtins._requests_downloader import RequestsDownloader
from download_pipeline_processor.builtins._simulated import SimulatedDownloader
from download_pipeline_processor.errors import CacheError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.settings import PipelineSettings, default_cache_root
from download_pipeline_processor.testing import FileServer, run_command_bounded

#: A uid no account needs to have: chown takes any number, so "someone else's
#: folder" is tested even where no second account can be made.
FOREIGN_UID = 54321
VICTIM_BYTES = b"the victim's own data\n"

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root"
)


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
            target = Path(cache.target_for(sequence, FileData(f"https://h/{sequence}.bin")))
            target.write_bytes(b"x")
            Path(cache.part_path(str(target))).write_bytes(b"partial")
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
            target = Path(cache.target_for(sequence, FileData(f"https://h/{sequence}.bin")))
            target.write_bytes(b"x")
            cache.discard(target)
        cache.close()
        assert not run.exists()
        assert list(tmp_path.iterdir()) == []

    def test_close_removes_what_others_left_in_the_run_folder(self, tmp_path: Path) -> None:
        """A folder or file the cache did not make is removed too (rmtree fallback)."""
        cache = DownloadCache(tmp_path)
        run = cache.open()
        cache.discard(Path(cache.target_for(0, FileData("https://h/a.bin"))))
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
        Path(cache.target_for(1, FileData("https://h/x.bin")))
        cache.close()
        cache.open()
        try:
            target = Path(cache.target_for(1, FileData("https://h/x.bin")))
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
        target = Path(cache.target_for(sequence, FileData("https://h/x.bin")))
        assert target.parent == cache.path / shard
        assert target.parent.is_dir()
        assert SHARDS == 256

    def test_name_has_sequence_name_and_extension(self, cache: DownloadCache) -> None:
        """The file name is ``<seq>-<name>.<url extension>``."""
        target = Path(cache.target_for(5, FileData("https://h/a/talk.mp3?x=1")))
        assert target.name == "5-talk.mp3"

    def test_extension_not_doubled(self, cache: DownloadCache) -> None:
        """A name that already ends with the URL's extension keeps a single one."""
        target = Path(cache.target_for(1, FileData("https://h/a/x.mp3", name="Talk.mp3")))
        assert target.name == "1-Talk.mp3"

    def test_no_extension(self, cache: DownloadCache) -> None:
        """A URL without an extension adds none."""
        assert Path(cache.target_for(2, FileData("https://h/a/readme"))).name == "2-readme"

    @pytest.mark.parametrize("name", ["../../evil", "/etc/passwd", "..", "", "a/../../b"])
    def test_odd_names_stay_inside(self, cache: DownloadCache, name: str) -> None:
        """Names from the input never lead outside the shard folder."""
        target = Path(cache.target_for(3, FileData("https://h/x.bin", name=name or "\x00")))
        assert target.resolve().parent == (cache.path / "03").resolve()
        assert target.name.startswith("3-")

    def test_same_name_different_sequence(self, cache: DownloadCache) -> None:
        """Entries with one name but different sequence numbers never collide."""
        first = Path(cache.target_for(1, FileData("https://h/a/x.bin")))
        second = Path(cache.target_for(2, FileData("https://h/b/x.bin")))
        assert first != second

    def test_long_name_bounded(self, cache: DownloadCache) -> None:
        """A very long name gives a component well under the file-system limit."""
        target = Path(cache.target_for(9, FileData("https://h/x.bin", name="n" * 1000)))
        assert len(target.name.encode("utf-8")) <= 255
        assert target.name.endswith(".bin")


class TestPartFiles:
    """Temporary names and their cleanup."""

    def test_part_name(self, cache: DownloadCache) -> None:
        """The temporary name is the target's name plus .part, in the same folder."""
        target = Path(cache.target_for(4, FileData("https://h/a/talk.mp3")))
        part = Path(cache.part_path(str(target)))
        assert part == target.with_name("4-talk.mp3" + PART_SUFFIX)
        assert PART_SUFFIX == ".part"

    def test_discard(self, cache: DownloadCache) -> None:
        """discard deletes a file and ignores a missing file or None."""
        target = Path(cache.target_for(0, FileData("https://h/x.bin")))
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
        target = Path(cache.target_for(0, FileData("https://h/x.bin")))
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
            target = Path(download_cache.target_for(0, FileData(url="http://127.0.0.1/a.bin")))
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


def _victim_file(folder: Path) -> Path:
    """A 0600 file of the user's outside the cache, which nothing may overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    victim = folder / "secret.txt"
    victim.write_bytes(VICTIM_BYTES)
    victim.chmod(0o600)
    return victim


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


class TestCacheRoot:
    """A cache root that another user could tamper with is refused before use."""

    def test_default_root_is_per_user_and_private(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --download-cache the root is <temp>/download-pipeline-processor-<uid>, 0700."""
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        root = default_cache_root()
        assert root == tmp_path / f"download-pipeline-processor-{os.geteuid()}"
        assert PipelineSettings().cache_root == root
        cache = DownloadCache(root)
        run = cache.open()
        try:
            assert run.parent == root
            assert _mode(root) == 0o700
            assert root.lstat().st_uid == os.geteuid()
        finally:
            cache.close()

    def test_run_folder_is_private_and_fresh(self, tmp_path: Path) -> None:
        """The run folder is made 0700, owned by the user, under a new random run-* name."""
        previous = os.umask(0)  # a lax umask must not widen it
        try:
            first, second = DownloadCache(tmp_path / "root"), DownloadCache(tmp_path / "root")
            one, two = first.open(), second.open()
        finally:
            os.umask(previous)
        try:
            for run in (one, two):
                assert _mode(run) == 0o700
                assert run.lstat().st_uid == os.geteuid()
                assert run.name.startswith("run-")
            assert _mode(tmp_path / "root") == 0o700
            assert one != two
        finally:
            first.close()
            second.close()

    @needs_root
    def test_root_of_another_owner_refused(self, tmp_path: Path) -> None:
        """A root owned by another uid is a CacheError naming it, and nothing is made in it."""
        root = tmp_path / "theirs"
        root.mkdir(mode=0o700)
        os.chown(root, FOREIGN_UID, FOREIGN_UID)
        with pytest.raises(CacheError, match="belongs to another user") as caught:
            DownloadCache(root).open()
        assert str(root) in str(caught.value)
        assert list(root.iterdir()) == []

    def test_root_of_a_real_other_user_refused(
        self, tmp_path: Path, other_user: pwd.struct_passwd
    ) -> None:
        """A root made by a real second account (useradd) is refused."""
        root = tmp_path / "theirs"
        root.mkdir(mode=0o755)
        os.chown(root, other_user.pw_uid, other_user.pw_gid)
        with pytest.raises(CacheError, match=rf"uid {other_user.pw_uid}, not {os.geteuid()}"):
            DownloadCache(root).open()
        assert list(root.iterdir()) == []

    @needs_root
    def test_default_root_taken_by_another_user_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another user who makes the default root first gets a refusal, not the victim's files."""
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        root = default_cache_root()
        root.mkdir(mode=0o777)
        root.chmod(0o777)
        os.chown(root, FOREIGN_UID, FOREIGN_UID)
        with pytest.raises(CacheError, match="belongs to another user"):
            DownloadCache(root).open()
        assert list(root.iterdir()) == []

    def test_root_symlink_refused(self, tmp_path: Path) -> None:
        """A root that is a symbolic link (even to the user's own folder) is refused."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        root = tmp_path / "root"
        root.symlink_to(elsewhere)
        with pytest.raises(CacheError, match="is a symbolic link"):
            DownloadCache(root).open()
        assert list(elsewhere.iterdir()) == []

    def test_dangling_symlink_root_refused(self, tmp_path: Path) -> None:
        """A root that is a link to nowhere is refused, and nothing is made where it points."""
        root = tmp_path / "root"
        root.symlink_to(tmp_path / "planted")
        with pytest.raises(CacheError, match="is a symbolic link"):
            DownloadCache(root).open()
        assert not (tmp_path / "planted").exists()

    @pytest.mark.parametrize("mode", [0o770, 0o702, 0o777])
    def test_root_writable_by_others_refused(self, tmp_path: Path, mode: int) -> None:
        """A root that group or others may write to, without the sticky bit, is refused."""
        root = tmp_path / "root"
        root.mkdir()
        root.chmod(mode)
        with pytest.raises(CacheError, match="writable by group or others"):
            DownloadCache(root).open()
        assert list(root.iterdir()) == []

    def test_root_that_cannot_be_made(self, tmp_path: Path) -> None:
        """A root under a regular file (which stops root too) is a CacheError, not an OSError."""
        (tmp_path / "somefile").write_bytes(b"")
        with pytest.raises(CacheError, match="cannot be created: Not a directory"):
            DownloadCache(tmp_path / "somefile" / "sub").open()

    def test_root_that_is_a_file(self, tmp_path: Path) -> None:
        """A root that is a regular file is refused as not a folder."""
        (tmp_path / "somefile").write_bytes(b"")
        with pytest.raises(CacheError, match="is not a folder"):
            DownloadCache(tmp_path / "somefile").open()


#: Every shipped downloader, and the simulated one of dry runs.
DOWNLOADERS: dict[str, type[Downloader]] = {**DOWNLOADER_CLASSES, "simulated": SimulatedDownloader}


class TestCacheFiles:
    """Nothing in the cache is created through a link or over an existing file."""

    @pytest.mark.parametrize("backend", list(DOWNLOADERS))
    def test_planted_link_at_part_name_not_written_through(
        self,
        tmp_path: Path,
        cache: DownloadCache,
        file_server: FileServer,
        backend: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A symlink at a .part name is replaced by a new file; what it points to is unchanged."""
        if backend in DOWNLOADER_CLASSES:
            use_downloader(backend, tmp_path, monkeypatch)
        victim = _victim_file(tmp_path / "home")
        settings = PipelineSettings(max_retries=0, simulate_delay=(0.0, 0.0))
        file_data = FileData(file_server.add("/a.bin", b"downloaded body"))
        part = Path(cache.part_path(cache.target_for(0, file_data)))
        part.symlink_to(victim)
        downloader = DOWNLOADERS[backend](settings)
        try:
            DownloadStage(downloader, cache, settings, threading.Event()).download(0, file_data)
        finally:
            downloader.close()
        assert victim.read_bytes() == VICTIM_BYTES
        assert _mode(victim) == 0o600
        assert file_data.local_path is not None
        assert not file_data.local_path.is_symlink()
        assert not part.exists()
        if backend != "simulated":
            assert file_data.local_path.read_bytes() == b"downloaded body"

    def test_planted_link_at_final_name_not_written_through(
        self, tmp_path: Path, cache: DownloadCache, file_server: FileServer
    ) -> None:
        """A link at a final name (only the user can put one in the 0700 run folder) is
        never written through: the complete download takes the name; its target is unchanged."""
        victim = _victim_file(tmp_path / "home")
        settings = PipelineSettings(max_retries=0)
        file_data = FileData(file_server.add("/b.bin", b"downloaded body"))
        target = Path(cache.target_for(1, file_data))
        target.symlink_to(victim)
        downloader = RequestsDownloader(settings)
        try:
            DownloadStage(downloader, cache, settings, threading.Event()).download(1, file_data)
        finally:
            downloader.close()
        assert victim.read_bytes() == VICTIM_BYTES
        assert _mode(victim) == 0o600
        assert file_data.local_path == target
        assert not target.is_symlink()
        assert target.read_bytes() == b"downloaded body"
        assert not Path(cache.part_path(str(target))).exists()

    def test_planted_link_at_shard_name_refused(self, tmp_path: Path) -> None:
        """A symlink where a shard folder goes is not used as the shard."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        cache = DownloadCache(tmp_path / "root")
        run = cache.open()
        try:
            (run / "00").symlink_to(elsewhere)
            with pytest.raises(FileExistsError):
                Path(cache.target_for(0, FileData("https://h/x.bin")))
            assert list(elsewhere.iterdir()) == []
        finally:
            cache.close()
        assert list(elsewhere.iterdir()) == []

    def test_existing_file_is_replaced_by_a_new_one(self, tmp_path: Path) -> None:
        """A retry's .part is a new, empty file, not the earlier attempt's file reopened."""
        part = tmp_path / "x.part"
        part.write_bytes(b"earlier attempt")
        earlier = part.stat().st_ino
        other_name = tmp_path / "hard-link"
        os.link(part, other_name)  # keeps the earlier inode alive, so its number is not reused
        descriptor = create_cache_file(part)
        os.close(descriptor)
        assert part.read_bytes() == b""
        assert part.stat().st_ino != earlier
        assert other_name.read_bytes() == b"earlier attempt"


#: A process that opens a cache, leaves a .part of argv[2] bytes in it, says
#: where, and waits to be killed.
HOLD_CACHE = """
import sys, time
from pathlib import Path
from download_pipeline_processor._cache import DownloadCache
from download_pipeline_processor.file_data import FileData
cache = DownloadCache(Path(sys.argv[1]))
cache.open()
target = Path(cache.target_for(0, FileData("http://127.0.0.1/a.bin")))
Path(cache.part_path(str(target))).write_bytes(b"x" * int(sys.argv[2]))
print(cache.path, flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """A live process holding a run folder in tmp_path/root with a 12345-byte .part."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_CACHE, str(tmp_path / "root"), "12345"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        run = Path(process.stdout.readline().strip())
        assert run.is_dir()
        yield process, run
    finally:
        process.kill()
        process.wait()


class TestAbandonedRuns:
    """A later run removes the run folders of runs that are gone, and only those."""

    def test_folder_of_a_killed_run_removed(
        self,
        tmp_path: Path,
        holder: tuple[subprocess.Popen[str], Path],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """After SIGKILL, the next open() removes the dead run's folder and logs the bytes freed."""
        process, leftover = holder
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert leftover.is_dir()  # the killed process could not clean up
        cache = DownloadCache(tmp_path / "root")
        with caplog.at_level(logging.DEBUG, logger="download_pipeline_processor._cache"):
            run = cache.open()
        try:
            assert not leftover.exists()
            assert [p.name for p in (tmp_path / "root").iterdir()] == [run.name]
            assert "removed 1 run folder(s)" in caplog.text
            assert "12345 bytes freed" in caplog.text
        finally:
            cache.close()

    def test_folder_of_a_live_run_kept(
        self, tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
    ) -> None:
        """Another process's live run keeps its folder and its files."""
        process, live = holder
        cache = DownloadCache(tmp_path / "root")
        cache.open()
        cache.close()
        assert process.poll() is None
        assert [p.name for p in live.rglob("*.part")] == ["0-a.bin.part"]

    def test_live_run_of_the_same_process_kept(self, tmp_path: Path) -> None:
        """Two caches of one process on one root: opening the second keeps the first's folder."""
        first, second = DownloadCache(tmp_path / "root"), DownloadCache(tmp_path / "root")
        one = first.open()
        try:
            second.open()
            assert one.is_dir()
        finally:
            second.close()
            first.close()

    def test_link_named_like_a_run_not_followed(self, tmp_path: Path) -> None:
        """A run-* symlink in the root is neither followed nor removed."""
        victim = _victim_file(tmp_path / "home")
        root = tmp_path / "root"
        root.mkdir(mode=0o700)
        (root / "run-planted").symlink_to(victim.parent)
        cache = DownloadCache(root)
        cache.open()
        cache.close()
        assert victim.read_bytes() == VICTIM_BYTES
        assert (root / "run-planted").is_symlink()

    def test_links_inside_a_dead_folder_not_followed(self, tmp_path: Path) -> None:
        """Removing a dead run's folder removes links in it, never what they point to."""
        victim = _victim_file(tmp_path / "home")
        root = tmp_path / "root"
        dead = root / "run-0123456789ab"
        (dead / "00").mkdir(parents=True)
        root.chmod(0o700)
        (dead / "00" / "0-a.bin.part").symlink_to(victim)
        (dead / "01").symlink_to(victim.parent)
        cache = DownloadCache(root)
        cache.open()
        cache.close()
        assert not dead.exists()
        assert victim.read_bytes() == VICTIM_BYTES

    @needs_root
    def test_other_users_folder_kept(self, tmp_path: Path) -> None:
        """A run-* folder in the root that belongs to another uid is left alone."""
        root = tmp_path / "root"
        theirs = root / "run-0123456789ab"
        theirs.mkdir(parents=True)
        root.chmod(0o700)
        os.chown(theirs, FOREIGN_UID, FOREIGN_UID)
        cache = DownloadCache(root)
        cache.open()
        cache.close()
        assert theirs.is_dir()

    def test_starting_folder_kept_while_young(self, tmp_path: Path) -> None:
        """A new-* folder (a run starting) is kept until it is older than STARTING_GRACE."""
        root = tmp_path / "root"
        young, old = root / "new-000000000001", root / "new-000000000002"
        young.mkdir(parents=True)
        old.mkdir()
        root.chmod(0o700)
        long_ago = time.time() - STARTING_GRACE - 5
        os.utime(old, (long_ago, long_ago))
        cache = DownloadCache(root)
        cache.open()
        cache.close()
        assert young.is_dir()
        assert not old.exists()

    def test_other_entries_left_alone(self, tmp_path: Path) -> None:
        """Files and folders in the root that are not run folders are never touched."""
        root = tmp_path / "root"
        (root / "keep").mkdir(parents=True)
        root.chmod(0o700)
        (root / "notes.txt").write_bytes(b"mine")
        (root / "run-file").write_bytes(b"a file, not a folder")
        cache = DownloadCache(root)
        cache.open()
        cache.close()
        assert sorted(p.name for p in root.iterdir()) == ["keep", "notes.txt", "run-file"]


def _cli_run(cli_path: Path, listing: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """The console script run over ``listing`` with ``--download-cache cache``."""
    return run_command_bounded(
        [str(cli_path), "--files", str(listing), "--download-cache", str(cache)],
        {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
        timeout=60,
    )


class TestStickySharedFolder:
    """--download-cache a sticky shared folder (as /tmp): a private per-user folder inside."""

    @pytest.fixture
    def shared(self, tmp_path: Path) -> Path:
        """A folder made as /tmp is: mode 1777."""
        folder = tmp_path / "shared"
        folder.mkdir()
        folder.chmod(0o1777)
        return folder

    def _listing(self, tmp_path: Path, server: FileServer) -> Path:
        entries = [{"id": str(i), "url": server.add(f"/f{i}", b"x" * i)} for i in range(5)]
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps(entries), encoding="utf-8")
        return listing

    def test_private_folder_inside(
        self, tmp_path: Path, shared: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """The run works in <shared>/download-pipeline-processor-<uid>: 0700, ours, then empty."""
        proc = _cli_run(cli_path, self._listing(tmp_path, file_server), shared)
        assert proc.returncode == 0, proc.stderr
        private = shared / f"download-pipeline-processor-{os.geteuid()}"
        assert [p.name for p in shared.iterdir()] == [private.name]
        info = private.lstat()
        assert stat.S_ISDIR(info.st_mode)
        assert _mode(private) == 0o700
        assert info.st_uid == os.geteuid()
        assert list(private.iterdir()) == []
        assert file_server.request_count() == 5

    def test_not_sticky_refused(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A world-writable folder without the sticky bit stays refused: exit 2, no request."""
        folder = tmp_path / "open"
        folder.mkdir()
        folder.chmod(0o777)
        proc = _cli_run(cli_path, self._listing(tmp_path, file_server), folder)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert str(folder) in line
        assert "writable by group or others (mode 777)" in line
        assert list(folder.iterdir()) == []
        assert file_server.request_count() == 0

    @needs_root
    def test_sticky_folder_of_another_user_refused(self, tmp_path: Path) -> None:
        """A sticky shared folder owned by someone else (who could rename what is in it)."""
        folder = tmp_path / "theirs"
        folder.mkdir()
        folder.chmod(0o1777)
        os.chown(folder, FOREIGN_UID, FOREIGN_UID)
        with pytest.raises(CacheError, match="belongs to another user"):
            DownloadCache(folder).open()
        assert list(folder.iterdir()) == []

    def test_planted_link_refused(
        self, tmp_path: Path, shared: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A link planted at the per-user name: exit 2 naming it, nothing made through it."""
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        planted = shared / f"download-pipeline-processor-{os.geteuid()}"
        planted.symlink_to(elsewhere)
        proc = _cli_run(cli_path, self._listing(tmp_path, file_server), shared)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert str(planted) in line
        assert "symbolic link" in line
        assert list(elsewhere.iterdir()) == []
        assert planted.is_symlink()
        assert file_server.request_count() == 0
