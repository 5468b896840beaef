"""Tests for inputs.py: reading and validating the file list before any download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor._inputs import load_file_list
from download_pipeline_processor.errors import InputError
from download_pipeline_processor.file_data import FileData

GOOD = {"url": "https://example.com/a/one.mp3"}


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` and return the path."""
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    """The message of the InputError that loading ``path`` raises."""
    with pytest.raises(InputError) as info:
        load_file_list(path)
    return str(info.value)


class TestReadFileList:
    """File-level problems: the file, its JSON, its top-level type."""

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is an InputError naming the path."""
        path = tmp_path / "nope.json"
        with pytest.raises(InputError, match="no such file") as info:
            load_file_list(path)
        assert str(path) in str(info.value)

    def test_directory(self, tmp_path: Path) -> None:
        """A directory is an InputError saying so."""
        with pytest.raises(InputError, match="is a directory") as info:
            load_file_list(tmp_path)
        assert str(tmp_path) in str(info.value)

    def test_malformed_json_has_line_and_column(self, tmp_path: Path) -> None:
        """Malformed JSON is an InputError with the file, line and column."""
        path = tmp_path / "bad.json"
        path.write_text('[\n  {"url": "https://h/x"},\n  {"url": }\n]\n', encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_file_list(path)
        message = str(info.value)
        assert str(path) in message
        assert "line 3" in message
        assert "column 11" in message

    def test_empty_file(self, tmp_path: Path) -> None:
        """An empty file is malformed JSON, not a crash."""
        path = tmp_path / "empty.json"
        path.write_bytes(b"")
        with pytest.raises(InputError, match="malformed JSON at line 1"):
            load_file_list(path)

    def test_not_utf8(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 give an InputError, not a traceback."""
        path = tmp_path / "latin1.json"
        path.write_bytes(b'[{"url": "https://h/caf\xe9"}]')
        with pytest.raises(InputError, match="not UTF-8") as info:
            load_file_list(path)
        assert str(path) in str(info.value)

    @pytest.mark.parametrize(
        ("data", "kind"),
        [({"url": "https://h/x"}, "an object"), ("x", "a string"), (3, "a number")],
    )
    def test_not_a_list(self, tmp_path: Path, data: Any, kind: str) -> None:
        """A top level that is not a list is an InputError saying what it is."""
        path = write_json(tmp_path / "files.json", data)
        with pytest.raises(InputError, match="expected a JSON list") as info:
            load_file_list(path)
        assert kind in str(info.value)
        assert str(path) in str(info.value)

    def test_utf8_bom_loads(self, tmp_path: Path) -> None:
        """A UTF-8 file that starts with a byte order mark loads."""
        path = tmp_path / "bom.json"
        path.write_bytes(b"\xef\xbb\xbf" + json.dumps([GOOD]).encode())
        assert [f.url for f in load_file_list(path)] == [GOOD["url"]]

    def test_accepts_str_path(self, tmp_path: Path) -> None:
        """A path given as a str works like a Path."""
        path = write_json(tmp_path / "files.json", [GOOD])
        assert len(list(load_file_list(str(path)))) == 1


class TestEntryValidation:
    """Entry-level problems: each message names the file, the 0-based index and the field."""

    @pytest.mark.parametrize(
        ("entry", "field", "fragment"),
        [
            (["https://h/x"], None, "expected an object, got a list"),
            (3, None, "expected an object, got a number"),
            (None, None, "expected an object, got null"),
            ({"id": "1"}, "'url'", "missing required field"),
            ({"url": 5}, "'url'", "must be a string, got a number"),
            ({"url": None}, "'url'", "must be a string, got null"),
            ({"url": "ftp://h/x"}, "'url'", "unsupported scheme 'ftp'"),
            ({"url": "file:///etc/passwd"}, "'url'", "unsupported scheme 'file'"),
            ({"url": "example.com/x"}, "'url'", "no scheme ('example.com/x'); give http://"),
            ({"url": "localhost:80/x?k=s"}, "'url'", "no scheme ('localhost:80/x'); give"),
            ({"url": ""}, "'url'", "is empty"),
            ({"url": "http:///x"}, "'url'", "no host"),
            ({"url": "https://[::1/x"}, "'url'", "not a valid URL"),
            ({"url": "https://h/x", "id": ["a"]}, "'id'", "got a list"),
            ({"url": "https://h/x", "id": True}, "'id'", "got a boolean"),
            ({"url": "https://h/x", "name": {"a": 1}}, "'name'", "got an object"),
            ({"url": "https://h/x", "name": False}, "'name'", "got a boolean"),
        ],
    )
    def test_bad_entry(self, tmp_path: Path, entry: Any, field: str | None, fragment: str) -> None:
        """A bad entry at index 2 is reported with the file, 'entry 2', the field and why."""
        path = write_json(tmp_path / "files.json", [GOOD, GOOD, entry, GOOD])
        message = load_error(path)
        assert message.startswith(f"{path}: entry 2: ")
        assert fragment in message
        if field is not None:
            assert f"field {field}" in message
        assert "\n" not in message

    @pytest.mark.parametrize(
        ("url", "fragment"),
        [
            ("https://h/a\nb", "contains a control character (U+000A) at position 11"),
            ("https://h/a\r\nX: 1", "contains a control character (U+000D) at position 11"),
            ("https://h/a\tb", "contains a control character (U+0009) at position 11"),
            ("https://h/a\x00b", "contains a control character (U+0000) at position 11"),
            ("https://h/a\x1fb", "contains a control character (U+001F) at position 11"),
            ("https://h/a\x7fb", "contains a control character (U+007F) at position 11"),
            ("https://h/a b", "contains a space at position 11"),
            ("https://h/a?q=b c", "contains a space at position 15"),
            ("https://bad\u200d.example/x", "has an invalid host name"),
            ("https://a..b/x", "has an invalid host name"),
            (f"https://{'a' * 64}.example/x", "has an invalid host name"),
        ],
        ids=[
            "lf",
            "crlf",
            "tab",
            "nul",
            "c0",
            "del",
            "space",
            "query-space",
            "idna",
            "empty-label",
            "long-label",
        ],
    )
    def test_url_no_downloader_could_fetch(self, tmp_path: Path, url: str, fragment: str) -> None:
        """A URL with a control character, a space or a host with no IDNA form is an input error."""
        path = write_json(tmp_path / "files.json", [GOOD, {"url": url}])
        assert load_error(path) == f"{path}: entry 1: field 'url' {fragment}"

    @pytest.mark.parametrize(
        "url",
        [
            "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:8080/x",
            "https://m\u00fcnchen.example/caf\u00e9.mp3",
            "  https://h/padded  ",
            "https://my_host.example/x",
        ],
        ids=["full-width", "unicode", "padded", "underscore"],
    )
    def test_urls_every_downloader_fetches(self, tmp_path: Path, url: str) -> None:
        """Unicode host names that normalise, and whitespace around a URL, pass the check."""
        path = write_json(tmp_path / "files.json", [{"url": url}])
        (entry,) = list(load_file_list(path))
        assert entry.url == url.strip()

    def test_first_bad_entry_reported(self, tmp_path: Path) -> None:
        """With several bad entries the first one (by index) is reported."""
        path = write_json(tmp_path / "files.json", [GOOD, {"url": "ftp://h"}, {"id": 1}])
        assert ": entry 1: " in load_error(path)

    def test_validation_happens_before_any_entry_is_yielded(self) -> None:
        """A bad last entry fails the call itself, so no entry is handed out on bad input."""
        with pytest.raises(InputError, match="<files>: entry 2"):
            load_file_list([GOOD, GOOD, {"url": "ftp://h/x"}])

    def test_allowed_schemes_configurable(self) -> None:
        """Passing allowed_schemes widens what is accepted and the error lists them."""
        assert [f.url for f in load_file_list([{"url": "ftp://h/x"}], ("ftp",))] == ["ftp://h/x"]
        with pytest.raises(InputError, match=r"allowed: ftp\)"):
            load_file_list([GOOD], ("ftp",))


class TestValidInput:
    """What a valid list turns into."""

    def test_entries_become_file_data_with_extras(self, tmp_path: Path) -> None:
        """Valid entries keep their order, ids, names and extra keys."""
        path = write_json(
            tmp_path / "files.json",
            [
                {"url": "https://h/a/talk.mp3?x=1"},
                {"url": "HTTP://h/b.bin", "id": 7, "name": "Bee", "language": "en", "n": [1]},
            ],
        )
        first, second = load_file_list(path)
        assert (first.id, first.name, first.additional_fields) == ("talk", "talk", {})
        assert (second.id, second.name) == ("7", "Bee")
        assert second.additional_fields == {"language": "en", "n": [1]}
        assert second.language == "en"

    def test_url_whitespace_stripped(self) -> None:
        """Whitespace around a URL is dropped, so the URL checked is the URL downloaded."""
        (file_data,) = load_file_list([{"url": " https://h/a/talk.mp3 \n"}])
        assert file_data.url == "https://h/a/talk.mp3"
        assert file_data.id == "talk"

    def test_empty_list(self, tmp_path: Path) -> None:
        """An empty list is valid and yields nothing."""
        assert list(load_file_list(write_json(tmp_path / "files.json", []))) == []

    def test_file_data_entries_pass_through(self) -> None:
        """FileData entries are validated and returned as the same objects."""
        file_data = FileData("https://h/x.bin", id="a", additional_fields={"k": 1})
        assert list(load_file_list([file_data])) == [file_data]
        assert next(load_file_list([file_data])) is file_data

    def test_file_data_entry_with_bad_url_rejected(self) -> None:
        """A FileData with an unsupported scheme is rejected like a dict entry."""
        with pytest.raises(InputError, match="entry 0: field 'url' has unsupported scheme"):
            load_file_list([FileData("file:///etc/passwd")])
