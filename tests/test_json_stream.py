"""json_stream.py: entries read one at a time, same values and errors as json.load."""

from __future__ import annotations

import json
import random
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from download_pipeline_processor import _json_stream as json_stream
from download_pipeline_processor._json_stream import iter_json_array
from download_pipeline_processor.errors import InputError


@pytest.fixture(params=[1, 3, 7, 64, 1 << 20], ids=lambda size: f"chunk{size}")
def chunk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Tiny chunks cut every token at every position; the real size reads at once."""
    monkeypatch.setattr(json_stream, "CHUNK", request.param)
    return int(request.param)


def _sample(seed: int) -> list[Any]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    values: list[Any] = [
        12345,
        -7.25e-3,
        0,
        True,
        False,
        None,
        "",
        'é😀\n"\\',
        "a" * 50,
        [1, [2, {"x": []}]],
    ]
    return [
        {f"k{j}": rng.choice(values) for j in range(rng.randint(0, 4))} | {"url": f"http://h/{i}"}
        for i in range(40)
    ]


class TestValues:
    """Every element comes back exactly as json.load reads it, wherever chunks cut."""

    @pytest.mark.parametrize("indent", [None, 2])
    def test_same_as_json_load(self, tmp_path: Path, chunk: int, indent: int | None) -> None:
        """A varied list round-trips element by element, compact or indented."""
        data = _sample(chunk)
        path = tmp_path / "l.json"
        path.write_text(json.dumps(data, indent=indent, ensure_ascii=False), encoding="utf-8")
        assert list(iter_json_array(path)) == data

    def test_numbers_cut_by_chunks(self, tmp_path: Path, chunk: int) -> None:
        """A number split across two reads is not returned short."""
        path = tmp_path / "n.json"
        path.write_text("[123456789, 98765.4321e2 ,\n 7]")
        assert list(iter_json_array(path)) == [123456789, 98765.4321e2, 7]

    def test_empty_list_and_bom(self, tmp_path: Path, chunk: int) -> None:
        """An empty list yields nothing; a UTF-8 byte-order mark is skipped."""
        empty = tmp_path / "e.json"
        empty.write_text("  [ \n ] \n")
        assert list(iter_json_array(empty)) == []
        bom = tmp_path / "b.json"
        bom.write_bytes(b'\xef\xbb\xbf[{"url": "http://h/x"}]')
        assert list(iter_json_array(bom)) == [{"url": "http://h/x"}]


class TestErrors:
    """Malformed files fail with json.load's line and column, naming the file."""

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "[",
            '[{"url": "x"},]',
            "[1 2]",
            '[{"a": }]',
            "[]x",
            '[\n  {"url": "a"},\n  {"url": "b"\n]',
            '[{"url": "a"}]\n\n  ]',
            "[tru]",
            '["unterminated]',
        ],
    )
    def test_position_matches_json_load(self, tmp_path: Path, chunk: int, text: str) -> None:
        """The reported line and column are those json.loads reports."""
        path = tmp_path / "bad.json"
        path.write_text(text)
        with pytest.raises(json.JSONDecodeError) as expected:
            json.loads(text)
        with pytest.raises(InputError) as got:
            list(iter_json_array(path))
        position = f"line {expected.value.lineno}, column {expected.value.colno}"
        assert str(got.value).startswith(f"{path}: malformed JSON at {position}: ")

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('{"url": "x"}', "a JSON object, not a list of entries"),
            ('"x"', "expected a JSON list of objects, got a string"),
            ("3", "expected a JSON list of objects, got a number"),
        ],
    )
    def test_not_a_list(self, tmp_path: Path, text: str, expected: str) -> None:
        """A document that is not a list names what it is instead."""
        path = tmp_path / "doc.json"
        path.write_text(text)
        with pytest.raises(InputError, match=expected):
            list(iter_json_array(path))

    def test_not_utf8(self, tmp_path: Path, chunk: int) -> None:
        """Bytes that are not UTF-8 are a one-line error."""
        path = tmp_path / "latin.json"
        path.write_bytes(b'[{"name": "caf\xe9"}]')
        with pytest.raises(InputError, match="not UTF-8 text"):
            list(iter_json_array(path))


class TestHostileValues:
    """What json.load accepts but a report cannot hold is an input error naming the entry."""

    def test_deep_nesting(self, tmp_path: Path, chunk: int) -> None:
        """A 100,000-deep list is refused naming its entry, not a RecursionError."""
        path = tmp_path / "deep.json"
        path.write_text('[{"url": "http://h/a"}, ' + "[" * 100_000 + "]" * 100_000 + "]")
        with pytest.raises(InputError) as got:
            list(iter_json_array(path))
        assert str(got.value) == f"{path}: entry 1: lists or objects nested too deeply"

    def test_long_integer(self, tmp_path: Path, chunk: int) -> None:
        """A 5,000-digit integer is refused naming its entry, not a ValueError."""
        path = tmp_path / "long.json"
        path.write_text('[{"url": "http://h/a", "size": ' + "9" * 5000 + "}]")
        with pytest.raises(InputError, match=r"^\S+: entry 0: an integer has too many digits"):
            list(iter_json_array(path))

    @pytest.mark.parametrize(
        ("value", "shown"),
        [
            ("NaN", "NaN"),
            ("Infinity", "Infinity"),
            ("-Infinity", "-Infinity"),
            ("1e999", "1e999"),
            ('{"scores": [1.5, -1E400]}', "-1E400"),
            ("9" * 400 + ".5", "9" * 17 + "..."),
        ],
    )
    def test_non_finite_numbers(self, tmp_path: Path, chunk: int, value: str, shown: str) -> None:
        """NaN, Infinity and floats beyond range are refused naming the entry and the field."""
        path = tmp_path / "nan.json"
        path.write_text('[{"url": "http://h/a"},\n {"url": "http://h/b", "meta": ' + value + "}]")
        with pytest.raises(InputError) as got:
            list(iter_json_array(path))
        assert str(got.value) == (
            f"{path}: entry 1: field 'meta' holds {shown}: only finite numbers are accepted"
            " (JSON has no NaN or Infinity)"
        )

    def test_big_floats_that_fit(self, tmp_path: Path, chunk: int) -> None:
        """A float whose cut-off start would overflow but which fits whole is read as it is."""
        text = "9" * 309 + ".0e-10"
        path = tmp_path / "fits.json"
        path.write_text(f"[{text}, 1e308]")
        assert list(iter_json_array(path)) == [float(text), 1e308]

    @pytest.mark.parametrize(
        ("text", "kind"),
        [('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "an object"), ("9" * 5000, "a number")],
        ids=["deep-object", "long-integer"],
    )
    def test_hostile_document_not_a_list(self, tmp_path: Path, text: str, kind: str) -> None:
        """A deep object or a huge number instead of a list is named, not an internal error."""
        path = tmp_path / "doc.json"
        path.write_text(text)
        with pytest.raises(InputError, match=f"expected a JSON list of objects, got {kind}$"):
            list(iter_json_array(path))


class TestMemory:
    """Reading a long list holds one element at a time, not the list."""

    def test_peak_memory_independent_of_length(self, tmp_path: Path) -> None:
        """Streaming 60,000 entries peaks far below what json.load of the same file takes."""
        path = tmp_path / "long.json"
        entries = [
            {"id": f"e{i}", "url": f"https://example.org/data/{i}.bin?x={i}"} for i in range(60_000)
        ]
        path.write_text(json.dumps(entries))
        del entries
        tracemalloc.start()
        try:
            count = sum(1 for _ in iter_json_array(path))
            _, streamed_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            loaded = json.loads(path.read_text())
            _, loaded_peak = tracemalloc.get_traced_memory()
            del loaded
        finally:
            tracemalloc.stop()
        assert count == 60_000
        assert streamed_peak < loaded_peak / 4
