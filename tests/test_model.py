"""The models: heads and pitch window, hold_steps, the critic's harmony path, key-normalized generation."""
from __future__ import annotations

import numpy as np
import pytest
from tests_support import mono_rolls, scale_melodies

from chorus.errors import InputError


def _cfg(*overrides):
    from chorus.trainer.config import load_config

    return load_config(None, ["model.width=4", "model.z_channels=8", *overrides])


@pytest.mark.parametrize("head", ["tanh", "categorical"])
def test_models_compute_over_the_window_and_outputs_are_full_rolls(head):
    from chorus.trainer.model import build_critic, build_generator, generate_batched, z_shape

    cfg = _cfg(f"model.head={head}", "model.key_normalize=false")  # moved back from C, notes may leave it
    g, d = build_generator(cfg), build_critic(cfg)
    assert tuple(g.inputs[0].shape[1:]) == (32, 64, 1) and tuple(g.output.shape[1:]) == (32, 64, 4)
    assert tuple(d.inputs[0].shape[1:]) == (32, 64, 4)
    rolls = mono_rolls()
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


def test_window_keys_are_validated():
    with pytest.raises(InputError, match="model.pitch_window"):
        _cfg("model.pitch_window=40")
    with pytest.raises(InputError, match="model.pitch_low"):
        _cfg("model.pitch_low=80")
    with pytest.raises(InputError, match="model.head"):
        _cfg("model.head=sigmoid")


@pytest.mark.parametrize("head", ["tanh", "categorical"])
def test_hold_steps_makes_the_head_decide_once_per_run_of_steps(head):
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    cfg = _cfg(f"model.head={head}", "model.hold_steps=2")
    g = build_generator(cfg)
    rolls = mono_rolls(seed=3)
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


def test_critic_chords_sees_a_whole_chord_at_every_step():
    """The chord path's kernel spans the pitch window: two voices 40 semitones apart meet in one unit at their own
    step, which the 4x4 path reaches only after three halvings of time."""
    from chorus.trainer.model import build_critic

    plain, chords = build_critic(_cfg("model.critic_chords=false")), build_critic(_cfg("model.critic_chords=true"))
    assert chords.count_params() > plain.count_params()
    assert chords.get_layer("chord_conv").kernel.shape[:3] == (1, 64, 5)  # one step, every pitch, 4 voices + melody
    assert tuple(chords.get_layer("chord_steps").output.shape[1:]) == (32, 16)  # a vector per step (4 * width)
    x = np.zeros((2, 32, 64, 4), np.float32)
    x[:, 5, 10, 3] = 1.0  # the bass at the bottom of the window
    x[1, 5, 50, 0] = 1.0  # and the soprano 40 semitones higher, at the same step
    from chorus.data import tfenv

    units = tfenv.keras().Model(chords.inputs, chords.get_layer("chord_act").output)([x, x[..., :1]])
    units = units.numpy()[:, :, 0]
    changed = np.flatnonzero(np.abs(units[0] - units[1]).max(axis=-1) > 0)
    np.testing.assert_array_equal(changed, [5])  # one step's chord unit sees both voices, no other step does
    assert chords([x, x[..., :1]]).shape == (2, 1)


def test_chord_layers_add_per_step_layers_to_the_chord_path():
    from chorus.trainer.model import build_critic

    one, two = build_critic(_cfg("model.chord_layers=1")), build_critic(_cfg("model.chord_layers=2"))
    assert two.count_params() - one.count_params() == 16 * 16 + 16  # one 1x1 layer of 4 * width units
    assert two.get_layer("chord_conv1").kernel.shape == (1, 1, 16, 16)
    assert tuple(two.get_layer("chord_steps").output.shape[1:]) == (32, 16)
    plain = build_critic(_cfg("model.critic_chords=false", "model.chord_layers=3"))
    assert not any(layer.name.startswith("chord") for layer in plain.layers)  # no chord path, whatever its depth


def test_key_normalized_generation_moves_the_melody_to_c_and_the_harmony_back():
    from chorus.data.pipeline import key_shifts, shift_pitches
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    rolls = np.zeros((12, 32, 128, 4), bool)
    rolls[:, :, 32:96] = scale_melodies()
    # The same weights with and without key normalization; with it, a melody in key t is moved to C, harmonized
    # there, and the harmony moved back: exactly the plain model's answer to the moved melody, moved back.
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
