"""Import TensorFlow with legacy Keras (tf-keras) selected.

Keras 3 breaks MultiWorkerMirroredStrategy (keras issue 20585), and Ray's TensorflowTrainer sets the same
variable; it must be set before TensorFlow is first imported, so every trainer module imports TF from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
