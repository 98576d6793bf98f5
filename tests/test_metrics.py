"""Music metrics on hand-made piano rolls whose answers are worked out by hand in the comments."""
import json
import subprocess
import sys

import numpy as np
import pytest

from chorus.data.metrics import (
    PER_TRACK,
    estimate_key,
    format_table,
    per_sample_track_metrics,
    summarize,
    tonal_distance,
)
from chorus.data.objective import PAIR_FEATURES, SAMPLE_FEATURES, VOICE_FEATURES

C4, CS4, D4, E4, F4, FS4, G4, A4, B4, C5 = 60, 61, 62, 64, 65, 66, 67, 69, 71, 72


def empty(steps=32, tracks=1, n=1):
    return np.zeros((n, steps, 128, tracks), dtype=bool)  # (samples, steps, pitches, tracks)


def play(roll, pitch, start, stop, track=0, sample=0):
    """Turn on `pitch` for steps [start, stop) and return the roll."""
    roll[sample, start:stop, pitch, track] = True
    return roll


def melody(pitches, steps_each=2, track=0, roll=None):
    roll = empty(steps=max(16, len(pitches) * steps_each)) if roll is None else roll  # at least one bar
    for i, p in enumerate(pitches):
        play(roll, p, i * steps_each, (i + 1) * steps_each, track)
    return roll


def test_empty_bar_rate_counts_empty_bars_not_full_ones():
    roll = empty(steps=32, tracks=3)  # 2 bars of 16 steps
    play(roll, C4, 0, 32, track=1)  # sounds in both bars -> 0 / 2 empty
    play(roll, E4, 3, 5, track=2)  # bar 0 only -> 1 / 2 empty
    eb = per_sample_track_metrics(roll)["empty_bar_rate"]
    # Silent track: 2 / 2 bars empty = 1.0 (the inverted bug would say 0.0).
    np.testing.assert_allclose(eb, [[1.0, 0.0, 0.5]])


def test_empty_bar_rate_ignores_a_trailing_partial_bar():
    roll = play(empty(steps=20), C4, 16, 20)  # one whole bar (empty) + 4 leftover steps -> 1 / 1 empty
    assert per_sample_track_metrics(roll)["empty_bar_rate"][0, 0] == 1.0


def test_used_pitch_classes_fold_octaves():
    roll = empty(steps=32, tracks=3)
    play(roll, C4, 0, 4)
    play(roll, C5, 4, 8)  # bar 0: C4 + C5 = one class {C}
    play(roll, C4, 16, 20)
    play(roll, CS4, 20, 24)  # bar 1: C + C# = two classes; mean over bars (1 + 2) / 2 = 1.5
    for p in (C4, E4, G4):
        play(roll, p, 0, 4, track=1)  # bar 0: {C, E, G} = 3; bar 1 empty, so not averaged in -> 3
    upc = per_sample_track_metrics(roll)["used_pitch_classes"]
    # Silent track -> 0. A (12, 7) reshape would group C and C# together and octaves apart.
    np.testing.assert_allclose(upc, [[1.5, 3.0, 0.0]])


def test_qualified_note_rate_by_hand():
    roll = empty(steps=16, tracks=2)
    play(roll, C4, 0, 1)  # 1 step, starts at step 0
    play(roll, C4, 2, 6)  # 4 steps, same pitch after a gap: a separate note
    play(roll, E4, 0, 2)  # 2 steps
    play(roll, G4, 14, 16)  # 2 steps, runs to the last step
    # Lengths 1, 4, 2, 2: >= 2 steps -> 3 / 4; >= 3 steps -> 1 / 4. Track 1 has no notes -> NaN.
    qn2 = per_sample_track_metrics(roll)["qualified_note_rate"]
    qn3 = per_sample_track_metrics(roll, qualified_min_steps=3)["qualified_note_rate"]
    np.testing.assert_allclose(qn2, [[0.75, np.nan]])
    np.testing.assert_allclose(qn3, [[0.25, np.nan]])


def test_qualified_note_rate_same_for_bool_uint8_and_pm1():
    roll = play(play(empty(steps=16), C4, 0, 1), E4, 3, 9)  # lengths 1 and 6 -> 1 / 2 at >= 2 steps
    for x in (roll, roll.astype(np.uint8), np.where(roll, 1.0, -1.0)):
        assert per_sample_track_metrics(x)["qualified_note_rate"][0, 0] == 0.5


def test_polyphonic_rate_by_hand():
    roll = empty(steps=16, tracks=2)
    play(roll, C4, 0, 6)
    play(roll, E4, 4, 6)  # steps 0-3 one pitch, 4-5 two, 6-15 silent: 2 of 6 sounding steps -> 1/3
    np.testing.assert_allclose(per_sample_track_metrics(roll)["polyphonic_rate"], [[1 / 3, np.nan]])


def test_in_scale_rate_is_key_relative():
    c_major = melody([C4, D4, E4, F4, G4, A4, B4, C5])
    g_major = melody([G4, A4, B4, C5, D4 + 12, E4 + 12, FS4 + 12, G4 + 12])  # F#: outside C major, inside G major
    assert per_sample_track_metrics(c_major)["in_scale_rate"][0, 0] == 1.0
    assert per_sample_track_metrics(g_major)["in_scale_rate"][0, 0] == 1.0
    assert estimate_key(c_major)[0] == 0 and estimate_key(g_major)[0] == 7


def test_in_scale_rate_by_hand_with_a_wrong_note():
    # 7 steps on the C major scale + 1 step of C#. Best key: C major holds 7 of 8 cells (G major: C D E G A B = 6,
    # D major: D E G A B C# = 6), so the rate is 7 / 8.
    roll = melody([C4, D4, E4, F4, G4, A4, B4, CS4], steps_each=1)
    assert per_sample_track_metrics(roll)["in_scale_rate"][0, 0] == 7 / 8


def test_key_uses_all_tracks_and_ties_go_to_the_lowest_tonic():
    # G A B D E lies in both C major and G major (F major lacks B): a tie, so the lowest tonic, C.
    roll = melody([G4, A4, B4, D4, E4], roll=empty(steps=16, tracks=2))
    assert estimate_key(roll)[0] == 0
    # F# and C in the other track decide it: G major holds all 7 cells, C major 6 (no F#), D major 6 (no C).
    play(roll, FS4, 0, 1, track=1)
    play(roll, C4, 1, 2, track=1)
    assert estimate_key(roll)[0] == 7
    np.testing.assert_allclose(per_sample_track_metrics(roll)["in_scale_rate"], [[1.0, 1.0]])


def test_tonal_distance_by_hand():
    # One beat of C against one beat of G. A lone pitch class l has centroid Phi[:, l]; C (l=0) vs G (l=7):
    # fifths angle 49pi/6 = pi/6 mod 2pi -> chord^2 = 2 - 2cos(pi/6) = 0.2679; minor thirds 21pi/2 = pi/2 -> 2;
    # major thirds 14pi/3 = 2pi/3 -> 0.25 * (2 - 2cos(2pi/3)) = 0.75. sqrt(0.2679 + 2 + 0.75) = 1.7372.
    roll = play(play(empty(steps=4, tracks=2), C4, 0, 4), G4, 0, 4, track=1)
    assert tonal_distance(roll)[(0, 1)][0] == pytest.approx(1.7372, abs=1e-4)


def test_tonal_distance_of_identical_and_related_chords():
    def chords(a, b):
        roll = empty(steps=8, tracks=2)  # two beats of 4 steps
        for track, chord in enumerate((a, b)):
            for p in chord:
                play(roll, p, 0, 8, track)
        return tonal_distance(roll)[(0, 1)][0]

    c, g, fs = (C4, E4, G4), (G4, B4, D4 + 12), (FS4, FS4 + 4, FS4 + 7)
    assert chords(c, c) == pytest.approx(0.0, abs=1e-12)
    assert chords(c, [p + 12 for p in c]) == pytest.approx(0.0, abs=1e-12)  # an octave up is the same chroma
    assert chords(c, fs) > chords(c, g) > 0  # tritone-related triads are farther apart than fifth-related ones


def test_tonal_distance_only_counts_beats_where_both_tracks_sound():
    roll = empty(steps=8, tracks=3)
    play(roll, C4, 0, 8)  # beats 0 and 1
    play(roll, C5, 0, 4, track=1)  # beat 0 only: same class as track 0 -> distance 0 on the one shared beat
    play(roll, G4, 4, 8, track=1)  # beat 1: C vs G = 1.7372, so the mean over both beats is 0.8686
    td = tonal_distance(roll)
    assert set(td) == {(0, 1), (0, 2), (1, 2)}
    assert td[(0, 1)][0] == pytest.approx(1.7372 / 2, abs=1e-4)
    assert np.isnan(td[(0, 2)][0]) and np.isnan(td[(1, 2)][0])  # track 2 never sounds


def chorales(n, seed, steps=32):
    """Structured stand-in data: 4 monophonic voices walking on the C major scale in notes of 2-4 steps."""
    rng = np.random.default_rng(seed)
    scale = np.array([p for p in range(36, 84) if p % 12 in (0, 2, 4, 5, 7, 9, 11)])
    rolls = np.zeros((n, steps, 128, 4), dtype=bool)
    for i in range(n):
        for voice, start in enumerate((24, 20, 16, 10)):  # soprano .. bass, as indices into `scale`
            note, t = start, 0
            while t < steps:
                length = int(rng.integers(2, 5))
                rolls[i, t : t + length, scale[note], voice] = True
                note = int(np.clip(note + rng.integers(-2, 3), 0, len(scale) - 1))
                t += length
    return rolls


def test_summarize_is_json_ready_and_names_pairs():
    rolls = chorales(4, seed=3)
    summary = summarize(rolls, track_names=["soprano", "alto", "tenor", "bass"])
    json.dumps(summary, allow_nan=False)  # strict JSON: no NaN anywhere
    assert summary["n"] == 4 and set(summary["per_track"]["alto"]) == set(PER_TRACK)
    assert set(summary["voices"]["alto"]) == set(VOICE_FEATURES)
    assert list(summary["tonal_distance"]) == ["S-A", "S-T", "S-B", "A-T", "A-B", "T-B"]
    assert list(summary["pairs"]) == list(summary["tonal_distance"]) and set(summary["sample"]) == set(SAMPLE_FEATURES)
    assert summary["pairs"]["S-B"]["crossing"] < 0.05 and summary["pairs"]["S-B"]["spacing"] > 5  # bass below
    assert summary["per_track"]["bass"]["in_scale_rate"] == 1.0

    silent = summarize(np.zeros((2, 16, 128, 2), bool))  # default names share an initial -> full names
    assert list(silent["per_track"]) == ["track0", "track1"] and list(silent["tonal_distance"]) == ["track0-track1"]
    assert silent["per_track"]["track0"]["qualified_note_rate"] is None  # no notes in any sample
    json.dumps(silent, allow_nan=False)


def test_format_table_rows_and_alignment():
    names = ["soprano", "alto", "tenor", "bass"]
    gen = summarize(np.zeros((2, 32, 128, 4), bool), track_names=names)
    ref = summarize(chorales(4, seed=4), track_names=names)
    table = format_table(gen, ref)
    lines = table.splitlines()
    rows = 4 * (len(PER_TRACK) + len(VOICE_FEATURES)) + 6 + 6 * len(PAIR_FEATURES) + len(SAMPLE_FEATURES)
    assert len(lines) == 1 + rows
    assert "generated (n=2)" in lines[0] and "holdout (n=4)" in lines[0] and "|diff|" in lines[0]
    eb = next(line for line in lines if line.startswith("soprano") and "empty_bar_rate" in line)
    assert eb.split()[-3:] == ["1.000", "0.000", "1.000"]
    td = [line for line in lines if "tonal_distance" in line]
    assert td[-1].startswith("T-B") and td[-1].split()[-3:][0] == "-"  # silent -> no tonal distance
    assert lines[-1].startswith("all") and "pitch_classes" in lines[-1]
    assert len({len(line) for line in lines[1:] if not line.endswith("-")}) == 1  # numbers right-aligned


def test_bad_shapes_fail_loudly():
    with pytest.raises(ValueError, match="N, T, P, K"):
        per_sample_track_metrics(np.zeros((16, 128, 4)))
    with pytest.raises(ValueError, match="no whole bar"):
        per_sample_track_metrics(np.zeros((1, 8, 128, 1)))


def test_metrics_import_neither_tensorflow_nor_trainer():
    code = "import sys, data.metrics; print([m for m in ('tensorflow', 'trainer', 'cluster') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
