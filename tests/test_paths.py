"""Tests for paths.py: untrusted names become one harmless path component."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from download_pipeline_processor.paths import (
    MAX_COMPONENT_BYTES,
    output_path_problem,
    safe_filename,
)


class TestSafeFilename:
    """safe_filename never yields a separator, a dot name or an over-long component."""

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("../../evil", "_.._evil"),
            ("/etc/x", "_etc_x"),
            ("a/b", "a_b"),
            ("a\\b", "a_b"),
            ("a\x00b", "a_b"),
            ("line\nbreak", "line_break"),
            ('a:b*c?d"e<f>g|h', "a_b_c_d_e_f_g_h"),
            ("talk.mp3", "talk.mp3"),
            ("  spaced  ", "spaced"),
            (".hidden", "hidden"),
            ("trailing.", "trailing"),
            ("CON", "_CON"),
            ("nul.txt", "_nul.txt"),
        ],
    )
    def test_cleaned(self, name: str, expected: str) -> None:
        """Unsafe characters become '_', leading dots go, reserved device names are prefixed."""
        assert safe_filename(name) == expected

    @pytest.mark.parametrize("name", ["..", ".", "", "   ", "...", ". ."])
    def test_empty_or_dots_use_fallback(self, name: str) -> None:
        """Names that would be empty, '.' or '..' become the fallback."""
        assert safe_filename(name) == "file"
        assert safe_filename(name, fallback="other") == "other"

    @pytest.mark.parametrize(
        "name", ["../../evil", "/etc/x", "a/b", "..", ".", "", "x\x00y", "\\\\server\\share"]
    )
    def test_stays_inside_folder(self, tmp_path: Path, name: str) -> None:
        """Joined to a folder, the result is a direct child of that folder."""
        joined = (tmp_path / safe_filename(name)).resolve()
        assert joined.parent == tmp_path.resolve()

    def test_long_name_keeps_extension(self) -> None:
        """A 300-character name is cut to at most 200 bytes and keeps its extension."""
        result = safe_filename("a" * 300 + ".mp3")
        assert len(result.encode("utf-8")) <= MAX_COMPONENT_BYTES == 200
        assert result.endswith(".mp3")
        assert result.startswith("a" * 100)

    def test_long_name_without_extension(self) -> None:
        """A long name without an extension is simply cut to the limit."""
        assert safe_filename("b" * 300) == "b" * 200

    def test_long_unicode_cut_on_character_boundary(self) -> None:
        """Multi-byte characters are never split when cutting."""
        result = safe_filename("é" * 300 + ".txt")
        assert len(result.encode("utf-8")) <= 200
        assert result.endswith(".txt")
        assert set(result[:-4]) == {"é"}

    def test_custom_limit(self) -> None:
        """max_bytes sets the limit."""
        assert len(safe_filename("x" * 50, max_bytes=10)) == 10

    @pytest.mark.parametrize(
        "invisible",
        [
            "\u061c",  # Arabic letter mark
            "\u200e",  # left-to-right mark
            "\u200f",  # right-to-left mark
            *(chr(code) for code in range(0x202A, 0x202F)),  # embeddings and overrides
            *(chr(code) for code in range(0x2066, 0x206A)),  # isolates
            "\u200b",  # zero-width space
            "\u200d",  # zero-width joiner
            "\u2060",  # word joiner
            "\ufeff",  # byte-order mark
            "\u00ad",  # soft hyphen
            "\U000e0041",  # tag letter A
        ],
        ids=lambda char: f"U+{ord(char):04X}",
    )
    def test_format_characters_dropped(self, invisible: str) -> None:
        """Bidi controls and other invisible format characters (category Cf) are removed."""
        assert safe_filename(f"evil{invisible}gpj.exe") == "evilgpj.exe"
        assert safe_filename(invisible * 3) == "file"

    def test_no_format_character_survives(self) -> None:
        """No character of Unicode category Cf is left in any result."""
        every_format_character = "".join(
            chr(code) for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf"
        )
        result = safe_filename("a" + every_format_character + "b", max_bytes=10_000)
        assert result == "ab"

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("next\u0085line", "next_line"),  # C1 control NEL
            ("csi\u009bx", "csi_x"),  # C1 control CSI
            ("line\u2028sep", "line_sep"),
            ("para\u2029sep", "para_sep"),
            ("lone\ud800surrogate", "lone_surrogate"),
        ],
    )
    def test_unicode_breaks_and_surrogates_replaced(self, name: str, expected: str) -> None:
        """C1 controls, line and paragraph separators and lone surrogates become '_'."""
        result = safe_filename(name)
        assert result == expected
        result.encode("utf-8")  # a name every file system call can take

    def test_unicode_kept_and_normalised(self) -> None:
        """Non-ASCII letters are kept, in NFC form."""
        decomposed = unicodedata.normalize("NFD", "café-日本.mp3")
        assert safe_filename(decomposed) == "café-日本.mp3"
        assert safe_filename("Ωmega 🎵") == "Ωmega 🎵"


class TestOutputPathProblem:
    """Whether a run could write a file, found out without writing anything."""

    def test_new_file_in_a_folder(self, tmp_path: Path) -> None:
        """A new file in a writable folder is fine, and the check leaves the folder empty."""
        assert output_path_problem(tmp_path / "out.jsonl") is None
        assert list(tmp_path.iterdir()) == []

    def test_existing_file_kept(self, tmp_path: Path) -> None:
        """An existing file is fine and keeps its content (opened to append, not truncated)."""
        target = tmp_path / "out.jsonl"
        target.write_text("earlier\n", encoding="utf-8")
        assert output_path_problem(target) is None
        assert target.read_text(encoding="utf-8") == "earlier\n"

    def test_missing_folder(self, tmp_path: Path) -> None:
        """A folder that does not exist is named."""
        problem = output_path_problem(tmp_path / "missing" / "out.jsonl")
        assert problem == f"no such folder {tmp_path / 'missing'}"

    def test_a_folder(self, tmp_path: Path) -> None:
        """A path that is a folder is not a file to write."""
        assert output_path_problem(tmp_path) == f"{tmp_path} is a folder"

    @pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs sysfs")
    def test_folder_that_takes_no_file(self) -> None:
        """sysfs takes no new file, even from root (whom os.access would let pass)."""
        problem = output_path_problem(Path("/sys/kernel/dpp-out.jsonl"))
        assert problem is not None
        assert problem.startswith("folder /sys/kernel cannot be written: ")
