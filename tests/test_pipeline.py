"""The input pipeline: seeded order, exact resume position, per-worker shards that cover the global batch."""
from __future__ import annotations

import numpy as np

from chorus.data.pipeline import make_dataset


def _rolls(n=10):
    x = np.zeros((n, 16, 16, 2), bool)
    for i in range(n):
        x[i, 0, i, 0] = True  # window i is recognisable by the pitch of its first note
    return x


def _ids(batch):
    return np.argmax(batch.numpy()[:, 0, :, 0], axis=1).tolist()


def test_each_epoch_visits_every_window_once_in_seeded_order():
    ds = make_dataset(_rolls(), global_batch=5, seed=3)
    batches = [_ids(b) for b in ds.take(4)]
    assert sorted(batches[0] + batches[1]) == list(range(10))
    assert sorted(batches[2] + batches[3]) == list(range(10))
    assert batches[0] + batches[1] != batches[2] + batches[3]  # reshuffled per epoch
    again = [_ids(b) for b in make_dataset(_rolls(), global_batch=5, seed=3).take(4)]
    assert again == batches
    other = [_ids(b) for b in make_dataset(_rolls(), global_batch=5, seed=4).take(4)]
    assert other != batches


def test_resume_position_continues_the_same_stream():
    full = [_ids(b) for b in make_dataset(_rolls(), global_batch=4, seed=0).take(7)]
    resumed = [_ids(b) for b in make_dataset(_rolls(), global_batch=4, seed=0, start_batch=4).take(3)]
    assert resumed == full[4:]


def test_values_are_minus_one_and_one():
    batch = next(iter(make_dataset(_rolls(), global_batch=4, seed=0))).numpy()
    assert set(np.unique(batch)) == {-1.0, 1.0} and batch.dtype == np.float32


class _Ctx:
    def __init__(self, n, i):
        self.num_input_pipelines, self.input_pipeline_id = n, i


def test_worker_shards_partition_each_global_batch():
    full = [_ids(b) for b in make_dataset(_rolls(), global_batch=8, seed=1).take(3)]
    shards = [[_ids(b) for b in make_dataset(_rolls(), global_batch=8, seed=1, num_replicas=2,
                                             input_context=_Ctx(2, w)).take(3)] for w in range(2)]
    for step in range(3):
        assert shards[0][step] + shards[1][step] == full[step]
        assert len(shards[0][step]) == 4
