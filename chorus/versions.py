"""Versions of Python and of the packages that shape a result, recorded beside it (dataset manifests, runs)."""
from __future__ import annotations

import platform
from importlib import metadata

# What a built dataset depends on, and what a training run depends on.
DATA_PACKAGES = ("numpy", "pypianoroll", "music21")
RUN_PACKAGES = ("chorus", "tensorflow", "tf-keras", "numpy", "pypianoroll", "music21", "ray")


def versions(packages: tuple[str, ...] = RUN_PACKAGES) -> dict[str, str | None]:
    """{"python": "3.11.7", name: version, ...}; None for a package that is not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
