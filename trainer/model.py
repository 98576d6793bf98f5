"""The lab's melody-conditioned U-Net generator and convolutional critic, sized by ModelConfig.

With width=64, z_channels=512, head tanh, the full 128-pitch window and no melody copy (configs/lab.yaml) these
are exactly the lab's models: 8,273,540 and 2,766,785 parameters.

The models compute over a pitch window (model.pitch_low, model.pitch_window); RollCodec (trainer.codec) maps
user-facing rolls (128 pitches, {-1, 1}) to model tensors and back, so MIDI, metrics and `chorus generate` never
see the window.
Heads:
- tanh: one value in [-1, 1] per (step, pitch, track), binarized at sample.threshold (the lab).
- hold_steps (both heads): the head's pre-activations are averaged over runs of hold_steps steps, so the
  output changes at most once per run (2: eighth notes at sixteenth steps; the melody keeps its own rhythm).
- categorical: per (step, track) a softmax over the window's pitches plus a rest. The model emits the pitch
  probabilities (the rest is what they leave); real data is one-hot or all zero, so a voice is monophonic by
  construction. Decoding takes the most probable of (pitch..., rest) per voice and step.
"""
from __future__ import annotations

import numpy as np

from chorus.data import tfenv
from chorus.data.music_basics import pitch_classes
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config

tf = tfenv.tensorflow()
keras = tfenv.keras()

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


class VoiceSoftmax(keras.layers.Layer):
    """(batch, steps, pitches, 2K) logits -> (batch, steps, pitches, K) pitch probabilities of a softmax over
    (pitches + rest) per step and track. Channels K..2K-1, averaged over pitch, give each track's rest logit."""

    def call(self, x):
        k = x.shape[-1] // 2
        pitch, rest = x[..., :k], tf.reduce_mean(x[..., k:], axis=2, keepdims=True)  # rest: (b, t, 1, K)
        probs = tf.nn.softmax(tf.concat([pitch, rest], axis=2), axis=2)
        return probs[:, :, :-1, :]

    def compute_output_shape(self, shape):
        return tf.TensorShape([shape[0], shape[1], shape[2], shape[3] // 2])


class HoldSteps(keras.layers.Layer):
    """(batch, steps, pitches, C) -> the same, averaged over each run of `hold` steps and repeated: the head then
    decides once per `hold` steps (2: once per eighth note at sixteenth steps), so no note starts in between."""

    def __init__(self, hold: int, **kwargs):
        super().__init__(**kwargs)
        self.hold = hold

    def call(self, x):
        b, t, p, c = tf.unstack(tf.shape(x))
        runs = tf.reduce_mean(tf.reshape(x, tf.stack([b, t // self.hold, self.hold, p, c])), axis=2, keepdims=True)
        return tf.reshape(tf.broadcast_to(runs, tf.stack([b, t // self.hold, self.hold, p, c])), tf.shape(x))

    def compute_output_shape(self, shape):
        return shape

    def get_config(self):
        return {**super().get_config(), "hold": self.hold}


class CopyMelody(keras.layers.Layer):
    """Replace the melody track (RollCodec.MELODY_TRACK, 0) of the output with the conditioning melody (no
    parameters)."""

    def call(self, inputs):
        out, melody = inputs
        m = RollCodec.MELODY_TRACK
        return tf.concat([out[..., :m], tf.cast(melody, out.dtype), out[..., m + 1:]], axis=-1)


def codec(cfg: Config) -> RollCodec:
    return RollCodec(cfg.model.head, cfg.model.pitch_low, cfg.model.pitch_window, cfg.data.pitches,
                     cfg.model.key_normalize)


def pipeline_options(cfg: Config) -> dict:
    """make_dataset keyword arguments that turn 128-pitch training rolls into this model's inputs."""
    return {"pitch_low": cfg.model.pitch_low, "pitch_window": cfg.model.pitch_window,
            "binary": codec(cfg).binary, "max_shift": cfg.train.augment_transpose,
            "key_normalize": cfg.model.key_normalize}


def build_generator(cfg: Config) -> keras.Model:
    m, d = cfg.model, cfg.data
    layers = keras.layers
    k = m.kernel_size
    p = m.pitch_window
    melody = keras.Input((d.steps, p, 1), name="melody")  # (batch, steps, pitches, 1)
    z = keras.Input((d.steps >> DOWN_BLOCKS, p >> DOWN_BLOCKS, m.z_channels), name="z")

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
    # float32 output even under mixed precision: tanh and softmax saturate badly in float16.
    tanh_now = m.head == "tanh" and m.hold_steps == 1  # the lab's head, as one layer
    logits = layers.Conv2D(d.tracks if m.head == "tanh" else 2 * d.tracks, k, padding="same", dtype="float32",
                           activation="tanh" if tanh_now else None, name="head_conv")(x)
    if m.hold_steps > 1:
        logits = HoldSteps(m.hold_steps, dtype="float32", name="head_hold")(logits)
    if tanh_now:
        out = logits
    elif m.head == "tanh":
        out = layers.Activation("tanh", dtype="float32", name="head_tanh")(logits)
    else:
        out = VoiceSoftmax(dtype="float32", name="head_softmax")(logits)
    if m.copy_melody:
        out = CopyMelody(dtype="float32", name="copy_melody")([out, melody])
    generator = keras.Model([melody, z], out, name="generator")  # (batch, steps, pitches, tracks)
    generator.codec = codec(cfg)  # generate_batched maps user rolls in and out with it
    return generator


class PitchClasses(keras.layers.Layer):
    """(batch, steps, window, K) -> (batch, steps, 12 * K): each track's pitch classes (the window folded by
    octave, absolute pitch class = (pitch_low + i) mod 12), so that one row holds the chord at that step."""

    def __init__(self, pitch_low: int, **kwargs):
        super().__init__(**kwargs)
        self.pitch_low = pitch_low

    def call(self, x):
        window = x.shape[2]
        fold = np.zeros((window, 12), np.float32)
        fold[np.arange(window), pitch_classes(window, self.pitch_low)] = 1.0
        pcs = tf.einsum("btpk,pc->btck", x, tf.constant(fold, x.dtype))
        return tf.reshape(pcs, tf.stack([tf.shape(x)[0], tf.shape(x)[1], 12 * x.shape[3]]))

    def compute_output_shape(self, shape):
        return tf.TensorShape([shape[0], shape[1], 12 * shape[3]])

    def get_config(self):
        return {**super().get_config(), "pitch_low": self.pitch_low}


def _over_time(x, m, shift: int, prefix: str, flatten: str):
    """A critic side path's per-step vectors (batch, steps, C) -> two strided convolutions over time (width << shift,
    then twice that) -> flattened beside the main path."""
    for i in range(2):
        x = keras.layers.Conv1D(m.width << (shift + i), m.kernel_size, strides=2, padding="same",
                                name=f"{prefix}{i}")(x)
        x = keras.layers.LeakyReLU(m.leaky_slope, name=f"{prefix}_act{i}")(x)
    return keras.layers.Flatten(name=flatten)(x)


def build_critic(cfg: Config) -> keras.Model:
    m, d = cfg.model, cfg.data
    layers = keras.layers
    roll = keras.Input((d.steps, m.pitch_window, d.tracks), name="roll")
    melody = keras.Input((d.steps, m.pitch_window, 1), name="melody")
    x = x_in = layers.Concatenate(name="with_condition")([roll, melody])  # (steps, pitches, tracks + 1)
    for i in range(DOWN_BLOCKS):
        x = layers.Conv2D(m.width << i, m.kernel_size, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.LeakyReLU(m.leaky_slope, name=f"act{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    if m.critic_chords:
        # The 4x4 kernels reach a chord's far voices (bass to soprano: 2-3 octaves) only at coarse time steps. This
        # path sees every step's whole chord at once, octave by octave: one kernel spans the pitch window of every
        # voice and the melody, then convolutions over time follow the chords.
        c = layers.Conv2D(m.width << 2, (1, m.pitch_window), name="chord_conv")(x_in)  # (steps, 1, 4 * width)
        c = layers.LeakyReLU(m.leaky_slope, name="chord_act")(c)
        for i in range(1, m.chord_layers):  # more per-step layers (kernel 1): what the chord's notes make together
            c = layers.Conv2D(m.width << 2, 1, name=f"chord_conv{i}")(c)
            c = layers.LeakyReLU(m.leaky_slope, name=f"chord_act{i}")(c)
        c = layers.Reshape((d.steps, m.width << 2), name="chord_steps")(c)
        x = layers.Concatenate(name="with_chords")([x, _over_time(c, m, 2, "chord_time", "chord_flatten")])
    if m.critic_harmony:
        # Harmony spans the whole window (a bass and a soprano are 2-3 octaves apart), beyond the 2-D kernels'
        # early reach: a second path sees every step's pitch classes per voice and convolves them over time.
        h = PitchClasses(m.pitch_low, name="harmony_fold")(roll)
        x = layers.Concatenate(name="with_harmony")([x, _over_time(h, m, 1, "harmony", "harmony_flatten")])
    out = layers.Dense(1, dtype="float32", name="score")(x)  # linear: a Wasserstein critic, not a classifier
    return keras.Model([roll, melody], out, name="critic")


def generate_batched(generator: keras.Model, melody: np.ndarray, z: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Outputs in [-1, 1], float32 (N, T, P, K), for user melodies (N, T, P, 1) in {-1, 1} and noise (N, *z_shape).

    P is data.pitches (128): the generator's codec crops the melody to its window (and moves it to C with
    model.key_normalize), decodes its head's output (categorical: argmax per voice and step) and pads back (and
    moves it back to the melody's key), so > 0 means "on" for every head.
    """
    coder = generator.codec
    melody, shifts = coder.to_key(coder.encode(melody))
    outs = [generator([melody[i:i + batch_size], z[i:i + batch_size]], training=False).numpy()
            for i in range(0, len(melody), batch_size)]
    return coder.from_key(coder.decode(np.concatenate(outs, axis=0)), shifts)


def z_shape(cfg: Config) -> tuple[int, int, int]:
    return (cfg.data.steps >> DOWN_BLOCKS, cfg.model.pitch_window >> DOWN_BLOCKS, cfg.model.z_channels)
