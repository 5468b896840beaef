"""HTTP options: --header, per-entry headers, --user-agent, --max-per-host, --limit-rate,
and per-host politeness (429 halves a host's downloads, Retry-After pauses the host)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from download_helpers import DOWNLOADER_NAMES, SHIPPED_PLUGINS, shipped_plugin_manager
from download_pipeline_processor._hosts import PROBE_AFTER, EntryScheduler, HostGate
from download_pipeline_processor.cli import main
from download_pipeline_processor.errors import TransientDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.http_rules import check_status
from download_pipeline_processor.testing import Answer, FileServer, raw_ok, run_pipeline

KIB = 1024
MIB = 1024 * KIB


def host_of(server: FileServer) -> str:
    """The Host header a client sends for ``server``'s 127.0.0.1 URLs."""
    return f"127.0.0.1:{server.port}"


def run(transport: str, entries: list[dict[str, Any]], tmp_path: Path, **settings: Any) -> Any:
    """Run ``entries`` through the downloader of ``transport``; retries wait as the server says."""
    settings.setdefault("timeout", 5.0)
    settings.setdefault("download_cache", tmp_path / "cache")
    return run_pipeline(
        entries, plugins=SHIPPED_PLUGINS, downloader=DOWNLOADER_NAMES[transport], **settings
    )


def headers_of(server: FileServer, path: str) -> dict[str, str]:
    """The headers of the one request for ``path``, names in lower case."""
    (found,) = [headers for _, target, headers in server.request_log if target == path]
    return {name.lower(): value for name, value in found.items()}


#: What a busy host answers: wait a second, for every file.
REFUSAL = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"


class RefuseAboveTwo:
    """An answer step: 429 with Retry-After: 1 when more than two requests are in, else a file.

    The scripted server plays a step that is an iterator piece by piece; this
    one decides its pieces when played (``__iter__`` is called per request),
    so one route can answer by the server's load at that moment.
    """

    def __init__(self, server: FileServer, body: bytes, delay: float) -> None:
        self.server = server
        self.body = body
        self.delay = delay
        self.refused = 0
        self.lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces()

    def __next__(self) -> bytes:  # makes it an Iterator to the server; never called
        raise TypeError("iterate over it instead")

    def _pieces(self) -> Iterator[bytes]:
        if self.server.in_flight > 2:
            with self.lock:
                self.refused += 1
            yield REFUSAL
            return
        time.sleep(self.delay)
        yield raw_ok(self.body)


class TestHeaderOptions:
    """--header and --user-agent on the command line."""

    def invoke(self, args: list[str]) -> Any:
        return CliRunner().invoke(main, args, obj={"plugin_manager": shipped_plugin_manager()})

    def test_headers_and_user_agent_reach_the_server_not_the_log(
        self, file_server: FileServer, tmp_path: Path
    ) -> None:
        """--header and --user-agent are sent with the request; a header value is never logged."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps([{"url": file_server.add("/a.bin", b"a")}]))
        result = self.invoke([
            "--files", str(listing),
            "--download-cache", str(tmp_path / "cache"),
            "--header", "X-Token: s3cret-value",
            "--header", "Accept: text/plain",
            "--user-agent", "agent/9",
            "--debug",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        headers = headers_of(file_server, "/a.bin")
        assert headers["x-token"] == "s3cret-value"
        assert headers["accept"] == "text/plain"
        assert headers["user-agent"] == "agent/9"
        assert "s3cret-value" not in result.output

    @pytest.mark.parametrize("header", ["NoColon", ": value", "X-Bad: a\x01b"])
    def test_bad_header_is_exit_2(self, tmp_path: Path, header: str) -> None:
        """A --header not of the form 'Name: value', or that would split a request, is exit 2."""
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps([{"url": "http://127.0.0.1:9/a"}]))
        result = self.invoke(["--files", str(listing), "--header", header])
        assert result.exit_code == 2, result.output
        assert "--header" in result.output
        assert "'Name: value'" in result.output or "invalid request header" in result.output
        assert "Traceback" not in result.output

    @pytest.mark.parametrize(
        "headers",
        [{"X-Number": 1}, {"X-Bad": "a\r\nInjected: 1"}, {"Bad:Name": "v"}, ["X-List: 1"]],
        ids=["number", "crlf-value", "colon-name", "not-an-object"],
    )
    def test_bad_entry_headers_are_exit_2(self, tmp_path: Path, headers: object) -> None:
        """An entry's 'headers' that is not an object of safe strings is exit 2 naming it."""
        entries = [
            {"url": "http://127.0.0.1:9/a"},
            {"url": "http://127.0.0.1:9/b", "headers": headers},
        ]
        listing = tmp_path / "files.json"
        listing.write_text(json.dumps(entries))
        result = self.invoke(["--files", str(listing), "--simulate-downloads", "--no-sleep"])
        assert result.exit_code == 2, result.output
        assert "entry 1" in result.output
        assert "'headers'" in result.output
        assert "Injected" not in result.output
        assert "Traceback" not in result.output


class TestEntryHeaders:
    """An entry's headers go over the run's, name by name, on every downloader."""

    def test_run_and_entry_headers_reach_the_server(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """The entry's headers override the run's whatever the case, for that entry only."""
        entries = [
            {
                "id": "own",
                "url": file_server.add("/own.bin", b"own"),
                "headers": {"x-both": "entry", "X-Entry": "e", "user-agent": "entry-agent"},
            },
            {"id": "plain", "url": file_server.add("/plain.bin", b"plain")},
        ]
        outcome = run(
            transport,
            entries,
            tmp_path,
            headers={"X-Run": "run", "X-Both": "run"},
            user_agent="run-agent/1",
        )
        assert outcome.exit_code == 0, outcome.failures
        own = headers_of(file_server, "/own.bin")
        plain = headers_of(file_server, "/plain.bin")
        assert (own["x-run"], own["x-both"], own["x-entry"]) == ("run", "entry", "e")
        assert own["user-agent"] == "entry-agent"
        assert (plain["x-run"], plain["x-both"]) == ("run", "run")
        assert plain["user-agent"] == "run-agent/1"
        assert "x-entry" not in plain
        # One field per name: the entry's spelling replaced the run's, it was not added to it.
        (own_request,) = [r for r in file_server.requests if r.path == "/own.bin"]
        assert own_request.head.lower().count(b"\r\nx-both:") == 1

    def test_entry_credentials_dropped_on_a_redirect_to_another_host(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """An entry's Authorization follows a redirect on its host, never one to another host."""
        elsewhere = file_server.add("/moved.bin", b"moved").replace("127.0.0.1", "localhost", 1)
        file_server.add("/other", statuses=(302,), redirect_to=elsewhere)
        start = file_server.add("/start", statuses=(302,), redirect_to=file_server.url("/other"))
        entry = {
            "id": "a",
            "url": start,
            "headers": {"Authorization": "Bearer ENTRY-SECRET", "X-Kept": "yes"},
        }
        outcome = run(transport, [entry], tmp_path)
        assert outcome.exit_code == 0, outcome.failures
        assert headers_of(file_server, "/start")["authorization"] == "Bearer ENTRY-SECRET"
        assert headers_of(file_server, "/other")["authorization"] == "Bearer ENTRY-SECRET"
        moved = headers_of(file_server, "/moved.bin")
        assert "authorization" not in moved
        assert moved["x-kept"] == "yes"


class TestMaxPerHost:
    """--max-per-host bounds the downloads in flight to one host, across all workers."""

    def test_never_more_than_two_at_once(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """20 slow files, 8 workers, --max-per-host 2: the server never sees 3 at once."""
        entries = [
            {"id": str(i), "url": file_server.add(f"/f{i}.bin", b"x" * 100, delay=0.05)}
            for i in range(20)
        ]
        outcome = run(transport, entries, tmp_path, download_workers=8, max_per_host=2)
        assert outcome.exit_code == 0, outcome.failures
        assert len(outcome.results) == 20
        assert file_server.most_in_flight_for(host_of(file_server)) == 2

    def test_a_full_host_does_not_hold_up_another(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """Entries of a host at its limit step aside: a later host's files start at once."""
        with FileServer() as other:
            busy = [
                {"id": f"a{i}", "url": file_server.add(f"/a{i}", b"a", delay=0.15)}
                for i in range(12)
            ]
            free = [{"id": f"b{i}", "url": other.add(f"/b{i}", b"b")} for i in range(4)]
            started_before: list[int] = []
            other.on_request = lambda _request: started_before.append(file_server.request_count())
            outcome = run(transport, busy + free, tmp_path, download_workers=4, max_per_host=2)
        assert outcome.exit_code == 0, outcome.failures
        assert file_server.most_in_flight_for(host_of(file_server)) == 2
        # In input order alone they would wait for 10 of the 12 first.
        assert len(started_before) == 4
        assert max(started_before) <= 6, started_before


class TestPoliteness:
    """A 429 or Retry-After holds the whole host back; other hosts run on."""

    def test_a_host_refusing_above_two_gets_every_file_with_few_refusals(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """A host answering 429 + Retry-After above 2 at once: all files, under 10 % refused."""
        answer = RefuseAboveTwo(file_server, b"y" * 1000, delay=0.02)
        file_server.script("*", Answer(answer))
        with FileServer() as other:
            entries = []
            for i in range(100):
                entries.append({"id": f"a{i}", "url": file_server.url(f"/a{i}")})
                if i % 10 == 0:
                    entries.append({"id": f"b{i}", "url": other.add(f"/b{i}", b"b", delay=0.2)})
            outcome = run(transport, entries, tmp_path, download_workers=8, max_retries=5)
        assert outcome.exit_code == 0, outcome.failures
        assert len(outcome.results) == 110
        requests = file_server.request_count()
        assert answer.refused < 0.1 * requests, (answer.refused, requests)
        # The other host was not held to the refusing host's limit.
        assert other.most_in_flight > 2


class TestHostGate:
    """The per-host AIMD rules, driven directly."""

    def refused(self, status: int = 429, retry_after: str | None = None) -> TransientDownloadError:
        with pytest.raises(TransientDownloadError) as info:
            check_status(status, "", retry_after)
        return info.value

    def test_429_halves_and_successes_grow_back(self) -> None:
        """A 429 halves the host's limit; successes add one each until just below that level."""
        gate = HostGate(ceiling=8, max_pause=60)
        url = "http://a.example/x"
        slots = [gate.try_acquire(url) for _ in range(8)]
        assert None not in slots
        assert gate.try_acquire(url) is None
        gate.release(slots[0], self.refused())  # type: ignore[arg-type]
        assert gate.limit_of(url) == 4
        for slot in slots[1:4]:
            gate.release(slot)  # type: ignore[arg-type]
        # Back up one per success to one below the 8 it refused at...
        assert gate.limit_of(url) == 7
        for slot in slots[4:]:
            gate.release(slot)  # type: ignore[arg-type]
        # ... and to 8 again only after PROBE_AFTER successes per download allowed.
        successes = 4
        while gate.limit_of(url) == 7:
            gate.release(gate.try_acquire(url))  # type: ignore[arg-type]
            successes += 1
        assert (gate.limit_of(url), successes) == (8, PROBE_AFTER * 7)

    def test_retry_after_pauses_the_host_not_others(self) -> None:
        """A 503 with Retry-After stops new downloads to its host only, until it passes."""
        gate = HostGate(ceiling=8, max_pause=60)
        slot = gate.try_acquire("http://a.example/1")
        assert slot is not None
        gate.release(slot, self.refused(503, "1"))
        assert gate.try_acquire("http://a.example/2") is None
        assert gate.try_acquire("http://b.example/1") is not None
        assert gate.try_acquire("http://a.example:8080/1") is not None  # another port
        assert gate.limit_of("http://a.example/2") == 8  # a 503 does not halve
        waited = gate.acquire("http://a.example/2", threading.Event())
        assert waited is not None

    def test_scheduler_sets_a_full_hosts_entries_aside(self) -> None:
        """With host a full, b's later entry comes next; a's come back in order once it has room."""
        gate = HostGate(ceiling=1, max_pause=60)
        entries = iter([
            (0, FileData("http://a.example/0")),
            (1, FileData("http://a.example/1")),
            (2, FileData("http://a.example/2")),
            (3, FileData("http://b.example/3")),
        ])  # fmt: skip
        scheduler = EntryScheduler(gate, lambda: next(entries, None), look_ahead=8)
        stop = threading.Event()
        first = scheduler.next(stop, wait=False)
        second = scheduler.next(stop, wait=False)
        assert first is not None
        assert second is not None
        assert (first[0], second[0]) == (0, 3)
        assert scheduler.next(stop, wait=False) is None
        assert not scheduler.exhausted
        gate.release(first[2])
        third = scheduler.next(stop, wait=False)
        assert third is not None
        assert third[0] == 1


class TestLimitRate:
    """--limit-rate paces the whole run, over every file and worker, on every downloader."""

    @pytest.mark.parametrize("transport", ["pooled", "curl"], indirect=True)
    def test_ten_mebibytes_at_one_mebibyte_a_second(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """--limit-rate 1M on a 10 MiB file takes 8 to 12 seconds."""
        url = file_server.add("/big.bin", b"z" * (10 * MIB))
        began = time.monotonic()
        outcome = run(transport, [{"id": "big", "url": url}], tmp_path, limit_rate=MIB)
        elapsed = time.monotonic() - began
        assert outcome.exit_code == 0, outcome.failures
        assert 8 <= elapsed <= 12, elapsed

    def test_the_limit_is_shared_by_every_file(
        self, file_server: FileServer, tmp_path: Path, transport: str
    ) -> None:
        """Two 256 KiB files at once under 256 KiB/s take about 2 s in all, not 1 s each."""
        # The server waits before answering: both requests are in at once.
        entries = [
            {
                "id": str(i),
                "url": file_server.add(f"/{i}.bin", bytes([i]) * (256 * KIB), delay=0.3),
            }
            for i in range(2)
        ]
        began = time.monotonic()
        outcome = run(transport, entries, tmp_path, limit_rate=256 * KIB, download_workers=2)
        elapsed = time.monotonic() - began - 0.3
        assert outcome.exit_code == 0, outcome.failures
        assert file_server.most_in_flight == 2
        # The same ratio as 8-12 s for 10 s, around the 2 s the bytes are due in.
        assert 1.6 <= elapsed <= 2.4 + 0.6, elapsed
