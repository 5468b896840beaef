"""The tools under test and how each is invoked and verified for one job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .corpus import ListFiles
from .processes import clean_env
from .verify import verify_directory, verify_jsonl

#: The flag (and value) the CLI is expected to grow for a processing pool of processes.
PROCESS_MODE_FLAG = "--processing-mode"
PROCESS_MODE_VALUE = "process"
ARIA2_FAIR_FLAGS = (
    "--console-log-level=warn",
    "--summary-interval=0",
    "--file-allocation=none",
    "--auto-file-renaming=false",
    "--allow-overwrite=true",
)
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The project's variable naming the installed plugins to load; empty loads none.
LOAD_PLUGINS_ENV = "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS"
#: The CA bundle variable this project's downloaders (and requests) honour.
CA_BUNDLE_ENV = "REQUESTS_CA_BUNDLE"
#: Downloaders from plugin packages whose version the results record.
PLUGIN_DOWNLOADERS = ("curl",)
#: The label of the curl command line's rows (``dpp curl`` is this project's plugin).
CURL_CLI_LABEL = "curl CLI"


@dataclass(frozen=True)
class Job:
    """One download list to run every tool on, and where each run writes."""

    case: str
    fs: str
    files: int
    total_bytes: int
    expected: Counter[str]
    lists: ListFiles
    out_dir: Path
    cache_dir: Path
    results_path: Path
    concurrency: int
    timeout: float
    #: The CA that signed the server's certificate, for HTTPS jobs; None over plain HTTP.
    ca_bundle: Path | None = None
    #: nginx's per-request protocol log for this job's server, if it keeps one.
    protocol_log: Path | None = None
    #: Sample the peak memory of each run's whole process tree (tools that fork workers).
    sample_tree: bool = False


def _tls_env(job: Job, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the job's CA bundle in the variable requests and this project read."""
    if job.ca_bundle is None:
        return env
    return {**env, CA_BUNDLE_ENV: str(job.ca_bundle)}


Verifier = Callable[[], None]


@dataclass(frozen=True)
class Invocation:
    """A command line, its environment, and how to check its output afterwards."""

    argv: list[str]
    env: dict[str, str]
    verify: Verifier | None


@dataclass(frozen=True)
class Tool:
    """A labelled way to run a job."""

    label: str
    build: Callable[[Job], Invocation]
    notes: list[str] = field(default_factory=list)


def _verify_dir(job: Job) -> Verifier:
    return lambda: verify_directory(job.out_dir, job.expected)


def _verify_jsonl(job: Job) -> Verifier:
    return lambda: verify_jsonl(job.results_path, job.expected)


class ProjectCli:
    """This project's console script, and what the installed version offers."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        folder = bin_dir or Path(sys.executable).parent
        self.executable = folder / "download-pipeline-processor"
        # Only the built-in plugins: a development virtualenv may hold test
        # fixtures (a plugin that fails to import, an observer of every file)
        # that a user's installation would not have.
        self.env = clean_env({"PYTHONPATH": str(REPO_ROOT), LOAD_PLUGINS_ENV: ""})
        self._plugins: list[dict[str, Any]] | None = None
        self._help: str | None = None
        self._plugin_envs: dict[tuple[tuple[str, str], ...], dict[str, str] | None] = {}

    def byte_compile(self) -> None:
        """Compile the project's modules (and the benchmark's processor) as ``pip install`` does.

        An editable install run with ``PYTHONDONTWRITEBYTECODE=1`` (set on some
        machines) would otherwise compile every module on every run: ~30 ms
        of each run's start-up that no installed copy pays.
        """
        python = str(self.executable.with_name("python"))
        package = subprocess.run(
            [
                python,
                "-c",
                "import download_pipeline_processor as p, os; print(os.path.dirname(p.__file__))",
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=True,
        ).stdout.strip()
        folders = [package, str(REPO_ROOT / "benchmarks")]
        subprocess.run(
            [python, "-m", "compileall", "-q", *folders],
            env=self.env,
            timeout=300,
            check=True,
        )

    def _output(self, *args: str, env: dict[str, str] | None = None) -> str:
        completed = subprocess.run(
            [str(self.executable), *args],
            capture_output=True,
            text=True,
            env=self.env if env is None else env,
            timeout=60,
            check=True,
        )
        return completed.stdout

    def listing(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """``plugins --json`` run in ``env`` (default :attr:`env`)."""
        found: dict[str, Any] = json.loads(self._output("plugins", "--json", env=env))
        return found

    def downloader_env(self, name: str) -> dict[str, str] | None:
        """The environment that offers downloader ``name``; None when none is installed."""
        return self.plugin_env(("downloader", name))

    def plugin_env(self, *wanted: tuple[str, str]) -> dict[str, str] | None:
        """The environment that offers every ``(kind, name)`` plugin of ``wanted``; None if not.

        A built-in plugin needs nothing beyond :attr:`env`.  For one from an
        installed plugin package, the plugin list is read once with every
        plugin loaded, to learn which distribution registers it and that
        distribution's entry-point names (what ``LOAD_PLUGINS_ENV`` selects
        by); the environment then loads those entry points and no other, and
        is checked to list every plugin wanted.
        """
        key = tuple(sorted(wanted))
        if key in self._plugin_envs:
            return self._plugin_envs[key]
        found: dict[str, str] | None = None
        missing = [item for item in key if not self._has_plugin(self.plugins, item)]
        if not missing:
            found = self.env
        else:
            everything = {k: v for k, v in self.env.items() if k != LOAD_PLUGINS_ENV}
            listing = self.listing(everything)
            sources = {
                str(p["distribution"])
                for p in listing["plugins"]
                if (p["kind"], p["name"]) in missing
            }
            entry_points = sorted(
                str(m["name"]) for m in listing["modules"] if m["distribution"] in sources
            )
            if entry_points:
                env = {**self.env, LOAD_PLUGINS_ENV: ",".join(entry_points)}
                check = self.listing(env)["plugins"]
                if all(self._has_plugin(check, item) for item in key):
                    found = env
        self._plugin_envs[key] = found
        return found

    @staticmethod
    def _has_plugin(plugins: list[dict[str, Any]], wanted: tuple[str, str]) -> bool:
        return any((p["kind"], p["name"]) == wanted for p in plugins)

    @property
    def plugins(self) -> list[dict[str, Any]]:
        """``plugins --json``'s entries."""
        if self._plugins is None:
            self._plugins = json.loads(self._output("plugins", "--json"))["plugins"]
        return self._plugins

    @property
    def has_save(self) -> bool:
        """Whether a ``save`` processor is installed (else runs fall back to ``checksum``)."""
        return any(p["name"] == "save" and p["kind"] == "processor" for p in self.plugins)

    def has_downloader(self, name: str) -> bool:
        """Whether a downloader of that name is installed."""
        return any(p["name"] == name and p["kind"] == "downloader" for p in self.plugins)

    @property
    def help_text(self) -> str:
        """``--help``'s text."""
        if self._help is None:
            self._help = self._output("--help")
        return self._help

    def has_flag(self, flag: str) -> bool:
        """Whether ``--help`` lists ``flag``."""
        return flag in self.help_text

    @property
    def has_process_mode(self) -> bool:
        """Whether ``--help`` mentions the processing-process mode."""
        return PROCESS_MODE_FLAG in self.help_text

    def version(self) -> str:
        """``--version``'s line."""
        return self._output("--version").strip()


def project_tool(
    cli: ProjectCli,
    label: str = "dpp",
    processor: str | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Tool:
    """This project downloading a job.

    With no ``processor``: ``save`` into the output folder when installed
    (files verified on disk), else ``checksum`` with the digests verified from
    the jsonl results.  Any other processor must report ``sha256`` too.
    ``env`` replaces :attr:`ProjectCli.env` (to load one plugin package);
    an HTTPS job adds its CA bundle to either.
    """
    base_env = cli.env if env is None else env

    def build(job: Job) -> Invocation:
        argv = [
            str(cli.executable),
            "--files",
            str(job.lists.json_list),
            "--download-workers",
            str(job.concurrency),
            "--download-cache",
            str(job.cache_dir),
            "--quiet",
        ]
        if processor is None and cli.has_save:
            argv += ["--processor", "save", "--processor-option", f"dest={job.out_dir}"]
            argv += ["--post-processor", "jsonl", "--post-processor-option", "path=/dev/null"]
            verify = _verify_dir(job)
        else:
            argv += ["--processor", processor or "checksum"]
            argv += ["--post-processor", "jsonl"]
            argv += ["--post-processor-option", f"path={job.results_path}"]
            verify = _verify_jsonl(job)
        return Invocation([*argv, *extra], _tls_env(job, base_env), verify)

    return Tool(label, build)


def aria2_tool(label: str = "aria2c") -> Tool:
    """aria2c, one connection per file, ``-j`` files at once, with fair flags."""

    def build(job: Job) -> Invocation:
        argv = [
            "aria2c",
            f"-j{job.concurrency}",
            "-x1",
            "-i",
            str(job.lists.url_list),
            "-d",
            str(job.out_dir),
            *ARIA2_FAIR_FLAGS,
        ]
        if job.ca_bundle is not None:
            argv.append(f"--ca-certificate={job.ca_bundle}")
        return Invocation(argv, clean_env(), _verify_dir(job))

    return Tool(label, build)


def curl_tool(label: str = CURL_CLI_LABEL, extra: Sequence[str] = ()) -> Tool:
    """curl ``--parallel`` with a config of url/output pairs (``extra``: e.g. ``--http2``)."""

    def build(job: Job) -> Invocation:
        argv = [
            "curl",
            "--parallel",
            "--parallel-max",
            str(job.concurrency),
            "--silent",
            "--show-error",
            "--fail",
            "--config",
            str(job.lists.curl_config),
            *extra,
        ]
        if job.ca_bundle is not None:
            argv += ["--cacert", str(job.ca_bundle)]
        return Invocation(argv, clean_env(), _verify_dir(job))

    return Tool(label, build)


def wget_tool(label: str = "wget") -> Tool:
    """wget, one connection, one file at a time: a reference point."""

    def build(job: Job) -> Invocation:
        argv = ["wget", "-i", str(job.lists.url_list), "-P", str(job.out_dir), "-q"]
        if job.ca_bundle is not None:
            argv.append(f"--ca-certificate={job.ca_bundle}")
        return Invocation(argv, clean_env(), _verify_dir(job))

    return Tool(label, build)


def baseline_tool(label: str = "requests+threads") -> Tool:
    """The hand-written requests + threads script (``baseline_requests.py``)."""
    script = Path(__file__).resolve().parent / "baseline_requests.py"

    def build(job: Job) -> Invocation:
        argv = [
            sys.executable,
            str(script),
            str(job.lists.json_list),
            str(job.out_dir),
            "--threads",
            str(job.concurrency),
        ]
        return Invocation(argv, _tls_env(job, clean_env()), _verify_dir(job))

    return Tool(label, build)


def tool_versions(cli: ProjectCli) -> dict[str, str]:
    """One version line per tool, for the results' machine section."""
    commands = {
        "aria2c": ["aria2c", "--version"],
        "curl": ["curl", "--version"],
        "wget": ["wget", "--version"],
        "nginx": [shutil.which("nginx", path="/usr/sbin:/usr/local/sbin") or "nginx", "-v"],
    }
    versions = {"download-pipeline-processor": cli.version()}
    for name in PLUGIN_DOWNLOADERS:
        env = cli.downloader_env(name)
        if env is None or env is cli.env:
            continue
        for plugin in cli.listing(env)["plugins"]:
            if plugin["name"] == name and plugin["kind"] == "downloader":
                versions[f"downloader {name}"] = (
                    f"{plugin['distribution']} {plugin['version']} ({plugin['class']})"
                )
    pycurl = subprocess.run(
        [str(cli.executable.with_name("python")), "-c", "import pycurl; print(pycurl.version)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if pycurl.returncode == 0:
        # The libcurl the curl downloader runs on (pycurl's wheels carry their own).
        versions["pycurl"] = pycurl.stdout.strip()
    for name, argv in commands.items():
        try:
            completed = subprocess.run(
                argv, check=False, capture_output=True, text=True, timeout=30
            )
            text = (completed.stdout or completed.stderr).strip().splitlines()
            versions[name] = text[0] if text else "?"
        except OSError as exc:
            versions[name] = f"unavailable ({exc})"
    try:
        import requests

        versions["requests"] = requests.__version__
    except ImportError:
        versions["requests"] = "unavailable"
    return versions
