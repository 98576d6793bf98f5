"""The one way into TensorFlow: set its environment, then import it.

    tf = tfenv.tensorflow()      # instead of `import tensorflow as tf`
    keras = tfenv.keras()        # instead of `import tf_keras as keras`

The environment only counts if it is set before TensorFlow's first import, so every module that uses TensorFlow
(data's input pipeline, the trainer, the tests) imports it through here. It lives in data/, the bottom layer, so
that every layer can reach it. Importing this module does not import TensorFlow: the CLI calls `configure()`
before it has checked its arguments.

- `TF_USE_LEGACY_KERAS=1`: Keras 3 breaks MultiWorkerMirroredStrategy (keras issue 20585), and Ray's
  TensorflowTrainer sets the same variable.
- `TF_CPP_MIN_LOG_LEVEL`: one rule. Quiet (3: TF's C++ logs, cuInit on CPU hosts and the like, are noise here)
  unless `CHORUS_VERBOSE` is set (the CLI's `-v` sets it), in which case TensorFlow's own default applies.
  A value already in the environment (the Docker image sets one) always wins.
- `quiet_native_logs()`: the level does not reach the lines TensorFlow writes before absl starts (absl's
  pre-InitializeLog warning, oneDNN, "Could not find cuda drivers", cuInit), so, unless verbose, a filter on the
  process's stderr drops them. The CLI installs it in every command; a Ray trial installs it in its own process.
"""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading

QUIET_LOG_LEVEL = "3"


def verbose() -> bool:
    """Whether CHORUS_VERBOSE asks for TensorFlow's native logs."""
    return os.environ.get("CHORUS_VERBOSE", "") not in ("", "0")


def configure() -> None:
    """Set TensorFlow's environment (see the module docstring). Harmless to call again; imports nothing."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)


# absl: "I0000 00:00:1796.. 16509 file.cc:31]"; TF: "2026-12-04 16:00:00.1: I f.cc:1]"
NATIVE_LOG = re.compile(rb"WARNING: All log messages before absl::InitializeLog"
                        rb"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]"
                        rb"|\d{4}-\d\d-\d\d [\d:.]+: [IWEF] [\w/.]+:\d+\]"
                        rb"|oneDNN custom operations|To enable the following instructions")
_NATIVE_STARTS = (b"WARNING: All", b"I0", b"W0", b"E0", b"F0", b"20", b"oneDNN", b"To enable")
_filtering = False


def quiet_native_logs() -> bool:
    """Unless verbose, drop TensorFlow's native log lines from this process's stderr (fd 2; other lines pass).

    Installed once per process (a Ray worker runs many trials); returns whether a filter is in place.
    """
    global _filtering
    if _filtering or verbose():
        return _filtering
    read_end, write_end = os.pipe()
    real = os.dup(2)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if not NATIVE_LOG.match(line):
                    os.write(real, line + b"\n")
            # a partial line that cannot start a native log line goes out now (prompts, progress without newline)
            if pending and not any(pending.startswith(p) or p.startswith(pending) for p in _NATIVE_STARTS):
                os.write(real, pending)
                pending = b""
        if pending:
            os.write(real, pending)

    thread = threading.Thread(target=pump, name="native-log-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the pump drains and stops
        thread.join(timeout=5)

    atexit.register(restore)
    _filtering = True
    return True


def tensorflow():
    """The `tensorflow` module, imported after `configure()`."""
    configure()
    import tensorflow

    return tensorflow


def keras():
    """The `tf_keras` module (legacy Keras 2, as TensorFlow itself uses with TF_USE_LEGACY_KERAS=1)."""
    tensorflow()
    import tf_keras

    return tf_keras
