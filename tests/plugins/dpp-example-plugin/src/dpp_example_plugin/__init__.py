"""Test fixture plugin for download-pipeline-processor."""
