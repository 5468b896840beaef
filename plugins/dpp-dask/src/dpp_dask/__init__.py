"""The ``dask`` executor: download and process on the workers of a Dask cluster."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
