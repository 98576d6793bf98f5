"""tf.data input pipeline: seeded shuffle, batch, repeat, prefetch, sharded per worker, resumable by position.

The order of samples is a pure function of (seed, position): epoch e visits the windows in the permutation
stateless_shuffle(range(N), seed=[seed, e]). So "where the data was" is one integer, the number of global
batches already consumed, which a checkpoint stores, and a resumed run sees exactly the batches it would have
seen. Each global batch is split into one slice per replica; an input pipeline (one per worker) yields only
the slices of its own replicas, so workers never read the same sample in the same step.

Optional, for models that compute over a pitch window: windows are cropped to `pitch_window` pitches from
`pitch_low` (windows with notes outside are dropped), and each sample may be transposed by a random number of
semitones (at most `max_shift`, never out of the window). The shift is also a pure function of (seed, position),
so exact resume holds with augmentation.

Key normalization (`key_normalize`) instead moves every window to one key: each is transposed so that its melody's
major scale (estimated from the melody alone, since that is all a user gives at generation) becomes C major. The
shift is a property of the window, and `key_shifts` is the one rule that training and generation share.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chorus.data import tfenv
from chorus.data.music_basics import fold_octaves, scale_count_key

tf = tfenv.tensorflow()


def global_batch_indices(batch: tf.Tensor, *, n: int, global_batch: int, seed: int) -> tf.Tensor:
    """Window indices of global batch number `batch` (shape (global_batch,))."""
    position = batch * global_batch + tf.range(global_batch, dtype=tf.int64)  # absolute sample positions
    epoch, offset = position // n, position % n

    def perm_of(e):
        return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, e]))

    # A batch spans at most a few epochs (global_batch may exceed n on tiny datasets).
    first = epoch[0]
    n_epochs = tf.cast(epoch[-1] - first + 1, tf.int32)
    perms = tf.map_fn(lambda e: perm_of(first + e), tf.range(n_epochs, dtype=tf.int64),
                      fn_output_signature=tf.int64)  # (n_epochs, n)
    return tf.gather_nd(perms, tf.stack([epoch - first, offset], axis=1))


SHIFT_SALT = 0x7A5  # keeps the transposition stream apart from the shuffle stream of the same seed


def outside_window(rolls: np.ndarray, pitch_low: int, pitch_window: int) -> np.ndarray:
    """(N,) bool: windows with a note outside pitches [pitch_low, pitch_low + pitch_window)."""
    inside = np.zeros(rolls.shape[2], bool)
    inside[pitch_low:pitch_low + pitch_window] = True
    return rolls[:, :, ~inside, :].any(axis=(1, 2, 3))


def crop_to_window(rolls: np.ndarray, pitch_low: int, pitch_window: int) -> tuple[np.ndarray, int]:
    """(windows cropped to the pitch window, number of windows dropped because a note fell outside it)."""
    if pitch_low == 0 and pitch_window == rolls.shape[2]:
        return rolls, 0
    out = outside_window(rolls, pitch_low, pitch_window)
    return rolls[~out][:, :, pitch_low:pitch_low + pitch_window, :], int(out.sum())


def shift_ranges(rolls: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window, the lowest and highest transposition (semitones, |s| <= max_shift) that keeps it in range."""
    active = rolls.any(axis=(1, 3))  # (N, P)
    p = rolls.shape[2]
    lowest = np.where(active.any(1), active.argmax(1), 0)
    highest = np.where(active.any(1), p - 1 - active[:, ::-1].argmax(1), p - 1)
    return np.maximum(-max_shift, -lowest).astype(np.int64), np.minimum(max_shift, p - 1 - highest).astype(np.int64)


def key_shifts(rolls: np.ndarray, pitch_low: int, *, track: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(shift, fits) per window (N, T, P, K) whose pitch i is MIDI pitch_low + i: the semitones that move the
    major scale holding most of `track`'s note-steps (ties: the lowest tonic; a silent track: C) onto C, and
    whether the shifted window still lies inside the P pitches.

    The nearer octave, -6..+5, is preferred; the other (+6..+11 or -11..-7) is taken when only it fits, so the rule
    never loses a note. The fit is judged over every track given: at generation only the melody is known.
    """
    x = np.asarray(rolls) > 0
    n, _, p, _ = x.shape
    counts = x[..., track].sum(axis=1)  # (N, P) note-steps per pitch
    tonic = scale_count_key(fold_octaves(counts, axis=1, pitch_low=pitch_low))  # the lab's key rule, on one track
    near = np.where(tonic <= 6, -tonic, 12 - tonic)
    far = np.where(near > 0, near - 12, near + 12)
    far = np.where(tonic == 0, 0, far)
    active = x.any(axis=(1, 3))  # (N, P)
    lowest = np.where(active.any(1), active.argmax(1), 0)
    highest = np.where(active.any(1), p - 1 - active[:, ::-1].argmax(1), 0)

    def fit(s):
        return (lowest + s >= 0) & (highest + s <= p - 1)

    shift = np.where(fit(near) | ~fit(far), near, far)
    return shift.astype(np.int64), fit(shift)


@dataclass(frozen=True)
class Windows:
    """Training windows as a model computes over them: cropped to its pitch window, and with key normalization,
    each window's key shift. Made once per run by `training_windows`; `make_dataset` takes it as is."""
    rolls: np.ndarray  # (N, T, pitch_window, K) bool
    key_shifts: np.ndarray | None  # (N,) semitones to C, or None without key normalization
    outside: int  # windows dropped: a note outside the pitch window
    unfit: int  # windows dropped: inside it, but not once moved to C


def training_windows(rolls: np.ndarray, *, pitch_low: int = 0, pitch_window: int | None = None,
                     key_normalize: bool = False) -> Windows:
    """Crop (N, T, P, K) rolls to the pitch window and, with key_normalize, find each window's key shift; windows
    that fall outside either way are dropped and counted."""
    if rolls.ndim != 4 or rolls.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, T, P, K) array, got shape {rolls.shape}")
    cropped, outside = crop_to_window(rolls, pitch_low, pitch_window or rolls.shape[2])
    if not key_normalize:
        return Windows(cropped, None, outside, 0)
    shifts, fits = key_shifts(cropped, pitch_low)
    return Windows(cropped[fits], shifts[fits], outside, int((~fits).sum()))


def shift_pitches(rolls: np.ndarray, shifts: np.ndarray, fill: float) -> np.ndarray:
    """Each window (N, T, P, K) transposed by its own number of semitones; pitches moved past an edge are lost and
    the vacated ones take `fill`."""
    rolls = np.asarray(rolls)
    p = rolls.shape[2]
    src = np.arange(p)[None, :] - np.asarray(shifts)[:, None]  # (N, P): output pitch i reads pitch i - shift
    out = np.take_along_axis(rolls, np.clip(src, 0, p - 1)[:, None, :, None], axis=2)
    return np.where(((src >= 0) & (src < p))[:, None, :, None], out, np.asarray(fill, rolls.dtype))


def batch_shifts(batch: tf.Tensor, idx: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, seed: int) -> tf.Tensor:
    """Semitone shift of each sample of global batch `batch`, uniform in [lo, hi] of its window."""
    u = tf.random.stateless_uniform(tf.shape(idx), seed=tf.stack([tf.constant(seed ^ SHIFT_SALT, tf.int64), batch]))
    lo_i, hi_i = tf.gather(lo, idx), tf.gather(hi, idx)
    span = tf.cast(hi_i - lo_i + 1, tf.float32)
    return lo_i + tf.minimum(tf.cast(tf.floor(u * span), tf.int64), hi_i - lo_i)


def make_dataset(rolls: np.ndarray | Windows, *, global_batch: int, seed: int, start_batch: int = 0,
                 num_replicas: int = 1, input_context: tf.distribute.InputContext | None = None,
                 pitch_low: int = 0, pitch_window: int | None = None, binary: bool = False,
                 max_shift: int = 0, key_normalize: bool = False) -> tf.data.Dataset:
    """Infinite dataset of per-replica batches, float32 in {-1, 1} ({0, 1} if binary), shaped (per_replica, T, P, K).

    `rolls` is a bool array (N, T, P, K), or the Windows that training_windows made of one with the same
    pitch_low, pitch_window and key_normalize. With an input_context (distribute_datasets_from_function), this
    pipeline yields the batches of its own local replicas, in replica order, for every global step.
    With a pitch_window, P becomes pitch_window (see crop_to_window); max_shift > 0 transposes each sample by a
    random shift, key_normalize by its key_shifts (windows that fit in neither octave are dropped).
    """
    if max_shift and key_normalize:
        raise ValueError("random transposition and key normalization exclude each other")
    windows = rolls if isinstance(rolls, Windows) else training_windows(
        rolls, pitch_low=pitch_low, pitch_window=pitch_window, key_normalize=key_normalize)
    if (windows.key_shifts is not None) != key_normalize:
        raise ValueError(f"the windows were made with key_normalize={not key_normalize}")
    rolls, shifts = windows.rolls, windows.key_shifts
    if rolls.shape[0] == 0:
        raise ValueError("no window lies inside the pitch window" + (" once moved to C" if key_normalize else ""))
    if global_batch % num_replicas:
        raise ValueError(f"global batch {global_batch} is not divisible by {num_replicas} replicas")
    n = rolls.shape[0]
    per_replica = global_batch // num_replicas
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    local = num_replicas // pipelines  # replicas fed by this pipeline
    table = tf.constant(rolls.astype(np.uint8))  # uint8 keeps the table 4x smaller than float32
    lo, hi = (tf.constant(a) for a in shift_ranges(rolls, max_shift))
    key_shift = tf.constant(shifts) if key_normalize else None
    p = rolls.shape[2]

    def slices(batch):
        idx = global_batch_indices(batch, n=n, global_batch=global_batch, seed=seed)
        if max_shift:
            shift = batch_shifts(batch, idx, lo, hi, seed)
        else:
            shift = tf.gather(key_shift, idx) if key_normalize else tf.zeros_like(idx)
        mine = slice(pipeline_id * local, (pipeline_id + 1) * local)
        idx = tf.reshape(idx, (num_replicas, per_replica))[mine]
        shift = tf.reshape(shift, (num_replicas, per_replica))[mine]
        return tf.data.Dataset.from_tensor_slices((idx, shift))  # `local` (index, shift) vectors, one per replica

    def to_rolls(idx, shift):
        x = tf.gather(table, idx)  # (per_replica, T, P, K)
        if max_shift or key_normalize:  # pitch p of the output reads pitch p - shift; shifts never wrap notes
            x = tf.gather(x, (tf.range(p, dtype=tf.int64)[None, :] - shift[:, None]) % p, axis=2, batch_dims=1)
        x = tf.cast(x, tf.float32)
        return x if binary else x * 2.0 - 1.0

    ds = tf.data.Dataset.counter(start=start_batch, dtype=tf.int64)  # repeat forever from the resume position
    ds = ds.flat_map(slices).map(to_rolls, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    # We shard by construction; stop tf.distribute from auto-sharding by file or data again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
