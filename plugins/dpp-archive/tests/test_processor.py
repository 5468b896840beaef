"""The processor: target folder naming, overwrite, atomic publication, options."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import FileData
from download_pipeline_processor.paths import safe_filename
from dpp_archive import ArchiveError, DestinationExistsError, ExtractProcessor, UnsafeMemberError


class TestTargetFolder:
    """Each archive goes to dest/<safe_filename(name)>/."""

    @pytest.mark.parametrize(
        "name", ["release-1.0", "../../escape", "/etc", "a/b\\c", "..", "con", "x" * 300]
    )
    def test_safe_name(self, workspace: Any, archives: Any, name: str) -> None:
        """Odd file names become one safe folder directly inside dest."""
        workspace.extract(archives.zip({"a.txt": b"a"}), name=name)
        folder = workspace.dest / safe_filename(name, fallback="archive")
        assert (folder / "a.txt").read_bytes() == b"a"
        assert workspace.dest_entries() == [folder.name]

    def test_dest_created(self, tmp_path: Path) -> None:
        """A missing dest (and its parents) is created when the processor is built."""
        ExtractProcessor(dest=tmp_path / "a" / "b")
        assert (tmp_path / "a" / "b").is_dir()

    def test_not_downloaded(self, tmp_path: Path) -> None:
        """A file without a local path fails clearly."""
        with pytest.raises(ArchiveError, match="not downloaded"):
            ExtractProcessor(dest=tmp_path).process(FileData(url="http://127.0.0.1/x"))


class TestOverwrite:
    """An existing folder fails the file unless overwrite is on; then it is replaced whole."""

    def test_existing_folder_is_an_error(self, workspace: Any, archives: Any) -> None:
        """Without overwrite the second archive fails and the first one's files stay."""
        workspace.extract(archives.zip({"old.txt": b"old"}))
        with pytest.raises(DestinationExistsError, match=r"'pkg' already exists.*overwrite=true"):
            workspace.extract(archives.zip({"new.txt": b"new"}))
        assert sorted(p.name for p in (workspace.dest / "pkg").iterdir()) == ["old.txt"]
        assert workspace.dest_entries() == ["pkg"]

    @pytest.mark.parametrize("existing", ["empty folder", "file"])
    def test_any_existing_entry_is_an_error(
        self, workspace: Any, archives: Any, existing: str
    ) -> None:
        """An empty folder or a plain file of that name also blocks extraction."""
        workspace.dest.mkdir(parents=True)
        if existing == "file":
            (workspace.dest / "pkg").write_bytes(b"x")
        else:
            (workspace.dest / "pkg").mkdir()
        with pytest.raises(DestinationExistsError):
            workspace.extract(archives.zip({"a.txt": b"a"}))

    @pytest.mark.parametrize("existing", ["folder", "file"])
    def test_overwrite_replaces(self, workspace: Any, archives: Any, existing: str) -> None:
        """With overwrite the old entry is replaced, not merged, and no leftovers remain."""
        workspace.dest.mkdir(parents=True)
        if existing == "file":
            (workspace.dest / "pkg").write_bytes(b"x")
        else:
            workspace.extract(archives.zip({"old.txt": b"old", "keep/both.txt": b"1"}))
        members = workspace.extract(archives.zip({"keep/both.txt": b"2"}), overwrite=True)
        assert members == ["keep/both.txt"]
        assert sorted(p.name for p in (workspace.dest / "pkg").iterdir()) == ["keep"]
        assert (workspace.dest / "pkg" / "keep" / "both.txt").read_bytes() == b"2"
        assert workspace.dest_entries() == ["pkg"]

    def test_failed_overwrite_keeps_old(self, workspace: Any, archives: Any) -> None:
        """A refused archive leaves the previous extraction exactly as it was."""
        workspace.extract(archives.zip({"old.txt": b"old"}))
        with pytest.raises(UnsafeMemberError):
            workspace.extract(archives.zip({"new.txt": b"n", "../x": b"x"}), overwrite=True)
        assert (workspace.dest / "pkg" / "old.txt").read_bytes() == b"old"
        assert workspace.dest_entries() == ["pkg"]

    def test_concurrent_same_name(self, workspace: Any, archives: Any) -> None:
        """Threads extracting one name at once: one wins, the rest fail, nothing is mixed."""
        processor = workspace.processor()
        paths = [workspace.save(archives.zip({f"from{i}.txt": b"x"})) for i in range(8)]
        outcomes: list[Any] = []
        barrier = threading.Barrier(len(paths))

        def run(path: Path) -> None:
            barrier.wait()
            try:
                file_data = FileData(url="http://127.0.0.1/p", name="p", local_path=path)
                outcomes.append(processor.process(file_data))
            except DestinationExistsError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=run, args=(path,)) for path in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wins = [outcome for outcome in outcomes if isinstance(outcome, list)]
        assert len(outcomes) == 8
        assert len(wins) == 1
        assert [p.name for p in (workspace.dest / "p").iterdir()] == wins[0]
        assert workspace.dest_entries() == ["p"]


class TestOptions:
    """Options are checked when the processor is built."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [({"max_bytes": -1}, "max_bytes"), ({"max_members": 0}, "max_members")],
    )
    def test_invalid_limits(self, tmp_path: Path, options: dict[str, Any], message: str) -> None:
        """Negative byte limits and member limits below one are refused."""
        with pytest.raises(ValueError, match=message):
            ExtractProcessor(dest=tmp_path, **options)

    def test_dest_is_a_file(self, tmp_path: Path) -> None:
        """A dest that is a file cannot be used."""
        (tmp_path / "f").write_bytes(b"")
        with pytest.raises(FileExistsError):
            ExtractProcessor(dest=tmp_path / "f")

    def test_declared_options(self) -> None:
        """The options the CLI validates are dest, max_bytes, max_members and overwrite."""
        declared = {option.name: option for option in ExtractProcessor.options}
        assert list(declared) == ["dest", "max_bytes", "max_members", "overwrite"]
        assert declared["dest"].required
        assert declared["max_bytes"].default == 1 << 30
        assert declared["max_members"].default == 100_000
        assert declared["overwrite"].default is False
