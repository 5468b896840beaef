"""Settings are declared once, in PipelineSettings, and the CLI's options come from them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from download_pipeline_processor import ProcessingPipeline, hookimpl
from download_pipeline_processor.cli import main, setting_options
from download_pipeline_processor.errors import SettingError
from download_pipeline_processor.options import parse_size
from download_pipeline_processor.settings import (
    CLI_SECTIONS,
    CliOption,
    PipelineSettings,
    cli_fields,
    cli_flag,
)
from download_pipeline_processor.testing import (
    FileServer,
    make_plugin_manager,
    run_command_bounded,
)

FIELDS = {setting.name: setting for setting in cli_fields()}


def wide_help(command: click.Command, obj: Any = None) -> str:
    """``--help`` on one line per option, so a default is never wrapped apart."""
    width = {"terminal_width": 400, "max_content_width": 400}
    result = CliRunner().invoke(command, ["--help"], obj=obj, catch_exceptions=False, **width)
    assert result.exit_code == 0
    return result.output


def option_records(help_text: str) -> dict[str, str]:
    """Each option's entry in ``--help``, by its first flag, on one line."""
    entries = re.findall(r"^  (-.*?)(?=^  -|^\S|\Z)", help_text, re.MULTILINE | re.DOTALL)
    return {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries}


def shown_default(setting: dataclasses.Field[Any]) -> str | None:
    """What ``--help`` shows as the setting's default; None for a flag that is off."""
    option: CliOption = setting.metadata["cli"]
    if option.shown_default is not None:
        return f"[default: ({option.shown_default})"
    if setting.default is False:
        return None
    return f"[default: {setting.default}"


class SettingsRecorder:
    """Keeps the settings a run starts with (the observer hook every run calls)."""

    def __init__(self) -> None:
        self.seen: list[PipelineSettings] = []

    @hookimpl
    def pipeline_started(self, settings: PipelineSettings) -> None:
        self.seen.append(settings)


def run_cli(args: list[str], recorder: SettingsRecorder) -> Result:
    manager = make_plugin_manager(recorder)
    return CliRunner().invoke(main, args, obj={"plugin_manager": manager}, catch_exceptions=False)


def non_default_value(  # noqa: PLR0911 - one return per kind of setting
    setting: dataclasses.Field[Any], tmp_path: Path
) -> tuple[list[str], Any]:
    """Arguments giving ``setting`` a value other than its default, and that value."""
    option: CliOption = setting.metadata["cli"]
    default = setting.default
    if setting.metadata["choices"] is not None:
        other = next(choice for choice in setting.metadata["choices"] if choice != default)
        return [option.flag, other], other
    if option.collect is not None:
        # A repeatable option: each given once.
        return [option.flag, "X-Test: 1"], {"X-Test": "1"}
    if option.parse is int:
        return [option.flag, "3"], 3
    if option.parse is not None:
        # A size ("3K"), or seconds given as a float.
        return ([option.flag, "2.5"], 2.5) if option.parse is float else ([option.flag, "3K"], 3072)
    if option.directory or option.file:
        path = tmp_path / ("elsewhere" if option.directory else "a.file")
        return [option.flag, str(path)], path
    if isinstance(default, bool):
        # --skip-failed means nothing (and is refused) without a journal.
        needs = ["--journal", str(tmp_path / "j.db")] if setting.name == "skip_failed" else []
        return [option.flag, *needs], True
    if isinstance(default, (int, float)):
        return [option.flag, str(default + 2)], default + 2
    if setting.name == "downloader":
        return [option.flag, "simulated"], "simulated"
    if setting.name == "input_format":  # any registered format's name
        return [option.flag, "json"], "json"
    if isinstance(default, str):
        return [option.flag, "other/1"], "other/1"
    raise AssertionError(f"no test value for {setting.name}: teach non_default_value its kind")


class TestCliOptionsFromSettings:
    """Every CLI setting's option is generated from its PipelineSettings field."""

    def test_every_cli_setting_is_in_help_with_its_default(self) -> None:
        """--help lists each setting's flag with the dataclass default (or its shown text)."""
        records = option_records(wide_help(main, {"plugin_manager": make_plugin_manager()}))
        assert FIELDS, "no settings are exposed on the command line"
        for setting in FIELDS.values():
            flag = setting.metadata["cli"].flag
            assert flag in records, f"{flag} not listed in --help"
            expected = shown_default(setting)
            if expected is not None:
                assert expected in records[flag], f"{flag}: {expected!r} not in {records[flag]!r}"

    def test_option_defaults_are_the_dataclass_defaults(self) -> None:
        """Each generated click option's default is its field's default, for every field."""
        params = {param.name: param for param in main.params}
        for name, setting in FIELDS.items():
            assert name in params, f"setting {name} has no CLI option"
            default = params[name].default
            collect = setting.metadata["cli"].collect
            if collect is not None:  # repeatable: the setting is made of every value given
                assert collect(default) == setting.default_factory(), name  # type: ignore[misc]
            else:
                assert default == setting.default, name

    def test_a_changed_default_flows_to_the_cli(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Changing a field's declared default changes the option built from it and its help."""
        monkeypatch.setattr(FIELDS["max_retries"], "default", 7)
        command = click.command()(setting_options("download")(lambda **_params: None))
        params = {param.name: param for param in command.params}
        assert params["max_retries"].default == 7
        assert "[default: 7; x>=0]" in wide_help(command)

    def test_sections_order_the_options(self) -> None:
        """Each setting names a known help section, and --help lists the sections in order."""
        help_text = wide_help(main, {"plugin_manager": make_plugin_manager()})
        positions = []
        for section in CLI_SECTIONS:
            for setting in cli_fields(section):
                positions.append((section, help_text.index(setting.metadata["cli"].flag + " ")))
        assert [section for section, _ in sorted(positions, key=lambda p: p[1])] == [
            section for section, _ in positions
        ]
        assert {setting.metadata["cli"].section for setting in FIELDS.values()} <= set(CLI_SECTIONS)

    def test_unknown_section_is_refused(self) -> None:
        """A CLI declaration naming a section --help does not have is an error at once."""
        with pytest.raises(ValueError, match="unknown help section 'extras'"):
            CliOption("--x", "extras", "X.")


class TestSettingsFromCommandLine:
    """One generic step turns the CLI's parameters into PipelineSettings."""

    def test_no_flags_give_the_dataclass_defaults(
        self, tmp_path: Path, file_server: FileServer
    ) -> None:
        """A run given no setting flags starts with PipelineSettings' own defaults."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": file_server.add("/a", b"a")}]), encoding="utf-8")
        recorder = SettingsRecorder()
        cache = tmp_path / "cache"  # the one flag given: keeps the test's files its own
        result = run_cli(["--files", str(listing), "--download-cache", str(cache)], recorder)
        assert result.exit_code == 0, result.output
        assert recorder.seen == [PipelineSettings(download_cache=cache)]

    def test_every_setting_flag_reaches_the_settings(self, tmp_path: Path) -> None:
        """Each setting's flag, given a non-default value, sets that field of the run's settings."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]), encoding="utf-8")
        cache = ["--download-cache", str(tmp_path / "cache")]
        base = ["--files", str(listing), *cache, "--simulate-downloads", "--no-sleep"]
        for name, setting in FIELDS.items():
            if name == "simulate_downloads":
                continue  # every run here simulates: no network is needed to see settings
            args, value = non_default_value(setting, tmp_path)
            recorder = SettingsRecorder()
            # --downloader simulated simulates by itself: beside --simulate-downloads it is refused.
            run_base = [a for a in base if a != "--simulate-downloads" or name != "downloader"]
            result = run_cli([*run_base, *args], recorder)
            assert result.exit_code == 0, (name, result.output)
            assert getattr(recorder.seen[0], name) == value, name
            assert recorder.seen[0].simulate_delay == (0.0, 0.0)

    def test_bounds_are_shared_by_cli_and_dataclass(self, tmp_path: Path) -> None:
        """A value just past a setting's bound: exit 2 and one line naming the flag on the
        CLI, the same words naming the keyword in code."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]), encoding="utf-8")
        bounded = [s for s in FIELDS.values() if s.metadata["minimum"] is not None]
        assert bounded
        for setting in bounded:
            minimum = setting.metadata["minimum"]
            value = minimum if setting.metadata["above"] else minimum - 1
            flag = setting.metadata["cli"].flag
            result = run_cli(["--files", str(listing), flag, str(value)], SettingsRecorder())
            assert result.exit_code == 2, (flag, result.output)
            if setting.metadata["cli"].parse in (parse_size,):
                continue  # a negative size is not a size: the parser names the flag
            (line,) = result.output.strip().splitlines()
            relation = ">" if setting.metadata["above"] else ">="
            assert line.startswith(f"Error: {flag} must be {relation} {minimum:g}"), line
            expected = f"^{setting.name} must be {relation} "
            with pytest.raises(SettingError, match=expected) as caught:
                PipelineSettings(**{setting.name: value})
            # The same words but the name (the CLI's value is the parsed one: 0.0 for "0").
            same = f"Error: {caught.value.naming(cli_flag)}"
            assert line.partition(", not ")[0] == same.partition(", not ")[0]

    def test_choices_are_checked_once_naming_the_flag(self, tmp_path: Path) -> None:
        """A value outside a setting's choices: the flag and the choices on the CLI, the keyword
        in code."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]), encoding="utf-8")
        result = run_cli(
            ["--files", str(listing), "--processing-mode", "fiber"], SettingsRecorder()
        )
        assert result.exit_code == 2
        assert result.output.strip() == (
            "Error: --processing-mode must be one of thread, process, not 'fiber'"
        )
        with pytest.raises(SettingError, match=r"^processing_mode must be one of thread, process"):
            PipelineSettings(processing_mode="fiber")


class TestFileTimeoutZero:
    """``--file-timeout 0`` is refused where every setting is checked, before anything runs."""

    def test_cli_names_the_flag_and_makes_no_request(
        self, tmp_path: Path, file_server: FileServer, cli_path: Path
    ) -> None:
        """--file-timeout 0: exit 2, one line naming --file-timeout, no request, nothing made."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": file_server.add("/a", b"a")}]), encoding="utf-8")
        args = ["--files", str(listing), "--file-timeout", "0"]
        args += ["--download-cache", str(tmp_path / "cache")]
        proc = run_command_bounded(
            [str(cli_path), *args],
            {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == "Error: --file-timeout must be > 0 second(s), not 0.0"
        assert file_server.request_count() == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json"]

    def test_library_names_the_keyword(self) -> None:
        """ProcessingPipeline(file_timeout=0) is refused at once, naming the keyword."""
        with pytest.raises(SettingError, match=r"^file_timeout must be > 0 second\(s\), not 0$"):
            ProcessingPipeline(file_timeout=0)


class TestSkipFailedNeedsJournal:
    """``skip_failed`` means nothing without a journal: refused in code as on the CLI."""

    def test_library_refuses_it(self, tmp_path: Path) -> None:
        """skip_failed=True without journal is one clear error naming both keywords."""
        with pytest.raises(
            SettingError, match=r"^skip_failed needs journal: only a journal knows what failed$"
        ):
            ProcessingPipeline(skip_failed=True)
        with pytest.raises(SettingError, match=r"^skip_failed needs journal"):
            PipelineSettings(skip_failed=True)
        journal = tmp_path / "j.sqlite"
        assert PipelineSettings(skip_failed=True, journal=journal).skip_failed

    def test_cli_names_the_flags(self, tmp_path: Path) -> None:
        """--skip-failed without --journal: exit 2, the same rule naming both flags."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]), encoding="utf-8")
        result = run_cli(["--files", str(listing), "--skip-failed"], SettingsRecorder())
        assert result.exit_code == 2
        assert result.output.strip() == (
            "Error: --skip-failed needs --journal: only a journal knows what failed"
        )


class TestSimulationWithDownloader:
    """``--simulate-downloads`` makes no request: a downloader named with it is a usage error."""

    @pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
    @pytest.mark.parametrize("downloader", ["curl", "simulated"])
    def test_refused_before_anything(
        self,
        tmp_path: Path,
        file_server: FileServer,
        cli_path: Path,
        downloader: str,
        dry_run: bool,
    ) -> None:
        """--simulate-downloads --downloader NAME: exit 2, one line naming both, no request."""
        listing = tmp_path / "l.json"
        listing.write_text(json.dumps([{"url": file_server.add("/a", b"a")}]), encoding="utf-8")
        log_file = tmp_path / "run.log"
        args = ["--files", str(listing), "--simulate-downloads", "--downloader", downloader]
        args += ["--log-file", str(log_file), "--download-cache", str(tmp_path / "cache")]
        args += ["--dry-run"] if dry_run else []
        proc = run_command_bounded(
            [str(cli_path), *args],
            {**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": ""},
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "--simulate-downloads" in line
        assert f"--downloader {downloader}" in line
        assert "Traceback" not in proc.stderr
        assert file_server.request_count() == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["l.json"]  # not even the log
