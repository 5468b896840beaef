"""Tests for _targets.py: an entry's URL is checked and quoted once, at input, and carried."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from download_helpers import SHIPPED_DOWNLOADER_NAMES, SHIPPED_PLUGINS
from download_pipeline_processor import _targets
from download_pipeline_processor._inputs import load_file_list
from download_pipeline_processor._targets import Target, origin_for, target_of
from download_pipeline_processor.base_processor import DOWNLOAD, BaseProcessor
from download_pipeline_processor.errors import PermanentDownloadError
from download_pipeline_processor.file_data import FileData
from download_pipeline_processor.http_rules import origin_of, wire_url
from download_pipeline_processor.testing import FileServer, run_pipeline


def _loaded(*urls: str) -> list[FileData]:
    return list(load_file_list([{"url": url} for url in urls]))


class TestMadeAtInput:
    """The input check leaves each entry with the URL to send and its host key."""

    @pytest.mark.parametrize(
        "url",
        [
            "http://example.org/a/b.bin?x=1",
            "HTTPS://Example.ORG:8443/a%20b",
            "http://example.org:0080/ä ö".replace(" ", "%20"),
            "http://bücher.example/ä?q=é#frag",
            "http://[::1]:8080/x",
        ],
    )
    def test_target_is_the_wire_url_and_origin(self, url: str) -> None:
        """The carried target is what ``wire_url`` and ``origin_of`` say of the entry's URL."""
        (file_data,) = _loaded(url)
        target = vars(file_data)["_target"]
        assert target == Target(url, wire_url(url), origin_of(wire_url(url)))

    def test_plain_url_origin_matches_urlsplit(self) -> None:
        """The one-match path gives the host key ``urlsplit`` would: lower case, port filled in."""
        for url in ("http://A.example/x", "https://a.example./x", "http://a.example:80/x"):
            (file_data,) = _loaded(url)
            assert origin_for(file_data) == origin_of(url)

    def test_entry_given_as_file_data_gets_its_target(self) -> None:
        """A library caller's FileData gets its target from the input check too."""
        (file_data,) = list(load_file_list([FileData("http://example.org/a")]))
        assert vars(file_data)["_target"].wire == "http://example.org/a"

    def test_a_run_parses_each_url_once(
        self, file_server: FileServer, cache_root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """From input to the last byte, each entry's URL is worked out once (not per stage)."""
        # A spy on the real function (it still does the work): the count is the behaviour.
        calls: list[str] = []
        real = _targets.wire_target

        def counting(url: str) -> Any:
            calls.append(url)
            return real(url)

        monkeypatch.setattr(_targets, "wire_target", counting)
        files = [{"url": file_server.add(f"/f{i}", b"x" * 10)} for i in range(5)]
        outcome = run_pipeline(files, download_cache=cache_root, max_retries=0)
        assert outcome.exit_code == 0
        assert sorted(calls) == sorted(entry["url"] for entry in files)


class TestUsedDownstream:
    """The download side sends the carried URL: it does not work it out again."""

    @pytest.mark.parametrize("downloader", SHIPPED_DOWNLOADER_NAMES)
    def test_every_downloader_requests_the_carried_url(
        self, file_server: FileServer, cache_root: Path, downloader: str
    ) -> None:
        """An entry carrying a wire URL other than its own is fetched by the carried one.

        No real entry differs so (the carried URL is its own, quoted): planting one
        shows which of the two the engine, the host gate and the stage read.
        """
        url = file_server.add("/as-written", b"not this")
        carried = file_server.add("/carried", b"carried body")
        file_data = FileData(url, "one")
        vars(file_data)["_target"] = Target(url, carried, origin_of(carried))

        class Reading(BaseProcessor):
            def process(self, file_data: FileData) -> Any:
                assert file_data.local_path is not None
                return file_data.local_path.read_bytes()

        outcome = run_pipeline(
            [file_data],  # type: ignore[list-item]  # a library caller's FileData
            Reading,
            plugins=SHIPPED_PLUGINS,
            downloader=downloader,
            download_cache=cache_root,
            max_retries=0,
        )
        assert outcome.results == [b"carried body"]
        assert [request.path for request in file_server.requests] == ["/carried"]


class TestTravelsWithTheEntry:
    """The target survives a copy and a pickle, and never shows in the public record."""

    def test_pickle_and_copy_keep_it(self) -> None:
        """A process pool or a dask worker receives the entry with its target."""
        (file_data,) = _loaded("http://bücher.example/a")
        restored = pickle.loads(pickle.dumps(file_data))  # noqa: S301 - our own bytes
        for clone in (restored, copy.deepcopy(file_data)):
            assert vars(clone)["_target"] == vars(file_data)["_target"]

    def test_not_a_field(self) -> None:
        """``dataclasses.fields``, ``asdict``, ``repr`` and ``==`` are as documented."""
        (file_data,) = _loaded("http://example.org/a")
        plain = FileData("http://example.org/a", input_index=0)
        assert file_data == plain
        assert "_target" not in dataclasses.asdict(file_data)
        assert "_target" not in {field.name for field in dataclasses.fields(file_data)}
        assert repr(file_data) == repr(plain)


class TestChangedURL:
    """An entry whose ``url`` changed after input is fetched (and checked) at its new URL."""

    def test_target_follows_the_url(self) -> None:
        """The carried target is trusted only for the URL it was made from."""
        (file_data,) = _loaded("http://a.example/x")
        file_data.url = "http://B.example:81/ü"
        assert target_of(file_data) == Target(
            file_data.url, "http://B.example:81/%C3%BC", ("http", "b.example", 81)
        )
        assert origin_for(file_data) == ("http", "b.example", 81)

    def test_bad_new_url_fails_its_download(self) -> None:
        """A URL no downloader could fetch is refused when it is used, with the usual words."""
        (file_data,) = _loaded("http://a.example/x")
        file_data.url = "ftp://a.example/x"
        with pytest.raises(PermanentDownloadError, match="unsupported scheme 'ftp'"):
            target_of(file_data)
        assert origin_for(file_data) == origin_of("ftp://a.example/x")

    @pytest.mark.parametrize("downloader", SHIPPED_DOWNLOADER_NAMES)
    def test_processor_that_rewrites_the_url_before_download(
        self, file_server: FileServer, cache_root: Path, downloader: str
    ) -> None:
        """A URL changed by ``result_without_download`` is the one every downloader requests."""
        old = file_server.add("/old", b"old body")
        new = file_server.add("/new", b"new body")
        bad = file_server.add("/bad", b"never")

        class Rewriting(BaseProcessor):
            def result_without_download(self, file_data: FileData) -> Any:
                if file_data.id == "moved":
                    file_data.url = new
                elif file_data.id == "broken":
                    file_data.url = "http://exa mple.org/x"
                return DOWNLOAD

            def process(self, file_data: FileData) -> Any:
                assert file_data.local_path is not None
                return file_data.local_path.read_bytes()

        outcome = run_pipeline(
            [{"id": "moved", "url": old}, {"id": "broken", "url": bad}],
            Rewriting,
            plugins=SHIPPED_PLUGINS,
            downloader=downloader,
            download_cache=cache_root,
            max_retries=0,
        )
        assert outcome.results == [b"new body"]
        (failed,) = outcome.failures
        assert failed.id == "broken"
        assert failed.error is not None
        assert failed.error.message == "URL contains a space at position 10"
        assert [request.path for request in file_server.requests] == ["/new"]
