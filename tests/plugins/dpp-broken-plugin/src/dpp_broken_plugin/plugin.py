"""Fails on import, as a plugin with a missing dependency would."""

from __future__ import annotations

import dpp_dependency_that_is_not_installed  # noqa: F401  # type: ignore[import-not-found]
