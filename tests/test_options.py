"""Tests for options.py: KEY=VALUE parsing and checking plugin options against declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from download_pipeline_processor.base_processor import BaseProcessor
from download_pipeline_processor.errors import PluginOptionError
from download_pipeline_processor.options import (
    Option,
    declared_options,
    parse_key_values,
    parse_size,
    resolve_options,
)


class DeclaringProcessor(BaseProcessor):
    """A processor that declares one option of each supported kind."""

    options = (
        Option("dest", type=Path, required=True, help="folder to keep files in"),
        Option("workers", type=int, default=2),
        Option("overwrite", type=bool, default=False),
        Option("label", default="x"),
    )


class NothingDeclaredProcessor(BaseProcessor):
    """A processor that declares no options at all (options is None)."""


class NoOptionsProcessor(BaseProcessor):
    """A processor that declares it accepts no options."""

    options = ()


class TestParseKeyValues:
    """Splitting repeated --processor-option KEY=VALUE arguments."""

    def test_pairs(self) -> None:
        """Each KEY=VALUE becomes one entry."""
        assert parse_key_values(["a=1", "b=two"], "--processor-option") == {"a": "1", "b": "two"}

    def test_value_may_contain_equals(self) -> None:
        """Only the first '=' separates key from value."""
        parsed = parse_key_values(["query=a=b=c"], "--processor-option")
        assert parsed == {"query": "a=b=c"}

    def test_empty_value_allowed(self) -> None:
        """KEY= gives an empty string value."""
        assert parse_key_values(["label="], "--processor-option") == {"label": ""}

    def test_dashes_become_underscores(self) -> None:
        """Dashes in a key become underscores so it matches a Python keyword argument."""
        parsed = parse_key_values(["chunk-size=10"], "--processor-option")
        assert parsed == {"chunk_size": "10"}

    def test_dashes_in_value_kept(self) -> None:
        """Dashes in the value are left alone."""
        assert parse_key_values(["name=a-b"], "--processor-option") == {"name": "a-b"}

    def test_later_pair_wins(self) -> None:
        """A repeated key takes the last value."""
        assert parse_key_values(["a=1", "a=2"], "--processor-option") == {"a": "2"}

    @pytest.mark.parametrize("pair", ["novalue", "=value", " =value", ""])
    def test_malformed(self, pair: str) -> None:
        """A pair without '=' or without a key is a PluginOptionError naming the flag."""
        with pytest.raises(PluginOptionError, match="--post-processor-option") as info:
            parse_key_values([pair], "--post-processor-option")
        assert "KEY=VALUE" in str(info.value)


class TestResolveOptions:
    """Checking and converting raw values against a class's declared options."""

    def test_converts_declared_types(self) -> None:
        """Strings are converted to Path, int and bool as declared."""
        resolved = resolve_options(
            DeclaringProcessor,
            {"dest": "out/dir", "workers": "5", "overwrite": "yes", "label": "z"},
            "processor 'declaring'",
        )
        assert resolved == {"dest": Path("out/dir"), "workers": 5, "overwrite": True, "label": "z"}
        assert isinstance(resolved["dest"], Path)

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [("true", True), ("On", True), ("1", True), ("no", False), ("OFF", False), ("0", False)],
    )
    def test_bool_spellings(self, raw: str, expected: bool) -> None:
        """The usual spellings of true and false are accepted, case-insensitively."""
        resolved = resolve_options(DeclaringProcessor, {"dest": "d", "overwrite": raw}, "p")
        assert resolved["overwrite"] is expected

    def test_omitted_optional_left_to_constructor_default(self) -> None:
        """An optional option not given is not passed, so the constructor default applies."""
        assert resolve_options(DeclaringProcessor, {"dest": "d"}, "p") == {"dest": Path("d")}

    def test_unknown_key_lists_accepted(self) -> None:
        """An unknown key is an error that names it and lists the accepted options."""
        with pytest.raises(PluginOptionError) as info:
            resolve_options(DeclaringProcessor, {"dest": "d", "colour": "red"}, "processor 'x'")
        message = str(info.value)
        assert "processor 'x'" in message
        assert "'colour'" in message
        assert "dest, label, overwrite, workers" in message

    def test_no_options_accepted(self) -> None:
        """A class declaring an empty tuple rejects every key and says none are accepted."""
        with pytest.raises(PluginOptionError, match="accepted options: none"):
            resolve_options(NoOptionsProcessor, {"a": "1"}, "processor 'n'")

    def test_missing_required(self) -> None:
        """A required option not given is an error naming it and its help."""
        with pytest.raises(PluginOptionError) as info:
            resolve_options(DeclaringProcessor, {"workers": "1"}, "processor 'x'")
        assert "missing required option 'dest'" in str(info.value)
        assert "folder to keep files in" in str(info.value)

    def test_bad_int(self) -> None:
        """A value that is not an int is an error naming the option and the value."""
        with pytest.raises(PluginOptionError, match=r"workers='many'"):
            resolve_options(DeclaringProcessor, {"dest": "d", "workers": "many"}, "p")

    def test_bad_bool(self) -> None:
        """A value that is not a boolean spelling is an error listing the spellings."""
        with pytest.raises(PluginOptionError, match="true/false"):
            resolve_options(DeclaringProcessor, {"dest": "d", "overwrite": "maybe"}, "p")

    def test_non_string_values_pass_through(self) -> None:
        """Values given programmatically (not strings) are passed as they are."""
        resolved = resolve_options(DeclaringProcessor, {"dest": Path("d"), "workers": 3}, "p")
        assert resolved == {"dest": Path("d"), "workers": 3}

    def test_undeclared_class_gets_raw_strings(self) -> None:
        """A class that declares nothing receives the raw strings unchecked."""
        raw = {"anything": "1", "else": "x=y"}
        resolved = resolve_options(NothingDeclaredProcessor, raw, "p")
        assert resolved == raw
        assert resolved is not raw


class TestOptionDescription:
    """What listings show about an option."""

    def test_declared_options(self) -> None:
        """declared_options is None for an undeclared class and a tuple otherwise."""
        assert declared_options(NothingDeclaredProcessor) is None
        assert declared_options(NoOptionsProcessor) == ()
        assert [o.name for o in declared_options(DeclaringProcessor) or ()] == [
            "dest",
            "workers",
            "overwrite",
            "label",
        ]

    def test_describe(self) -> None:
        """describe() gives a JSON-ready dict with the type name and default as text."""
        option = Option("workers", type=int, default=2, help="how many")
        assert option.describe() == {
            "name": "workers",
            "type": "int",
            "required": False,
            "default": "2",
            "help": "how many",
            "output": False,
            "secret": False,
        }
        assert Option("x").describe()["default"] is None


class TestParseSize:
    """parse_size reads the SIZE of every size option."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("0", 0),
            ("512", 512),
            ("250K", 250 * 1024),
            ("250k", 250 * 1024),
            ("1.5M", 1536 * 1024),
            ("2G", 2 * 1024**3),
            ("1T", 1024**4),
            (" 10K ", 10 * 1024),
        ],
    )
    def test_good_values(self, text: str, expected: int) -> None:
        """A number with an optional K, M, G or T suffix gives bytes in powers of 1024."""
        assert parse_size(text) == expected

    @pytest.mark.parametrize("text", ["", "K", "-1", "12X", "1.5", "1e6", "10 KB", "inf", "1,000"])
    def test_bad_values(self, text: str) -> None:
        """Anything else is a ValueError that quotes the value."""
        with pytest.raises(ValueError, match="bytes") as info:
            parse_size(text)
        assert repr(text) in str(info.value)
