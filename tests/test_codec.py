"""RollCodec: user rolls <-> model tensors (window crop, the heads' values, decoding), thresholds, the melody."""
from __future__ import annotations

import numpy as np
from tests_support import mono_rolls

from chorus.trainer.codec import RollCodec


def test_decode_takes_the_argmax_or_the_rest():
    c = RollCodec("categorical", 32, 64, 128)
    probs = np.zeros((1, 2, 64, 1), np.float32)
    probs[0, 0, 10, 0], probs[0, 0, 11, 0] = 0.5, 0.3  # pitch 42 beats rest 0.2
    probs[0, 1, 10, 0] = 0.4  # rest 0.6 wins: silent
    roll = c.decode(probs) > 0
    assert np.flatnonzero(roll[0, 0, :, 0]).tolist() == [42]
    assert not roll[0, 1].any()


def test_encode_crops_and_uses_the_heads_values():
    rolls = mono_rolls(2)
    sign = np.where(rolls, 1.0, -1.0)
    cat = RollCodec("categorical", 32, 64, 128).encode(sign)
    assert cat.shape == (2, 32, 64, 4) and set(np.unique(cat)) == {0.0, 1.0}
    np.testing.assert_array_equal(cat > 0, rolls[:, :, 32:96])
    tanh = RollCodec("tanh", 0, 128, 128).encode(sign)
    np.testing.assert_array_equal(tanh, sign)


def test_notes_threshold_outputs_and_with_melody_puts_the_melody_back():
    outputs = np.array([-1.0, -0.2, 0.1, 1.0], np.float32).reshape(1, 1, 4, 1)
    assert RollCodec.notes(outputs, 0.0).ravel().tolist() == [False, False, True, True]
    assert RollCodec.notes(outputs, -0.5).ravel().tolist() == [False, True, True, True]
    rolls = np.zeros((1, 2, 4, 2), bool)
    melody = np.full((1, 2, 4, 1), -1.0, np.float32)
    melody[0, :, 2, 0] = 1.0
    got = RollCodec.with_melody(rolls, melody)
    assert got[0, :, :, 0].nonzero()[1].tolist() == [2, 2] and not got[..., 1].any()
