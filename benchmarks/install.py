"""Install what the benchmark needs when it is missing: Debian packages and PyPI packages.

The ``images`` case also needs numpy, Pillow and pyarrow here (its corpus
and lists), the ``dpp-image`` and ``dpp-dask`` plugin packages, and
img2dataset in a virtualenv of its own (``benchmarks/work/img2dataset-venv``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: Debian package -> the executable it provides.
DEBIAN_PACKAGES = {
    "nginx": "nginx",
    "aria2": "aria2c",
    "curl": "curl",
    "wget": "wget",
    # GNU time reports a child's own peak RSS (see measure.py).
    "time": "/usr/bin/time",
}
#: PyPI distribution -> the module it provides (installed into the running venv):
#: requests for the baseline, trustme for the TLS cases' throwaway CA.
PYPI_PACKAGES = {"requests": "requests", "trustme": "trustme"}
#: What the ``images`` case needs in the harness's own environment: its JPEG
#: corpus (numpy, Pillow), its parquet list (pyarrow).
IMAGES_PYPI_PACKAGES = {"numpy": "numpy", "Pillow": "PIL", "pyarrow": "pyarrow"}
#: This repository's plugin packages that add rows (distribution -> folder).
_PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"
LOCAL_PLUGINS = {name: _PLUGINS_DIR / name for name in ("dpp-curl", "dpp-fast")}
#: The ``images`` case's rows: the resize processor and shards, and the dask executor.
IMAGES_LOCAL_PLUGINS = {name: _PLUGINS_DIR / name for name in ("dpp-image", "dpp-dask")}
#: The img2dataset release the ``images`` case compares with, and its own virtualenv.
IMG2DATASET_VERSION = "1.47.0"
IMG2DATASET_VENV = Path(__file__).resolve().parent / "work" / "img2dataset-venv"
#: The versions its dependencies resolved to when the case was written (Python 3.11):
#: installed with ``-c`` so that every run gets the same; without them if they do not resolve.
IMG2DATASET_CONSTRAINTS = Path(__file__).resolve().parent / "img2dataset-constraints.txt"
SBIN_PATH = "/usr/sbin:/usr/local/sbin:/sbin"
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def _have(executable: str) -> bool:
    path = os.environ.get("PATH", "") + os.pathsep + SBIN_PATH
    return shutil.which(executable, path=path) is not None


def ensure_debian_packages(log: list[str]) -> None:
    """``apt-get update`` once, then ``apt-get install -y`` whatever is missing."""
    missing = [package for package, exe in DEBIAN_PACKAGES.items() if not _have(exe)]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Installing nginx must not start a system nginx on port 80: a policy-rc.d
    # that denies service starts does that (Debian container images ship one).
    made_policy = False
    if not POLICY_RC.exists():
        POLICY_RC.write_text("#!/bin/sh\n# dpp benchmark: no service starts\nexit 101\n")
        POLICY_RC.chmod(0o755)
        made_policy = True
    try:
        log.append(f"apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            check=True,
            env=env,
            timeout=900,
        )
    finally:
        if made_policy:
            POLICY_RC.unlink()
    still = [package for package, exe in DEBIAN_PACKAGES.items() if not _have(exe)]
    if still:
        raise RuntimeError(f"could not install: {', '.join(still)}")


def ensure_pypi_packages(log: list[str], packages: dict[str, str] = PYPI_PACKAGES) -> None:
    """``pip install`` into the running interpreter's environment what it cannot import."""
    missing = [dist for dist, module in packages.items() if not importlib.util.find_spec(module)]
    if not missing:
        return
    log.append(f"pip install {' '.join(missing)}")
    subprocess.run([sys.executable, "-m", "pip", "install", *missing], check=True, timeout=600)


def ensure_local_plugins(log: list[str], plugins: dict[str, Path] = LOCAL_PLUGINS) -> None:
    """``pip install`` this repository's plugin packages that exist but are not installed."""
    for dist, folder in plugins.items():
        if not (folder / "pyproject.toml").is_file():
            continue
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            log.append(f"pip install {folder}")
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", str(folder)],
                check=True,
                timeout=900,
            )


def img2dataset_version(venv: Path = IMG2DATASET_VENV) -> str | None:
    """The img2dataset version installed in ``venv``; None when there is none."""
    python = venv / "bin" / "python"
    if not python.is_file():
        return None
    completed = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('img2dataset'))"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return completed.stdout.strip() if completed.returncode == 0 else None


def ensure_img2dataset(log: list[str], venv: Path = IMG2DATASET_VENV) -> None:
    """img2dataset ``IMG2DATASET_VERSION`` in a virtualenv of its own, made when missing.

    Its dependencies are pinned by ``IMG2DATASET_CONSTRAINTS`` (what resolved on
    Python 3.11 when the case was written); if they do not install (another
    Python, another platform), pip resolves them freely and the log says so.
    The versions installed are written to ``freeze.txt`` in the virtualenv.
    """
    if img2dataset_version(venv) == IMG2DATASET_VERSION:
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    requirement = f"img2dataset=={IMG2DATASET_VERSION}"
    pinned = subprocess.run(
        [*pip, requirement, "-c", str(IMG2DATASET_CONSTRAINTS)], check=False, timeout=1800
    )
    if pinned.returncode == 0:
        log.append(f"img2dataset {IMG2DATASET_VERSION} in {venv} (constrained)")
    else:
        subprocess.run([*pip, requirement], check=True, timeout=1800)
        log.append(f"img2dataset {IMG2DATASET_VERSION} in {venv} (constraints did not install)")
    freeze = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (venv / "freeze.txt").write_text(freeze.stdout)


def ensure_py_spy(log: list[str]) -> None:
    """``pip install py-spy`` (a sampling profiler, a binary wheel) when it is not there."""
    if (Path(sys.executable).with_name("py-spy")).is_file() or shutil.which("py-spy"):
        return
    log.append("pip install py-spy")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=False, timeout=600
    )
    if installed.returncode != 0:
        # --profile then falls back to cProfile: a profile still comes out.
        log.append("py-spy did not install: profiling with cProfile")


def ensure_tools(cases: Sequence[str] = (), *, profiler: bool = False) -> list[str]:
    """Install whatever is missing (for ``images`` in ``cases``, its needs too); what was done.

    ``profiler``: also py-spy, for ``--profile``.
    """
    log: list[str] = []
    ensure_debian_packages(log)
    ensure_pypi_packages(log)
    ensure_local_plugins(log)
    if profiler:
        ensure_py_spy(log)
    if "images" in cases:
        ensure_pypi_packages(log, IMAGES_PYPI_PACKAGES)
        ensure_local_plugins(log, IMAGES_LOCAL_PLUGINS)
        ensure_img2dataset(log)
    return log
