"""The lab's melody-conditioned U-Net generator and convolutional critic, sized by ModelConfig.

With width=64 and z_channels=512 these are exactly the lab's models: 8,273,540 and 2,766,785 parameters.
"""
from __future__ import annotations

import numpy as np

from chorus.trainer.config import Config
from chorus.trainer.tfenv import keras, tf

DOWN_BLOCKS = 4  # time and pitch halve four times: (32, 128) -> (2, 8)


class Upsample2x(keras.layers.Layer):
    """Nearest-neighbour 2x upsampling, as UpSampling2D(2), built from broadcast + reshape.

    UpSampling2D's gradient (ResizeNearestNeighborGrad) has no XLA CPU kernel; this form's gradient is a sum,
    which XLA compiles. Same outputs, no parameters.
    """

    def call(self, x):
        b, h, w, c = tf.unstack(tf.shape(x))
        x = tf.broadcast_to(x[:, :, None, :, None, :], tf.stack([b, h, 2, w, 2, c]))
        return tf.reshape(x, tf.stack([b, 2 * h, 2 * w, c]))

    def compute_output_shape(self, shape):
        return tf.TensorShape([shape[0], shape[1] * 2, shape[2] * 2, shape[3]])


def build_generator(cfg: Config) -> keras.Model:
    m, d = cfg.model, cfg.data
    layers = keras.layers
    k = m.kernel_size
    melody = keras.Input((d.steps, d.pitches, 1), name="melody")  # (batch, steps, pitches, 1)
    z = keras.Input((d.steps >> DOWN_BLOCKS, d.pitches >> DOWN_BLOCKS, m.z_channels), name="z")

    # Down path: conv(stride 2) -> LeakyReLU -> BatchNorm (no norm on the first block).
    skips, x = [], melody
    for i in range(DOWN_BLOCKS):
        x = layers.Conv2D(m.width << i, k, strides=2, padding="same", name=f"down{i}_conv")(x)
        x = layers.LeakyReLU(m.leaky_slope, name=f"down{i}_act")(x)
        if i > 0:
            x = layers.BatchNormalization(momentum=m.bn_momentum, name=f"down{i}_bn")(x)
        skips.append(x)  # (steps / 2^(i+1), pitches / 2^(i+1), width * 2^i)

    x = layers.Concatenate(name="bottleneck_z")([x, z])  # (2, 8, 8 * width + z_channels)

    # Up path: upsample -> conv -> BatchNorm -> ReLU, then concatenate the matching down output.
    for i in reversed(range(DOWN_BLOCKS - 1)):
        x = Upsample2x(name=f"up{i}_upsample")(x)
        x = layers.Conv2D(m.width << i, k, padding="same", name=f"up{i}_conv")(x)
        x = layers.BatchNormalization(momentum=m.bn_momentum, name=f"up{i}_bn")(x)
        x = layers.ReLU(name=f"up{i}_act")(x)
        x = layers.Concatenate(name=f"up{i}_skip")([x, skips[i]])

    x = Upsample2x(name="head_upsample")(x)
    # float32 output even under mixed precision: tanh saturates badly in float16.
    out = layers.Conv2D(d.tracks, k, padding="same", activation="tanh", dtype="float32", name="head_conv")(x)
    return keras.Model([melody, z], out, name="generator")  # (batch, steps, pitches, tracks)


def build_critic(cfg: Config) -> keras.Model:
    m, d = cfg.model, cfg.data
    layers = keras.layers
    roll = keras.Input((d.steps, d.pitches, d.tracks), name="roll")
    melody = keras.Input((d.steps, d.pitches, 1), name="melody")
    x = layers.Concatenate(name="with_condition")([roll, melody])  # (steps, pitches, tracks + 1)
    for i in range(DOWN_BLOCKS):
        x = layers.Conv2D(m.width << i, m.kernel_size, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(m.leaky_slope, name=f"act{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    out = layers.Dense(1, dtype="float32", name="score")(x)  # linear: a Wasserstein critic, not a classifier
    return keras.Model([roll, melody], out, name="critic")


def generate_batched(generator: keras.Model, melody: np.ndarray, z: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Generator outputs in [-1, 1], float32 (N, T, P, K), for melodies (N, T, P, 1) and noise (N, *z_shape)."""
    outs = [generator([melody[i:i + batch_size], z[i:i + batch_size]], training=False).numpy()
            for i in range(0, len(melody), batch_size)]
    return np.concatenate(outs, axis=0).astype(np.float32)


def z_shape(cfg: Config) -> tuple[int, int, int]:
    return (cfg.data.steps >> DOWN_BLOCKS, cfg.data.pitches >> DOWN_BLOCKS, cfg.model.z_channels)
