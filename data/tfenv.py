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
"""
from __future__ import annotations

import os

QUIET_LOG_LEVEL = "3"


def verbose() -> bool:
    """Whether CHORUS_VERBOSE asks for TensorFlow's native logs."""
    return os.environ.get("CHORUS_VERBOSE", "") not in ("", "0")


def configure() -> None:
    """Set TensorFlow's environment (see the module docstring). Harmless to call again; imports nothing."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)


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
