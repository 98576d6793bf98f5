"""Heads, pitch window and transposition augmentation: shapes, decoding, monophony, resumable augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from chorus.data.errors import InputError


def _cfg(*overrides):
    from chorus.trainer.config import load_config

    return load_config(None, ["model.width=4", "model.z_channels=8", *overrides])


def _rolls(n=6, seed=0):
    """Monophonic 4-voice windows (n, 32, 128, 4) in MIDI 40..79, with some rests."""
    rng = np.random.default_rng(seed)
    rolls = np.zeros((n, 32, 128, 4), bool)
    pitch = rng.integers(40, 80, size=(n, 32, 4))
    np.put_along_axis(rolls, pitch[:, :, None, :], True, axis=2)
    rolls[:, ::7, :, 1] = False  # rests in the alto
    return rolls


@pytest.mark.parametrize("head", ["tanh", "categorical"])
def test_models_compute_over_the_window_and_outputs_are_full_rolls(head):
    from chorus.trainer.model import build_critic, build_generator, generate_batched, z_shape

    cfg = _cfg(f"model.head={head}")
    g, d = build_generator(cfg), build_critic(cfg)
    assert tuple(g.inputs[0].shape[1:]) == (32, 64, 1) and tuple(g.output.shape[1:]) == (32, 64, 4)
    assert tuple(d.inputs[0].shape[1:]) == (32, 64, 4)
    rolls = _rolls()
    melody = np.where(rolls[..., :1], 1.0, -1.0).astype(np.float32)
    z = np.random.default_rng(0).standard_normal((6, *z_shape(cfg))).astype(np.float32)
    out = generate_batched(g, melody, z)
    assert out.shape == (6, 32, 128, 4)
    on = out > 0
    assert not on[:, :, :32].any() and not on[:, :, 96:].any()  # nothing outside the window
    np.testing.assert_array_equal(on[..., 0], rolls[..., 0])  # copy_melody: track 0 is the melody
    if head == "categorical":
        assert on.sum(axis=2).max() <= 1  # every voice monophonic
        assert on[..., 1:].any()  # and not silent by construction


def test_categorical_probabilities_sum_to_at_most_one_per_voice():
    from chorus.trainer.model import build_generator, z_shape

    cfg = _cfg("model.copy_melody=false")
    g = build_generator(cfg)
    x = np.zeros((2, 32, 64, 1), np.float32)
    z = np.random.default_rng(1).standard_normal((2, *z_shape(cfg))).astype(np.float32)
    p = g([x, z], training=False).numpy()
    total = p.sum(axis=2)
    assert (p >= 0).all() and (total < 1).all() and (total > 0).all()  # the rest keeps the remainder


def test_decode_takes_the_argmax_or_the_rest():
    from chorus.trainer.model import RollCodec

    c = RollCodec("categorical", 32, 64, 128)
    probs = np.zeros((1, 2, 64, 1), np.float32)
    probs[0, 0, 10, 0], probs[0, 0, 11, 0] = 0.5, 0.3  # pitch 42 beats rest 0.2
    probs[0, 1, 10, 0] = 0.4  # rest 0.6 wins: silent
    roll = c.decode(probs) > 0
    assert np.flatnonzero(roll[0, 0, :, 0]).tolist() == [42]
    assert not roll[0, 1].any()


def test_encode_crops_and_uses_the_heads_values():
    from chorus.trainer.model import RollCodec

    rolls = _rolls(2)
    sign = np.where(rolls, 1.0, -1.0)
    cat = RollCodec("categorical", 32, 64, 128).encode(sign)
    assert cat.shape == (2, 32, 64, 4) and set(np.unique(cat)) == {0.0, 1.0}
    np.testing.assert_array_equal(cat > 0, rolls[:, :, 32:96])
    tanh = RollCodec("tanh", 0, 128, 128).encode(sign)
    np.testing.assert_array_equal(tanh, sign)


def test_window_keys_are_validated():
    with pytest.raises(InputError, match="model.pitch_window"):
        _cfg("model.pitch_window=40")
    with pytest.raises(InputError, match="model.pitch_low"):
        _cfg("model.pitch_low=80")
    with pytest.raises(InputError, match="model.head"):
        _cfg("model.head=sigmoid")


def test_crop_drops_and_counts_windows_outside():
    from chorus.data.pipeline import crop_to_window

    rolls = _rolls(5)
    rolls[1, 3, 20, 2] = True  # MIDI 20: below the window
    rolls[4, 0, 100, 3] = True  # MIDI 100: above it
    cropped, dropped = crop_to_window(rolls, 32, 64)
    assert dropped == 2 and cropped.shape == (3, 32, 64, 4)
    np.testing.assert_array_equal(cropped, rolls[[0, 2, 3], :, 32:96])


def _batches(rolls, n, **kw):
    from chorus.data.pipeline import make_dataset

    return [b.numpy() for b in make_dataset(rolls, global_batch=4, seed=5, **kw).take(n)]


def test_augmentation_transposes_whole_windows_within_the_window_and_resumes_exactly():
    rolls = _rolls(6)
    kw = {"pitch_low": 32, "pitch_window": 64, "binary": True}
    plain = _batches(rolls, 6, **kw)
    shifted = _batches(rolls, 6, max_shift=6, **kw)
    for a, b in zip(plain, shifted, strict=True):
        assert set(np.unique(b)) <= {0.0, 1.0}
        for x, y in zip(a, b, strict=True):  # same window, all voices moved by one shift s, |s| <= 6
            sx, sy = np.nonzero(x.any(axis=(0, 2)))[0], np.nonzero(y.any(axis=(0, 2)))[0]
            s = sy.min() - sx.min()
            assert abs(s) <= 6
            np.testing.assert_array_equal(np.roll(x, s, axis=1), y)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, shifted, strict=True))
    resumed = _batches(rolls, 3, max_shift=6, start_batch=3, **kw)
    for a, b in zip(shifted[3:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("head", ["tanh", "categorical"])
def test_hold_steps_makes_the_head_decide_once_per_run_of_steps(head):
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    cfg = _cfg(f"model.head={head}", "model.hold_steps=2")
    g = build_generator(cfg)
    rolls = _rolls(seed=3)
    melody = np.where(rolls[..., :1], 1.0, -1.0).astype(np.float32)
    z = np.random.default_rng(2).standard_normal((6, *z_shape(cfg))).astype(np.float32)
    raw = g([melody[:, :, 32:96], z], training=False).numpy()
    np.testing.assert_array_equal(raw[:, 0::2, :, 1:], raw[:, 1::2, :, 1:])  # pairs of steps agree
    assert not np.array_equal(raw[:, 0::2], raw[:, 2::2])  # but the pairs differ
    on = generate_batched(g, melody, z) > 0
    np.testing.assert_array_equal(on[..., 0], rolls[..., 0])  # the melody keeps its sixteenths
    changes = (on[:, 1:, :, 1:] != on[:, :-1, :, 1:]).any(axis=(2, 3))  # (n, 31): a change into step t + 1
    assert not changes[:, 0::2].any()  # nothing changes into an odd step
    assert g.count_params() == build_generator(_cfg(f"model.head={head}")).count_params()
    with pytest.raises(InputError, match="model.hold_steps"):
        _cfg("model.hold_steps=3")


def test_critic_harmony_folds_each_voice_into_absolute_pitch_classes():
    from chorus.trainer.model import PitchClasses, build_critic

    x = np.zeros((1, 32, 64, 4), np.float32)
    x[0, 5, 60 - 32, 2] = 1.0  # MIDI 60 (C) in the tenor at step 5, window from 32
    x[0, 5, 43 - 32, 3] = 1.0  # MIDI 43 (G) in the bass
    pcs = PitchClasses(32)(x).numpy().reshape(1, 32, 12, 4)
    assert pcs[0, 5, 0, 2] == 1.0 and pcs[0, 5, 7, 3] == 1.0 and pcs.sum() == 2.0
    plain, harmony = build_critic(_cfg()), build_critic(_cfg("model.critic_harmony=true"))
    assert harmony.count_params() > plain.count_params()
    assert harmony([x, x[..., :1]]).shape == (1, 1)
