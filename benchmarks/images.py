"""The ``images`` case: img2dataset's everyday job, by img2dataset and by this project.

The job: download JPEGs from nginx, resize each to 256 (``border``: the longer
side to 256, padded to a square), re-encode at quality 95, and write
WebDataset tar shards of 1,000 samples with the captions.  img2dataset 1.47
runs in its own virtualenv (``install.py``); this project runs with the
``curl`` downloader, the ``resize`` processor and the ``shards``
post-processor of ``dpp-image``, locally and on a 2-worker Dask cluster.

Phases, each run verified (every sample in the tars, 256x256, each caption once):

1. ``images-sweep``: img2dataset over its grid of ``--processes_count`` and
   ``--thread_count``, and this project over ``--processing-limit`` and
   ``--download-workers``, on the 2,000 images, ``SWEEP_REPS`` run(s) each;
   the fastest median of each is its "best flags".
2. ``images-2000``: img2dataset at its best flags (parquet list, and the
   CSV list this project reads), this project at its best, and the same on
   ``--executor dask``; ``--reps`` runs each.
3. ``images-10000``: this project at its best over 10,000 entries (the
   2,000 images five times under distinct URLs): peak memory must not grow
   with the list.
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .cases import CURL_DOWNLOADER, Context
from .corpus import JPEG, Corpus, CorpusSpec, Entry, ensure_corpus, write_lists
from .image_corpus import ImageList, image_urls, verify_shards, write_image_list
from .install import IMG2DATASET_VENV, img2dataset_version
from .peers import Invocation, Job, ProjectCli, Tool
from .processes import clean_env
from .runner import RunRecord

IMAGES_CASE = "images"
#: Where the JPEGs are generated (tmpfs) and kept between runs; the manifest beside them.
CORPUS_ROOT = Path("/dev/shm/dpp-bench-corpus")
#: (full, quick) image corpora.
IMAGE_SPECS = (
    CorpusSpec("images", 2000, 0, seed=11, kind=JPEG),
    CorpusSpec("images", 500, 0, seed=11, kind=JPEG),
)
#: The long list is the corpus this many times over, under distinct URLs.
LONG_LIST_FACTOR = 5
IMAGE_SIZE = 256
QUALITY = 95
#: (full, quick) samples per shard: two shards either way, so that img2dataset's
#: processes have as much to share in a quick run as in a full one.
SAMPLES_PER_SHARD = (1000, 250)
#: Seconds one run may take before it is killed and marked failed.
TIMEOUT = 300.0
#: img2dataset's grid: --processes_count x --thread_count.
I2D_PROCESSES = (1, 2, 4)
I2D_THREADS = (16, 32, 64)
#: This project's grid: --processing-limit x --download-workers.
DPP_LIMITS = (1, 2, 3, 4)
DPP_WORKERS = (8, 16)
#: (full, quick) runs of each grid point: one keeps the whole case under 15 minutes on
#: 2 cores; the table shows how close the points came (``--sweep-reps`` for more).
SWEEP_REPS = (1, 1)
#: The flags used when the sweep is skipped (``--sweep-reps 0``): img2dataset's as
#: in its README's examples for one machine, this project's best on 2 cores so far.
DEFAULT_I2D = (2, 32)
DEFAULT_DPP = (2, 16)
DASK_ARGS = ("--executor", "dask", "--executor-option", "n_workers=2")
#: The downloader of the dask row: the local row's.  (Another downloader here
#: adds a local row with it, ``OURS_LOCAL_DASK_PEER``, for the dask target.)
DASK_DOWNLOADER = CURL_DOWNLOADER
#: img2dataset's checks for updates at import (albumentations) reach the network: off.
I2D_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}

#: Row labels.
PEER = "img2dataset"
PEER_CSV = "img2dataset, csv"
OURS = "dpp"
OURS_DASK = "dpp dask"
OURS_LOCAL_DASK_PEER = "dpp, requests"
SWEEP_CASE = "images-sweep"

Flags = TypeVar("Flags")


def case_name(count: int) -> str:
    """``images-2000`` and the like."""
    return f"{IMAGES_CASE}-{count}"


@dataclass(frozen=True)
class I2dFlags:
    """img2dataset's concurrency flags."""

    processes: int
    threads: int

    @property
    def label(self) -> str:
        return f"{PEER} p{self.processes} t{self.threads}"

    @property
    def text(self) -> str:
        return f"--processes_count {self.processes} --thread_count {self.threads}"


@dataclass(frozen=True)
class DppFlags:
    """This project's concurrency flags."""

    limit: int
    workers: int

    @property
    def label(self) -> str:
        return f"{OURS} l{self.limit} w{self.workers}"

    @property
    def args(self) -> tuple[str, ...]:
        return ("--processing-limit", str(self.limit), "--download-workers", str(self.workers))

    @property
    def text(self) -> str:
        return " ".join(self.args)


@dataclass
class ImagesOutcome:
    """What the report needs beyond the runs: the flags each row used, and notes."""

    flags: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


#: img2dataset's dependencies that do its work, named in the results' machine section.
I2D_KEY_PACKAGES = ("opencv-python-headless", "numpy", "albumentations", "webdataset", "pyarrow")


def image_versions(cli: ProjectCli) -> dict[str, str]:
    """img2dataset's version (and its working dependencies'), and the ``dpp-image`` plugin's."""
    versions = {}
    installed = img2dataset_version()
    if installed is not None:
        pins = {}
        try:
            for line in (IMG2DATASET_VENV / "freeze.txt").read_text().splitlines():
                name, _, version = line.partition("==")
                if name.lower() in I2D_KEY_PACKAGES:
                    pins[name.lower()] = version
        except OSError:
            pass
        details = ", ".join(f"{name} {pins[name]}" for name in I2D_KEY_PACKAGES if name in pins)
        versions["img2dataset"] = f"{installed} (own venv; {details})" if details else installed
    env = cli.plugin_env(("processor", "resize"))
    if env is not None:
        for plugin in cli.listing(env)["plugins"]:
            if (plugin["kind"], plugin["name"]) == ("processor", "resize"):
                versions["processor resize"] = f"{plugin['distribution']} {plugin['version']}"
    return versions


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure_image_corpus(quick: bool) -> Corpus:
    """The JPEG corpus on tmpfs, generated unless a matching one is there; read once (cached)."""
    spec = IMAGE_SPECS[1] if quick else IMAGE_SPECS[0]
    corpus, made = ensure_corpus(CORPUS_ROOT, spec)
    _say(
        f"corpus {CORPUS_ROOT / spec.folder}: {'generated' if made else 'reused'} "
        f"({len(corpus.files)} JPEGs, {corpus.total_bytes / 1e6:.0f} MB)"
    )
    corpus.warm()
    return corpus


def img2dataset_tool(
    label: str, images: ImageList, flags: I2dFlags, shard: int, input_format: str = "parquet"
) -> Tool:
    """img2dataset 1.47 from its own virtualenv on ``images`` with ``flags``."""
    executable = IMG2DATASET_VENV / "bin" / "img2dataset"
    url_list = images.parquet_path if input_format == "parquet" else images.csv_path

    def build(job: Job) -> Invocation:
        argv = [
            str(executable),
            *("--url_list", str(url_list), "--input_format", input_format),
            *("--url_col", "url", "--caption_col", "caption"),
            *("--output_format", "webdataset", "--output_folder", str(job.out_dir)),
            *("--image_size", str(IMAGE_SIZE), "--resize_mode", "border"),
            *("--encode_quality", str(QUALITY)),
            *("--number_sample_per_shard", str(shard)),
            *("--processes_count", str(flags.processes), "--thread_count", str(flags.threads)),
        ]
        return Invocation(
            argv, clean_env(I2D_ENV), lambda: verify_shards(job.out_dir, images, IMAGE_SIZE)
        )

    return Tool(label, build)


def dpp_tool(
    label: str,
    env: dict[str, str],
    *,
    images: ImageList,
    flags: DppFlags,
    shard: int,
    extra: Sequence[str] = (),
    downloader: str = CURL_DOWNLOADER,
) -> Tool:
    """This project on ``images``: ``downloader``, resize, shards, ``flags`` (and ``extra``)."""

    def build(job: Job) -> Invocation:
        argv = [
            str(Path(sys.executable).with_name("download-pipeline-processor")),
            *("--files", str(images.csv_path), "--downloader", downloader),
            *("--processor", "resize", "--processor-option", f"size={IMAGE_SIZE}"),
            *("--processor-option", "mode=border", "--processor-option", f"quality={QUALITY}"),
            *("--post-processor", "shards", "--post-processor-option", f"output={job.out_dir}"),
            *("--post-processor-option", f"samples_per_shard={shard}"),
            *("--download-cache", str(job.cache_dir), "--quiet"),
            *flags.args,
            *extra,
        ]
        return Invocation(argv, env, lambda: verify_shards(job.out_dir, images, IMAGE_SIZE))

    return Tool(label, build)


def _job(
    ctx: Context, case: str, corpus: Corpus, base_url: str, count: int
) -> tuple[Job, ImageList]:
    root = ctx.fs_roots["tmpfs"]
    folder = root / "lists" / case
    urls = image_urls(corpus, base_url, count)
    images = write_image_list(folder, urls)
    entries = [Entry(f"e{index:06d}.jpg", url) for index, url in enumerate(urls)]
    sizes = [corpus.files[index % len(corpus.files)].size for index in range(count)]
    job = Job(
        case=case,
        fs="tmpfs",
        files=count,
        total_bytes=sum(sizes),
        expected=Counter(),
        lists=write_lists(folder, entries, root / "out"),
        out_dir=root / "out",
        cache_dir=root / "cache",
        results_path=root / "results" / "dpp.jsonl",
        concurrency=0,
        timeout=TIMEOUT,
        sample_tree=True,
    )
    return job, images


def _best(records: Sequence[RunRecord], case: str, labels: dict[str, Flags]) -> Flags | None:
    """The flags whose verified runs in ``case`` have the lowest median wall time."""
    medians = {}
    for label in labels:
        walls = [r.wall_s for r in records if (r.case, r.tool) == (case, label) and r.ok]
        if walls:
            medians[label] = statistics.median(walls)
    if not medians:
        return None
    return labels[min(medians, key=medians.__getitem__)]


def images_case(
    ctx: Context, corpus: Corpus, base_url: str, sweep_reps: int | None = None
) -> ImagesOutcome:
    """The sweep, the side-by-side rows and the long list (see the module's description).

    ``sweep_reps`` runs of every grid point (default ``SWEEP_REPS``); 0 skips
    the sweep and uses ``DEFAULT_I2D`` and ``DEFAULT_DPP``.
    """
    outcome = ImagesOutcome()
    count = len(corpus.files)
    shard = ctx.size(SAMPLES_PER_SHARD)
    wanted = [
        ("downloader", CURL_DOWNLOADER),
        ("processor", "resize"),
        ("post-processor", "shards"),
    ]
    env = ctx.cli.plugin_env(*wanted)
    dask_wanted = [(kind, name) for kind, name in wanted if kind != "downloader"]
    dask_wanted += [("downloader", DASK_DOWNLOADER), ("executor", "dask")]
    dask_env = ctx.cli.plugin_env(*dask_wanted)
    if env is None:
        outcome.notes.append(
            "the `images` case needs the `curl` downloader (plugins/dpp-curl) and the `resize` "
            "processor and `shards` post-processor (plugins/dpp-image): this project's rows are "
            "missing"
        )
    has_peer = (IMG2DATASET_VENV / "bin" / "img2dataset").is_file()
    if not has_peer:
        outcome.notes.append(
            f"img2dataset is not installed in {IMG2DATASET_VENV}: its rows are missing"
        )
    best_i2d: I2dFlags | None = I2dFlags(*DEFAULT_I2D) if has_peer else None
    best_dpp: DppFlags | None = DppFlags(*DEFAULT_DPP) if env is not None else None
    sweep_reps = ctx.size(SWEEP_REPS) if sweep_reps is None else sweep_reps
    if sweep_reps > 0:
        best_i2d, best_dpp = _sweep(
            ctx, corpus, base_url, env=env, has_peer=has_peer, reps=sweep_reps, outcome=outcome
        )
    else:
        outcome.notes.append(
            "the `images` sweep was skipped (--sweep-reps 0): img2dataset ran with "
            f"{I2dFlags(*DEFAULT_I2D).text}, this project with {DppFlags(*DEFAULT_DPP).text}"
        )

    job, images = _job(ctx, case_name(count), corpus, base_url, count)
    tools = []
    if best_i2d is not None:
        outcome.flags[PEER] = f"{best_i2d.text} --input_format parquet"
        outcome.flags[PEER_CSV] = f"{best_i2d.text} --input_format csv"
        tools += [
            img2dataset_tool(PEER, images, best_i2d, shard),
            img2dataset_tool(PEER_CSV, images, best_i2d, shard, "csv"),
        ]
    if best_dpp is not None and env is not None:
        outcome.flags[OURS] = best_dpp.text
        tools.append(dpp_tool(OURS, env, images=images, flags=best_dpp, shard=shard))
        if dask_env is not None:
            dask_flags = f"--downloader {DASK_DOWNLOADER} {best_dpp.text}"
            outcome.flags[OURS_DASK] = f"{dask_flags} {' '.join(DASK_ARGS)}"
            tools.append(
                dpp_tool(
                    OURS_DASK,
                    dask_env,
                    images=images,
                    flags=best_dpp,
                    shard=shard,
                    extra=DASK_ARGS,
                    downloader=DASK_DOWNLOADER,
                )
            )
            if DASK_DOWNLOADER != CURL_DOWNLOADER:
                outcome.flags[OURS_LOCAL_DASK_PEER] = dask_flags
                outcome.notes.append(
                    f"the dask row runs with the `{DASK_DOWNLOADER}` downloader; "
                    f"`{OURS_LOCAL_DASK_PEER}` is local "
                    "mode with the same downloader, which the dask target compares with"
                )
                tools.append(
                    dpp_tool(
                        OURS_LOCAL_DASK_PEER,
                        dask_env,
                        images=images,
                        flags=best_dpp,
                        shard=shard,
                        downloader=DASK_DOWNLOADER,
                    )
                )
        else:
            outcome.notes.append("no `dask` executor installed (plugins/dpp-dask): no dask row")
    if tools:
        _banner(f"{job.case}: {count} JPEGs, best flags, {ctx.reps} runs each")
        ctx.runner.run_job(job, tools, ctx.reps)
    if best_dpp is not None and env is not None:
        long_count = count * LONG_LIST_FACTOR
        long_job, long_images = _job(ctx, case_name(long_count), corpus, base_url, long_count)
        _banner(f"{long_job.case}: the {count} JPEGs {LONG_LIST_FACTOR} times, distinct URLs")
        long_tool = dpp_tool(OURS, env, images=long_images, flags=best_dpp, shard=shard)
        ctx.runner.run_job(long_job, [long_tool], ctx.reps)
    return outcome


def _sweep(
    ctx: Context,
    corpus: Corpus,
    base_url: str,
    *,
    env: dict[str, str] | None,
    has_peer: bool,
    reps: int,
    outcome: ImagesOutcome,
) -> tuple[I2dFlags | None, DppFlags | None]:
    """Each tool over its grid of flags, ``reps`` runs each; each tool's fastest flags."""
    count = len(corpus.files)
    shard = ctx.size(SAMPLES_PER_SHARD)
    sweep, images = _job(ctx, SWEEP_CASE, corpus, base_url, count)
    i2d_grid = {
        flags.label: flags for flags in (I2dFlags(p, t) for p in I2D_PROCESSES for t in I2D_THREADS)
    }
    dpp_grid = {
        flags.label: flags
        for flags in (DppFlags(limit, w) for limit in DPP_LIMITS for w in DPP_WORKERS)
    }
    tools = []
    if has_peer:
        tools += [img2dataset_tool(label, images, f, shard) for label, f in i2d_grid.items()]
        outcome.flags.update({label: flags.text for label, flags in i2d_grid.items()})
    if env is not None:
        tools += [
            dpp_tool(label, env, images=images, flags=f, shard=shard)
            for label, f in dpp_grid.items()
        ]
        outcome.flags.update({label: flags.text for label, flags in dpp_grid.items()})
    if not tools:
        return None, None
    _banner(f"{SWEEP_CASE}: {count} JPEGs, each tool's grid of flags, {reps} run(s) each")
    ctx.runner.run_job(sweep, tools, reps)
    return _best(ctx.runner.records, SWEEP_CASE, i2d_grid), _best(
        ctx.runner.records, SWEEP_CASE, dpp_grid
    )


def _banner(text: str) -> None:
    print(f"== {text}", file=sys.stderr, flush=True)
