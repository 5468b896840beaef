"""Tests for file_data.py: the record every stage reads and writes, and the public imports."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from download_pipeline_processor.errors import TransientDownloadError
from download_pipeline_processor.file_data import FileData, StageError, default_name_from_url


class TestDefaultName:
    """The original tool's rule for a missing id or name."""

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("https://h/a/talk.mp3?x=1", "talk"),
            ("https://h/a/talk.mp3#part", "talk"),
            ("https://h/a/archive.tar.gz", "archive.tar"),
            ("https://h/a/README", "README"),
            ("https://h/a/dir/", "dir"),
            ("https://h/a/my%20talk.mp3", "my talk"),
            ("https://example.com/", "example.com"),
            ("https://example.com", "example.com"),
        ],
    )
    def test_last_segment_without_final_extension(self, url: str, expected: str) -> None:
        """The default is the URL path's last segment without its final extension."""
        assert default_name_from_url(url) == expected

    def test_id_and_name_default_from_url(self) -> None:
        """A FileData built from a URL alone gets id and name from the URL."""
        file_data = FileData("https://h/a/talk.mp3?x=1")
        assert file_data.id == "talk"
        assert file_data.name == "talk"

    def test_given_id_kept_and_name_defaults(self) -> None:
        """An explicit id is kept while the missing name still defaults from the URL."""
        file_data = FileData("https://h/a/talk.mp3", id="42")
        assert file_data.id == "42"
        assert file_data.name == "talk"

    def test_given_name_kept_and_id_defaults(self) -> None:
        """An explicit name is kept while the missing id still defaults from the URL."""
        file_data = FileData("https://h/a/talk.mp3", name="Keynote")
        assert file_data.id == "talk"
        assert file_data.name == "Keynote"


class TestFromDict:
    """Building a FileData from one input entry."""

    def test_numbers_become_strings(self) -> None:
        """Numeric id and name from JSON are stored as strings."""
        file_data = FileData.from_dict({"url": "https://h/x.bin", "id": 7, "name": 1.5})
        assert file_data.id == "7"
        assert file_data.name == "1.5"

    def test_null_id_defaults(self) -> None:
        """A null id or name falls back to the URL rule."""
        file_data = FileData.from_dict({"url": "https://h/x.bin", "id": None, "name": None})
        assert (file_data.id, file_data.name) == ("x", "x")

    def test_extras_kept(self) -> None:
        """Keys other than url, id and name land in additional_fields."""
        file_data = FileData.from_dict(
            {"url": "https://h/x.bin", "id": "1", "language": "en", "tags": ["a"]}
        )
        assert file_data.additional_fields == {"language": "en", "tags": ["a"]}


class TestAttributes:
    """Extras read as attributes; typos raise."""

    def test_extra_readable_as_attribute(self) -> None:
        """An extra input key can be read as an attribute."""
        file_data = FileData("https://h/x.bin", additional_fields={"language": "en"})
        assert file_data.language == "en"

    def test_misspelt_attribute_raises(self) -> None:
        """Reading a name that is neither a field nor an extra raises AttributeError."""
        file_data = FileData("https://h/x.bin", additional_fields={"language": "en"})
        with pytest.raises(AttributeError, match="langauge"):
            _ = file_data.langauge

    def test_getattr_default_and_hasattr(self) -> None:
        """getattr with a default and hasattr work because a miss is an AttributeError."""
        file_data = FileData("https://h/x.bin")
        assert getattr(file_data, "missing", "fallback") == "fallback"
        assert not hasattr(file_data, "missing")

    def test_dunder_lookups_are_not_extras(self) -> None:
        """A dunder name is never answered from the extras."""
        file_data = FileData("https://h/x.bin", additional_fields={"__weird__": 1})
        with pytest.raises(AttributeError):
            _ = file_data.__weird__


class TestCopyAndPickle:
    """Copying and pickling keep everything, extras and error included."""

    @pytest.fixture
    def file_data(self) -> FileData:
        """A FileData with extras, a local path and a recorded error."""
        file_data = FileData(
            "https://h/a/talk.mp3",
            id="1",
            local_path=Path("cache/1-talk.mp3"),
            additional_fields={"language": "en", "tags": ["a", "b"]},
        )
        file_data.fail("download", TransientDownloadError("HTTP 503", retry_after=3.0))
        return file_data

    def test_copy(self, file_data: FileData) -> None:
        """copy.copy gives an equal record whose extras read as attributes."""
        copied = copy.copy(file_data)
        assert copied == file_data
        assert copied.language == "en"

    def test_deepcopy(self, file_data: FileData) -> None:
        """copy.deepcopy gives an equal record with its own extras."""
        copied = copy.deepcopy(file_data)
        assert copied.url == file_data.url
        assert copied.additional_fields == file_data.additional_fields
        assert copied.additional_fields is not file_data.additional_fields
        assert copied.tags == ["a", "b"]
        assert copied.error is not None
        assert copied.error.stage == "download"

    def test_pickle_round_trip(self, file_data: FileData) -> None:
        """pickle keeps fields, extras and the error with its attributes."""
        restored = pickle.loads(pickle.dumps(file_data))  # noqa: S301 - our own bytes
        assert (restored.url, restored.id, restored.name) == ("https://h/a/talk.mp3", "1", "talk")
        assert restored.local_path == Path("cache/1-talk.mp3")
        assert restored.language == "en"
        assert restored.has_error
        assert isinstance(restored.error.error, TransientDownloadError)
        assert restored.error.error.retry_after == 3.0
        assert restored.error.message == "HTTP 503"

    def test_pickled_copy_still_rejects_typos(self, file_data: FileData) -> None:
        """A record restored from pickle still raises on a misspelt attribute."""
        restored = pickle.loads(pickle.dumps(file_data))  # noqa: S301 - our own bytes
        with pytest.raises(AttributeError):
            _ = restored.langauge


class TestErrors:
    """has_error, fail() and StageError."""

    def test_fresh_record_has_no_error(self) -> None:
        """A new record has no error."""
        file_data = FileData("https://h/x.bin")
        assert file_data.error is None
        assert not file_data.has_error

    def test_fail_records_stage_and_error(self) -> None:
        """fail() records the stage and the exception and sets has_error."""
        file_data = FileData("https://h/x.bin")
        error = ValueError("bad")
        file_data.fail("process", error)
        assert file_data.has_error
        assert file_data.error == StageError("process", error)

    def test_first_error_wins(self) -> None:
        """A second fail() keeps the first stage and error."""
        file_data = FileData("https://h/x.bin")
        first = ValueError("first")
        file_data.fail("download", first)
        file_data.fail("post_process", RuntimeError("second"))
        assert file_data.error is not None
        assert file_data.error.stage == "download"
        assert file_data.error.error is first

    def test_unknown_stage_rejected(self) -> None:
        """fail() with a stage outside download/process/post_process raises ValueError."""
        file_data = FileData("https://h/x.bin")
        with pytest.raises(ValueError, match="unknown stage"):
            file_data.fail("upload", ValueError("x"))
        assert not file_data.has_error

    def test_message_is_first_line(self) -> None:
        """StageError.message is one line: the type and the first line of the message."""
        error = StageError("process", RuntimeError("\n  line one\nline two\n"))
        assert error.message == "RuntimeError: line one"
        assert "\n" not in error.message

    def test_message_without_text(self) -> None:
        """An exception without a message gives just its type name."""
        assert StageError("process", KeyboardInterrupt()).message == "KeyboardInterrupt"

    def test_str_names_stage(self) -> None:
        """str(StageError) starts with the stage."""
        assert str(StageError("download", OSError("gone"))) == "download: OSError: gone"


class TestPublicImports:
    """The seed's import paths and the root exports keep working."""

    def test_seed_import_paths(self) -> None:
        """The seed's module paths still provide FileData and the base classes."""
        from download_pipeline_processor.base_post_processor import BasePostProcessor
        from download_pipeline_processor.base_processor import BaseProcessor
        from download_pipeline_processor.file_data import FileData as SeedFileData

        assert SeedFileData is FileData
        assert callable(BaseProcessor.process)
        assert callable(BasePostProcessor.post_process)

    def test_root_exports(self) -> None:
        """The package root exports the public API, the same objects as the modules."""
        import download_pipeline_processor as root
        from download_pipeline_processor.base_post_processor import BasePostProcessor
        from download_pipeline_processor.base_processor import BaseProcessor
        from download_pipeline_processor.hookspecs import hookimpl
        from download_pipeline_processor.pipeline import ProcessingPipeline

        assert root.FileData is FileData
        assert root.BaseProcessor is BaseProcessor
        assert root.BasePostProcessor is BasePostProcessor
        assert root.hookimpl is hookimpl
        assert root.ProcessingPipeline is ProcessingPipeline
        exported = ("FileData", "BaseProcessor", "BasePostProcessor", "hookimpl")
        assert set(exported) | {"ProcessingPipeline"} <= set(root.__all__)
