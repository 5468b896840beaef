"""Peak memory of a run over a long streamed input: it must not grow with the input.

Run from the repository root, with the project installed in ``.venv``::

    .venv/bin/python -m benchmarks.input_rss                  # 1,000,000 JSON Lines entries
    .venv/bin/python -m benchmarks.input_rss --lines 100000 --format csv
    .venv/bin/python -m benchmarks.input_rss --stdin          # the same, piped to --files -

It writes the input once into ``benchmarks/work/`` (git-ignored; reused while
its size matches), then runs the command line on it with
``--simulate-downloads --no-sleep --quiet`` under GNU time (``/usr/bin/time
-f %M``, as the main harness measures every tool: the figure is the tool's
own peak, not this script's), and prints the peak RSS in MB with the wall
time and exit code.  The acceptance bound is 100 MB for 1,000,000 lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
GNU_TIME = Path("/usr/bin/time")
SUFFIXES = {"jsonl": "jsonl", "json": "json", "csv": "csv", "urls": "txt"}


def entry(index: int) -> dict[str, object]:
    """One input entry: a URL, an id and an extra field, as a real list would have."""
    return {
        "url": f"https://files.example.org/corpus/{index:08d}.bin",
        "id": f"f{index:08d}",
        "lang": "en",
    }


def write_input(path: Path, lines: int, input_format: str) -> None:
    """The input of ``lines`` entries in ``input_format``, written in one streaming pass."""
    partial = path.with_suffix(path.suffix + ".part")
    with partial.open("w", encoding="utf-8", newline="") as out:
        if input_format == "jsonl":
            for index in range(lines):
                out.write(json.dumps(entry(index)) + "\n")
        elif input_format == "json":
            out.write("[\n")
            for index in range(lines):
                out.write(("," if index else "") + json.dumps(entry(index)) + "\n")
            out.write("]\n")
        elif input_format == "csv":
            writer = csv.DictWriter(out, fieldnames=["url", "id", "lang"], lineterminator="\n")
            writer.writeheader()
            for index in range(lines):
                writer.writerow(entry(index))
        else:
            for index in range(lines):
                out.write(f"{entry(index)['url']}\n")
    partial.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="entries in the input")
    parser.add_argument("--format", choices=sorted(SUFFIXES), default="jsonl")
    parser.add_argument("--stdin", action="store_true", help="pipe the input to --files -")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"input-{args.lines}.{SUFFIXES[args.format]}"
    if not path.exists():
        started = time.perf_counter()
        write_input(path, args.lines, args.format)
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f}s",
            file=sys.stderr,
        )
    cli = Path(sys.executable).with_name("download-pipeline-processor")
    if not cli.exists():
        print(
            f"no console script next to {sys.executable}; pip install the project", file=sys.stderr
        )
        return 2
    cache = WORK / "input-rss-cache"
    shutil.rmtree(cache, ignore_errors=True)
    rss_file = WORK / "input-rss.time"
    command = [
        str(cli),
        "--files",
        "-" if args.stdin else str(path),
        "--input-format",
        args.format,
        "--simulate-downloads",
        "--no-sleep",
        "--quiet",
        "--download-cache",
        str(cache),
    ]
    if GNU_TIME.is_file():
        command = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *command]
    else:
        print("no /usr/bin/time: cannot measure the peak RSS", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with path.open("rb") as stdin:
        proc = subprocess.run(
            command,
            stdin=stdin if args.stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
    wall = time.perf_counter() - started
    peak_kib = int(rss_file.read_text().split()[-1])
    shutil.rmtree(cache, ignore_errors=True)
    source = "stdin" if args.stdin else "file"
    print(
        f"{args.lines} {args.format} entries from {source}: peak RSS {peak_kib / 1024:.1f} MB, "
        f"{wall:.1f}s, exit {proc.returncode}"
    )
    if proc.returncode != 0:
        print(proc.stderr.decode(errors="replace")[-2000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
