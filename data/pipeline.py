"""tf.data input pipeline: seeded shuffle, batch, repeat, prefetch, sharded per worker, resumable by position.

The order of samples is a pure function of (seed, position): epoch e visits the windows in the permutation
stateless_shuffle(range(N), seed=[seed, e]). So "where the data was" is one integer, the number of global
batches already consumed, which a checkpoint stores, and a resumed run sees exactly the batches it would have
seen. Each global batch is split into one slice per replica; an input pipeline (one per worker) yields only
the slices of its own replicas, so workers never read the same sample in the same step.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


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


def make_dataset(rolls: np.ndarray, *, global_batch: int, seed: int, start_batch: int = 0,
                 num_replicas: int = 1, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """Infinite dataset of per-replica batches, float32 in {-1, 1}, shaped (per_replica, T, P, K).

    `rolls` is a bool array (N, T, P, K). With an input_context (distribute_datasets_from_function), this
    pipeline yields the batches of its own local replicas, in replica order, for every global step.
    """
    if rolls.ndim != 4 or rolls.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, T, P, K) array, got shape {rolls.shape}")
    if global_batch % num_replicas:
        raise ValueError(f"global batch {global_batch} is not divisible by {num_replicas} replicas")
    n = rolls.shape[0]
    per_replica = global_batch // num_replicas
    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    local = num_replicas // pipelines  # replicas fed by this pipeline
    table = tf.constant(rolls.astype(np.uint8))  # uint8 keeps the table 4x smaller than float32

    def slices(batch):
        idx = global_batch_indices(batch, n=n, global_batch=global_batch, seed=seed)
        idx = tf.reshape(idx, (num_replicas, per_replica))[pipeline_id * local:(pipeline_id + 1) * local]
        return tf.data.Dataset.from_tensor_slices(idx)  # `local` index vectors, one per replica

    def to_rolls(idx):
        x = tf.cast(tf.gather(table, idx), tf.float32)  # (per_replica, T, P, K)
        return x * 2.0 - 1.0

    ds = tf.data.Dataset.counter(start=start_batch, dtype=tf.int64)  # repeat forever from the resume position
    ds = ds.flat_map(slices).map(to_rolls, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    # We shard by construction; stop tf.distribute from auto-sharding by file or data again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
