"""Install what the benchmark needs when it is missing: Debian packages and PyPI packages."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
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
#: This repository's plugin packages that add rows (distribution -> folder).
_PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"
LOCAL_PLUGINS = {name: _PLUGINS_DIR / name for name in ("dpp-curl", "dpp-fast")}
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


def ensure_pypi_packages(log: list[str]) -> None:
    """``pip install`` into the running interpreter's environment what it cannot import."""
    missing = [
        dist for dist, module in PYPI_PACKAGES.items() if not importlib.util.find_spec(module)
    ]
    if not missing:
        return
    log.append(f"pip install {' '.join(missing)}")
    subprocess.run([sys.executable, "-m", "pip", "install", *missing], check=True, timeout=600)


def ensure_local_plugins(log: list[str]) -> None:
    """``pip install`` this repository's plugin packages that exist but are not installed."""
    for dist, folder in LOCAL_PLUGINS.items():
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


def ensure_tools() -> list[str]:
    """Install whatever is missing; return what was done."""
    log: list[str] = []
    ensure_debian_packages(log)
    ensure_pypi_packages(log)
    ensure_local_plugins(log)
    return log
