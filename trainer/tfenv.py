"""An old path to TensorFlow, kept for the callers outside this package's own edits (trainer/ladder.py,
benchmarks/): new code writes `tf = tfenv.tensorflow()` with `from chorus.data import tfenv`, the one module that
sets TensorFlow's environment before importing it. Delete this file when nothing imports it."""
from chorus.data import tfenv

tf = tfenv.tensorflow()
keras = tfenv.keras()

__all__ = ["tf", "keras"]
