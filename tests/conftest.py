"""Shared fixtures: a tiny config that trains in seconds, with its own dataset cache and run dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One dataset cache per test session, so the tiny chorale set is parsed once."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def tiny_overrides(tmp_path, data_cache) -> list[str]:
    return [f"run.dir={tmp_path / 'run'}", f"data.cache_dir={data_cache}"]


@pytest.fixture
def tiny_cfg(tiny_overrides):
    from trainer.config import load_config

    return load_config(TINY, tiny_overrides)


def run_chorus(*args: str, env: dict | None = None, timeout: float = 600, check: bool = False
               ) -> subprocess.CompletedProcess:
    """The installed CLI in a fresh process (TensorFlow device settings are per process)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "chorus", *args], cwd=REPO, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"chorus {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc
