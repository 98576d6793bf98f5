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

    cfg = _cfg(f"model.head={head}", "model.key_normalize=false")  # moved back from C, notes may leave it
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
    from chorus.trainer.codec import RollCodec

    c = RollCodec("categorical", 32, 64, 128)
    probs = np.zeros((1, 2, 64, 1), np.float32)
    probs[0, 0, 10, 0], probs[0, 0, 11, 0] = 0.5, 0.3  # pitch 42 beats rest 0.2
    probs[0, 1, 10, 0] = 0.4  # rest 0.6 wins: silent
    roll = c.decode(probs) > 0
    assert np.flatnonzero(roll[0, 0, :, 0]).tolist() == [42]
    assert not roll[0, 1].any()


def test_encode_crops_and_uses_the_heads_values():
    from chorus.trainer.codec import RollCodec

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


def _scale_melodies(low=32):
    """(12, 32, 64, 4) windows of a pitch window from MIDI `low`: window t's melody walks up the major scale on
    tonic t from MIDI 60 + t (ambiguity-free: the whole scale), its bass an octave and a fifth lower."""
    rolls = np.zeros((12, 32, 64, 4), bool)
    for t in range(12):
        for i, step in enumerate((0, 2, 4, 5, 7, 9, 11, 12)):
            rolls[t, 4 * i:4 * i + 4, 60 + t + step - low, 0] = True
            rolls[t, 4 * i:4 * i + 4, 41 + t + step - low, 3] = True
    return rolls


def test_key_shifts_move_each_melody_to_c_by_the_nearer_octave_unless_only_the_other_fits():
    from chorus.data.music_basics import SCALES
    from chorus.data.pipeline import key_shifts, shift_pitches

    rolls = _scale_melodies()
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
    rolls[:12, :, 32:96] = _scale_melodies()
    rolls[12, 0, 20, 3] = True  # MIDI 20: outside the window
    rolls[13, 0, [32, 95], 3] = True  # spans the whole window: no room to move
    rolls[13, :, 66, 0] = True  # and its melody (F#) is not in C
    w = training_windows(rolls, pitch_low=32, pitch_window=64, key_normalize=True)
    assert (w.outside, w.unfit, len(w.rolls), len(w.key_shifts)) == (1, 1, 12, 12)
    opts = dict(global_batch=4, seed=5, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    given = [b.numpy() for b in make_dataset(w, **opts).take(4)]
    raw = _batches(rolls, 4, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    np.testing.assert_array_equal(np.stack(given), np.stack(raw))  # the same batches as from the raw rolls
    with pytest.raises(ValueError, match="key_normalize=True"):
        make_dataset(w, **{**opts, "key_normalize": False})
    plain = training_windows(rolls, pitch_low=32, pitch_window=64)
    assert (plain.outside, plain.unfit, len(plain.rolls), plain.key_shifts) == (1, 0, 13, None)
    with pytest.raises(ValueError, match="once moved to C"):
        make_dataset(Windows(w.rolls[:0], w.key_shifts[:0], 0, 12), **opts)


def test_key_normalized_training_windows_are_in_c_and_generation_moves_back():
    from chorus.data.music_basics import SCALES
    from chorus.data.pipeline import key_shifts, shift_pitches
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    rolls = np.zeros((12, 32, 128, 4), bool)
    rolls[:, :, 32:96] = _scale_melodies()
    batches = _batches(rolls, 6, pitch_low=32, pitch_window=64, binary=True, key_normalize=True)
    for batch in batches:
        for x in batch:
            pcs = (32 + np.nonzero(x[..., 0].any(axis=0))[0]) % 12
            assert SCALES[0][pcs].all()  # the melody in C major
            assert x.sum() == 16 * 4  # no note lost
    with pytest.raises(ValueError, match="exclude each other"):
        _batches(rolls, 1, pitch_low=32, pitch_window=64, max_shift=2, key_normalize=True)

    # Generation: the same weights with and without key normalization; with it, a melody in key t is moved to C,
    # harmonized there, and the harmony moved back: exactly the plain model's answer to the moved melody, moved back.
    keyed, plain = (build_generator(_cfg(f"model.key_normalize={on}")) for on in ("true", "false"))
    plain.set_weights(keyed.get_weights())
    melody = np.where(rolls[..., :1], 1.0, -1.0).astype(np.float32)
    z = np.random.default_rng(4).standard_normal((12, *z_shape(_cfg()))).astype(np.float32)
    out = generate_batched(keyed, melody, z)
    shifts = key_shifts(rolls[:, :, 32:96], 32)[0]
    in_c = np.where(shift_pitches(rolls[..., :1], shifts, False), 1.0, -1.0).astype(np.float32)
    np.testing.assert_array_equal(out, shift_pitches(generate_batched(plain, in_c, z), -shifts, -1.0))
    np.testing.assert_array_equal(out[..., 0] > 0, rolls[..., 0])  # copy_melody: the user's melody, in its key
    assert not np.array_equal(out, generate_batched(plain, melody, z))
    with pytest.raises(InputError, match="model.key_normalize"):
        _cfg("model.key_normalize=true", "train.augment_transpose=3")


@pytest.mark.parametrize("head", ["tanh", "categorical"])
def test_hold_steps_makes_the_head_decide_once_per_run_of_steps(head):
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    cfg = _cfg(f"model.head={head}", "model.hold_steps=2")
    g = build_generator(cfg)
    rolls = _rolls(seed=3)
    melody = np.where(rolls[..., :1], 1.0, -1.0).astype(np.float32)
    z = np.random.default_rng(2).standard_normal((6, *z_shape(cfg))).astype(np.float32)
    raw = g([melody[:, :, 32:96], z], training=False).numpy()
    # Pairs of steps agree: their logits are equal, but the softmax over each step may round the last bit apart
    # (a run here saw 2 of 18432 values differ by 4e-9); the decoded rolls below must agree exactly.
    np.testing.assert_allclose(raw[:, 0::2, :, 1:], raw[:, 1::2, :, 1:], rtol=1e-6, atol=0)
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
