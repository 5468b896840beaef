"""The ``processes`` executor against ``local``: small files over http on tmpfs.

``python -m benchmarks.process_executor [--files 5000] [--size 16384] [--rounds 2]``

Serves ``files`` bodies of ``size`` bytes from a tmpfs folder with nginx on
127.0.0.1 and runs the command line (``curl`` downloader, ``checksum``
processor, ``--download-workers 16``, cache on tmpfs) once per setting per
round, the settings alternating so a busy shared machine weighs on each alike.
Prints files/s and CPU per file (this process's children: the command line
and its worker processes) for each run, or the tail of a failed run's
stderr.  nginx keeps a descriptor per file served (``open_file_cache``):
past about 10,000 files its descriptors run out and runs fail with HTTP 500
or time-outs, so keep ``--files`` at the corpus's 5,000.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .nginx import NginxServer

SETTINGS = {
    "local": [],
    "processes=1": ["--executor", "processes", "--executor-option", "processes=1"],
    "processes=2": ["--executor", "processes", "--executor-option", "processes=2"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=16 * 1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--downloader", default="curl")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dpp-procs-", dir="/dev/shm"))
    try:
        root = work / "root"
        root.mkdir()
        body = os.urandom(args.size)
        for index in range(args.files):
            (root / f"f{index}.bin").write_bytes(body)
        server = NginxServer(root, work / "nginx")
        server.start()
        try:
            listing = work / "list.txt"
            listing.write_text("".join(f"{server.base_url}/f{i}.bin\n" for i in range(args.files)))
            cli = str(Path(sys.executable).parent / "download-pipeline-processor")
            for round_ in range(args.rounds):
                for name, extra in SETTINGS.items():
                    cache = work / f"cache-{round_}-{name}"
                    cache.mkdir()
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    started = time.perf_counter()
                    done = subprocess.run(
                        [
                            cli,
                            "--files",
                            str(listing),
                            "--downloader",
                            args.downloader,
                            "--processor",
                            "checksum",
                            "--download-workers",
                            "16",
                            "--download-cache",
                            str(cache),
                            "--no-progress",
                            *extra,
                        ],
                        check=False,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        env={**os.environ, "DOWNLOAD_PIPELINE_PROCESSOR_LOAD_PLUGINS": "curl"},
                        text=True,
                    )
                    if done.returncode != 0:  # a failed run's figures mean nothing
                        print(f"{name}: exit {done.returncode}", done.stderr[-3000:], flush=True)
                        continue
                    wall = time.perf_counter() - started
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                    print(
                        json.dumps(
                            {
                                "round": round_,
                                "setting": name,
                                "files_per_s": round(args.files / wall),
                                "cpu_ms_per_file": round(cpu * 1000 / args.files, 3),
                                "cpu_percent": round(100 * cpu / wall),
                                "wall_s": round(wall, 2),
                            }
                        ),
                        flush=True,
                    )
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
