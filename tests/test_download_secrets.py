"""Secrets (query strings, userinfo) stay out of errors and logs on every shipped downloader."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from download_helpers import (
    FAILING_ROUTE_IDS,
    FAILING_ROUTES,
    StageFactory,
    closed_port,
    download_error,
    with_secrets,
)
from download_pipeline_processor.file_data import FileData, StageError
from download_pipeline_processor.testing import FileServer

#: Every test here runs once per shipped downloader (the ``transport`` fixture).
pytestmark = pytest.mark.usefixtures("transport")


class TestSecretsStayOut:
    """Query strings and userinfo never reach error messages or logs."""

    @pytest.mark.parametrize("route", FAILING_ROUTES, ids=FAILING_ROUTE_IDS)
    def test_error_messages(
        self,
        file_server: FileServer,
        make_stage: StageFactory,
        caplog: pytest.LogCaptureFixture,
        route: dict[str, Any],
    ) -> None:
        """Neither the error, its StageError message nor the retry log shows the secrets."""
        url = with_secrets(file_server.add("/x", **route))
        caplog.set_level(logging.DEBUG, logger="download_pipeline_processor")
        error = download_error(make_stage(max_retries=1, timeout=0.2), url)
        texts = [str(error), StageError("download", error).message, caplog.text]
        for text in texts:
            assert "secret" not in text
            assert "SECRET" not in text
            assert "user:" not in text

    @pytest.mark.parametrize("query", ["token=SECRET", "token=my%20SECRET", "token=SECRET\u00e9"])
    def test_connection_error_message(self, make_stage: StageFactory, query: str) -> None:
        """A connection error, which requests words with the URL re-quoted, shows no secret."""
        url = f"http://user:secret@127.0.0.1:{closed_port()}/x?{query}"
        message = str(download_error(make_stage(max_retries=0), url))
        assert message == "connection refused"
        assert "SECRET" not in message
        assert "secret" not in message

    def test_redirect_target_secrets(
        self, file_server: FileServer, make_stage: StageFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing redirect target's query string reaches neither the error nor the logs."""
        hop = f"http://127.0.0.1:{closed_port()}/z?sig=HOPSECRET"
        url = file_server.add("/r", statuses=(302,), redirect_to=hop)
        caplog.set_level(logging.DEBUG, logger="download_pipeline_processor")
        error = download_error(make_stage(max_retries=1), url)
        file_data = FileData(url)
        file_data.fail("download", error)
        assert file_data.error is not None
        for text in (str(error), file_data.error.message, caplog.text):
            assert "HOPSECRET" not in text

    def test_retry_log_names_redacted_url(
        self, file_server: FileServer, make_stage: StageFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each retry is logged once at INFO with the redacted URL."""
        url = with_secrets(file_server.add("/x", b"ok", statuses=(500, 200)))
        caplog.set_level(logging.INFO, logger="download_pipeline_processor._download_stage")
        make_stage().download(0, FileData(url))
        (record,) = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert file_server.url("/x") + "?REDACTED" in record.getMessage()
        assert "SECRET" not in record.getMessage()
