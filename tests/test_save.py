"""Tests for the built-in ``save`` processor."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner

from download_pipeline_processor.builtins import _save as save
from download_pipeline_processor.builtins._save import SaveProcessor
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import PluginError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.testing import (
    FileServer,
    PipelineOutcome,
    make_plugin_manager,
    run_pipeline,
)

HOSTILE_NAMES = [
    "../../evil",
    "/etc/x",
    "a/b",
    "n" * 300,
    "café-日本語.txt",
    ".",
    "..",
    "",
    "nul\x00inside",
    "lone\ud800surrogate",
    "next\u0085line",
]


@pytest.fixture
def server() -> Iterator[FileServer]:
    """A loopback file server for the test."""
    with FileServer() as running:
        yield running


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """The save folder, nested two levels down so a ``../..`` escape stays inside tmp_path."""
    return tmp_path / "work" / "here" / "out"


def files_under(root: Path) -> set[Path]:
    """Every non-directory path below ``root``."""
    return {path for path in root.rglob("*") if not path.is_dir()}


def partial_files(folder: Path) -> list[Path]:
    """Temporary copy files left in ``folder``."""
    return [path for path in folder.iterdir() if ".partial-" in path.name]


def run_save(files: list[dict[str, Any]], tmp_path: Path, **options: Any) -> PipelineOutcome:
    """Run the pipeline with the ``save`` processor and a cache inside ``tmp_path``."""
    return run_pipeline(
        files,
        processor="save",
        processor_options=options,
        download_cache=tmp_path / "cache",
    )


def assert_cache_empty(tmp_path: Path) -> None:
    """Nothing is left in the run's download cache."""
    assert files_under(tmp_path / "cache") == set()


class TestSaving:
    """Files are kept in ``dest`` with their downloaded bytes."""

    def test_saves_content_and_returns_path(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Each file lands in dest with the served bytes and the result is its path as a str."""
        bodies = {f"f{i}": bytes([i]) * (1000 * i + 1) for i in range(5)}
        files = [{"url": server.add(f"/{key}.bin", body)} for key, body in bodies.items()]
        outcome = run_save(files, tmp_path, dest=str(out))
        assert outcome.exit_code == 0
        assert sorted(outcome.results) == sorted(str(out.resolve() / f"{k}.bin") for k in bodies)
        for key, body in bodies.items():
            assert (out / f"{key}.bin").read_bytes() == body
        assert all(isinstance(result, str) for result in outcome.results)
        assert_cache_empty(tmp_path)

    def test_creates_missing_dest(self, server: FileServer, out: Path, tmp_path: Path) -> None:
        """A dest folder that does not exist yet is created, parents included."""
        outcome = run_save([{"url": server.add("/a.txt", b"hi")}], tmp_path, dest=str(out))
        assert outcome.exit_code == 0
        assert (out / "a.txt").read_bytes() == b"hi"

    def test_default_name_adds_url_extension(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Without a template the name gets the URL's extension unless it has one."""
        files = [
            {"url": server.add("/one.mp3", b"1"), "name": "talk"},
            {"url": server.add("/two.mp3", b"2"), "name": "kept.ogg"},
            {"url": server.add("/three", b"3"), "name": "bare"},
        ]
        outcome = run_save(files, tmp_path, dest=str(out))
        assert outcome.exit_code == 0
        assert sorted(path.name for path in out.iterdir()) == ["bare", "kept.ogg", "talk.mp3"]

    def test_dest_that_is_a_file_is_a_usage_error(self, server: FileServer, tmp_path: Path) -> None:
        """A dest that exists as a regular file stops the run before any download."""
        blocker = tmp_path / "blocker"
        blocker.write_bytes(b"")
        with pytest.raises(PluginError, match="is not a folder"):
            run_save([{"url": server.add("/a.txt", b"x")}], tmp_path, dest=str(blocker))
        assert server.request_count() == 0


class TestHostileNames:
    """Names from the input never put a file outside ``dest``."""

    @pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
    def test_file_stays_inside_dest(
        self, server: FileServer, out: Path, tmp_path: Path, name: str
    ) -> None:
        """The one new file is directly inside dest, holds the served bytes, cache emptied."""
        etc_x_existed = Path("/etc/x").exists()
        before = files_under(tmp_path)
        body = name.encode("utf-8", "surrogatepass") + b"-body"
        outcome = run_save(
            [{"url": server.add("/payload.bin", body), "name": name}], tmp_path, dest=str(out)
        )
        assert outcome.exit_code == 0, outcome.failures
        created = files_under(tmp_path) - before
        assert len(created) == 1
        (saved,) = created
        assert saved.parent.resolve() == out.resolve()
        assert saved.read_bytes() == body
        assert outcome.results == [str(out.resolve() / saved.name)]
        assert len(saved.name.encode("utf-8")) <= 200
        assert "\x00" not in saved.name
        assert Path("/etc/x").exists() == etc_x_existed
        assert_cache_empty(tmp_path)

    def test_all_hostile_names_in_one_run(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Hostile names saved together under '{name}-{id}' all land in dest, nowhere else."""
        before = files_under(tmp_path)
        bodies = {str(i): f"body {i}".encode() for i in range(len(HOSTILE_NAMES))}
        files = [
            {"url": server.add(f"/h{i}.bin", bodies[str(i)]), "id": str(i), "name": name}
            for i, name in enumerate(HOSTILE_NAMES)
        ]
        outcome = run_save(files, tmp_path, dest=str(out), name="{name}-{id}")
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        created = files_under(tmp_path) - before
        assert {path.parent.resolve() for path in created} == {out.resolve()}
        assert len(created) == len(HOSTILE_NAMES)
        for result, file_data in outcome.outcomes:
            assert Path(result).read_bytes() == bodies[file_data.id]
        assert (out / "café-日本語.txt-4").exists()
        assert_cache_empty(tmp_path)

    def test_unicode_name_is_kept(self, server: FileServer, out: Path, tmp_path: Path) -> None:
        """A unicode name with its own extension is saved under exactly that name."""
        outcome = run_save(
            [{"url": server.add("/u.bin", b"u"), "name": "café-日本語.txt"}],
            tmp_path,
            dest=str(out),
        )
        assert outcome.exit_code == 0
        assert (out / "café-日本語.txt").read_bytes() == b"u"

    def test_invisible_characters_dropped_end_to_end(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """A right-to-left override or zero-width space in a name never reaches the saved name."""
        names = {"rlo": "evil\u202egpj.exe", "zwsp": "pay\u200bment\u2066.pdf"}
        files = [
            {"url": server.add(f"/{key}.bin", key.encode()), "id": key, "name": name}
            for key, name in names.items()
        ]
        outcome = run_save(files, tmp_path, dest=str(out))
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert (out / "evilgpj.exe").read_bytes() == b"rlo"
        assert (out / "payment.pdf").read_bytes() == b"zwsp"
        assert {path.name for path in out.iterdir()} == {"evilgpj.exe", "payment.pdf"}
        assert_cache_empty(tmp_path)

    def test_existing_symlink_is_never_followed(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """A symlink already at the target name is refused, or replaced itself with overwrite."""
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        out.mkdir(parents=True)
        (out / "a.bin").symlink_to(victim)
        url = server.add("/a.bin", b"attacker")
        refused = run_save([{"url": url}], tmp_path, dest=str(out))
        assert refused.exit_code == 1
        assert victim.read_bytes() == b"precious"
        replaced = run_save([{"url": url}], tmp_path, dest=str(out), overwrite=True)
        assert replaced.exit_code == 0
        assert not (out / "a.bin").is_symlink()
        assert (out / "a.bin").read_bytes() == b"attacker"
        assert victim.read_bytes() == b"precious"


class TestOverwrite:
    """An existing file is kept unless ``overwrite`` is set."""

    def test_second_run_fails_and_keeps_original(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Saving the same names again fails those files in 'process' with exit 1."""
        first = [
            {"url": server.add("/a.txt", b"first a")},
            {"url": server.add("/b.txt", b"first b")},
        ]
        assert run_save(first, tmp_path, dest=str(out)).exit_code == 0
        second = [
            {"url": server.add("/v2/a.txt", b"second a")},
            {"url": server.add("/v2/b.txt", b"second b")},
        ]
        outcome = run_save(second, tmp_path, dest=str(out))
        assert outcome.exit_code == 1
        assert len(outcome.failures) == 2
        for failed in outcome.failures:
            assert failed.error is not None
            assert failed.error.stage == "process"
            assert isinstance(failed.error.error, FileExistsError)
        assert (out / "a.txt").read_bytes() == b"first a"
        assert (out / "b.txt").read_bytes() == b"first b"
        assert sorted(path.name for path in out.iterdir()) == ["a.txt", "b.txt"]
        assert_cache_empty(tmp_path)

    def test_overwrite_replaces(self, server: FileServer, out: Path, tmp_path: Path) -> None:
        """With overwrite true a second run replaces the files."""
        first = run_save([{"url": server.add("/a.txt", b"old")}], tmp_path, dest=str(out))
        assert first.exit_code == 0
        outcome = run_save(
            [{"url": server.add("/v2/a.txt", b"new")}], tmp_path, dest=str(out), overwrite=True
        )
        assert outcome.exit_code == 0
        assert (out / "a.txt").read_bytes() == b"new"
        assert_cache_empty(tmp_path)

    def test_same_name_in_one_run_has_one_winner(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Two entries saved to one name in parallel: one succeeds, the other fails intact."""
        files = [
            {"url": server.add(f"/s{i}.bin", f"content {i}".encode(), delay=0.05), "name": "same"}
            for i in range(2)
        ]
        outcome = run_pipeline(
            files,
            processor="save",
            processor_options={"dest": str(out)},
            download_cache=tmp_path / "cache",
            processing_limit=2,
        )
        assert outcome.exit_code == 1
        assert len(outcome.results) == 1
        assert len(outcome.failures) == 1
        (winner,) = outcome.results
        assert [path.name for path in out.iterdir()] == ["same.bin"]
        assert Path(winner).read_bytes() in {b"content 0", b"content 1"}


class TestConcurrentClaim:
    """Workers racing for one name never both win."""

    @pytest.mark.parametrize("mode", ["move", "copy", "no-hard-links", "copy-no-hard-links"])
    def test_exactly_one_worker_wins(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
    ) -> None:
        """Eight processors saving eight files to one name at once: one wins, seven fail."""
        if mode.startswith("copy"):
            monkeypatch.setattr(save, "_move", _cross_device_move)
        if mode.endswith("no-hard-links"):
            monkeypatch.setattr(os, "link", _no_hard_links)
        dest = tmp_path / "out"
        workers = 8
        sources = []
        for i in range(workers):
            source = tmp_path / f"cached-{i}.bin"
            source.write_bytes(f"worker {i}".encode() * 1000)
            sources.append(source)
        barrier = threading.Barrier(workers)
        wins: list[str] = []
        losses: list[BaseException] = []
        lock = threading.Lock()

        def work(source: Path) -> None:
            processor = SaveProcessor(dest=dest)
            file_data = FileData(url="http://127.0.0.1/x.bin", name="same", local_path=source)
            barrier.wait()
            try:
                saved = processor.process(file_data)
            except OSError as exc:
                with lock:
                    losses.append(exc)
            else:
                with lock:
                    wins.append(saved)

        threads = [threading.Thread(target=work, args=(source,)) for source in sources]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        assert len(losses) == workers - 1
        assert all(isinstance(exc, FileExistsError) for exc in losses)
        assert [path.name for path in dest.iterdir()] == ["same.bin"]
        content = (dest / "same.bin").read_bytes()
        assert content in {f"worker {i}".encode() * 1000 for i in range(workers)}


class TestTemplate:
    """The ``name`` option renders a template over the entry's fields."""

    def test_template_with_extra_fields(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """id, name, basename, ext and extra input keys are available; separators made safe."""
        files = [
            {
                "url": server.add("/media/my%20talk.mp3", b"audio"),
                "id": 7,
                "name": "Talk",
                "lang": "en",
                "year": 2024,
            }
        ]
        outcome = run_save(
            files, tmp_path, dest=str(out), name="{lang}/{year}-{id}-{name}.{ext} [{basename}]"
        )
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert [path.name for path in out.iterdir()] == ["en_2024-7-Talk.mp3 [my talk.mp3]"]
        assert (out / "en_2024-7-Talk.mp3 [my talk.mp3]").read_bytes() == b"audio"

    def test_unknown_field_fails_the_file(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """A field the entry lacks fails that file in 'process' with a message naming it."""
        files = [
            {"url": server.add("/a.bin", b"a"), "lang": "en"},
            {"url": server.add("/b.bin", b"b")},
        ]
        outcome = run_save(files, tmp_path, dest=str(out), name="{lang}-{id}")
        assert outcome.exit_code == 1
        (failed,) = outcome.failures
        assert failed.id == "b"
        assert failed.error is not None
        assert failed.error.stage == "process"
        assert "'lang'" in str(failed.error.error)
        assert [path.name for path in out.iterdir()] == ["en-a"]
        assert_cache_empty(tmp_path)

    @pytest.mark.parametrize("template", ["{id", "{}-x", "{0}"])
    def test_malformed_template_is_a_usage_error(
        self, server: FileServer, out: Path, tmp_path: Path, template: str
    ) -> None:
        """A template with bad braces or positional fields stops the run before downloading."""
        with pytest.raises(PluginError, match="name template"):
            run_save([{"url": server.add("/a.bin", b"a")}], tmp_path, dest=str(out), name=template)
        assert server.request_count() == 0


def _no_hard_links(source: object, target: object) -> None:
    """Stand-in for ``os.link`` on a file system without hard links (FAT, some SMB shares)."""
    raise OSError(errno.EPERM, "Operation not permitted", str(source))


def _cross_device_move(source: Path, target: Path, overwrite: bool) -> None:
    """Stand-in for the rename that a real second file system would refuse."""
    raise OSError(errno.EXDEV, "Invalid cross-device link", str(source))


class TestCrossDeviceCopy:
    """When the cache and ``dest`` are on different file systems the file is copied.

    A real second file system cannot be mounted in a test, so the one-step move
    (``save._move``) is monkeypatched to raise ``OSError(EXDEV)`` as the kernel would.
    """

    @pytest.fixture(autouse=True)
    def _no_rename_across_devices(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make every one-step move fail as it would across file systems."""
        monkeypatch.setattr(save, "_move", _cross_device_move)

    def test_copies_content_without_partials(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """Copied files hold the served bytes, no partial file remains and the cache is emptied."""
        bodies = {f"c{i}": bytes(range(256)) * (i * 500 + 1) for i in range(4)}
        files = [{"url": server.add(f"/{key}.dat", body)} for key, body in bodies.items()]
        outcome = run_save(files, tmp_path, dest=str(out))
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        for key, body in bodies.items():
            assert (out / f"{key}.dat").read_bytes() == body
        assert partial_files(out) == []
        assert sorted(path.name for path in out.iterdir()) == sorted(f"{k}.dat" for k in bodies)
        assert_cache_empty(tmp_path)

    def test_copy_refuses_existing_and_overwrite_replaces(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """The copy path also refuses an existing name, and replaces it with overwrite."""
        first = run_save([{"url": server.add("/a.txt", b"one")}], tmp_path, dest=str(out))
        assert first.exit_code == 0
        url = server.add("/v2/a.txt", b"two")
        refused = run_save([{"url": url}], tmp_path, dest=str(out))
        assert refused.exit_code == 1
        assert isinstance(refused.failures[0].error.error, FileExistsError)  # type: ignore[union-attr]
        assert (out / "a.txt").read_bytes() == b"one"
        assert partial_files(out) == []
        replaced = run_save([{"url": url}], tmp_path, dest=str(out), overwrite=True)
        assert replaced.exit_code == 0
        assert (out / "a.txt").read_bytes() == b"two"
        assert partial_files(out) == []
        assert_cache_empty(tmp_path)

    def test_failed_copy_leaves_nothing(
        self,
        server: FileServer,
        out: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A copy that fails half-way (disk full) fails the file and leaves no file in dest."""

        def half_then_disk_full(data: IO[bytes], target: IO[bytes]) -> None:
            target.write(data.read(10))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(save, "_write_copy", half_then_disk_full)
        outcome = run_save([{"url": server.add("/a.bin", b"x" * 100)}], tmp_path, dest=str(out))
        assert outcome.exit_code == 1
        (failed,) = outcome.failures
        assert failed.error is not None
        assert failed.error.stage == "process"
        assert list(out.iterdir()) == []
        assert_cache_empty(tmp_path)


class TestCli:
    """The ``save`` processor is selectable from the command line."""

    def test_cli_saves_files(
        self,
        server: FileServer,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``--processor save --processor-option dest=out`` saves every file under ./out."""
        monkeypatch.chdir(tmp_path)
        files = [
            {"url": server.add("/a.txt", b"alpha")},
            {"url": server.add("/b.txt", b"beta"), "name": "../../evil"},
        ]
        (tmp_path / "list.json").write_text(json.dumps(files), encoding="utf-8")
        before = files_under(tmp_path)
        result = CliRunner().invoke(
            main,
            [
                "--files",
                "list.json",
                "--processor",
                "save",
                "--processor-option",
                "dest=out",
                "--download-cache",
                str(tmp_path / "cache"),
            ],
            obj={"plugin_manager": make_plugin_manager()},
        )
        assert result.exit_code == 0, result.output
        assert (tmp_path / "out" / "a.txt").read_bytes() == b"alpha"
        created = files_under(tmp_path) - before
        assert {path.parent for path in created} == {tmp_path / "out"}
        assert sorted(path.read_bytes() for path in created) == [b"alpha", b"beta"]
        assert_cache_empty(tmp_path)

    def test_cli_missing_dest_is_exit_2(self, server: FileServer, tmp_path: Path) -> None:
        """Leaving out the required dest option is a usage error before any download."""
        files = [{"url": server.add("/a.txt", b"alpha")}]
        (tmp_path / "list.json").write_text(json.dumps(files), encoding="utf-8")
        result = CliRunner().invoke(
            main,
            ["--files", str(tmp_path / "list.json"), "--processor", "save"],
            obj={"plugin_manager": make_plugin_manager()},
        )
        assert result.exit_code == 2
        assert "dest" in result.output
        assert server.request_count() == 0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TestIfExists:
    """``if_exists``: what happens to a file already at the destination."""

    @pytest.mark.parametrize("mode", ["thread", "process"])
    def test_skip_matching_file_is_never_requested(
        self, server: FileServer, out: Path, tmp_path: Path, mode: str
    ) -> None:
        """A file matching the size and digests of its entry is not downloaded; its path is kept."""
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"already here")
        url = server.add("/a.bin", b"already here")
        entry = {"url": url, "size": 12, "sha256": _sha256(b"already here")}
        outcome = run_pipeline(
            [entry, {"url": server.add("/b.bin", b"new b")}],
            processor="save",
            processor_options={"dest": str(out), "if_exists": "skip"},
            download_cache=tmp_path / "cache",
            processing_mode=mode,
            processing_limit=1,
        )
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert server.request_count("/a.bin") == 0
        assert server.request_count("/b.bin") == 1
        results = {fd.name: (result, fd) for result, fd in outcome.outcomes}
        result, kept = results["a"]
        assert result == str(out / "a.bin")
        assert kept.error is None
        assert kept.download.attempts == 0
        assert kept.local_path is None
        assert (out / "b.bin").read_bytes() == b"new b"
        assert_cache_empty(tmp_path)

    def test_skip_without_checks_keeps_any_file(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """With no size or digest in the entry, an existing file is kept unread (wget -nc)."""
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"whatever it is")
        url = server.add("/a.bin", b"the server's")
        outcome = run_save([{"url": url}], tmp_path, dest=str(out), if_exists="skip")
        assert outcome.exit_code == 0
        assert outcome.results == [str(out / "a.bin")]
        assert server.request_count("/a.bin") == 0
        assert (out / "a.bin").read_bytes() == b"whatever it is"

    @pytest.mark.parametrize("check", ["sha256", "md5", "checksum", "size"])
    def test_skip_replaces_a_mismatching_file(
        self,
        server: FileServer,
        out: Path,
        tmp_path: Path,
        check: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An existing file failing the entry's check is corrupt: downloaded again and replaced."""
        body = b"the right bytes"
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"the wrong bytes!" if check == "size" else b"the wrong bytes")
        fields: dict[str, Any] = {
            "sha256": _sha256(body),
            "md5": hashlib.md5(body).hexdigest(),  # noqa: S324 - the entry's own check
            "checksum": f"sha1:{hashlib.sha1(body).hexdigest()}",  # noqa: S324 - likewise
            "size": len(body),
        }
        entry = {"url": server.add("/a.bin", body), check: fields[check]}
        with caplog.at_level("WARNING"):
            outcome = run_save([entry], tmp_path, dest=str(out), if_exists="skip")
        assert outcome.exit_code == 0, [str(f.error) for f in outcome.failures]
        assert server.request_count("/a.bin") == 1
        assert (out / "a.bin").read_bytes() == body
        assert outcome.outcomes[0][1].download.attempts == 1
        assert any("replacing it" in r.getMessage() for r in caplog.records)
        assert_cache_empty(tmp_path)

    def test_fail_is_the_default_and_downloads_nothing(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """By default an existing file fails its entry at stage process, before any request."""
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"mine")
        outcome = run_save([{"url": server.add("/a.bin", b"theirs")}], tmp_path, dest=str(out))
        assert outcome.exit_code == 1
        (failed,) = outcome.failures
        assert failed.error is not None
        assert failed.error.stage == "process"
        assert isinstance(failed.error.error, FileExistsError)
        assert "if_exists" in str(failed.error.error)
        assert server.request_count("/a.bin") == 0
        assert (out / "a.bin").read_bytes() == b"mine"

    @pytest.mark.parametrize("options", [{"if_exists": "overwrite"}, {"overwrite": True}])
    def test_overwrite_replaces(
        self, server: FileServer, out: Path, tmp_path: Path, options: dict[str, Any]
    ) -> None:
        """if_exists=overwrite (or the old overwrite=true) downloads and replaces the file."""
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"same")
        old_inode = (out / "a.bin").stat().st_ino
        # Even a file matching the entry is downloaded again and replaced.
        entry = {"url": server.add("/a.bin", b"same"), "sha256": _sha256(b"same")}
        outcome = run_save([entry], tmp_path, dest=str(out), **options)
        assert outcome.exit_code == 0
        assert server.request_count("/a.bin") == 1
        assert (out / "a.bin").stat().st_ino != old_inode
        assert (out / "a.bin").read_bytes() == b"same"

    @pytest.mark.parametrize(
        "options",
        [
            {"if_exists": "never"},
            {"if_exists": "skip", "overwrite": True},
            {"if_exists": "overwrite", "overwrite": False},
        ],
    )
    def test_bad_combinations_are_refused(
        self, server: FileServer, out: Path, tmp_path: Path, options: dict[str, Any]
    ) -> None:
        """An unknown if_exists, or one overwrite contradicts, is a plugin error; no request."""
        with pytest.raises(PluginError, match="if_exists"):
            run_save([{"url": server.add("/a.bin", b"a")}], tmp_path, dest=str(out), **options)
        assert server.request_count() == 0

    def test_skip_from_the_command_line(
        self, server: FileServer, out: Path, tmp_path: Path
    ) -> None:
        """--processor-option if_exists=skip keeps a matching file and requests nothing."""
        out.mkdir(parents=True)
        (out / "a.bin").write_bytes(b"kept")
        listing = tmp_path / "list.json"
        entry = {"url": server.add("/a.bin", b"kept"), "sha256": _sha256(b"kept")}
        listing.write_text(json.dumps([entry]), encoding="utf-8")
        args = ["--files", str(listing), "--processor", "save", "--post-processor", "jsonl"]
        args += ["--processor-option", f"dest={out}", "--processor-option", "if_exists=skip"]
        result = CliRunner().invoke(
            main,
            [*args, "--download-cache", str(tmp_path / "cache")],
            obj={"plugin_manager": make_plugin_manager()},
        )
        assert result.exit_code == 0, result.output
        assert server.request_count() == 0
        (record,) = [json.loads(line) for line in result.stdout.splitlines()]
        assert record["result"] == str(out / "a.bin")
