"""Tests for inputs.py: reading and validating the file list before any download."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from download_pipeline_processor._inputs import MAX_NAMED, load_file_list
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import InputError, InvalidEntriesError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.pipeline import ProcessingPipeline
from download_pipeline_processor.testing import FileServer, make_plugin_manager

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
        [({"url": "https://h/x"}, "a JSON object, not a list"), ("x", "a string"), (3, "a number")],
    )
    def test_not_a_list(self, tmp_path: Path, data: Any, kind: str) -> None:
        """A top level that is not a list is an InputError saying what it is."""
        path = write_json(tmp_path / "files.json", data)
        with pytest.raises(InputError, match=r"expected a JSON list|not a list") as info:
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

    def test_every_bad_entry_reported(self, tmp_path: Path) -> None:
        """With several bad entries each is named by index, after a line with the count."""
        path = write_json(tmp_path / "files.json", [GOOD, {"url": "ftp://h"}, GOOD, {"id": 1}])
        assert load_error(path).splitlines() == [
            f"{path}: 2 invalid entries (--skip-invalid runs the valid ones):",
            f"  {path}: entry 1: field 'url' has unsupported scheme 'ftp' (allowed: http, https)",
            f"  {path}: entry 3: missing required field 'url'",
        ]

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


class TestEveryBadEntryNamed:
    """Checking counts every bad entry and names the first 20, in any format."""

    @pytest.mark.parametrize(
        ("name", "write", "where"),
        [
            (
                "files.json",
                lambda urls: json.dumps([{"url": url} for url in urls]),
                lambda n: f"entry {n}",
            ),
            (
                "files.jsonl",
                lambda urls: "".join(json.dumps({"url": url}) + "\n" for url in urls),
                lambda n: f"line {n + 1}",
            ),
            ("files.csv", lambda urls: "url\n" + "\n".join(urls), lambda n: f"line {n + 2}"),
            ("files.txt", "\n".join, lambda n: f"line {n + 1}"),
        ],
        ids=["json", "jsonl", "csv", "urls"],
    )
    def test_first_twenty_then_a_count(
        self, tmp_path: Path, name: str, write: Any, where: Any
    ) -> None:
        """25 bad entries among good ones: the count, the first 20 by position, then '5 more'."""
        bad = list(range(3, 53, 2))  # 25 positions
        urls = [f"ftp://h/{n}" if n in bad else f"https://h/{n}" for n in range(60)]
        path = tmp_path / name
        path.write_text(write(urls), encoding="utf-8")
        with pytest.raises(InvalidEntriesError) as info:
            load_file_list(path)
        assert info.value.count == 25
        lines = str(info.value).splitlines()
        assert lines[0] == f"{path}: 25 invalid entries (--skip-invalid runs the valid ones):"
        assert lines[1:-1] == [
            f"  {path}: {where(n)}: field 'url' has unsupported scheme 'ftp' (allowed: http, https)"
            for n in bad[:MAX_NAMED]
        ]
        assert lines[-1] == "  ... and 5 more"


class TestSkipInvalid:
    """``skip_invalid`` runs the valid entries and counts the invalid ones."""

    def test_valid_entries_yielded_invalid_counted(self, tmp_path: Path) -> None:
        """Invalid entries are left out and counted as they are passed over, reasons kept."""
        path = tmp_path / "files.jsonl"
        path.write_text(
            '{"url": "https://h/a"}\n{"url": ftp}\n{"id": 1}\n{"url": "https://h/b"}\n',
            encoding="utf-8",
        )
        entries = load_file_list(path, skip_invalid=True)
        assert entries.count == 4
        assert [f.url for f in entries] == ["https://h/a", "https://h/b"]
        assert entries.invalid.count == 2
        assert entries.invalid.reasons == [
            f"{path}: line 2: malformed JSON at column 9: Expecting value",
            f"{path}: line 3: missing required field 'url'",
        ]
        assert entries.remaining == 0

    def test_input_index_counts_invalid_entries(self, tmp_path: Path) -> None:
        """A valid entry's input index is its position in the input, invalid entries counted."""
        path = tmp_path / "files.txt"
        path.write_text("# list\nhttps://h/a\nbad\nftp://h/x\nhttps://h/b\n", encoding="utf-8")
        assert [f.input_index for f in load_file_list(path, skip_invalid=True)] == [0, 3]

    def test_remaining_counts_invalid_entries_not_read(self, tmp_path: Path) -> None:
        """Entries not read yet, invalid ones included, are what a stop reports as not started."""
        path = tmp_path / "files.txt"
        path.write_text("https://h/a\nbad\nhttps://h/b\nbad\nhttps://h/c\n", encoding="utf-8")
        entries = load_file_list(path, skip_invalid=True)
        assert next(entries).url == "https://h/a"
        assert entries.remaining == 4
        assert next(entries).url == "https://h/b"
        assert (entries.remaining, entries.invalid.count) == (2, 1)


def _cli(args: list[str]) -> Any:
    """The CLI in process, with the built-in plugins only."""
    return CliRunner().invoke(
        main, args, obj={"plugin_manager": make_plugin_manager()}, catch_exceptions=False
    )


def _report_args(files: str, report: Path, cache: Path) -> list[str]:
    return [
        "--files",
        files,
        "--processor",
        "checksum",
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={report}",
        "--download-cache",
        str(cache),
    ]


def _report_ids(report: Path) -> list[str]:
    return sorted(json.loads(line)["id"] for line in report.read_text().splitlines())


class TestSkipInvalidRun:
    """``--skip-invalid`` on the command line and in the library."""

    def test_cli_runs_valid_and_counts_invalid_as_failed(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """The valid entries run; the invalid ones are named, and failed in the summary."""
        urls = [file_server.add(f"/{name}.bin", b"x") for name in "abc"]
        listing = tmp_path / "files.csv"
        listing.write_text(
            f"url,size\n{urls[0]},1\nexample.org/x,\n{urls[1]},12x\n{urls[2]},\n", encoding="utf-8"
        )
        report = tmp_path / "r.jsonl"
        result = _cli([*_report_args(str(listing), report, tmp_path / "c"), "--skip-invalid"])
        assert result.exit_code == 1, result.stderr
        assert _report_ids(report) == ["a", "c"]
        assert file_server.request_count("/b.bin") == 0
        assert f"{listing}: 2 invalid entries are skipped (--skip-invalid):" in result.stderr
        assert f"{listing}: line 3: field 'url' has no scheme" in result.stderr
        assert "4 files: 2 succeeded, 2 failed" in result.stderr
        assert "2  invalid entry (input)" in result.stderr

    def test_without_it_nothing_runs(self, tmp_path: Path, file_server: FileServer) -> None:
        """The same input without --skip-invalid is exit 2 and no request."""
        listing = tmp_path / "files.txt"
        listing.write_text(f"{file_server.add('/a.bin', b'x')}\nexample.org/x\n")
        result = _cli(_report_args(str(listing), tmp_path / "r.jsonl", tmp_path / "c"))
        assert result.exit_code == 2
        assert f"Error: {listing}: line 2: field 'url' has no scheme" in result.stderr
        assert file_server.request_count() == 0

    def test_summary_carries_count_and_reasons(
        self, tmp_path: Path, file_server: FileServer, cache_root: Path
    ) -> None:
        """The run's summary holds the invalid count, in failed too, and their reasons."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps([file_server.add("/a.bin", b"x"), {"id": 2}]))
        pipeline = ProcessingPipeline(
            plugin_manager=make_plugin_manager(), skip_invalid=True, download_cache=cache_root
        )
        assert pipeline.run(listing) == 1
        summary = pipeline.summary
        assert (summary.total, summary.succeeded, summary.failed) == (2, 1, 1)
        assert summary.invalid == 1
        assert summary.invalid_reasons == [f"{listing}: entry 1: missing required field 'url'"]
        assert summary.failed_by_stage == {"input": 1}


def _spawn_stdin(cli_path: Path, args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""}
    return subprocess.Popen(
        [str(cli_path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


class TestStdin:
    """Standard input is read once: checked as it arrives."""

    def test_bad_line_stops_reading_started_files_reported(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """Files read before a bad line run and are reported; none after it; exit 2 names it."""
        first = [file_server.add(f"/a{n}.bin", b"x") for n in range(2)]
        later = file_server.add("/later.bin", b"x")
        report = tmp_path / "r.jsonl"
        proc = _spawn_stdin(cli_path, _report_args("-", report, tmp_path / "c"))
        assert proc.stdin is not None
        proc.stdin.write("".join(f"{url}\n" for url in first).encode())
        proc.stdin.flush()
        # The stream is still open: the files must start before it ends.
        deadline = time.monotonic() + 30
        while file_server.request_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert file_server.request_count() == 2
        _, stderr = proc.communicate(f"ftp://h/x\n{later}\n".encode(), timeout=60)
        assert proc.returncode == 2, stderr.decode()
        assert (
            "stopped reading the input at an invalid entry (the files already started finish): "
            "<stdin>: line 3: field 'url' has unsupported scheme 'ftp'"
        ) in stderr.decode()
        assert _report_ids(report) == ["a0", "a1"]
        assert file_server.request_count("/later.bin") == 0

    def test_skip_invalid_reads_on(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """With --skip-invalid a bad line on stdin is logged and skipped; the rest runs."""
        urls = [file_server.add(f"/a{n}.bin", b"x") for n in range(2)]
        report = tmp_path / "r.jsonl"
        proc = _spawn_stdin(
            cli_path, [*_report_args("-", report, tmp_path / "c"), "--skip-invalid"]
        )
        _, stderr = proc.communicate(
            f'{{"url": "{urls[0]}"}}\n{{"id": 3}}\n{{"url": "{urls[1]}"}}\n'.encode(), timeout=60
        )
        text = stderr.decode()
        assert proc.returncode == 1, text
        assert "skipping an invalid entry: <stdin>: line 2: missing required field 'url'" in text
        assert "3 files: 2 succeeded, 1 failed" in text
        assert "1  invalid entry (input)  e.g. <stdin>: line 2\n" in text
        assert _report_ids(report) == ["a0", "a1"]


def _wait_for_lines(report: Path, count: int, timeout: float = 30) -> None:
    """Wait until ``report`` holds ``count`` lines (the post-processor flushes them soon)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if report.exists() and len(report.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{report} never held {count} lines")


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    """The exit code of ``proc`` and how long it took, killing it past ``timeout``."""
    started = time.monotonic()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"still running {timeout} s after the signal") from None
    return code, time.monotonic() - started


class TestStdinIdleStop:
    """A signal ends a run whose standard input is open but idle."""

    @pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    def test_idle_pipe(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, signum: int, code: int
    ) -> None:
        """SIGINT/SIGTERM on an idle pipe exit 130/143 within 2 s; the files done are reported."""
        urls = [file_server.add(f"/a{n}.bin", b"x") for n in range(2)]
        report = tmp_path / "r.jsonl"
        proc = _spawn_stdin(cli_path, _report_args("-", report, tmp_path / "c"))
        assert proc.stdin is not None
        assert proc.stderr is not None
        try:
            proc.stdin.write("".join(f"{url}\n" for url in urls).encode())
            proc.stdin.flush()
            _wait_for_lines(report, 2)
            proc.send_signal(signum)
            returned, took = _wait_exit(proc, 10)
            stderr = proc.stderr.read().decode()
        finally:
            proc.stdin.close()  # held open until now: the pipe stayed idle
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert returned == code, stderr
        assert took < 2, stderr
        assert "2 files: 2 succeeded, 0 failed" in stderr
        assert "Traceback" not in stderr
        assert "thread(s) still running" not in stderr
        assert _report_ids(report) == ["a0", "a1"]

    def test_idle_terminal(self, tmp_path: Path, file_server: FileServer, cli_path: Path) -> None:
        """With a terminal (a pseudo-terminal) on standard input, SIGINT exits 130 within 2 s."""
        url = file_server.add("/typed.bin", b"x")
        report = tmp_path / "r.jsonl"
        controller, terminal = os.openpty()
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""}
        try:
            proc = subprocess.Popen(
                [str(cli_path), *_report_args("-", report, tmp_path / "c")],
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            try:
                os.write(controller, f"{url}\n".encode())  # a line typed at the terminal
                _wait_for_lines(report, 1)
                proc.send_signal(signal.SIGINT)
                returned, took = _wait_exit(proc, 10)
                _, stderr_bytes = proc.communicate(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            os.close(terminal)
            os.close(controller)
        stderr = stderr_bytes.decode()
        assert returned == 130, stderr
        assert took < 2, stderr
        assert "1 file: 1 succeeded, 0 failed" in stderr
        assert "Traceback" not in stderr
        assert _report_ids(report) == ["typed"]


class TestJournalWithFormats:
    """The journal's skipping works the same whatever the format."""

    def test_rerun_of_url_list_skips_done(self, tmp_path: Path, file_server: FileServer) -> None:
        """A second run on a URL list with the same journal skips every file it did."""
        listing = tmp_path / "files.txt.gz"
        urls = [file_server.add(f"/j{n}.bin", b"x") for n in range(5)]
        listing.write_bytes(gzip.compress(("\n".join(urls) + "\nbad\n").encode()))
        args = [
            *_report_args(str(listing), tmp_path / "r.jsonl", tmp_path / "c"),
            "--journal",
            str(tmp_path / "j.sqlite"),
            "--skip-invalid",
        ]
        assert _cli(args).exit_code == 1
        assert file_server.request_count() == 5
        second = _cli(args)
        assert "6 files: 0 succeeded, 1 failed, 5 skipped (journal)" in second.stderr
        assert "1  invalid entry (input)" in second.stderr
        assert file_server.request_count() == 5
