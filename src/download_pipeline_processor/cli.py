"""The command line: the only place that prints, exits or configures logging."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from ._input_formats import is_network_url
from ._listing import describe_plugins, format_plugins
from ._plugins import LOAD_PLUGINS_ENV, PipelinePluginManager, create_plugin_manager
from ._registry import PluginRegistry
from ._stop_signal import EXIT_CLOSED_OUTPUT, is_closed_stdout, stdout_reader_gone
from ._version import __version__
from .errors import UsageError
from .options import parse_key_values
from .paths import output_path_problem
from .pipeline import ProcessingPipeline
from .plan import STDOUT, output_paths, plan_run
from .settings import CLI_SECTIONS, CliOption, PipelineSettings, cli_fields
from .summary import RunSummary

logger = logging.getLogger("download_pipeline_processor")
# The end-of-run summary, for --log-file: stderr gets it printed, not logged.
summary_logger = logging.getLogger("download_pipeline_processor.summary")

EXIT_USAGE = 2
EXIT_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143}
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
DEBUG_LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"

F = TypeVar("F", bound=Callable[..., Any])

#: The end of ``--help``: whole commands to copy, shown line for line.
EXAMPLES = """\
Try it without network (placeholder files, no waiting):
  download-pipeline-processor --files files.json --simulate-downloads --no-sleep

Checksum every file, one JSON line per file into results.jsonl:
  download-pipeline-processor --files files.json --processor checksum \\
      --post-processor jsonl --post-processor-option path=results.jsonl

Keep the files, 16 downloads at a time, resumable after a crash:
  download-pipeline-processor --files files.json --download-workers 16 \\
      --processor save --processor-option dest=downloads --journal job.db

See what a run would do, without a request or a file written:
  download-pipeline-processor --files files.json --dry-run

List installed processors, post-processors and their options:
  download-pipeline-processor plugins
"""


class CliUsageError(click.ClickException):
    """A usage or input error: one line on stderr, exit 2."""

    exit_code = EXIT_USAGE


# Not subscripted: ParamType is generic only from click 8.2, and 8.1 is supported.
class ParsedType(click.ParamType):  # type: ignore[type-arg]
    """A value read by a setting's own parser (``parse_size``), with an optional minimum."""

    def __init__(self, parse: Callable[[str], Any], minimum: float | None, unit: str) -> None:
        self.parse = parse
        self.minimum = minimum
        self.unit = unit
        self.name = getattr(parse, "__name__", "value").removeprefix("parse_")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already a value
        flag = param.opts[0] if param is not None and param.opts else self.name
        try:
            parsed = self.parse(value)
        except ValueError as exc:
            raise CliUsageError(f"{flag}: {exc}") from None
        if self.minimum is not None and parsed < self.minimum:
            raise CliUsageError(
                f"{flag}: must be at least {self.minimum} {self.unit}".rstrip() + f", not {value!r}"
            )
        return parsed


class FilesPath(click.Path):
    """``--files``: a path, ``-``, or (refused by the input check, with a hint) a URL.

    A URL is kept as typed: as a path, ``http://h/x`` would become ``http:/h/x``.
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and is_network_url(value):
            return value
        return super().convert(value, param, ctx)


class SectionOption(click.Option):
    """A click option that knows its ``--help`` section (one of ``CLI_SECTIONS``)."""

    def __init__(self, *args: Any, section: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if section is not None and section not in CLI_SECTIONS:
            raise ValueError(f"{self.name}: unknown help section {section!r}")
        self.section = section


def sectioned_option(*param_decls: str, section: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option`` listed under ``section`` in ``--help``."""
    return click.option(*param_decls, cls=SectionOption, section=section, **attrs)


def _click_option(setting: dataclasses.Field[Any]) -> Callable[[F], F]:
    """The click option of one setting, from its declaration in ``settings.py``."""
    option: CliOption = setting.metadata["cli"]
    minimum = setting.metadata["minimum"]
    above = setting.metadata["above"]
    choices = setting.metadata["choices"]
    default = setting.default
    # Shown whatever command the option is added to, not only one whose context says so.
    extra: dict[str, Any] = {"show_default": True}
    if option.shown_default is not None:
        extra["show_default"] = option.shown_default
    if option.collect is not None:
        # Repeatable: each value read by ``parse``, all of them made one setting by ``collect``.
        extra.update(multiple=True, type=ParsedType(option.parse or str, None, option.unit))
        default = ()
    elif choices is not None:
        extra["type"] = click.Choice(choices)
    elif option.parse is not None:
        extra["type"] = ParsedType(option.parse, minimum, option.unit)
    elif option.directory:
        extra["type"] = click.Path(path_type=Path, file_okay=False)
    elif option.file:
        extra["type"] = click.Path(path_type=Path, dir_okay=False)
    elif isinstance(default, bool):
        extra["is_flag"] = True
    elif isinstance(default, int):
        extra["type"] = click.IntRange(min=minimum, min_open=above)
    elif isinstance(default, float):
        extra["type"] = click.FloatRange(min=minimum, min_open=above)
    return click.option(
        option.flag,
        setting.name,
        cls=SectionOption,
        section=option.section,
        metavar=option.metavar,
        default=default,
        help=option.help,
        **extra,
    )


def setting_options(section: str) -> Callable[[F], F]:
    """Add the click options of the settings ``--help`` lists in ``section``, in order."""

    def decorate(function: F) -> F:
        # Decorators apply bottom-up: the last one applied is listed first.
        for setting in reversed(cli_fields(section)):
            function = _click_option(setting)(function)
        return function

    return decorate


def settings_from_params(params: dict[str, Any]) -> PipelineSettings:
    """The run's settings: every setting option's value, taken out of ``params``.

    ``--no-sleep`` is not a setting of its own: it zeroes ``simulate_delay``.
    """
    changes = {setting.name: params.pop(setting.name) for setting in cli_fields()}
    for setting in cli_fields():
        collect = setting.metadata["cli"].collect
        if collect is not None:
            changes[setting.name] = collect(changes[setting.name])
    if params.pop("no_sleep"):
        changes["simulate_delay"] = (0.0, 0.0)
    return PipelineSettings(**changes)


def _plugin_manager(ctx: click.Context) -> PipelinePluginManager:
    """The manager a test passed in through ``obj``, or a fresh one with entry points."""
    if isinstance(ctx.obj, dict) and ctx.obj.get("plugin_manager") is not None:
        manager: PipelinePluginManager = ctx.obj["plugin_manager"]
        return manager
    return create_plugin_manager()


def _warn_about_plugins(registry: PluginRegistry, debug: bool) -> None:
    manager = registry.manager
    for failure in manager.load_failures:
        version = f" {failure.version}" if failure.version else ""
        click.echo(
            f"Warning: plugin {failure.name!r} ({failure.distribution}{version}) failed to load:"
            f" {type(failure.error).__name__}: {failure.error}"
            + ("" if debug else " (--debug shows the traceback)"),
            err=True,
        )
        if debug:
            click.echo(
                "".join(
                    traceback.format_exception(
                        type(failure.error), failure.error, failure.error.__traceback__
                    )
                ),
                err=True,
            )
    for problem in registry.problems:
        click.echo(f"Warning: {problem}", err=True)
    for kind, name, regs in registry.clashes():
        sources = " and ".join(sorted({reg.source.distribution for reg in regs}))
        click.echo(f"Warning: {kind.label} {name!r} is registered by {sources}", err=True)
    for name, distributions in registry.format_clashes():
        both = " and ".join(distributions)
        click.echo(f"Warning: input format {name!r} is registered by {both}", err=True)


def _configure_logging(
    debug: bool, quiet: bool, log_file: Path | None, *, dry_run: bool = False
) -> None:
    root = logging.getLogger()
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setFormatter(logging.Formatter(DEBUG_LOG_FORMAT if debug else LOG_FORMAT))
    stderr_handler.setLevel(level)
    stderr_handler._dpp_stderr = True  # type: ignore[attr-defined]
    stderr_handler.addFilter(lambda record: record.name != summary_logger.name)
    handlers: list[logging.Handler] = [stderr_handler]
    if log_file is not None:
        # A dry run writes nothing: the log file is made only if a line is logged.
        file_handler = logging.FileHandler(log_file, encoding="utf-8", delay=dry_run)
        file_handler.setFormatter(logging.Formatter(DEBUG_LOG_FORMAT))
        file_handler.setLevel(logging.DEBUG if debug else logging.INFO)
        handlers.append(file_handler)
    for handler in list(root.handlers):
        if getattr(handler, "_dpp_cli", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler._dpp_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(min(handler.level for handler in handlers))
    # urllib3 logs every new connection at DEBUG, URLs included: keep it quiet.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


@contextmanager
def _graceful_signals(pipeline: ProcessingPipeline) -> Iterator[None]:
    """SIGINT and SIGTERM ask the pipeline to stop; a second one stops waiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, _frame: object) -> None:
        if pipeline.stopping:
            raise KeyboardInterrupt
        pipeline.stop(EXIT_SIGNALS.get(signal.Signals(signum), 130))
        logger.warning(
            "%s received: finishing files in flight, starting no new ones "
            "(send it again to stop at once)",
            signal.Signals(signum).name,
        )

    previous = {sig: signal.signal(sig, handle) for sig in EXIT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _leftover_threads() -> list[threading.Thread]:
    """Threads that would keep the interpreter from exiting: alive, not daemon, not this one."""
    current = threading.current_thread()
    return [
        thread
        for thread in threading.enumerate()
        if thread is not current and not thread.daemon and thread.is_alive()
    ]


def _exit_despite_leftover_threads(code: object) -> None:
    """End the process with ``code`` now if a plugin's threads would keep it alive forever.

    Everything of the run is finished and closed by then; Python would wait for
    every non-daemon thread before exiting, and one that never ends would hang
    the command after its summary.
    """
    leftover = _leftover_threads()
    if not leftover:
        return
    logger.warning(
        "a plugin left %d thread(s) still running (%s); exiting without waiting for them",
        len(leftover),
        ", ".join(sorted(thread.name for thread in leftover)),
    )
    logging.shutdown()  # flushes every handler, the --log-file one included
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to save
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


class _Command(click.Group):
    """The top command; run as the process's own program, it also ends the process.

    Its ``--help`` lists the options by section (input, download, processing,
    output, logging, then the rest), as each option's ``section`` says, and
    ends with examples: click has one flat option list of its own.
    """

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_section: dict[str | None, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                by_section.setdefault(getattr(param, "section", None), []).append(record)
        for section in (*CLI_SECTIONS, None):
            records = by_section.get(section)
            if records:
                title = f"{section.capitalize()} options" if section else "Other options"
                with formatter.section(title):
                    formatter.write_dl(records)
        self.format_commands(ctx, formatter)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if not self.epilog:
            return
        with formatter.section("Examples"):
            for line in self.epilog.splitlines():
                # As written: click would rewrap the paragraphs and join the commands.
                formatter.write(f"{'':>{formatter.current_indent}}{line}\n" if line else "\n")

    def main(self, *args: Any, **kwargs: Any) -> Any:
        own_command_line = kwargs.get("args", args[0] if args else None) is None
        if not own_command_line:
            # Called with arguments (click's test runner, a script): the caller
            # owns the process and its threads.
            return super().main(*args, **kwargs)
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exc:
            _exit_despite_leftover_threads(exc.code)
            raise


@click.group(
    cls=_Command,
    invoke_without_command=True,
    epilog=EXAMPLES,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@sectioned_option(
    "--files",
    section="input",
    metavar="PATH",
    type=FilesPath(path_type=Path, dir_okay=True, allow_dash=True),
    help="The files to fetch, '-' for standard input: .json (a list of objects "
    '{"url": ..., "id": ..., "name": ...} or of URLs), .jsonl/.ndjson (an object a line), '
    ".csv (a header row with a url column), .txt/.urls (a URL a line) or a format a "
    "plugin registers (see 'plugins'); .gz read decompressed.",
)
@setting_options("input")
@sectioned_option(
    "--dry-run",
    section="input",
    is_flag=True,
    help="Check the input, plugins and options, print what the run would do (entries, "
    "hosts, workers, cache folder, limits, entries the journal would skip) and stop: no "
    "request, no file written.",
)
@setting_options("download")
@sectioned_option(
    "--no-sleep",
    section="download",
    is_flag=True,
    envvar="PIPELINE_NO_SLEEP",
    help="Make simulated downloads instant (env PIPELINE_NO_SLEEP=1).",
)
@sectioned_option(
    "--processor",
    section="processing",
    default="dummy",
    metavar="NAME",
    help="Processor: a registered name (see 'plugins') or module:ClassName.",
)
@sectioned_option(
    "--processor-option",
    "processor_options",
    section="processing",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for the processor; repeatable.",
)
@setting_options("processing")
@sectioned_option(
    "--executor",
    section="processing",
    default="local",
    metavar="NAME",
    help="Where downloads and processing run: 'local' (this machine) or an executor a "
    "plugin registers, such as 'dask' (see 'plugins').",
)
@sectioned_option(
    "--executor-option",
    "executor_options",
    section="processing",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for the executor (see 'plugins'); repeatable.",
)
@sectioned_option(
    "--post-processor",
    "post_processors",
    section="output",
    multiple=True,
    metavar="NAME",
    help="Post-processor, by name or module:ClassName; repeat for several.  [default: dummy]",
)
@sectioned_option(
    "--post-processor-option",
    "post_processor_options",
    section="output",
    multiple=True,
    metavar="[NAME.]KEY=VALUE",
    help="Keyword argument for the post-processor(s); repeatable.",
)
@setting_options("output")
@sectioned_option(
    "--log-file",
    section="logging",
    metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="DOWNLOAD_PIPELINE_PROCESSOR_LOG_FILE",
    help="Also write the log here.",
)
@sectioned_option(
    "--quiet",
    "-q",
    section="logging",
    is_flag=True,
    help="Log warnings and errors only; no progress view; the summary shows only failures.",
)
@sectioned_option(
    "--progress/--no-progress",
    section="output",
    default=None,
    help="Live view of files, bytes, rate and ETA on stderr; when stderr is not a terminal"
    " (CI logs, 2> file), a plain line every 10 s instead.  [default: on when stderr is a"
    " terminal]",
)
@sectioned_option(
    "--summary-json",
    section="output",
    metavar="PATH",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Also write the end-of-run summary here as one JSON object; '-' for standard output.",
)
@sectioned_option(
    "--debug", section="logging", is_flag=True, help="Log everything and show tracebacks."
)
@setting_options("logging")
@click.version_option(__version__, prog_name="download-pipeline-processor")
@click.pass_context
def main(ctx: click.Context, /, **params: Any) -> None:
    """Download a list of files concurrently and run each through a processor.

    Every file is fetched into a private temporary cache, handed to the
    processor, then to the post-processors, and deleted; a failed file goes to
    the post-processors too, with the stage and reason it failed.

    Exit codes: 0 all files succeeded, 1 some failed, 2 usage or input error,
    130 interrupted, 143 terminated, 141 standard output closed early by
    its reader.  Installed plugins load from the
    entry-point group download_pipeline_processor; set
    DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS to a comma list to load only those.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = params["debug"]
    if ctx.invoked_subcommand is not None:
        return
    if params["files"] is None:
        raise click.UsageError("missing option '--files' (or a command such as 'plugins')")
    try:
        # Before the log file is opened: a usage error there is the one line to see.
        settings = settings_from_params(params)
        _check_output_paths(params)
    except UsageError as exc:
        raise CliUsageError(str(exc)) from exc
    _configure_logging(
        params["debug"], params["quiet"], params["log_file"], dry_run=params["dry_run"]
    )
    try:
        code = _run(ctx, params, settings)
    except UsageError as exc:
        raise CliUsageError(str(exc)) from exc
    except Exception as exc:
        if params["debug"]:
            raise
        raise click.ClickException(
            f"internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)"
        ) from exc
    ctx.exit(code)


def _check_output_paths(params: dict[str, Any]) -> None:
    """Refuse a --log-file or --summary-json the run could not write, before any work."""
    given = (("--log-file", params["log_file"]), ("--summary-json", params["summary_json"]))
    for flag, path in given:
        if path is None or (flag == "--summary-json" and str(path) == STDOUT):
            continue
        problem = output_path_problem(path)
        if problem is not None:
            raise UsageError(f"{flag} {path}: {problem}")


def _run(ctx: click.Context, params: dict[str, Any], settings: PipelineSettings) -> int:
    if settings.skip_failed and settings.journal is None:
        raise UsageError("--skip-failed needs --journal: only a journal knows what failed")
    if settings.journal is not None:
        # A second run on a journal says so at once, not after checking a long input.
        from ._journal import check_not_busy, lock_path

        # The check opens (so makes) the lock's side file: a dry run only
        # checks a lock that is already there.
        if not params["dry_run"] or lock_path(Path(settings.journal)).exists():
            check_not_busy(settings.journal)

    # Made first, silently: the input is read by the formats plugins register.
    made = PluginRegistry(_plugin_manager(ctx))

    def registry() -> PluginRegistry:
        # Warned about once the input is checked: its error is the one line a user must see.
        _warn_about_plugins(made, params["debug"])
        return made

    plan = plan_run(
        params["processor"],
        list(params["post_processors"]) or ["dummy"],
        registry=registry,
        settings=settings,
        processor_options=parse_key_values(params["processor_options"], "--processor-option"),
        routed_post_processor_options=parse_key_values(
            params["post_processor_options"], "--post-processor-option"
        ),
        executor=params["executor"],
        executor_options=parse_key_values(params["executor_options"], "--executor-option"),
        files=params["files"],
        input_formats=made.input_formats,
    )
    if params["dry_run"]:
        from ._dry_run import describe_dry_run, format_dry_run

        click.echo(format_dry_run(describe_dry_run(plan, str(params["files"]))))
        return 0
    summary_json: Path | None = params["summary_json"]
    if summary_json is not None and str(summary_json) == STDOUT:
        for writer, path in output_paths(plan.post_processors):
            if path == STDOUT:
                raise UsageError(
                    f"--summary-json - and {writer} would both write to standard output;"
                    " give one of them a file"
                )
    pipeline = ProcessingPipeline.from_plan(plan)
    view: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if _wants_progress(params["progress"], params["quiet"]):
        # Imported only then: rich costs start-up time a piped run need not pay.
        from ._progress_view import progress_view

        view = progress_view(pipeline.plugin_manager, _stderr_handler())
    with _graceful_signals(pipeline), view:
        try:
            code = pipeline.run()
        except KeyboardInterrupt:
            code = pipeline.summary.stopped_with or 130
    return _report(pipeline.summary, code, quiet=params["quiet"], summary_json=summary_json)


def _report(summary: RunSummary, code: int, *, quiet: bool, summary_json: Path | None) -> int:
    """Print the end-of-run summary (and write --summary-json); the exit code to end with."""
    to_stdout = summary_json is not None and str(summary_json) == STDOUT
    if code == EXIT_CLOSED_OUTPUT or _output_lost() or (to_stdout and stdout_reader_gone()):
        # The reader of standard output left (``| head``) before all was written:
        # end quietly, as a program killed by SIGPIPE would, the cache cleaned up.
        _silence_stdout()
        for line in summary.lines():
            summary_logger.info("%s", line)
        return EXIT_CLOSED_OUTPUT
    # --quiet keeps what needs acting on: the failures, grouped by reason.
    lines = summary.failure_lines() if quiet else summary.lines()
    for line in lines:
        click.echo(line, err=True)
    for line in summary.lines():
        summary_logger.info("%s", line)
    if summary_json is not None:
        try:
            text = json.dumps(summary.as_dict(), indent=2) + "\n"
            if to_stdout:
                sys.stdout.write(text)
                sys.stdout.flush()
            else:
                summary_json.write_text(text, "utf-8")
        except OSError as exc:
            if is_closed_stdout(exc):
                _silence_stdout()
                return EXIT_CLOSED_OUTPUT
            click.echo(f"Error: --summary-json {summary_json}: {exc.strerror}", err=True)
            code = code or 1
    return code


def _output_lost() -> bool:
    """Whether what is left in standard output's buffer cannot reach its reader, who left.

    A reader that left after everything was written (``| grep -q``) lost
    nothing: the run's own exit code stands.
    """
    try:
        sys.stdout.flush()
    except OSError as exc:
        return is_closed_stdout(exc)
    return False


def _silence_stdout() -> None:
    """Point standard output at the null device: its reader is gone.

    What is still buffered, and Python's own flush at exit, then go nowhere
    instead of raising BrokenPipeError and printing it on stderr.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _wants_progress(choice: bool | None, quiet: bool) -> bool:
    """``--progress`` (live on a terminal, else plain lines), or by default on a terminal;
    never with ``--quiet``."""
    if quiet or choice is False:
        return False
    if choice:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def _stderr_handler() -> logging.Handler | None:
    """The handler :func:`_configure_logging` put on stderr, if any."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_dpp_stderr", False):
            return handler
    return None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins: name, kind, package, version, options and hooks.

    Set DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS to limit which are loaded.
    """
    registry = PluginRegistry(_plugin_manager(ctx))
    listing = describe_plugins(registry)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
    else:
        click.echo(format_plugins(listing))


@main.command("journal")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option(
    "--export",
    "export",
    metavar="FILE",
    type=click.Path(path_type=Path, allow_dash=True),
    help="Write every entry's latest outcome as JSON Lines, in input order ('-': stdout).",
)
def journal_command(path: Path, as_json: bool, export: Path | None) -> None:
    """Show a journal (--journal PATH): counts by status, failures grouped by reason.

    --export FILE writes every entry's latest outcome instead, one JSON line
    each, in input order.  Reads only (an older journal is left as it is, its
    schema upgraded by the next run): it can look at the journal of a run still going.
    """
    from ._journal_report import describe_journal, format_journal

    if export is not None:
        if as_json:
            raise CliUsageError("--export and --json cannot be used together")
        _export_journal(path, export)
        return
    try:
        description = describe_journal(path)
    except UsageError as exc:
        raise CliUsageError(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(description, indent=2))
    else:
        click.echo(format_journal(description))


def _export_journal(path: Path, export: Path) -> None:
    """``journal PATH --export FILE``: the whole job as JSON Lines, to a file or stdout."""
    from ._journal_report import export_journal, exported_lines, write_export

    try:
        if str(export) == "-":
            with exported_lines(path) as lines:
                # Bytes: JSON Lines is UTF-8 whatever the terminal's encoding.
                write_export(lines, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            return
        if not export.parent.is_dir():
            raise CliUsageError(f"--export {export}: no such folder {export.parent}")
        export_journal(path, export)
    except UsageError as exc:
        raise CliUsageError(str(exc)) from exc
    except BrokenPipeError:
        # The reader stopped early (``| head``): as for any filter, no error.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except OSError as exc:
        raise CliUsageError(f"--export {export}: {exc.strerror or exc}") from exc


__all__ = ["LOAD_PLUGINS_ENV", "main"]
