"""The command line, through click's runner and as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner, Result

from cli_helpers import checksum_report_args, write_list
from download_helpers import DOWNLOADER_NAMES, SHIPPED_DOWNLOADERS, shipped_plugin_manager
from download_pipeline_processor import (
    BasePostProcessor,
    BaseProcessor,
    FileData,
    Option,
    __version__,
    hookimpl,
)
from download_pipeline_processor._plugins import PluginSource
from download_pipeline_processor.cli import main
from download_pipeline_processor.settings import cli_fields
from download_pipeline_processor.testing import (
    FileServer,
    leftover_files,
    make_plugin_manager,
    run_command_bounded,
)

REPO = Path(__file__).resolve().parents[1]
PLUGIN_MODULES = Path(__file__).resolve().parent / "plugin_modules"


def invoke(args: list[str], manager: Any = None, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in process with a fresh plugin manager (no installed plugins)."""
    runner = CliRunner()
    obj = {"plugin_manager": manager or make_plugin_manager()}
    return runner.invoke(main, args, obj=obj, env=env, catch_exceptions=False)


def run_bounded(
    cli_path: Path, args: list[str], env: dict[str, str], timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], str, str]:
    """Run the CLI as a real process; fail the test (and kill that process) if it hangs."""
    done = run_command_bounded([str(cli_path), *args], env, timeout)
    return done, done.stdout, done.stderr


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


class TestBadInput:
    """Every input problem is exit 2, one line naming it, and no request."""

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            ('[{"url": ', "malformed JSON at line 1"),
            ('{"url": "http://x/"}', "a JSON object, not a list of entries"),
            ('[["http://x/a"]]', "entry 0: expected an object, got a list"),
            ('[{"id": 1}]', "entry 0: missing required field 'url'"),
            ('[{"url": 5}]', "entry 0: field 'url' must be a string, got a number"),
            ('[{"url": "ftp://host/a"}]', "entry 0: field 'url' has unsupported scheme 'ftp'"),
            ('[{"url": "file:///etc/passwd"}]', "unsupported scheme 'file'"),
            (
                '[{"url": "http://h/a\\r\\nX-Injected: 1"}]',
                "entry 0: field 'url' contains a control character (U+000D) at position 10",
            ),
            ('[{"url": "http://h/a b"}]', "entry 0: field 'url' contains a space at position 10"),
            ('[{"url": "http://bad\\u200d.example/"}]', "entry 0: field 'url' has an invalid host"),
        ],
    )
    def test_bad_file_list(
        self, tmp_path: Path, file_server: FileServer, content: str, expected: str
    ) -> None:
        """A malformed list gives exit 2, one line on stderr and zero requests."""
        listing = tmp_path / "files.json"
        listing.write_text(content, encoding="utf-8")
        result = invoke(["--files", str(listing)])
        assert result.exit_code == 2
        lines = error_lines(result)
        assert len(lines) == 1, result.stderr
        assert expected in lines[0]
        assert str(listing) in lines[0]
        assert "Traceback" not in result.output + result.stderr
        assert file_server.request_count() == 0

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("[" * 100_000 + "]" * 100_000, "entry 1: lists or objects nested too deeply"),
            ("9" * 5000, "entry 1: an integer has too many digits"),
            ("NaN", "entry 1: field 'extra' holds NaN: only finite numbers are accepted"),
            ("-Infinity", "entry 1: field 'extra' holds -Infinity: only finite numbers"),
        ],
        ids=["deep-list", "long-integer", "nan", "infinity"],
    )
    def test_hostile_values(
        self, tmp_path: Path, file_server: FileServer, value: str, expected: str
    ) -> None:
        """Values json.load chokes on or a report cannot hold are exit 2 naming the entry."""
        url = file_server.add("/a", b"a")
        listing = tmp_path / "files.json"
        listing.write_text(f'[{{"url": "{url}"}}, {{"url": "{url}", "extra": {value}}}]')
        result = invoke(["--files", str(listing)])
        assert result.exit_code == 2
        (line,) = error_lines(result)
        assert line.startswith(f"Error: {listing}: {expected}")
        assert "internal error" not in result.stderr
        assert file_server.request_count() == 0

    def test_bad_entry_after_good_ones_stops_everything(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """An invalid entry at index 2 is reported by index and no earlier entry is fetched."""
        good = file_server.add("/good", b"g")
        listing = write_list(tmp_path / "l.json", [{"url": good}, {"url": good}, {"name": "x"}])
        result = invoke(["--files", str(listing)])
        assert result.exit_code == 2
        assert "entry 2: missing required field 'url'" in result.stderr
        assert file_server.request_count() == 0

    def test_missing_file(self, tmp_path: Path) -> None:
        """A list file that does not exist is exit 2 naming it."""
        result = invoke(["--files", str(tmp_path / "nope.json")])
        assert result.exit_code == 2
        assert error_lines(result) == [f"Error: {tmp_path / 'nope.json'}: no such file"]

    def test_files_required(self) -> None:
        """Running without --files is a usage error."""
        result = invoke([])
        assert result.exit_code == 2
        assert "--files" in result.stderr


class ReportPostProcessor(BasePostProcessor):
    """Declares its file as an output option, as a third-party writer would."""

    options = (Option("to", output=True),)

    def __init__(self, to: str) -> None:
        self.to = to

    def post_process(self, result: Any, file_data: FileData) -> None:
        pass


class ReportPlugin:
    """Registers ``report``."""

    @hookimpl
    def register_post_processors(self, register: Any) -> None:
        register("report", ReportPostProcessor)


class TestPluginSelection:
    """Choosing processors and post-processors by name."""

    def test_unknown_processor_lists_choices(self, tmp_path: Path) -> None:
        """An unknown name is exit 2 listing what is available."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--processor", "nope"])
        assert result.exit_code == 2
        assert "unknown processor 'nope'; available: checksum, dummy" in result.stderr

    def test_duplicate_name_names_both_packages(self, tmp_path: Path) -> None:
        """Two distributions registering one name make selecting it exit 2 naming both."""

        class Clash(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                return None

        def make_plugin(tag: str) -> Any:
            class Plugin:
                @hookimpl
                def register_processors(self, register: Any) -> None:
                    register("shared", Clash)

            Plugin.__name__ = tag
            return Plugin()

        manager = make_plugin_manager()
        manager.register_source(make_plugin("a"), PluginSource("a", "dpp-alpha", "1.0"))
        manager.register_source(make_plugin("b"), PluginSource("b", "dpp-beta", "2.0"))
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--processor", "shared"], manager)
        assert result.exit_code == 2
        assert "dpp-alpha and dpp-beta" in result.stderr
        listing_result = invoke(["plugins"], manager)
        assert "shared (clash)" in listing_result.output

    def test_register_hooks_run_once_per_run(self, tmp_path: Path) -> None:
        """The CLI hands its registry to the pipeline: plugins register once, not twice."""
        calls: list[str] = []

        class Counting:
            __name__ = "counting"

            @hookimpl
            def register_processors(self, register: Any) -> None:
                calls.append("processors")

        manager = make_plugin_manager(Counting())
        listing = write_list(tmp_path / "l.json", [])
        assert invoke(["--files", str(listing)], manager).exit_code == 0
        assert calls == ["processors"]

    def test_module_class_form(self, tmp_path: Path, file_server: FileServer) -> None:
        """module:ClassName selects a class directly; a non-processor class is exit 2."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/m", b"m")}])
        spec = "download_pipeline_processor.builtins._processors:ChecksumProcessor"
        ok = invoke(["--files", str(listing), "--processor", spec, "--post-processor", "jsonl"])
        assert ok.exit_code == 0
        assert json.loads(ok.stdout)["result"]["size"] == 1
        bad = invoke(["--files", str(listing), "--processor", "json:JSONDecoder"])
        assert bad.exit_code == 2
        assert "not a subclass of BaseProcessor" in bad.stderr

    @pytest.mark.parametrize(
        ("option", "message"),
        [
            ("colour=red", "unknown option 'colour'; accepted options: algorithm"),
            ("algorithm", "expected KEY=VALUE"),
            ("algorithm=nope", "unsupported algorithm 'nope'"),
        ],
    )
    def test_bad_processor_option(
        self, tmp_path: Path, file_server: FileServer, option: str, message: str
    ) -> None:
        """Unknown, malformed or invalid plugin options are exit 2 before any request."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/o", b"o")}])
        result = invoke(
            ["--files", str(listing), "--processor", "checksum", "--processor-option", option]
        )
        assert result.exit_code == 2
        assert message in result.stderr
        assert file_server.request_count() == 0

    def test_post_processor_option_targets_by_name(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """NAME.KEY=VALUE goes to one post-processor; a key no one accepts is exit 2."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/p", b"p")}])
        out = tmp_path / "out.jsonl"
        result = invoke(
            [
                "--files",
                str(listing),
                "--post-processor",
                "jsonl",
                "--post-processor",
                "dummy",
                "--post-processor-option",
                f"jsonl.path={out}",
            ]
        )
        assert result.exit_code == 0
        assert json.loads(out.read_text())["status"] == "succeeded"
        bad = invoke(
            [
                "--files",
                str(listing),
                "--post-processor",
                "dummy",
                "--post-processor-option",
                "path=x",
            ]
        )
        assert bad.exit_code == 2
        assert "no selected post-processor (dummy) accepts it" in bad.stderr

    def test_misspelt_name_suggests_the_close_one(self, tmp_path: Path) -> None:
        """A name one letter off ('checksun') is exit 2 suggesting the registered 'checksum'."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--processor", "checksun"])
        assert result.exit_code == 2
        assert error_lines(result) == [
            "Error: unknown processor 'checksun' (did you mean 'checksum'?); "
            "available: checksum, dummy, save"
        ]

    def test_plugin_errors_name_the_name_typed(self, tmp_path: Path) -> None:
        """Option and set-up errors name the plugin as typed ('checksum'), never its class."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        base = ["--files", str(listing), "--simulate-downloads", "--processor", "checksum"]
        for option in ("colour=red", "algorithm=nope"):
            result = invoke([*base, "--processor-option", option])
            assert result.exit_code == 2
            assert "processor 'checksum'" in result.stderr
            assert "ChecksumProcessor" not in result.stderr

    @pytest.mark.parametrize(
        "extra",
        [
            ["--post-processor-option", "path={out}"],
            [],  # both on standard output: their lines would interleave too
        ],
    )
    def test_two_post_processors_on_one_file_is_exit_2(
        self, tmp_path: Path, extra: list[str]
    ) -> None:
        """Two post-processors given one output path (or both stdout) is exit 2, nothing written."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        out = tmp_path / "x.out"
        result = invoke(
            [
                "--files",
                str(listing),
                "--simulate-downloads",
                "--no-sleep",
                "--post-processor",
                "jsonl",
                "--post-processor",
                "jsonl",
                *[arg.format(out=out) for arg in extra],
            ]
        )
        assert result.exit_code == 2
        (line,) = error_lines(result)
        assert "would both write to" in line
        assert not out.exists()

    def test_one_path_spelt_two_ways_is_one_file(self, tmp_path: Path) -> None:
        """Output paths are compared resolved: 'x.out' and 'sub/../x.out' are one file."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        (tmp_path / "sub").mkdir()
        result = invoke(
            [
                "--files",
                str(listing),
                "--simulate-downloads",
                "--post-processor",
                "jsonl",
                "--post-processor",
                "report",
                "--post-processor-option",
                f"jsonl.path={tmp_path / 'x.out'}",
                "--post-processor-option",
                f"report.to={tmp_path / 'sub' / '..' / 'x.out'}",
            ],
            make_plugin_manager(ReportPlugin()),
        )
        assert result.exit_code == 2
        assert error_lines(result) == [
            f"Error: post-processor 'jsonl' (option path) and post-processor 'report' "
            f"(option to) would both write to {str(tmp_path / 'sub' / '..' / 'x.out')!r}; "
            "give each its own file"
        ]
        assert not (tmp_path / "x.out").exists()

    def test_post_processors_with_their_own_files_run(self, tmp_path: Path) -> None:
        """A post-processor on stdout and one on a file is no clash: the run goes on."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        out = tmp_path / "x.out"
        result = invoke(
            [
                "--files",
                str(listing),
                "--simulate-downloads",
                "--no-sleep",
                "--post-processor",
                "jsonl",
                "--post-processor",
                "dummy",
                "--post-processor-option",
                f"path={out}",
            ]
        )
        assert result.exit_code == 0, result.stderr
        assert json.loads(out.read_text(encoding="utf-8"))["status"] == "succeeded"

    def test_plugins_listing_shows_typed_defaults(self) -> None:
        """plugins shows numbers and booleans bare and only text quoted."""
        result = invoke(["plugins"])
        assert "append=<bool> (default False)" in result.stdout
        assert "path=<str> (default '-')" in result.stdout
        assert "'False'" not in result.stdout


class TestDownloaderFlag:
    """--downloader picks a registered download backend."""

    def test_simulated_by_name(self, tmp_path: Path, file_server: FileServer) -> None:
        """--downloader simulated runs without touching the server; an unknown one is exit 2."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.url("/x.bin")}])
        ok = invoke(["--files", str(listing), "--downloader", "simulated", "--no-sleep"])
        assert ok.exit_code == 0
        assert file_server.request_count() == 0
        bad = invoke(["--files", str(listing), "--downloader", "curl"])
        assert bad.exit_code == 2
        assert "unknown downloader 'curl'" in bad.stderr


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning is Linux-only and needs two CPUs to be seen",
)
def test_pin_threads_flag(tmp_path: Path) -> None:
    """--pin-threads reaches the run: the processor's thread sees one CPU."""
    listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a.bin"}])
    spec = "tests.test_pipeline:AffinityProcessor"
    args = ["--files", str(listing), "--simulate-downloads", "--no-sleep", "--processor", spec]
    pinned = invoke([*args, "--pin-threads", "--post-processor", "jsonl"])
    assert pinned.exit_code == 0, pinned.stderr
    assert len(json.loads(pinned.stdout)["result"]) == 1
    spread = invoke([*args, "--post-processor", "jsonl"])
    assert json.loads(spread.stdout)["result"] == sorted(os.sched_getaffinity(0))


class TestRuns:
    """Exit codes, reports and logs of real runs."""

    def test_exit_one_when_a_file_fails(self, tmp_path: Path, file_server: FileServer) -> None:
        """A failed file makes the exit code 1 while the others are still reported."""
        entries = [
            {"id": "ok", "url": file_server.add("/ok", b"ok")},
            {"id": "gone", "url": file_server.url("/gone")},
        ]
        listing = write_list(tmp_path / "l.json", entries)
        result = invoke(
            ["--files", str(listing), "--post-processor", "jsonl", "--retry-backoff", "0"]
        )
        assert result.exit_code == 1
        records = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
        assert records["ok"]["status"] == "succeeded"
        assert records["gone"]["status"] == "failed"
        assert records["gone"]["error"]["stage"] == "download"
        assert "404" in records["gone"]["error"]["message"]

    def test_hundred_files_checksum_jsonl(self, tmp_path: Path, file_server: FileServer) -> None:
        """100 served files through checksum + jsonl: 100 lines, right sha256, exit 0, no cache."""
        expected = {}
        entries = []
        for index in range(100):
            body = f"file number {index} ".encode() * (index + 1)
            entries.append({"id": f"f{index}", "url": file_server.add(f"/f{index}.bin", body)})
            expected[f"f{index}"] = hashlib.sha256(body).hexdigest()
        listing = write_list(tmp_path / "l.json", entries)
        report, cache = tmp_path / "out.jsonl", tmp_path / "cache"
        result = invoke(checksum_report_args(listing, report, cache))
        assert result.exit_code == 0, result.stderr
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        assert len(lines) == 100
        assert {line["id"]: line["result"]["sha256"] for line in lines} == expected
        assert leftover_files(cache) == []

    def test_secrets_never_logged(self, tmp_path: Path, file_server: FileServer) -> None:
        """Query strings and credentials reach neither stderr, the log file nor the report."""
        file_server.add("/private", b"", statuses=(503,))
        url = file_server.url("/private").replace("http://", "http://alice:hunter2@")
        listing = write_list(tmp_path / "l.json", [{"url": url + "?token=SECRET123"}])
        log_file = tmp_path / "run.log"
        result = invoke(
            [
                "--files",
                str(listing),
                "--post-processor",
                "jsonl",
                "--max-retries",
                "1",
                "--retry-backoff",
                "0",
                "--log-file",
                str(log_file),
                "--debug",
            ]
        )
        assert result.exit_code == 1
        everything = result.output + result.stderr + log_file.read_text()
        assert "503" in everything
        for secret in ("SECRET123", "hunter2", "alice"):
            assert secret not in everything

    @pytest.mark.parametrize("setup", SHIPPED_DOWNLOADERS)
    def test_redirect_target_secrets_never_reported(
        self, tmp_path: Path, file_server: FileServer, setup: str
    ) -> None:
        """A redirect target's query string reaches neither stderr, the log, jsonl nor sqlite."""
        downloader, netrc = DOWNLOADER_NAMES[setup], setup == "session"
        import sqlite3

        import dpp_sqlite.plugin

        with socket.socket() as sock:  # a port nothing listens on once released
            sock.bind(("127.0.0.1", 0))
            closed = sock.getsockname()[1]
        hop = f"http://127.0.0.1:{closed}/z?sig=HOPSECRET"
        url = file_server.add(f"/hop-{downloader}-{netrc}", statuses=(302,), redirect_to=hop)
        listing = write_list(tmp_path / "l.json", [{"url": url + "?token=FIRSTSECRET"}])
        report, database, log_file = tmp_path / "r.jsonl", tmp_path / "r.db", tmp_path / "run.log"
        # An empty .netrc sends the requests downloader through a requests.Session.
        (tmp_path / "netrc").write_text("")
        netrc_path = tmp_path / ("netrc" if netrc else "no-such-netrc")
        result = invoke(
            [
                "--files",
                str(listing),
                "--downloader",
                downloader,
                "--post-processor",
                "jsonl",
                "--post-processor",
                "sqlite",
                "--post-processor-option",
                f"jsonl.path={report}",
                "--post-processor-option",
                f"sqlite.db={database}",
                "--max-retries",
                "1",
                "--retry-backoff",
                "0",
                "--log-file",
                str(log_file),
                "--debug",
            ],
            manager=shipped_plugin_manager(dpp_sqlite.plugin),
            env={"NETRC": str(netrc_path)},
        )
        assert result.exit_code == 1, result.stderr
        with sqlite3.connect(database) as connection:
            rows = connection.execute("SELECT * FROM files").fetchall()
        stored = report.read_text() + repr(rows)
        assert "Connection refused" in stored or "refused" in stored.lower()
        everything = result.output + result.stderr + log_file.read_text() + stored
        for secret in ("HOPSECRET", "FIRSTSECRET"):
            assert secret not in everything

    def test_cache_empty_after_run(self, tmp_path: Path, file_server: FileServer) -> None:
        """The cache folder given with --download-cache holds no file after the run."""
        entries = [{"url": file_server.add(f"/c{i}", b"c" * 1000)} for i in range(10)]
        listing = write_list(tmp_path / "l.json", entries)
        cache = tmp_path / "cache"
        result = invoke(["--files", str(listing), "--download-cache", str(cache)])
        assert result.exit_code == 0
        assert cache.is_dir()
        assert leftover_files(cache) == []

    def test_help_and_version(self) -> None:
        """--help documents every contract flag with defaults; --version prints the version."""
        help_text = invoke(["--help"]).output
        for flag in (
            "--files",
            "--processor",
            "--post-processor",
            "--processing-limit",
            "--download-queue-size",
            "--download-cache",
            "--simulate-downloads",
            "--download-workers",
            "--max-retries",
            "--timeout",
            "--retry-backoff",
            "--processor-option",
            "--post-processor-option",
            "--debug",
            "--log-file",
        ):
            assert flag in help_text
        assert "[default: 3; x>=0]" in help_text
        assert __version__ in invoke(["--version"]).output

    def test_plugins_json_lists_builtins(self) -> None:
        """plugins --json lists every built-in with kind, distribution, version and options."""
        result = invoke(["plugins", "--json"])
        data = json.loads(result.stdout)
        names = {(p["name"], p["kind"]) for p in data["plugins"]}
        assert {
            ("dummy", "processor"),
            ("checksum", "processor"),
            ("dummy", "post-processor"),
            ("jsonl", "post-processor"),
        } <= names
        jsonl = next(p for p in data["plugins"] if p["name"] == "jsonl")
        assert jsonl["distribution"] == "download-pipeline-processor"
        assert jsonl["version"] == __version__
        assert [o["name"] for o in jsonl["options"]] == ["path", "append"]


def _spawn(args: list[str], cli_path: Path, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [str(cli_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


class TestSubprocess:
    """The installed console script, run as users run it."""

    def test_checksum_run(self, tmp_path: Path, file_server: FileServer, cli_path: Path) -> None:
        """A real process downloads, checksums and prints one JSON line per file."""
        entries = [{"id": str(i), "url": file_server.add(f"/s{i}", b"x" * i)} for i in range(10)]
        listing = write_list(tmp_path / "l.json", entries)
        proc = _spawn(
            ["--files", str(listing), "--processor", "checksum", "--post-processor", "jsonl"],
            cli_path,
        )
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        sizes = {r["id"]: r["result"]["size"] for r in map(json.loads, out.splitlines())}
        assert sizes == {str(i): i for i in range(10)}
        assert "10 files: 10 succeeded, 0 failed" in err

    def test_start_up_skips_what_the_run_does_not_need(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A run loading no installed plugin imports no entry-point, hash, HTTP or TLS code.

        Each of them costs milliseconds of every run's start-up; the import log
        of a real process is what users pay.
        """
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a.bin", b"abc")}])
        run = ["--files", str(listing), "--simulate-downloads", "--no-sleep", "--processor", "save"]
        run += ["--processor-option", f"dest={tmp_path / 'out'}"]
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", str(cli_path), *run],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (tmp_path / "out" / "a.bin").exists()
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in proc.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "download_pipeline_processor.builtins._simulated" in imported  # the log is complete
        # rich too: the progress view's library is for terminals only.
        assert not imported & {
            "importlib_metadata",
            "hashlib",
            "ssl",
            "requests",
            "urllib3",
            "rich",
        }

    def test_example_runs_in_simulation(self, cli_path: Path, tmp_path: Path) -> None:
        """The shipped example runs with --simulate-downloads and no network (README command)."""
        proc = subprocess.run(
            [
                str(cli_path),
                "--files",
                str(REPO / "examples" / "files.json"),
                "--simulate-downloads",
                "--download-cache",
                str(tmp_path / "c"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PIPELINE_NO_SLEEP": "1"},
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "5 files: 5 succeeded, 0 failed" in proc.stderr

    def test_bad_input_subprocess(self, tmp_path: Path, cli_path: Path) -> None:
        """A real process given a bad list exits 2 with one stderr line and no traceback."""
        listing = write_list(tmp_path / "l.json", [{"url": "gopher://old/x"}])
        proc = subprocess.run(
            [str(cli_path), "--files", str(listing)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"Error: {listing}: entry 0: field 'url' has unsupported scheme 'gopher' "
            "(allowed: http, https)"
        ]

    def test_hostile_input_subprocess(self, tmp_path: Path, cli_path: Path) -> None:
        """A real process given a 100,000-deep list exits 2 with one line, no traceback."""
        listing = tmp_path / "l.json"
        listing.write_text(
            '[{"url": "http://127.0.0.1:9/a", "x": ' + "[" * 100_000 + "]" * 100_000 + "}]"
        )
        proc = subprocess.run(
            [str(cli_path), "--files", str(listing)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"Error: {listing}: entry 0: lists or objects nested too deeply"
        ]

    @pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_signal_stops_gracefully(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, sig: int, code: int
    ) -> None:
        """SIGINT/SIGTERM stop the run within seconds, report what started and empty the cache."""
        entries = [
            {"id": str(i), "url": file_server.add(f"/slow{i}", b"z" * 100, delay=0.2)}
            for i in range(200)
        ]
        listing = write_list(tmp_path / "l.json", entries)
        report = tmp_path / "report.jsonl"
        cache = tmp_path / "cache"
        proc = _spawn(
            [*checksum_report_args(listing, report, cache), "--download-workers", "2"],
            cli_path,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            not report.exists() or len(report.read_text().splitlines()) < 3
        ):
            time.sleep(0.05)
        proc.send_signal(sig)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=20)
        assert time.monotonic() - sent < 5
        assert proc.returncode == code, err
        lines = [json.loads(line) for line in report.read_text().splitlines()]
        ids = [line["id"] for line in lines]
        assert len(ids) == len(set(ids)) >= 3
        assert "not started" in err
        assert "Traceback" not in err
        assert leftover_files(cache) == []


class TestCacheSizeOption:
    """--cache-size SIZE on the command line."""

    @pytest.mark.parametrize("value", ["1", "250K", "1.5m", "2G"])
    def test_good_values_run(self, tmp_path: Path, file_server: FileServer, value: str) -> None:
        """A size with or without a suffix is accepted and the run gets every file."""
        entries = [{"id": str(i), "url": file_server.add(f"/c{i}", b"c" * 4096)} for i in range(5)]
        listing = write_list(tmp_path / "l.json", entries)
        report = tmp_path / "report.jsonl"
        cache = tmp_path / "cache"
        result = invoke([*checksum_report_args(listing, report, cache), "--cache-size", value])
        assert result.exit_code == 0, result.stderr
        assert len(report.read_text().splitlines()) == 5
        assert leftover_files(cache) == []

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("lots", "expected a number of bytes"),
            ("10X", "expected a number of bytes"),
            ("-5K", "expected a number of bytes"),
            ("0", "at least 1 byte"),
            ("0.5", "not a whole number of bytes"),
        ],
    )
    def test_bad_values_exit_2(self, tmp_path: Path, value: str, problem: str) -> None:
        """A bad size is one line naming --cache-size, exit 2, before any request."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/x"}])
        result = invoke(["--files", str(listing), "--cache-size", value])
        assert result.exit_code == 2
        lines = error_lines(result)
        assert len(lines) == 1, lines
        assert lines[0].startswith("Error: --cache-size: ")
        assert problem in lines[0]
        assert "Traceback" not in result.stderr


#: A uid no account needs to have: chown takes any number (see tests/test_cache.py).
FOREIGN_UID = 54321

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown to another uid needs root"
)


def _only_error_line(result: Result, *parts: str) -> None:
    """Exit 2 with one stderr line holding every one of ``parts``, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = error_lines(result)
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0]
    assert "internal error" not in lines[0]
    assert "Traceback" not in result.output


class TestCacheSafety:
    """A cache root another user could tamper with, or one that cannot be used, is exit 2."""

    @needs_root
    def test_root_of_another_user(self, tmp_path: Path, file_server: FileServer) -> None:
        """--download-cache owned by another uid: exit 2 naming it and why, no request."""
        root = tmp_path / "theirs"
        root.mkdir()
        os.chown(root, FOREIGN_UID, FOREIGN_UID)
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        result = invoke(["--files", str(listing), "--download-cache", str(root)])
        _only_error_line(result, str(root), "belongs to another user")
        assert file_server.request_count() == 0
        assert list(root.iterdir()) == []

    def test_root_is_a_symlink(self, tmp_path: Path) -> None:
        """--download-cache that is a symbolic link: exit 2."""
        (tmp_path / "real").mkdir(mode=0o700)
        (tmp_path / "link").symlink_to(tmp_path / "real")
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(["--files", str(listing), "--download-cache", str(tmp_path / "link")])
        _only_error_line(result, str(tmp_path / "link"), "is a symbolic link")
        assert list((tmp_path / "real").iterdir()) == []

    def test_root_writable_by_others(self, tmp_path: Path) -> None:
        """--download-cache that group or others may write to: exit 2 saying so."""
        root = tmp_path / "shared"
        root.mkdir()
        root.chmod(0o777)
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(["--files", str(listing), "--download-cache", str(root)])
        _only_error_line(result, str(root), "writable by group or others (mode 777)")

    def test_root_that_cannot_be_made(self, tmp_path: Path) -> None:
        """--download-cache under a regular file (fails as root too): exit 2, no internal error."""
        (tmp_path / "somefile").write_bytes(b"")
        root = tmp_path / "somefile" / "sub"
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(["--files", str(listing), "--download-cache", str(root)])
        _only_error_line(result, str(root), "cannot be created: Not a directory")

    @needs_root
    def test_default_root_taken_subprocess(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A real process whose default root another user made first exits 2 with one line."""
        root = tmp_path / f"download-pipeline-processor-{os.geteuid()}"
        root.mkdir()
        root.chmod(0o777)
        os.chown(root, FOREIGN_UID, FOREIGN_UID)
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        proc = subprocess.run(
            [str(cli_path), "--files", str(listing)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **os.environ,
                "TMPDIR": str(tmp_path),
                "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
            },
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"Error: download cache {root}: belongs to another user "
            f"(uid {FOREIGN_UID}, not {os.geteuid()}); refused"
        ]
        assert file_server.request_count() == 0
        assert list(root.iterdir()) == []


@pytest.fixture
def shared_workspace(other_user: pwd.struct_passwd) -> Iterator[Path]:
    """A folder in the temp dir that the second user owns (tmp_path is root's own, 0700)."""
    workspace = Path(tempfile.mkdtemp(prefix="dpp-other-"))
    os.chown(workspace, other_user.pw_uid, other_user.pw_gid)
    try:
        yield workspace
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _python_for(user: pwd.struct_passwd, cwd: Path) -> str:
    """An interpreter of this version that ``user`` can run.

    This one may sit where the user cannot reach it (a venv under /root):
    then the system's interpreter of the same version, given this
    environment's import paths.
    """
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "pass"],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            cwd=cwd,
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return sys.executable
    except OSError:
        pass
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    if system is None:
        pytest.skip(f"no {version} the second user can run")
    return system


RUN_CLI = "from download_pipeline_processor.cli import main; main()"


def _run_as(
    user: pwd.struct_passwd, args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI run by ``user`` with this environment's packages."""
    import download_pipeline_processor

    package_paths = [
        str(Path(download_pipeline_processor.__file__).parents[1]),
        sysconfig.get_paths()["purelib"],
    ]
    return subprocess.run(
        [_python_for(user, cwd), "-c", RUN_CLI, *args],
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(package_paths),
            "HOME": str(cwd),
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
            **(env or {}),
        },
    )


class TestCacheAsAnotherUser:
    """Runs by a real second (non-root) account, where permission bits do apply."""

    def test_read_only_root(
        self, shared_workspace: Path, other_user: pwd.struct_passwd, file_server: FileServer
    ) -> None:
        """The user's own read-only --download-cache: exit 2, one line, no request."""
        listing = write_list(shared_workspace / "l.json", [{"url": file_server.add("/a", b"a")}])
        root = shared_workspace / "cache"
        root.mkdir()
        os.chown(root, other_user.pw_uid, other_user.pw_gid)
        root.chmod(0o500)
        proc = _run_as(
            other_user, ["--files", str(listing), "--download-cache", str(root)], shared_workspace
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"Error: download cache {root}: cannot make a folder in it: Permission denied"
        ]
        assert file_server.request_count() == 0

    def test_root_of_root_refused(
        self, tmp_path: Path, shared_workspace: Path, other_user: pwd.struct_passwd
    ) -> None:
        """A root folder owned by the superuser is refused to the second user too."""
        listing = write_list(shared_workspace / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        root = shared_workspace / "roots"
        root.mkdir(mode=0o755)
        proc = _run_as(
            other_user, ["--files", str(listing), "--download-cache", str(root)], shared_workspace
        )
        assert proc.returncode == 2, proc.stderr
        assert "belongs to another user (uid 0" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

    def test_default_root_is_the_users_own(
        self, shared_workspace: Path, other_user: pwd.struct_passwd, file_server: FileServer
    ) -> None:
        """The second user's default root is their own 0700 folder and the run succeeds."""
        listing = write_list(shared_workspace / "l.json", [{"url": file_server.add("/b", b"b")}])
        tmp = shared_workspace / "tmp"
        tmp.mkdir()
        tmp.chmod(0o1777)
        proc = _run_as(
            other_user, ["--files", str(listing)], shared_workspace, env={"TMPDIR": str(tmp)}
        )
        assert proc.returncode == 0, proc.stderr
        root = tmp / f"download-pipeline-processor-{other_user.pw_uid}"
        info = root.lstat()
        assert info.st_uid == other_user.pw_uid
        assert info.st_mode & 0o777 == 0o700
        assert list(root.iterdir()) == []


def _run_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith("run-")) if root.exists() else []


def _wait_for(condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class TestKilledRuns:
    """What a run killed with SIGKILL leaves is removed by the next run; live runs are kept."""

    @pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
    def test_next_run_removes_a_killed_runs_folder(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A folder left by kill -9 goes at the next run (--debug: bytes freed); live ones stay."""
        root = tmp_path / "cache"
        live_list = write_list(
            tmp_path / "v.json", [{"url": file_server.add("/live.bin", b"v", delay=30)}]
        )
        live = _spawn(["--files", str(live_list), "--download-cache", str(root)], cli_path)
        try:
            _wait_for(lambda: len(_run_folders(root)) == 1, "the live run's folder")
            (live_folder,) = _run_folders(root)
            cut = file_server.add("/cut.bin", b"c" * 100_000, truncate_to=50_000)
            slow = [file_server.add(f"/slow{i}.bin", b"s" * 10, delay=30) for i in range(3)]
            killed_list = write_list(
                tmp_path / "k.json", [{"url": cut}] + [{"url": url} for url in slow]
            )
            # The truncated file's .part (50 000 bytes) waits out a long backoff: data to free.
            killed = _spawn(
                [
                    *["--files", str(killed_list), "--download-cache", str(root)],
                    *["--retry-backoff", "60", "--max-retries", "1", "--download-workers", "4"],
                ],
                cli_path,
            )
            try:
                _wait_for(
                    lambda: any(p.stat().st_size == 50_000 for p in root.rglob("*.part")),
                    "the killed run's .part file",
                )
                (leftover,) = [p for p in _run_folders(root) if p != live_folder]
            finally:
                killed.send_signal(signal.SIGKILL)
                killed.communicate(timeout=20)
            assert killed.returncode == -signal.SIGKILL
            assert leftover.is_dir()  # nothing cleaned up after the killed run

            listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
            result = invoke(["--files", str(listing), "--download-cache", str(root), "--debug"])
            assert result.exit_code == 0, result.stderr
            assert not leftover.exists()
            assert live_folder.is_dir()
            assert live.poll() is None
            assert "removed 1 run folder(s)" in result.stderr
            assert "50000 bytes freed" in result.stderr
        finally:
            live.send_signal(signal.SIGKILL)
            live.communicate(timeout=20)


class TestLeakedThreads:
    """A plugin's leftover threads cannot keep the finished command alive."""

    @pytest.mark.parametrize("failing", [False, True])
    def test_non_daemon_thread_left_by_a_processor(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, failing: bool
    ) -> None:
        """The CLI exits with its code, output flushed, and one warning naming the thread."""
        entries = [{"id": str(i), "url": file_server.add(f"/l{i}", b"l" * i)} for i in range(3)]
        if failing:
            entries.append({"id": "gone", "url": file_server.url("/gone")})
        listing = write_list(tmp_path / "l.json", entries)
        python_path = os.pathsep.join(
            [str(PLUGIN_MODULES), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env = {
            **os.environ,
            "PYTHONPATH": python_path,
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
        }
        args = ["--files", str(listing), "--processor", "faulty_plugins:LeakyProcessor"]
        args += ["--post-processor", "jsonl", "--download-cache", str(tmp_path / "cache")]
        proc, out, err = run_bounded(cli_path, args, env)
        assert proc.returncode == (1 if failing else 0), err
        # Written to a pipe, so block-buffered: all of it arrived only if it was flushed.
        assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(
            entry["id"] for entry in entries
        )
        warnings = [line for line in err.splitlines() if "still running" in line]
        assert len(warnings) == 1, err
        assert "leaked-by-plugin" in warnings[0]
        assert "Traceback" not in err
        assert f"{len(entries)} files: 3 succeeded" in err

    def test_no_warning_without_leaked_threads(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """A run whose plugins leave no thread behind says nothing about threads."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/n.bin", b"n")}])
        proc = subprocess.run(
            [str(cli_path), "--files", str(listing), "--processing-mode", "process"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
        )
        assert proc.returncode == 0, proc.stderr
        assert "still running" not in proc.stderr


class TestProcessingTimeoutFlag:
    """--processing-timeout from the command line, in a real process."""

    @pytest.mark.parametrize("mode", ["thread", "process"])
    def test_stuck_file_fails_and_the_command_ends(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path, mode: str
    ) -> None:
        """A processor stuck on one file: the CLI still ends, exit 1, that file failed."""
        entries = [{"id": f"ok{i}", "url": file_server.add(f"/t{i}", b"t" * i)} for i in range(4)]
        entries.insert(2, {"id": "hang", "url": file_server.add("/hang", b"h")})
        listing = write_list(tmp_path / "l.json", entries)
        python_path = os.pathsep.join(
            [str(PLUGIN_MODULES), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        env = {
            **os.environ,
            "PYTHONPATH": python_path,
            "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "",
        }
        args = ["--files", str(listing), "--processor", "faulty_plugins:HangingProcessor"]
        args += ["--post-processor", "jsonl", "--download-cache", str(tmp_path / "cache")]
        args += ["--processing-timeout", "1", "--processing-mode", mode]
        proc, out, err = run_bounded(cli_path, args, env)
        assert proc.returncode == 1, err
        records = {record["id"]: record for record in map(json.loads, out.splitlines())}
        assert sorted(records) == sorted(entry["id"] for entry in entries)
        assert records["hang"]["error"]["stage"] == "process"
        assert "processing timeout" in records["hang"]["error"]["message"]
        assert "5 files: 4 succeeded, 1 failed" in err
        assert "--processing-timeout" in err  # the warning
        assert "Traceback" not in err
        assert leftover_files(tmp_path / "cache") == []


def _snapshot(*roots: Path) -> dict[str, tuple[int, float]]:
    """Every path under ``roots`` with its size and modification time."""
    found: dict[str, tuple[int, float]] = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            info = path.lstat()
            found[str(path)] = (info.st_size, info.st_mtime)
    return found


class TestDryRun:
    """--dry-run checks everything a run would use and stops before any request or write."""

    def dry_run_args(self, tmp_path: Path, file_server: FileServer) -> list[str]:
        entries = [{"id": str(i), "url": file_server.add(f"/d{i}", b"x" * i)} for i in range(3)]
        entries.append({"id": "other", "url": file_server.url("/d0", host="localhost")})
        (tmp_path / "in").mkdir(exist_ok=True)
        listing = write_list(tmp_path / "in" / "l.json", entries)
        return [
            "--files",
            str(listing),
            "--dry-run",
            "--processor",
            "save",
            "--processor-option",
            f"dest={tmp_path / 'saved'}",
            "--post-processor",
            "jsonl",
            "--post-processor-option",
            f"path={tmp_path / 'report.jsonl'}",
            "--download-cache",
            str(tmp_path / "cache-root"),
            "--journal",
            str(tmp_path / "journal.db"),
            "--log-file",
            str(tmp_path / "run.log"),
            "--download-workers",
            "5",
        ]

    def test_makes_no_request_and_writes_nothing(
        self, tmp_path: Path, file_server: FileServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No request reaches the server; no report, journal, log, cache root or output appears."""
        args = self.dry_run_args(tmp_path, file_server)
        workdir = tmp_path / "cwd"
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        before = _snapshot(tmp_path)
        result = invoke(args)
        assert result.exit_code == 0, result.stderr
        assert file_server.request_log == []
        assert _snapshot(tmp_path) == before
        assert not (tmp_path / "cache-root").exists()

    def test_prints_entries_hosts_plugins_workers_and_cache(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """The plan is printed: entry count, hosts with counts, plugins, workers, cache folder."""
        result = invoke(self.dry_run_args(tmp_path, file_server))
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        assert "entries: 4 files" in out
        port = file_server.port
        assert f"hosts: 2: http://127.0.0.1:{port} (3), http://localhost:{port} (1)" in out
        assert f"processor 'save' (dest={tmp_path / 'saved'}), 3 threads" in out
        # With --journal, jsonl appends (its append option's default under a journal).
        assert f"post-processor 'jsonl' (path={tmp_path / 'report.jsonl'}, append=True)" in out
        assert "downloader 'requests', 5 workers, 3 retries" in out
        assert f"a private folder in {tmp_path / 'cache-root'} (would be made)" in out

    def test_secret_option_not_shown(self, tmp_path: Path, file_server: FileServer) -> None:
        """An option declared secret (credentials) is shown as REDACTED, never its value."""

        class Uploader(BasePostProcessor):
            options = (Option("credentials", secret=True, help="an access key"),)

            def __init__(self, credentials: str = "") -> None:
                self.credentials = credentials

            def post_process(self, result: Any, file_data: FileData) -> None:
                """Nothing: the dry run never calls it."""

        class Plugin:
            @hookimpl
            def register_post_processors(self, register: Any) -> None:
                register("uploader", Uploader)

        args = [*self.dry_run_args(tmp_path, file_server)[:3], "--post-processor", "uploader"]
        args += ["--post-processor-option", "credentials=KEY-s3cr3t"]
        result = invoke(args, manager=make_plugin_manager(Plugin()))
        assert result.exit_code == 0, result.stderr
        assert "post-processor 'uploader' (credentials=REDACTED)" in result.stdout
        assert "s3cr3t" not in result.stdout + result.stderr

    def test_bad_input_is_exit_2(self, tmp_path: Path, file_server: FileServer) -> None:
        """A bad entry, a bad plugin option or an unsafe cache root is exit 2, as a run's."""
        args = self.dry_run_args(tmp_path, file_server)
        bad_entry = write_list(tmp_path / "bad.json", [{"url": "ftp://x/y"}])
        assert invoke([*args, "--files", str(bad_entry)]).exit_code == 2
        bad_option = invoke([*args, "--processor-option", "colour=red"])
        assert bad_option.exit_code == 2
        assert "unknown option 'colour'" in bad_option.stderr
        (tmp_path / "cache-root").mkdir(mode=0o777)
        (tmp_path / "cache-root").chmod(0o777)
        unsafe = invoke(args)
        assert unsafe.exit_code == 2
        assert "writable by group or others" in unsafe.stderr
        assert file_server.request_log == []

    def test_real_process_makes_no_request(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """The installed command with --dry-run exits 0 with no request and nothing written."""
        args = self.dry_run_args(tmp_path, file_server)
        workdir = tmp_path / "cwd"
        workdir.mkdir()
        before = _snapshot(tmp_path)
        proc = _spawn(args, cli_path, cwd=workdir)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Dry run:" in out
        assert "entries: 4 files" in out
        assert file_server.request_log == []
        assert _snapshot(tmp_path) == before


def help_sections(help_text: str) -> dict[str, str]:
    """``--help`` split at its headings (``Input options:``), each section's text by title."""
    parts = re.split(r"^(\S[^\n]*):\n", help_text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


class TestHelp:
    """--help teaches: options grouped by what they are about, examples last."""

    #: The options cli.py declares itself (not from settings), by section.
    EXPLICIT: ClassVar[dict[str, str]] = {
        "--files": "Input",
        "--dry-run": "Input",
        "--no-sleep": "Download",
        "--processor": "Processing",
        "--processor-option": "Processing",
        "--post-processor": "Output",
        "--post-processor-option": "Output",
        "--log-file": "Logging",
        "--quiet": "Logging",
        "--debug": "Logging",
        "--version": "Other",
        "--help": "Other",
    }

    def test_options_are_grouped_by_section(self) -> None:
        """Every option is listed under its section's heading, in the sections' order."""
        sections = help_sections(invoke(["--help"]).output)
        titles = [title for title in sections if title.endswith(" options")]
        assert titles == [
            "Input options",
            "Download options",
            "Processing options",
            "Output options",
            "Logging options",
            "Other options",
        ]
        expected = dict(self.EXPLICIT)
        for setting in cli_fields():
            expected[setting.metadata["cli"].flag] = setting.metadata["cli"].section.capitalize()
        for flag, section in expected.items():
            holding = [
                title
                for title, text in sections.items()
                if title.endswith(" options")
                and re.search(rf"^\s+(-\w, )?{re.escape(flag)}\b(?!-)", text, re.MULTILINE)
            ]
            assert holding == [f"{section} options"], flag

    def test_examples_come_last_as_written(self) -> None:
        """Examples close --help, each command whole on its lines, no line with trailing blanks."""
        help_text = invoke(["--help"]).output
        sections = help_sections(help_text)
        assert list(sections)[-1] == "Examples"
        examples = sections["Examples"]
        assert (
            "    download-pipeline-processor --files files.json --processor checksum \\\n"
            "        --post-processor jsonl --post-processor-option path=results.jsonl\n"
        ) in examples
        assert "download-pipeline-processor --files files.json --dry-run" in examples
        assert not [line for line in help_text.splitlines() if line != line.rstrip()]


def planted_failures(server: FileServer, tmp_path: Path) -> Path:
    """A list of 12 files: 4 missing (404), one wrong sha256, two a processor rejects."""
    entries: list[dict[str, Any]] = []
    for index in range(12):
        entry: dict[str, Any] = {"id": f"f{index}", "url": server.add(f"/f{index}", b"abc")}
        if index < 4:
            entry["url"] = server.url(f"/gone{index}")
        if index == 4:
            entry["sha256"] = "0" * 64
        if index in (5, 6):
            entry["id"] = f"bad-{index}"
        entries.append(entry)
    return write_list(tmp_path / "l.json", entries)


def planted_args(listing: Path, tmp_path: Path, *more: str) -> list[str]:
    return [
        "--files",
        str(listing),
        "--processor",
        "progress_plugins:RejectingProcessor",
        "--max-retries",
        "0",
        "--download-cache",
        str(tmp_path / "cache"),
        # One download worker and one processing thread: example ids in input order.
        "--download-workers",
        "1",
        "--processing-limit",
        "1",
        *more,
    ]


class TestSummary:
    """The end-of-run summary on stderr and in --summary-json."""

    @pytest.fixture(autouse=True)
    def _plugin_modules(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.syspath_prepend(str(PLUGIN_MODULES))

    def test_failures_grouped_by_reason_with_example_ids(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """404s, a sha256 mismatch and a processor's exception each get a line with ids."""
        result = invoke(planted_args(planted_failures(file_server, tmp_path), tmp_path))
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        start = lines.index("12 files: 5 succeeded, 7 failed")
        assert lines[start + 1].startswith("21 B downloaded in ")
        assert lines[start + 2 :] == [
            "failures by reason:",
            "  4  HTTP 404 (download)  e.g. f0, f1, f2, ...",
            "  2  UnreadableDocumentError (process)  e.g. bad-5, bad-6",
            "  1  sha256 mismatch (download)  e.g. f4",
        ]

    def test_summary_json(self, tmp_path: Path, file_server: FileServer) -> None:
        """--summary-json writes the same counts and failure groups as one JSON object."""
        path = tmp_path / "summary.json"
        listing = planted_failures(file_server, tmp_path)
        result = invoke(planted_args(listing, tmp_path, "--summary-json", str(path)))
        assert result.exit_code == 1
        summary = json.loads(path.read_text(encoding="utf-8"))
        assert {key: summary[key] for key in ("total", "succeeded", "failed", "skipped")} == {
            "total": 12,
            "succeeded": 5,
            "failed": 7,
            "skipped": 0,
        }
        assert summary["not_started"] == 0
        assert summary["bytes_downloaded"] == 21  # the 7 files downloaded, 3 bytes each
        assert summary["elapsed"] > 0
        assert [(f["reason"], f["count"], f["examples"]) for f in summary["failures"]] == [
            ("HTTP 404", 4, ["f0", "f1", "f2"]),
            ("UnreadableDocumentError", 2, ["bad-5", "bad-6"]),
            ("sha256 mismatch", 1, ["f4"]),
        ]

    def test_summary_json_folder_missing_is_exit_2(self, tmp_path: Path) -> None:
        """A --summary-json path in a missing folder is a usage error before the run."""
        listing = write_list(tmp_path / "l.json", [{"url": "http://127.0.0.1:9/a"}])
        result = invoke(
            ["--files", str(listing), "--summary-json", str(tmp_path / "no" / "s.json")]
        )
        assert result.exit_code == 2
        assert "--summary-json" in result.stderr
        assert "no such folder" in result.stderr

    def test_quiet_shows_only_the_failures(self, tmp_path: Path, file_server: FileServer) -> None:
        """With -q the summary keeps only the failed count and the failures by reason."""
        result = invoke(planted_args(planted_failures(file_server, tmp_path), tmp_path, "-q"))
        assert result.exit_code == 1
        summary = result.stderr[result.stderr.index("7 of 12 files failed") :].splitlines()
        assert summary == [
            "7 of 12 files failed",
            "failures by reason:",
            "  4  HTTP 404 (download)  e.g. f0, f1, f2, ...",
            "  2  UnreadableDocumentError (process)  e.g. bad-5, bad-6",
            "  1  sha256 mismatch (download)  e.g. f4",
        ]
        assert "succeeded" not in result.stderr

    def test_quiet_success_prints_nothing(self, tmp_path: Path, file_server: FileServer) -> None:
        """With -q a run where every file succeeded prints nothing on stderr."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a")}])
        result = invoke(["--files", str(listing), "-q", "--download-cache", str(tmp_path / "c")])
        assert result.exit_code == 0
        assert result.stderr == ""

    def test_one_file_reads_singular_with_human_bytes(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """One small file is '1 file' and its bytes are not '0.0 MB'."""
        listing = write_list(tmp_path / "l.json", [{"url": file_server.add("/a", b"a" * 2500)}])
        result = invoke(["--files", str(listing), "--download-cache", str(tmp_path / "c")])
        assert result.exit_code == 0
        assert "1 file: 1 succeeded, 0 failed" in result.stderr
        assert "2.50 kB downloaded in " in result.stderr
        assert "MB" not in result.stderr

    def test_log_file_gets_the_summary_once_on_stderr(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """--log-file records the summary; stderr shows it printed once, not also as a log line."""
        log_file = tmp_path / "run.log"
        listing = planted_failures(file_server, tmp_path)
        result = invoke(planted_args(listing, tmp_path, "--log-file", str(log_file)))
        assert result.exit_code == 1
        assert result.stderr.count("12 files: 5 succeeded, 7 failed") == 1
        logged = log_file.read_text(encoding="utf-8")
        assert "12 files: 5 succeeded, 7 failed" in logged
        assert "HTTP 404 (download)  e.g. f0, f1, f2, ..." in logged
