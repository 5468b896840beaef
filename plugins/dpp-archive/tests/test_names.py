"""Member names: what becomes a relative path and what is refused."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dpp_archive import DestinationExistsError, UnsafeLinkError, UnsafeMemberError
from dpp_archive.names import is_absolute, member_parts


class TestMemberParts:
    """Untrusted names become relative components or are refused."""

    @pytest.mark.parametrize(
        ("name", "parts"),
        [
            ("a.txt", ("a.txt",)),
            ("dir/sub/a.txt", ("dir", "sub", "a.txt")),
            ("./dir//a.txt", ("dir", "a.txt")),
            ("dir/", ("dir",)),
            ("./", ()),
            ("dir\\win.txt", ("dir", "win.txt")),
            ("caf\u00e9/\u6587\u4ef6.txt", ("caf\u00e9", "\u6587\u4ef6.txt")),
            ("..data", ("..data",)),
            ("a..b/c", ("a..b", "c")),
        ],
    )
    def test_safe_names(self, name: str, parts: tuple[str, ...]) -> None:
        """Ordinary names, ``./`` prefixes, doubled slashes and backslashes split cleanly."""
        assert member_parts(name) == parts

    @pytest.mark.parametrize(
        "name",
        [
            "../evil.txt",
            "../../evil.txt",
            "dir/../../evil.txt",
            "dir/../inside.txt",
            "..",
            "..\\evil.txt",
            "dir\\..\\..\\evil.txt",
            "/abs.txt",
            "/etc/passwd",
            "\\abs.txt",
            "//server/share/x",
            "\\\\server\\share\\x",
            "C:/Windows/evil.dll",
            "C:\\Windows\\evil.dll",
            "c:evil.txt",
            "nul\x00byte",
        ],
    )
    def test_unsafe_names(self, name: str) -> None:
        """Parent references, absolute, drive, UNC and NUL names are refused, never stripped."""
        with pytest.raises(UnsafeMemberError) as caught:
            member_parts(name)
        assert repr(name) in str(caught.value)
        assert "\n" not in str(caught.value)

    @pytest.mark.parametrize(
        ("text", "absolute"),
        [("/x", True), ("\\x", True), ("D:x", True), ("x/y", False), ("../x", False)],
    )
    def test_is_absolute(self, text: str, absolute: bool) -> None:
        """Link targets are judged absolute the same way on every platform."""
        assert is_absolute(text) is absolute


class TestErrors:
    """The exceptions are one line and survive copying between processes."""

    def test_newline_in_name_stays_one_line(self) -> None:
        """A member name holding a newline is shown escaped."""
        message = str(UnsafeMemberError("a\nb", "reason"))
        assert message == "refusing member 'a\\nb': reason"

    @pytest.mark.parametrize(
        "error",
        [
            UnsafeMemberError("../x", "escapes"),
            UnsafeLinkError("l", "points outside"),
            DestinationExistsError(Path("/d/pkg")),
        ],
    )
    def test_pickle_round_trip(self, error: Exception) -> None:
        """Errors with structured fields pickle and keep their message."""
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
        assert type(copy) is type(error)
        assert str(copy) == str(error)
