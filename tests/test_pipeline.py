"""The input pipeline: seeded order, exact resume position, per-worker shards that cover the global batch; window
crop, transposition augmentation, key normalization."""
from __future__ import annotations

import numpy as np
import pytest
from tests_support import mono_rolls, pipeline_batches, scale_melodies

from chorus.data.music_basics import SCALES
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


def test_crop_drops_and_counts_windows_outside():
    from chorus.data.pipeline import crop_to_window

    rolls = mono_rolls(5)
    rolls[1, 3, 20, 2] = True  # MIDI 20: below the window
    rolls[4, 0, 100, 3] = True  # MIDI 100: above it
    cropped, dropped = crop_to_window(rolls, 32, 64)
    assert dropped == 2 and cropped.shape == (3, 32, 64, 4)
    np.testing.assert_array_equal(cropped, rolls[[0, 2, 3], :, 32:96])


def test_augmentation_transposes_whole_windows_within_the_window_and_resumes_exactly():
    rolls = mono_rolls(6)
    kw = {"pitch_low": 32, "pitch_window": 64, "binary": True}
    plain = pipeline_batches(rolls, 6, **kw)
    shifted = pipeline_batches(rolls, 6, max_shift=6, **kw)
    for a, b in zip(plain, shifted, strict=True):
        assert set(np.unique(b)) <= {0.0, 1.0}
        for x, y in zip(a, b, strict=True):  # same window, all voices moved by one shift s, |s| <= 6
            sx, sy = np.nonzero(x.any(axis=(0, 2)))[0], np.nonzero(y.any(axis=(0, 2)))[0]
            s = sy.min() - sx.min()
            assert abs(s) <= 6
            np.testing.assert_array_equal(np.roll(x, s, axis=1), y)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, shifted, strict=True))
    resumed = pipeline_batches(rolls, 3, max_shift=6, start_batch=3, **kw)
    for a, b in zip(shifted[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_key_shifts_move_each_melody_to_c_by_the_nearer_octave_unless_only_the_other_fits():
    from chorus.data.music_basics import SCALES
    from chorus.data.pipeline import key_shifts, shift_pitches

    rolls = scale_melodies()
    shifts, fits = key_shifts(rolls, 32)
    assert fits.all()
    np.testing.assert_array_equal(shifts, [0, -1, -2, -3, -4, -5, -6, 5, 4, 3, 2, 1])  # the nearer octave: -6..+5
    moved = shift_pitches(rolls, shifts, False)
    pcs = (32 + np.nonzero(moved[..., 0].any(axis=1))[1]) % 12
    assert SCALES[0][pcs].all()  # every melody now in C major
    np.testing.assert_array_equal(shift_pitches(moved, -shifts, False), rolls)  # and back, nothing lost
    assert moved.sum() == rolls.sum()

    low = rolls[5:6].copy()  # F major: the nearer octave is down 5, which its bass (lowest: pitch 14) survives
    low[0, 0, 2, 3] = True  # but not a bass note at window pitch 2: up 7 instead
    (s,), (ok,) = key_shifts(low, 32)
    assert (s, ok) == (7, True)
    wide = low.copy()
    wide[0, 0, 60, 1] = True  # and now nothing fits: pitch 2 and pitch 60 are 58 apart in a 64-pitch window
    assert not key_shifts(wide, 32)[1][0]
    assert key_shifts(np.zeros((1, 32, 64, 4), bool), 32)[0][0] == 0  # a silent melody stays where it is


def test_training_windows_are_made_once_and_count_what_they_drop():
    from chorus.data.pipeline import Windows, make_dataset, training_windows

    rolls = np.zeros((14, 32, 128, 4), bool)
    rolls[:12, :, 32:96] = scale_melodies()
    rolls[12, 0, 20, 3] = True  # MIDI 20: outside the window
    rolls[13, 0, [32, 95], 3] = True  # spans the whole window: no room to move
    rolls[13, :, 66, 0] = True  # and its melody (F#) is not in C
    w = training_windows(rolls, pitch_low=32, pitch_window=64, key_normalize=True)
    assert (w.outside, w.unfit, len(w.rolls), len(w.key_shifts)) == (1, 1, 12, 12)
    opts = dict(global_batch=4, seed=5, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    given = [b.numpy() for b in make_dataset(w, **opts).take(4)]
    raw = pipeline_batches(rolls, 4, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    np.testing.assert_array_equal(np.stack(given), np.stack(raw))  # the same batches as from the raw rolls
    with pytest.raises(ValueError, match="key_normalize=True"):
        make_dataset(w, **{**opts, "key_normalize": False})
    plain = training_windows(rolls, pitch_low=32, pitch_window=64)
    assert (plain.outside, plain.unfit, len(plain.rolls), plain.key_shifts) == (1, 0, 13, None)
    with pytest.raises(ValueError, match="once moved to C"):
        make_dataset(Windows(w.rolls[:0], w.key_shifts[:0], 0, 12), **opts)


def test_key_normalized_batches_are_in_c_and_lose_no_note():
    rolls = np.zeros((12, 32, 128, 4), bool)
    rolls[:, :, 32:96] = scale_melodies()
    batches = pipeline_batches(rolls, 6, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    for batch in batches:
        for x in batch:
            pcs = (32 + np.nonzero(x[..., 0].any(axis=0))[0]) % 12
            assert SCALES[0][pcs].all()  # the melody in C major
            assert x.sum() == 16 * 4  # no note lost
    with pytest.raises(ValueError, match="exclude each other"):
        pipeline_batches(rolls, 1, pitch_low=32, pitch_window=64, max_shift=2, key_normalize=True)
