"""What a broken connection costs: a 1 GiB file through connections that break every 100 MiB.

Run as ``python -m benchmarks.resume_cost [--size-mib 1024] [--break-mib 100]
[--downloaders requests,fast,curl]``.  A loopback server answers ``Range:
bytes=N-`` (with ``If-Range`` on its ETag) and closes every connection after
``--break-mib`` MiB of body; each downloader fetches the file through the CLI,
with the file's sha256 in its entry, and the script prints the bytes the
server sent against the file's size.  Resume keeps the bytes sent again near
zero; starting over on every break would never finish the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
#: The file is this block repeated: any offset is served without holding the file.
BLOCK = bytes(range(251)) * (MIB // 251 + 2)
ETAG = '"resume-cost-1"'


def file_sha256(size: int) -> str:
    """The sha256 of the ``size``-byte file the server serves."""
    digest = hashlib.sha256()
    view = memoryview(BLOCK)
    for offset in range(0, size, MIB):
        digest.update(view[offset % 251 : offset % 251 + min(MIB, size - offset)])
    return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        size = self.server.size
        start = 0
        asked = self.headers.get("Range", "")
        if asked.startswith("bytes=") and self.headers.get("If-Range", ETAG) == ETAG:
            first = asked[6:].rstrip("-")
            if first.isdigit() and int(first) < size:
                start = int(first)
        self.send_response(206 if start else 200)
        self.send_header("ETag", ETAG)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(size - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        budget = self.server.break_after
        view = memoryview(BLOCK)
        offset = start
        try:
            while offset < size and budget > 0:
                take = min(MIB, size - offset, budget)
                self.wfile.write(view[offset % 251 : offset % 251 + take])
                with self.server.lock:
                    self.server.sent += take
                offset += take
                budget -= take
            if offset < size:
                # Break as a network does: a reset, which drops what is still in flight.
                self.wfile.flush()
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True  # one answer per connection; a break ends it early


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, size: int, break_after: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.size = size
        self.break_after = break_after
        self.sent = 0
        self.lock = threading.Lock()


def run_one(downloader: str, size: int, break_after: int, expected: str) -> dict[str, Any]:
    """One CLI run of ``downloader`` against a fresh server; what the server sent."""
    server = _Server(size, break_after)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with tempfile.TemporaryDirectory() as work:
            listing = Path(work) / "files.json"
            url = f"http://127.0.0.1:{server.server_address[1]}/big.bin"
            listing.write_text(json.dumps([{"url": url, "sha256": expected, "size": size}]))
            command = [
                str(Path(sys.executable).with_name("download-pipeline-processor")),
                "--files", str(listing), "--downloader", downloader, "--processor", "dummy",
                "--download-cache", work, "--max-retries", "30", "--retry-backoff", "0",
                "--quiet",
            ]  # fmt: skip
            started = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    return {
        "downloader": downloader,
        "exit_code": done.returncode,
        "file_bytes": size,
        "sent_bytes": server.sent,
        "sent_again": server.sent - size,
        "sent_again_percent": round(100 * (server.sent - size) / size, 2),
        "elapsed_s": round(elapsed, 1),
        "error": done.stderr.strip().splitlines()[-1:] if done.returncode else [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--break-mib", type=int, default=100)
    parser.add_argument("--downloaders", default="requests,fast,curl")
    options = parser.parse_args()
    size, break_after = options.size_mib * MIB, options.break_mib * MIB
    expected = file_sha256(size)
    for downloader in options.downloaders.split(","):
        print(json.dumps(run_one(downloader, size, break_after, expected)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
