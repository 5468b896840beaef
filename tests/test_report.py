"""report.to_json: the JSON form of results in the jsonl lines and the journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from download_pipeline_processor import BaseProcessor, FileData
from download_pipeline_processor.report import to_json
from download_pipeline_processor.testing import FileServer, run_pipeline


class Blob:
    """A result carrying bulk bytes that says what its report keeps."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def report_form(self) -> dict[str, Any]:
        return {"bytes": len(self.data)}


class BlobProcessor(BaseProcessor):
    """Returns the downloaded file as a Blob."""

    def process(self, file_data: FileData) -> Blob:
        assert file_data.local_path is not None
        return Blob(Path(file_data.local_path).read_bytes())


class TestReportForm:
    def test_report_form_replaces_the_object(self) -> None:
        """An object whose class defines report_form() is written as what it returns."""
        assert json.loads(to_json({"result": Blob(b"x" * 10)})) == {"result": {"bytes": 10}}

    def test_jsonl_line_keeps_the_report_form_only(self, tmp_path: Path) -> None:
        """The jsonl post-processor writes a result's report form, never its bytes."""
        out = tmp_path / "out.jsonl"
        with FileServer() as server:
            url = server.add("/blob.bin", b"SECRET-BYTES" * 100)
            outcome = run_pipeline(
                [{"url": url}],
                BlobProcessor,
                post_processors=["jsonl"],
                post_processor_options={"path": str(out)},
            )
        assert outcome.exit_code == 0
        text = out.read_text(encoding="utf-8")
        assert json.loads(text)["result"] == {"bytes": 1200}
        assert "SECRET-BYTES" not in text
