"""Check that a run delivered every file intact before its figures count."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

HASH_CHUNK = 1024 * 1024


class VerificationError(Exception):
    """The run's output does not match the manifest."""


def sha256_of(path: Path) -> str:
    """The file's sha256, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _compare(found: Counter[str], expected: Counter[str], what: str) -> None:
    total_found = sum(found.values())
    total_expected = sum(expected.values())
    if found == expected:
        return
    missing = sum((expected - found).values())
    unexpected = sum((found - expected).values())
    raise VerificationError(
        f"{what}: {total_found} items, expected {total_expected}; "
        f"{missing} expected digests missing, {unexpected} unexpected"
    )


def verify_directory(folder: Path, expected: Counter[str]) -> None:
    """Every file under ``folder`` (recursively) hashed; the digests must equal ``expected``.

    Corpus files are random bytes, so equal digest multisets mean every file
    arrived complete and nothing else (a partial file, a control file) is there.
    """
    found: Counter[str] = Counter()
    for directory, _, names in os.walk(folder):
        for name in names:
            found[sha256_of(Path(directory) / name)] += 1
    _compare(found, expected, f"files under {folder}")


def verify_jsonl(path: Path, expected: Counter[str]) -> None:
    """The ``jsonl`` post-processor's lines: all ``ok``, their ``result.sha256`` == ``expected``."""
    found: Counter[str] = Counter()
    failed = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc}") from exc
    for line in lines:
        record = json.loads(line)
        result = record.get("result") or {}
        if record.get("status") != "succeeded" or "sha256" not in result:
            failed += 1
            continue
        found[result["sha256"]] += 1
    if failed:
        raise VerificationError(f"{path}: {failed} of {len(lines)} records failed or lack sha256")
    _compare(found, expected, f"records in {path}")


def verify_batches(path: Path, files: int, *, batched: bool) -> None:
    """The ``jsonl`` lines of a batch-processor run: ``files`` succeeded, batched or not.

    Every result carries the size of the call that made it (``result.batch``):
    a per-file run must show 1 everywhere, a batched run some call of more
    than one file, or the figures would compare the per-file path with itself.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise VerificationError(f"cannot read {path}: {exc}") from exc
    records = [json.loads(line) for line in lines]
    sizes = [
        (record.get("result") or {}).get("batch")
        for record in records
        if record.get("status") == "succeeded"
    ]
    if len(sizes) != files or len(lines) != files:
        raise VerificationError(f"{path}: {len(sizes)} of {len(lines)} succeeded, {files} expected")
    largest = max((size for size in sizes if isinstance(size, int)), default=0)
    if batched and largest <= 1:
        raise VerificationError(f"{path}: no call got more than one file (not batched)")
    if not batched and largest != 1:
        raise VerificationError(f"{path}: a per-file run had calls of {largest} files")
