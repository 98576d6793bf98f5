"""Shared fixtures (a tiny config that trains in seconds, with its own dataset cache and run dir), and the rule
that under CI=true a skipped test is a failed test."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from tests_support import TINY

from chorus.data import tfenv

tfenv.configure()  # in os.environ, so that the chorus processes tests start inherit it

IN_CI = os.environ.get("CI", "").lower() == "true"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")
    return reason.removeprefix("Skipped: ").strip()


def _no_silent_skip(report) -> None:
    """Under CI a skip becomes a failure that says what did not run; elsewhere a skip must say why."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if IN_CI:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason or '(no reason given)'}"
    elif not reason:
        report.outcome = "failed"
        report.longrepr = "skipped without a reason: every skip must say why"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _no_silent_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module-level skip (importorskip, allow_module_level) is a skipped collection
    _no_silent_skip(report)
    return report


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
