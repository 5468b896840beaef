"""The hand-written baseline: requests + 16 threads, each with its own Session.

What a user would write in 30 lines.  Usage:
``python benchmarks/baseline_requests.py LIST.json OUT_DIR [--threads 16]``.
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

CHUNK = 1024 * 1024
_local = threading.local()


def session() -> requests.Session:
    """This thread's own Session, so connections are reused."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session  # type: ignore[no-any-return]


def fetch(entry: dict[str, str], out_dir: Path) -> None:
    """Stream one file to ``out_dir/name``."""
    with session().get(entry["url"], stream=True, timeout=30) as response:
        response.raise_for_status()
        with (out_dir / entry["name"]).open("wb") as out:
            for chunk in response.iter_content(chunk_size=CHUNK):
                out.write(chunk)


def main() -> None:
    """Download every entry of the list with a pool of threads."""
    parser = argparse.ArgumentParser()
    parser.add_argument("files", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    entries = json.loads(args.files.read_text())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        for _ in pool.map(lambda entry: fetch(entry, args.out_dir), entries):
            pass


if __name__ == "__main__":
    main()
