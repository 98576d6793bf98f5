"""data.music_basics: pitch classes, scales and both key rules, on hand-made inputs worked out in the comments."""
import numpy as np
import pytest

from chorus.data.music_basics import (
    SCALES,
    binarize,
    fold_octaves,
    key_scale,
    krumhansl_key,
    krumhansl_scales,
    note_name,
    pitch_classes,
    scale_count_key,
)

C_MAJOR = [0, 2, 4, 5, 7, 9, 11]


def test_note_names_and_pitch_classes():
    assert [note_name(p) for p in (21, 60, 61, 69, 127)] == ["A0", "C4", "C#4", "A4", "G9"]
    # A window starting at MIDI 36 (C2): index 0 is C, index 13 is C#.
    assert pitch_classes(14, 36).tolist() == list(range(12)) + [0, 1]
    assert pitch_classes(3, 58).tolist() == [10, 11, 0]  # A#3, B3, C4


def test_fold_octaves_sums_every_octave_into_its_class_whatever_the_window():
    x = np.zeros((2, 30), np.int64)  # (N, P): a window of 30 pitches from MIDI 58 (A#3)
    x[0, 2] = 3  # MIDI 60, C
    x[0, 14] = 1  # MIDI 72, C
    x[1, 0] = 5  # MIDI 58, A#
    got = fold_octaves(x, axis=1, pitch_low=58)
    assert got.shape == (2, 12)
    assert got[0].tolist() == [4] + [0] * 11
    assert got[1, 10] == 5 and got[1].sum() == 5
    # Any axis, and the total is kept.
    rolls = np.random.default_rng(0).random((3, 4, 128, 2)) > 0.7
    folded = fold_octaves(rolls, axis=2)
    assert folded.shape == (3, 4, 12, 2)
    np.testing.assert_array_equal(folded.sum(axis=2), rolls.sum(axis=2))
    np.testing.assert_array_equal(folded[:, :, 0], rolls[:, :, 0::12].sum(axis=2))


def test_binarize_takes_every_kind_of_roll_and_refuses_other_shapes():
    x = np.array([-1.0, 0.0, 0.5, 1.0]).reshape(1, 1, 4, 1)
    assert binarize(x).ravel().tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="N, T, P, K"):
        binarize(np.zeros((4, 4)))


def test_scale_table_and_the_labs_scale_count_key():
    assert np.flatnonzero(SCALES[0]).tolist() == C_MAJOR
    assert np.flatnonzero(SCALES[7]).tolist() == [0, 2, 4, 6, 7, 9, 11]  # G major: F#
    counts = np.zeros((3, 12), np.int64)
    counts[0, C_MAJOR] = 1
    counts[1, [7, 9, 11, 2, 4]] = 1  # G A B D E: in C and G major (F major lacks B): a tie, the lowest tonic
    counts[2, [7, 9, 11, 2, 4, 6, 0]] = 1  # with F# and C: only G major holds all seven
    assert scale_count_key(counts).tolist() == [0, 0, 7]
    assert scale_count_key(np.zeros((1, 12)))[0] == 0  # silence: C


def test_krumhansl_key_major_minor_and_clarity():
    c_major = np.zeros((1, 12))
    c_major[0, C_MAJOR] = [3, 1, 2, 1, 2, 1, 1]
    tonic, minor, clarity = krumhansl_key(c_major)
    assert tonic[0] == 0 and not minor[0] and clarity[0] > 0.7
    tonic, _, _ = krumhansl_key(np.roll(c_major, 5, axis=1))  # the same, a fourth up: F major
    assert tonic[0] == 5
    a_minor = np.zeros((1, 12))
    a_minor[0, [9, 11, 0, 2, 4, 5, 8]] = [3, 1, 2, 1, 2, 1, 1]  # A harmonic minor, the tonic triad weighted
    tonic, minor, _ = krumhansl_key(a_minor)
    assert tonic[0] == 9 and minor[0]
    assert np.flatnonzero(krumhansl_scales(a_minor)[0]).tolist() == [0, 2, 4, 5, 8, 9, 11]
    _, _, clarity = krumhansl_key(np.zeros((1, 12)))  # silence: no key, clarity 0
    assert clarity[0] == 0.0


def test_key_scale_major_and_harmonic_minor():
    got = key_scale(np.array([2, 2]), np.array([False, True]))
    assert np.flatnonzero(got[0]).tolist() == [1, 2, 4, 6, 7, 9, 11]  # D major
    assert np.flatnonzero(got[1]).tolist() == [1, 2, 4, 5, 7, 9, 10]  # D harmonic minor: Bb, C#
