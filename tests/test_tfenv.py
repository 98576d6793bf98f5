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


NATIVE_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796477063.120312   16509 cuda_executor.cc:1309] could not open file to read NUMA node",
    "2026-12-04 16:00:00.123456: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:31] Could not find cuda drivers",
    "E0000 00:00:1796477063.1 16509 cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error",
    "oneDNN custom operations are on. You may see slightly different numerical results",
]
WRITER = """
import os, sys
from chorus.data import tfenv
print(tfenv.quiet_native_logs(), tfenv.quiet_native_logs(), flush=True)  # once per process
lines = sys.argv[1].split("|")
for line in lines:
    os.write(2, (line + "\\n").encode())           # as TensorFlow's C++ writes: straight to fd 2
print("python's own line", file=sys.stderr)
tfenv.tensorflow().constant(1.0)                  # and TensorFlow's real start-up
os.write(2, b"a prompt without newline: ")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_are_dropped_unless_verbose(verbose):
    env = {k: v for k, v in os.environ.items() if k not in ("CHORUS_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    if verbose:
        env["CHORUS_VERBOSE"] = "1"
    kept = ["a line of the user's", "I0 is not a log line", "2026 was a year"]
    out = subprocess.run([sys.executable, "-c", WRITER, "|".join(NATIVE_LINES + kept)], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == (["False", "False"] if verbose else ["True", "True"])
    err = out.stderr.splitlines()
    assert err[-1] == "a prompt without newline: "
    if verbose:
        assert all(line in err for line in NATIVE_LINES)
    else:
        assert err == kept + ["python's own line", "a prompt without newline: "], out.stderr
