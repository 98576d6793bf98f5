"""The wheel as users install it: one top-level package (`chorus`), presets as package data, and a non-editable
install that trains and generates from an unrelated working directory, even one holding its own data.py,
trainer.py and cluster.py (which must not shadow chorus's packages)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from tests_support import REPO

pytestmark = pytest.mark.slow


def _run(cmd, *, cwd, env=None, timeout=900):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources, so that the build's scratch folders never touch the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("chorus", "data", "trainer", "cluster", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
         cwd=src)
    (whl,) = out.glob("chorus-*.whl")
    return whl


def test_the_wheel_has_one_top_level_package_and_the_presets(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"chorus", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}"
                                                ".dist-info"}
    top_level = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("top_level.txt"))).decode().split()
    assert top_level == ["chorus"]
    for sub in ("data", "trainer", "cluster", "configs"):
        assert f"chorus/{sub}/__init__.py" in names
    assert {f"chorus/configs/{p}.yaml" for p in ("default", "lab", "tiny", "search")} <= set(names)


def test_a_non_editable_install_trains_and_generates_from_anywhere(wheel, tmp_path):
    # A fresh venv that sees the pinned dependencies of .venv (a .pth line adds its site-packages without running
    # its .pth files, so the checkout's editable chorus stays invisible) and gets chorus only from the wheel.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    for shadow in ("data.py", "trainer.py", "cluster.py"):  # a user's own modules in the working directory
        (work / shadow).write_text("raise ImportError('a user module was imported instead of chorus')\n")
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    where = _run([str(py), "-c", "import chorus.trainer.config as c; print(c.__file__)"], cwd=work, env=env)
    assert where.stdout.strip().startswith(str(venv)) and str(REPO) not in where.stdout
    chorus = str(venv / "bin" / "chorus")
    dry = _run([chorus, "train", "--config", "tiny", "--dry-run"], cwd=work, env=env)
    assert "config ok" in dry.stdout
    run_dir = tmp_path / "run"
    _run([chorus, "train", "--config", "tiny", "--set", "train.steps=2", "--set", f"run.dir={run_dir}",
          "--set", f"data.cache_dir={tmp_path / 'cache'}"], cwd=work, env=env)
    assert (run_dir / "config.yaml").is_file() and list((run_dir / "checkpoints").iterdir())
    _run([chorus, "generate", "--run", str(run_dir), "--num", "2", "--out", str(tmp_path / "gen")], cwd=work, env=env)
    assert len(list((tmp_path / "gen").glob("generated-*.mid"))) == 2
    assert len(list((tmp_path / "gen").glob("generated-*.wav"))) == 2
