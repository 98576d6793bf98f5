"""chorus.data.tfenv is the one way into TensorFlow: one log-level rule, and no other module imports TF itself."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from tests_support import REPO

from chorus.data import tfenv

PACKAGES = ("chorus", "data", "trainer", "cluster")


@pytest.mark.parametrize(("env", "level"), [({}, "3"), ({"CHORUS_VERBOSE": "0"}, "3"),
                                            ({"CHORUS_VERBOSE": "1"}, None),
                                            ({"CHORUS_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "1"}, "1"),
                                            ({"TF_CPP_MIN_LOG_LEVEL": "1"}, "1")])
def test_one_log_level_rule(monkeypatch, env, level):
    """Quiet unless CHORUS_VERBOSE; then TensorFlow's own default. A level already set (the Docker image's) wins."""
    for key in ("CHORUS_VERBOSE", "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    tfenv.configure()
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == level
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"


def test_importing_tfenv_does_not_import_tensorflow():
    code = "import sys, chorus.data.tfenv; print([m for m in ('tensorflow', 'tf_keras') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_library_module_imports_tensorflow_but_tfenv():
    offenders = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "data" / "tfenv.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in ("tensorflow", "tf_keras")]
    assert not offenders, "import TensorFlow through chorus.data.tfenv:\n" + "\n".join(offenders)
