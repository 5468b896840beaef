"""Tests for _input_formats.py: every input format, compressed or not, from a file or stdin."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from download_pipeline_processor._input_formats import RawEntry, read_entries
from download_pipeline_processor._inputs import load_file_list
from download_pipeline_processor._registry import PluginRegistry
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import InputError
from download_pipeline_processor.hookspecs import hookimpl
from download_pipeline_processor.input_format import InputEntry as FormatEntry
from download_pipeline_processor.testing import FileServer, make_plugin_manager

JOB_SIZE = 100
#: Files of the job the server answers 404 for: the same failures in every format.
MISSING = {7, 42, 99}


def stem(index: int) -> str:
    return f"f{index:03d}"


def body(index: int) -> bytes:
    return hashlib.sha256(str(index).encode()).digest() * (index % 5 + 1)


def job_urls(server: FileServer) -> list[str]:
    """The job's URLs, each file served but the MISSING ones."""
    urls = []
    for index in range(JOB_SIZE):
        path = f"/{stem(index)}.bin"
        if index in MISSING:
            urls.append(server.url(path))
        else:
            urls.append(server.add(path, body(index)))
    return urls


def job_objects(urls: list[str]) -> list[dict[str, Any]]:
    """The job as objects: id and name as the URL gives them, and the expected size."""
    return [
        {"url": url, "id": stem(index), "name": stem(index), "size": len(body(index))}
        for index, url in enumerate(urls)
    ]


def as_csv(objects: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["url", "id", "name", "size"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(objects)
    return out.getvalue()


def write_job(kind: str, urls: list[str], folder: Path) -> Path:
    """The job written in format ``kind`` (a file name's suffixes), for --files."""
    objects = job_objects(urls)
    base = kind.removesuffix(".gz")
    if base == "strings.json":
        text = json.dumps(urls, indent=1)
    elif base == "json":
        text = json.dumps(objects, indent=1)
    elif base in ("jsonl", "ndjson"):
        # Blank lines are skipped.
        text = "\n".join(
            json.dumps(entry) + ("\n" if i % 10 == 0 else "") for i, entry in enumerate(objects)
        )
    elif base == "csv":
        text = as_csv(objects)
    else:
        # Comments and blank lines are skipped.
        text = "# the job\n\n" + "\n".join(urls) + "\n"
    path = folder / f"job.{kind}"
    data = text.encode()
    path.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    return path


def job_args(files: str, report: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--files",
        files,
        *extra,
        "--processor",
        "checksum",
        "--post-processor",
        "jsonl",
        "--post-processor-option",
        f"path={report}",
        "--download-cache",
        str(cache),
        "--max-retries",
        "0",
    ]


#: What a report row says of a file that is the same whatever the input's format
#: (``elapsed`` varies, and a URL list carries no extra ``fields``).
COMPARED = ("id", "name", "url", "status", "error", "result", "index", "http_status")


def results(report: Path) -> list[dict[str, Any]]:
    """The report's rows by id: what a run made of each file."""
    rows = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    compared = [{key: row.get(key) for key in COMPARED} for row in rows]
    return sorted(compared, key=lambda row: row["id"])


def run_cli(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, args, obj={"plugin_manager": make_plugin_manager()}, catch_exceptions=False
    )
    return result.exit_code, result.stderr


def run_process(
    cli_path: Path, args: list[str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    """The installed command as a real process, ``stdin`` written to its standard input pipe."""
    env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""}
    return subprocess.run(
        [str(cli_path), *args], input=stdin, capture_output=True, timeout=120, check=False, env=env
    )


FILE_KINDS = [
    "json",
    "strings.json",
    "jsonl",
    "ndjson",
    "csv",
    "txt",
    "urls",
    "json.gz",
    "jsonl.gz",
    "csv.gz",
    "txt.gz",
]


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The results of the job given as the original JSON list of objects."""
    folder = tmp_path_factory.mktemp("expected")
    with FileServer() as server:
        urls = job_urls(server)
        listing = write_job("json", urls, folder)
        code, stderr = run_cli(job_args(str(listing), folder / "r.jsonl", folder / "c"))
        assert code == 1, stderr
        rows = results(folder / "r.jsonl")
    # The server's port differs from run to run: compare URLs by path.
    return [{**row, "url": row["url"].split("/", 3)[3]} for row in rows]


class TestSameJobEveryFormat:
    """The same 100-file job, written in every format, gives the same results."""

    @staticmethod
    def comparable(report: Path) -> list[dict[str, Any]]:
        return [{**row, "url": row["url"].split("/", 3)[3]} for row in results(report)]

    def test_expected_job(self, expected: Any) -> None:
        """The reference run has every file: the missing ones failed, the rest checksummed."""
        assert [row["id"] for row in expected] == [stem(i) for i in range(JOB_SIZE)]
        failed = {row["id"] for row in expected if row["status"] == "failed"}
        assert failed == {stem(i) for i in MISSING}
        assert expected[1]["result"]["sha256"] == hashlib.sha256(body(1)).hexdigest()

    @pytest.mark.parametrize("kind", FILE_KINDS)
    def test_file(self, tmp_path: Path, file_server: FileServer, expected: Any, kind: str) -> None:
        """A file of each format (by its extension, .gz too) runs the job to the same results."""
        listing = write_job(kind, job_urls(file_server), tmp_path)
        code, stderr = run_cli(job_args(str(listing), tmp_path / "r.jsonl", tmp_path / "c"))
        assert code == 1, stderr
        assert f"{JOB_SIZE} files: {JOB_SIZE - len(MISSING)} succeeded" in stderr
        assert self.comparable(tmp_path / "r.jsonl") == expected

    @pytest.mark.parametrize(
        "kind_and_extra",
        [
            ("json", []),
            ("strings.json", []),
            ("jsonl", []),
            ("txt", []),
            ("csv", ["--input-format", "csv"]),
            ("csv", []),
            ("jsonl.gz", []),
            ("csv.gz", []),
            ("txt.gz", ["--input-format", "urls"]),
        ],
        ids=[
            "json",
            "strings",
            "jsonl",
            "urls",
            "csv",
            "csv-sniffed",
            "jsonl-gz",
            "csv-gz",
            "urls-gz",
        ],
    )
    def test_stdin(
        self,
        tmp_path: Path,
        file_server: FileServer,
        expected: Any,
        cli_path: Path,
        kind_and_extra: tuple[str, list[str]],
    ) -> None:
        """`--files -` in a real process reads the job from its stdin pipe, sniffed or named."""
        kind, extra = kind_and_extra
        data = write_job(kind, job_urls(file_server), tmp_path).read_bytes()
        proc = run_process(
            cli_path, job_args("-", tmp_path / "r.jsonl", tmp_path / "c", *extra), data
        )
        assert proc.returncode == 1, proc.stderr.decode()
        assert self.comparable(tmp_path / "r.jsonl") == expected

    def test_input_format_overrides_extension(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """--input-format reads a file whatever its name says."""
        listing = tmp_path / "list.data"
        listing.write_text(file_server.add("/a.bin", b"a") + "\n", encoding="utf-8")
        code, stderr = run_cli(
            job_args(str(listing), tmp_path / "r.jsonl", tmp_path / "c", "--input-format", "urls")
        )
        assert code == 0, stderr
        assert [row["id"] for row in results(tmp_path / "r.jsonl")] == ["a"]


def entries_of(path: Path, input_format: str | None = None) -> list[RawEntry]:
    return list(read_entries(path, input_format))


class TestSniffing:
    """A name that says no format, or stdin, is read by its first non-blank character."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('\n  [{"url": "https://h/a"}]', {"url": "https://h/a"}),
            ('\ufeff\n{"url": "https://h/a"}\n', {"url": "https://h/a"}),
            ("\n\nhttps://h/a\n", {"url": "https://h/a"}),
        ],
        ids=["json", "jsonl-with-bom", "urls"],
    )
    def test_sniffed(self, tmp_path: Path, text: str, expected: Any) -> None:
        """'[' is JSON, '{' JSON Lines, anything else a URL list; blank lines and a BOM ignored."""
        path = tmp_path / "list"
        path.write_text(text, encoding="utf-8")
        (entry,) = entries_of(path)
        assert entry.entry == expected

    def test_sniffed_beyond_a_chunk_of_blanks(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Blank space longer than one read does not hide the first character."""
        import download_pipeline_processor._input_formats as formats
        import download_pipeline_processor._input_stream as stream

        # A small chunk so the test need not write megabytes of spaces.
        monkeypatch.setattr(formats, "CHUNK", 4)
        monkeypatch.setattr(stream, "CHUNK", 4)
        path = tmp_path / "list"
        path.write_text(" " * 10 + '{"url": "https://h/a"}\n{"url": "https://h/b"}\n')
        assert [raw.where for raw in entries_of(path)] == [f"{path}: line 1", f"{path}: line 2"]

    def test_empty_stdin_is_an_empty_list(self, cli_path: Path, tmp_path: Path) -> None:
        """Nothing on stdin is a run of no files."""
        proc = run_process(
            cli_path,
            ["--files", "-", "--simulate-downloads", "--download-cache", str(tmp_path)],
            b"",
        )
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"0 files" in proc.stderr


class TestStdinSniffing:
    """What standard input holds is told from its bytes: gzip, CSV, one JSON object."""

    def run(self, cli_path: Path, tmp_path: Path, data: bytes, *extra: str) -> tuple[int, str]:
        proc = run_process(
            cli_path,
            [
                *("--files", "-", "--simulate-downloads", "--no-sleep", "-q", *extra),
                *("--download-cache", str(tmp_path / "c")),
            ],
            data,
        )
        return proc.returncode, proc.stderr.decode()

    def test_csv_header_is_csv(self, cli_path: Path, tmp_path: Path) -> None:
        """A first line naming a url column, with commas, is read as CSV, not as a URL."""
        data = b"url,id,sha256\nhttps://h/a.bin,one,\nhttps://h/b.bin,two,\n"
        code, stderr = self.run(cli_path, tmp_path, data)
        assert code == 0, stderr
        assert "has no scheme" not in stderr

    def test_gzip_is_read_through(self, cli_path: Path, tmp_path: Path) -> None:
        """Gzip bytes are decompressed and what is inside sniffed (here a CSV with a bad row)."""
        data = gzip.compress(b"id,url\none,https://h/a.bin\ntwo,example.org/b\n")
        code, stderr = self.run(cli_path, tmp_path, data)
        assert code == 2, stderr
        assert "<stdin>: line 3: field 'url' has no scheme ('example.org/b')" in stderr
        assert "UTF-8" not in stderr

    def test_comma_in_a_url_is_still_a_url_list(self, cli_path: Path, tmp_path: Path) -> None:
        """A URL with a comma is no CSV header: the input stays a URL list."""
        code, stderr = self.run(cli_path, tmp_path, b"https://h/a.bin?x=1,2\nhttps://h/b\n")
        assert code == 0, stderr

    def test_bad_first_line_is_named_at_once(self, cli_path: Path, tmp_path: Path) -> None:
        """A malformed first line on an open pipe is reported without waiting for the end."""
        env = {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""}
        proc = subprocess.Popen(
            [
                *(str(cli_path), "--files", "-", "--simulate-downloads"),
                *("--download-cache", str(tmp_path / "c")),
            ],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        try:
            proc.stdin.write(b'{bad\n{"url": "https://h/a"}\n')
            proc.stdin.flush()
            code = proc.wait(timeout=20)  # the pipe is still open
        finally:
            proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
        assert code == 2, stderr
        assert "<stdin>: line 1: malformed JSON at column 2" in stderr

    def test_pretty_printed_object_is_one_error(self, cli_path: Path, tmp_path: Path) -> None:
        """A whole JSON object over many lines is one error naming it, not one per line."""
        data = json.dumps({"files": [{"url": "https://h/a.bin"}]}, indent=2).encode()
        code, stderr = self.run(cli_path, tmp_path, data)
        assert code == 2, stderr
        assert "<stdin>: a JSON object, not a list of entries" in stderr
        assert "jq -c '.files[]'" in stderr
        assert "malformed JSON" not in stderr

    @pytest.mark.parametrize("suffix", [".json", ".jsonl", ".json.gz"])
    def test_object_file_is_one_error(self, tmp_path: Path, suffix: str) -> None:
        """A file holding one JSON object is named as such, whatever its suffix says."""
        text = json.dumps({"files": [{"url": "https://h/a.bin"}]}, indent=2).encode()
        path = tmp_path / f"list{suffix}"
        path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
        code, stderr = run_cli(["--files", str(path), "--simulate-downloads"])
        assert code == 2, stderr
        assert stderr.strip() == (
            f"Error: {path}: a JSON object, not a list of entries (its field 'files' holds a "
            "list; jq -c '.files[]' gives it as JSON Lines)"
        )

    def test_url_says_how_to_read_from_network(self, cli_path: Path, tmp_path: Path) -> None:
        """--files with an http(s) URL is exit 2 giving the curl command to pipe it in."""
        code, stderr = self.run(cli_path, tmp_path, b"", "--files", "http://host/list.json")
        assert code == 2, stderr
        assert "no such file" not in stderr
        assert "curl -s http://host/list.json | download-pipeline-processor --files -" in stderr

    def test_url_with_secrets_is_not_echoed(self, tmp_path: Path) -> None:
        """A URL's userinfo and query string stay out of that message."""
        code, stderr = run_cli(["--files", "https://me:pw@host/list.json?token=s3cret"])
        assert code == 2, stderr
        assert "curl -s URL | download-pipeline-processor --files -" in stderr
        assert "s3cret" not in stderr
        assert "pw" not in stderr


class TestJsonLines:
    """One object a line; each bad line an entry of its own, named by its 1-based number."""

    def test_blank_lines_skipped_and_numbered(self, tmp_path: Path) -> None:
        """Blank lines are skipped but still counted in the line numbers."""
        path = tmp_path / "l.jsonl"
        path.write_text(
            '\n{"url": "https://h/a"}\n   \n\r\n{"url": "https://h/b"}', encoding="utf-8"
        )
        assert [raw.where for raw in entries_of(path)] == [f"{path}: line 2", f"{path}: line 5"]

    @pytest.mark.parametrize(
        ("line", "fragment"),
        [
            ('{"url": ', "malformed JSON at column 9"),
            ('{"url": "https://h/x"} {}', "Extra data"),
            ('{"url": "https://h/x", "x": NaN}', "field 'x' holds NaN"),
            ('{"url": "https://h/x", "x": ' + "9" * 5000 + "}", "too many digits"),
            ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ],
        ids=["cut", "two-values", "nan", "long-int", "deep"],
    )
    def test_bad_line_reported_and_reading_goes_on(
        self, tmp_path: Path, line: str, fragment: str
    ) -> None:
        """A bad line is refused with its number and the entries after it are still read."""
        path = tmp_path / "l.jsonl"
        path.write_text(f'{{"url": "https://h/a"}}\n{line}\n{{"url": "https://h/b"}}\n')
        _, bad, last = entries_of(path)
        assert bad.entry is None
        assert bad.problem is not None
        assert bad.problem.startswith(f"{path}: line 2: ")
        assert fragment in bad.problem
        assert last.entry == {"url": "https://h/b"}

    def test_not_utf8_names_the_line(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are an error naming the line."""
        path = tmp_path / "l.jsonl"
        path.write_bytes(b'{"url": "https://h/a"}\n{"url": "https://h/caf\xe9"}\n')
        with pytest.raises(InputError, match=r"line 2: not UTF-8"):
            entries_of(path)

    def test_json_lines_named_json_says_so(self, tmp_path: Path) -> None:
        """A JSON Lines file named .json says it looks like JSON Lines, not only 'Extra data'."""
        path = tmp_path / "l.json"
        path.write_text('{"url": "https://h/a"}\n{"url": "https://h/b"}\n')
        with pytest.raises(InputError, match=r"Extra data \(an object a line is JSON Lines"):
            load_file_list(path)


class TestCsv:
    """A header row with a url column; other columns are fields; line numbers count the header."""

    def test_fields_from_columns(self, tmp_path: Path) -> None:
        """Each column is a field, empty cells are absent fields and size becomes a number."""
        path = tmp_path / "l.csv"
        path.write_text(
            "url, id ,size,lang\nhttps://h/a.bin,x1, 12 ,en\nhttps://h/b.bin,,,\n", encoding="utf-8"
        )
        first, second = load_file_list(path)
        assert (first.id, first.additional_fields) == ("x1", {"size": 12, "lang": "en"})
        assert (second.id, second.additional_fields) == ("b", {})

    def test_quoted_newline_keeps_line_numbers(self, tmp_path: Path) -> None:
        """A row is named by the line it starts on, after a quoted cell spanning lines."""
        path = tmp_path / "l.csv"
        path.write_text('url,note\nhttps://h/a,"two\nlines"\n\nftp://h/b,x\n', encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_file_list(path)
        assert str(info.value).startswith(f"{path}: line 5: field 'url' has unsupported scheme")

    @pytest.mark.parametrize(
        ("size", "fragment"),
        [("12x", "'12x'"), ("-3", "'-3'"), ("1.5", "'1.5'")],
    )
    def test_size_must_parse_as_integer(self, tmp_path: Path, size: str, fragment: str) -> None:
        """A size cell that is not a non-negative integer is an error naming line and field."""
        path = tmp_path / "l.csv"
        path.write_text(f"url,size\nhttps://h/a,{size}\n", encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_file_list(path)
        message = str(info.value)
        assert message.startswith(f"{path}: line 2: field 'size' must be a non-negative integer")
        assert fragment in message

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("id,name\n1,a\n", "line 1: the header has no 'url' column (it has 'id', 'name')"),
            ("url,id,url\nhttps://h/a,1,x\n", "line 1: the header names column 'url' twice"),
            ("url,,id\nhttps://h/a,,1\n", "line 1: column 2 of the header has no name"),
            ("", "empty, expected a header row"),
        ],
        ids=["no-url", "twice", "nameless", "empty"],
    )
    def test_bad_header(self, tmp_path: Path, text: str, fragment: str) -> None:
        """A header that cannot name the fields is an error about the header."""
        path = tmp_path / "l.csv"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=re.escape(fragment)):
            load_file_list(path)

    def test_row_with_too_many_cells(self, tmp_path: Path) -> None:
        """A row with more cells than the header has columns is a bad entry; fewer is fine."""
        path = tmp_path / "l.csv"
        path.write_text("url,id\nhttps://h/a,1,extra\nhttps://h/b\n", encoding="utf-8")
        with pytest.raises(InputError) as info:
            load_file_list(path)
        assert str(info.value) == f"{path}: line 2: 3 cells, but the header has 2 columns"


class TestUrlList:
    """One URL a line; blank lines and comments skipped."""

    def test_comments_and_blank_lines_skipped(self, tmp_path: Path) -> None:
        """Lines starting with # and blank lines are no entries, but count in line numbers."""
        path = tmp_path / "l.txt"
        path.write_text(
            "# mirror list\n\nhttps://h/a.bin\n  # indented comment\n  https://h/b.bin  \n"
        )
        entries = entries_of(path)
        assert [(raw.where, raw.entry) for raw in entries] == [
            (f"{path}: line 3", {"url": "https://h/a.bin"}),
            (f"{path}: line 5", {"url": "https://h/b.bin"}),
        ]

    def test_crlf_line_ends(self, tmp_path: Path) -> None:
        """Windows line ends are read like Unix ones."""
        path = tmp_path / "l.urls"
        path.write_bytes(b"https://h/a.bin\r\nhttps://h/b.bin\r\n")
        assert [f.url for f in load_file_list(path)] == ["https://h/a.bin", "https://h/b.bin"]

    def test_url_without_scheme(self, tmp_path: Path) -> None:
        """A line without a scheme says so and shows the line without its query string."""
        path = tmp_path / "l.txt"
        path.write_text("https://h/a\nexample.org/a?token=s3cret\n")
        with pytest.raises(InputError) as info:
            load_file_list(path)
        message = str(info.value)
        assert message == (
            f"{path}: line 2: field 'url' has no scheme ('example.org/a'); give http:// or https://"
        )


class TestCompressed:
    """A .gz suffix on any format is read decompressed."""

    def test_not_gzip(self, tmp_path: Path) -> None:
        """A .gz file that is not gzip data is an input error, not a traceback."""
        path = tmp_path / "l.jsonl.gz"
        path.write_text('{"url": "https://h/a"}\n')
        with pytest.raises(InputError, match="not valid gzip data"):
            load_file_list(path)

    def test_truncated_gzip(self, tmp_path: Path) -> None:
        """A gzip stream cut short is an input error."""
        path = tmp_path / "l.txt.gz"
        path.write_bytes(gzip.compress(b"https://h/a\n" * 1000)[:-20])
        with pytest.raises(InputError, match="not valid gzip data"):
            load_file_list(path)


class TsvFormat:
    """A test input format: tab-separated, a header row, positions named ``row``."""

    @staticmethod
    def read(stream: Any) -> Any:
        header = stream.readline().decode().rstrip("\n").split("\t")
        if "url" not in header:
            raise InputError("no url column")
        for number, line in enumerate(stream, start=2):
            cells = line.decode().rstrip("\n").split("\t")
            if cells == ["boom"]:
                raise ValueError("the reader broke")
            if len(cells) != len(header):
                yield FormatEntry(number, problem=f"{len(cells)} cells, {len(header)} columns")
            else:
                yield FormatEntry(number, {k: v for k, v in zip(header, cells) if v})

    @hookimpl
    def register_input_formats(self, register: Any) -> None:
        register("tsv", self.read, suffixes=(".tsv",), position="row")


class PlainDicts:
    """A test input format yielding plain dicts: positions are their counts."""

    @staticmethod
    def read(stream: Any) -> Any:
        for line in stream.read().decode().splitlines():
            yield {"url": line}

    @hookimpl
    def register_input_formats(self, register: Any) -> None:
        register("plain", self.read, suffixes=(".plain",))


def run_with_formats(args: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    """The CLI in process with the test formats registered on a fresh manager."""
    manager = make_plugin_manager(TsvFormat(), PlainDicts())
    result = CliRunner().invoke(
        main, args, input=stdin, obj={"plugin_manager": manager}, catch_exceptions=False
    )
    return result.exit_code, result.stderr


class TestFormatPlugins:
    """Input formats registered through register_input_formats, built-in ones included."""

    def test_builtins_register_through_the_hook(self) -> None:
        """The built-in formats come from the hook, with the suffixes they claim."""
        registry = PluginRegistry(make_plugin_manager())
        claimed = {reg.format.name: reg.format.suffixes for reg in registry.format_registrations}
        assert claimed == {
            "json": (".json",),
            "jsonl": (".jsonl", ".ndjson"),
            "csv": (".csv",),
            "urls": (".txt", ".urls"),
        }
        assert {reg.source.name for reg in registry.format_registrations} == {
            "builtin.input_formats"
        }

    @pytest.mark.parametrize("name", ["list.tsv", "list.TSV.gz"])
    def test_suffix_picks_the_format(
        self, tmp_path: Path, file_server: FileServer, name: str
    ) -> None:
        """A file whose name ends with a registered suffix (gzip too) is read by that format."""
        urls = [file_server.add(f"/t{n}.bin", b"t") for n in range(3)]
        text = "url\tid\tcaption\n" + "".join(f"{u}\tt{n}\tcat {n}\n" for n, u in enumerate(urls))
        listing = tmp_path / name
        data = text.encode()
        listing.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        report = tmp_path / "r.jsonl"
        code, stderr = run_with_formats(job_args(str(listing), report, tmp_path / "c"))
        assert code == 0, stderr
        rows = [json.loads(line) for line in report.read_text().splitlines()]
        assert sorted((row["id"], row["fields"]["caption"]) for row in rows) == [
            ("t0", "cat 0"),
            ("t1", "cat 1"),
            ("t2", "cat 2"),
        ]

    def test_input_format_by_name_on_stdin(self, tmp_path: Path, file_server: FileServer) -> None:
        """--input-format NAME picks a plugin's format, standard input included."""
        url = file_server.add("/s.bin", b"s")
        report = tmp_path / "r.jsonl"
        code, stderr = run_with_formats(
            job_args("-", report, tmp_path / "c", "--input-format", "tsv"),
            stdin=f"url\n{url}\n".encode(),
        )
        assert code == 0, stderr
        assert [json.loads(line)["id"] for line in report.read_text().splitlines()] == ["s"]

    def test_bad_rows_named_by_the_framework(self, tmp_path: Path) -> None:
        """Every bad row is named by input and position: checking is the framework's."""
        listing = tmp_path / "list.tsv"
        listing.write_text("url\tsize\nhttps://h/a\t\nexample.org/b\t\nx\ty\tz\nhttps://h/c\tq\n")
        code, stderr = run_with_formats(["--files", str(listing), "--simulate-downloads"])
        assert code == 2, stderr
        assert f"{listing}: 3 invalid entries" in stderr
        assert f"{listing}: row 3: field 'url' has no scheme ('example.org/b')" in stderr
        assert f"{listing}: row 4: 3 cells, 2 columns" in stderr
        assert f"{listing}: row 5: field 'size'" in stderr
        assert "Traceback" not in stderr

    def test_skipped_rows_in_the_summary(self, tmp_path: Path) -> None:
        """With --skip-invalid the summary's examples name a format's rows by position."""
        listing = tmp_path / "list.tsv"
        listing.write_text("url\nhttps://h/a\nexample.org/b\n")
        code, stderr = run_with_formats(
            ["--files", str(listing), "--simulate-downloads", "--no-sleep", "--skip-invalid"]
        )
        assert code == 1, stderr
        assert f"1  invalid entry (input)  e.g. {listing}: row 3\n" in stderr

    def test_plain_dicts_numbered_from_one(self, tmp_path: Path) -> None:
        """A format yielding plain dicts has them named by their count, from 1."""
        listing = tmp_path / "list.plain"
        listing.write_text("https://h/a\nftp://h/b\n")
        code, stderr = run_with_formats(["--files", str(listing), "--simulate-downloads"])
        assert code == 2, stderr
        assert f"Error: {listing}: line 2: field 'url' has unsupported scheme 'ftp'" in stderr

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("id\nx\n", "no url column"),
            ("url\nboom\n", "cannot read as tsv: ValueError: the reader broke"),
        ],
    )
    def test_reader_errors_are_one_line(self, tmp_path: Path, text: str, message: str) -> None:
        """A reader's InputError, or any exception, is one line naming the input: exit 2."""
        listing = tmp_path / "list.tsv"
        listing.write_text(text)
        code, stderr = run_with_formats(["--files", str(listing), "--simulate-downloads"])
        assert code == 2, stderr
        assert stderr.strip() == f"Error: {listing}: {message}"

    def test_unknown_name_says_the_choices(self, tmp_path: Path) -> None:
        """An unknown --input-format is exit 2 with a did-you-mean and every registered name."""
        listing = tmp_path / "list.txt"
        listing.write_text("https://h/a\n")
        code, stderr = run_with_formats(["--files", str(listing), "--input-format", "tvs"])
        assert code == 2, stderr
        assert stderr.strip() == (
            "Error: --input-format: unknown input format 'tvs' (did you mean 'tsv'?); "
            "available: csv, json, jsonl, plain, tsv, urls"
        )

    def test_listed_with_suffixes(self) -> None:
        """`plugins --json` lists every input format with its suffixes; the text shows them."""
        manager = make_plugin_manager(TsvFormat())
        runner = CliRunner()
        listed = runner.invoke(main, ["plugins", "--json"], obj={"plugin_manager": manager})
        formats = {
            entry["name"]: (entry["distribution"], entry["suffixes"])
            for entry in json.loads(listed.stdout)["plugins"]
            if entry["kind"] == "input format"
        }
        assert formats == {
            "csv": ("download-pipeline-processor", [".csv"]),
            "json": ("download-pipeline-processor", [".json"]),
            "jsonl": ("download-pipeline-processor", [".jsonl", ".ndjson"]),
            "urls": ("download-pipeline-processor", [".txt", ".urls"]),
            "tsv": ("test:test-plugin-0", [".tsv"]),
        }
        text = runner.invoke(main, ["plugins"], obj={"plugin_manager": manager}).stdout
        assert re.search(r"^tsv +input format +test:test-plugin-0", text, re.MULTILINE)
        assert "    suffixes: .tsv (each also + .gz)" in text

    def test_two_packages_one_name(self, tmp_path: Path) -> None:
        """A name two packages register: selecting it is exit 2 naming both; other runs warn."""
        manager = make_plugin_manager(TsvFormat(), TsvFormat())
        listing = tmp_path / "list.tsv"
        listing.write_text("url\nhttps://h/a\n")
        runner = CliRunner()
        chosen = runner.invoke(
            main, ["--files", str(listing), "--simulate-downloads"], obj={"plugin_manager": manager}
        )
        assert chosen.exit_code == 2, chosen.stderr
        assert "input format 'tsv' is registered by more than one package" in chosen.stderr
        assert "test:test-plugin-0 and test:test-plugin-1" in chosen.stderr
        other = tmp_path / "list.txt"
        other.write_text("https://h/a\n")
        unrelated = runner.invoke(
            main,
            ["--files", str(other), "--simulate-downloads", "--no-sleep"],
            obj={"plugin_manager": manager},
        )
        assert unrelated.exit_code == 0, unrelated.stderr
        assert (
            "Warning: input format 'tsv' is registered by test:test-plugin-0 and "
            "test:test-plugin-1" in unrelated.stderr
        )
