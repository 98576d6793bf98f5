"""Shared fixtures: a tiny config that trains in seconds, with its own dataset cache and run dir."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests_support import TINY

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One dataset cache per test session, so the tiny chorale set is parsed once."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def tiny_overrides(tmp_path, data_cache) -> list[str]:
    return [f"run.dir={tmp_path / 'run'}", f"data.cache_dir={data_cache}"]


@pytest.fixture
def make_tiny(tiny_overrides):
    """make_tiny("train.steps=3", ...) -> the tiny Config with these overrides on top."""
    from chorus.trainer.config import load_config

    return lambda *extra: load_config(TINY, tiny_overrides + list(extra))


@pytest.fixture
def tiny_cfg(tiny_overrides):
    from chorus.trainer.config import load_config

    return load_config(TINY, tiny_overrides)


@pytest.fixture
def ray_env(monkeypatch):
    """A short private temp dir for Ray (unix socket paths are length-limited), auth off, no ~/.ray writes."""
    tmp = tempfile.mkdtemp(prefix="chorus-ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", tmp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield tmp
    import ray

    ray.shutdown()
    subprocess.run(["rm", "-rf", tmp], check=False)
