"""data.objective: each feature on hand-made rolls whose answers are worked out in the comments, and music_distance."""
import json
import subprocess
import sys

import numpy as np
import pytest

from chorus.data import metrics, objective
from chorus.data.objective import (
    MUSIC_DISTANCE_VERSION,
    distance_terms,
    feature_names,
    features,
    group_distances,
    music_distance,
    wasserstein_columns,
)

C3, G3, C4, D4, E4, F4, FS4, G4, A4, B4, C5 = 48, 55, 60, 62, 64, 65, 66, 67, 69, 71, 72
NAMES = feature_names(4)


def empty(n=1, steps=32, tracks=4):
    return np.zeros((n, steps, 128, tracks), dtype=bool)


def play(roll, pitch, start, stop, voice=0, sample=0):
    roll[sample, start:stop, pitch, voice] = True
    return roll


def feat(roll, name) -> np.ndarray:
    """(N,) values of one named feature."""
    return features(roll)[:, NAMES.index(name)]


def chorale(roll=None, sample=0):
    """Two bars of I - V7 - I - V7 in C major, quarter notes in the soprano, half notes below, voices in order."""
    roll = empty() if roll is None else roll
    for i, p in enumerate((C5, 76, 74, B4) * 2):  # soprano: C5 E5 D5 B4, twice
        play(roll, p, 4 * i, 4 * i + 4, 0, sample)
    for half, chord in enumerate(((G4, E4, C3), (G4, F4, G3)) * 2):  # alto, tenor, bass: I then V7 per bar
        for v, p in enumerate(chord, start=1):
            play(roll, p, 8 * half, 8 * half + 8, v, sample)
    return roll


def test_names_match_columns_and_every_feature_has_a_group():
    f = features(chorale())
    assert f.shape == (1, len(NAMES)) and len(set(NAMES)) == len(NAMES)
    assert "S.mean_pitch" in NAMES and "A-T.crossing" in NAMES and "chord_fit" in NAMES
    assert set(group_distances(dict.fromkeys(NAMES, 0.0))) == {"texture", "register", "rhythm", "melody", "key",
                                                               "order", "harmony"}


def test_silence_and_noise_are_finite_with_explicit_values():
    silent = features(empty(2))
    empty_bars = [NAMES.index(f"{v}.empty_bars") for v in "SATB"]
    assert np.isfinite(silent).all() and (silent[:, empty_bars] == 1).all()  # every bar of every voice is empty
    assert (np.delete(silent, empty_bars, axis=1) == 0).all()  # everything else of nothing is 0, never NaN
    noise = np.random.default_rng(0).random((3, 32, 128, 4)) < 0.3
    assert np.isfinite(features(noise)).all()
    assert np.isfinite(features(np.ones((1, 32, 128, 4), bool))).all()


def test_texture_sounding_empty_bars_polyphony():
    roll = play(empty(), C4, 0, 8)  # soprano: 8 of 32 steps, bar 1 empty
    play(roll, E4, 0, 4)  # 4 of those 8 steps have a second pitch -> 4 extra pitches / 8 sounding steps
    assert feat(roll, "S.sounding")[0] == 0.25 and feat(roll, "S.empty_bars")[0] == 0.5
    assert feat(roll, "S.polyphony")[0] == 0.5
    assert feat(roll, "A.empty_bars")[0] == 1.0 and feat(roll, "A.sounding")[0] == 0.0


def test_register_mean_pitch_and_range_of_the_top_line():
    roll = play(empty(), C4, 0, 16)
    play(roll, G4, 16, 32)
    play(roll, C3, 0, 32)  # a lower pitch in the same voice does not change the line (its top note)
    assert feat(roll, "S.mean_pitch")[0] == (C4 + G4) / 2 and feat(roll, "S.range")[0] == G4 - C4


def test_rhythm_onsets_lengths_positions():
    roll = empty()
    for start, stop in ((0, 4), (4, 6), (6, 7), (8, 16), (16, 32)):  # onsets at 0, 4, 6, 8, 16
        play(roll, C4 + start % 5, start, stop)
    assert feat(roll, "S.onsets")[0] == 5 / 2  # 5 notes in 2 bars
    assert feat(roll, "S.note_length")[0] == pytest.approx((4 + 2 + 1 + 8 + 16) / 5)
    # positions in the bar: 0 downbeat, 4 beat, 6 eighth offbeat, 8 beat, 16 (bar 2) downbeat
    got = [feat(roll, f"S.onset_{p}")[0] for p in objective.ONSET_POSITIONS]
    assert got == pytest.approx([2 / 5, 2 / 5, 1 / 5, 0.0])


def test_melodic_intervals_between_successive_notes():
    roll = empty()
    for i, p in enumerate((C4, D4, D4, G4, C5, 86)):  # +2 step, 0 repeat, +5 leap, +5 leap, +14 beyond the octave
        play(roll, p, 4 * i, 4 * i + 3)  # a rest between notes does not break the line
    got = {b: feat(roll, f"S.melodic_{b}")[0] for b in objective.MELODIC}
    assert got == pytest.approx({"repeat": 0.2, "step": 0.2, "third": 0.0, "leap": 0.4, "large": 0.0,
                                 "octave_plus": 0.2})
    assert feat(roll, "S.melodic_size")[0] == pytest.approx((2 + 0 + 5 + 5 + 14) / 5)


def test_key_relative_pitch_classes():
    roll = chorale()
    assert feat(roll, "S.in_key")[0] == 1.0
    play(roll, FS4, 0, 8, voice=1)  # an F# instead of the alto's first G: out of C major
    roll[0, 0:8, G4, 1] = False
    assert feat(roll, "A.in_key")[0] == pytest.approx(0.75)  # 8 of 32 alto note-steps are F#
    assert feat(roll, "A.key_weight")[0] < feat(chorale(), "A.key_weight")[0]


def test_pairs_order_crossing_spacing():
    roll = chorale()
    assert feat(roll, "S-A.crossing")[0] == 0.0 and feat(roll, "S-B.spacing")[0] > 12
    reversed_ = roll[..., ::-1].copy()
    assert feat(reversed_, "S-B.crossing")[0] == 1.0 and feat(reversed_, "S-B.spacing")[0] < -12
    swapped = roll.copy()
    swapped[..., 1], swapped[..., 2] = roll[..., 2], roll[..., 1]
    assert feat(swapped, "A-T.crossing")[0] == 1.0 and feat(swapped, "S-A.crossing")[0] == 0.0


def test_pairs_vertical_interval_classes():
    roll = empty()
    play(roll, G4, 0, 8, 0)
    play(roll, C4, 0, 32, 1)  # against C4: G4 (perfect fifth) for 8 steps, F4 (fourth) 8, E4 (third) 8, C#5 (m9) 8
    play(roll, F4, 8, 16, 0)
    play(roll, E4, 16, 24, 0)
    play(roll, 73, 24, 32, 0)
    got = {c: feat(roll, f"S-A.vertical_{c}")[0] for c in objective.VERTICAL}
    assert got == pytest.approx({"perfect": 0.25, "imperfect": 0.25, "fourth": 0.25, "second": 0.0, "tritone": 0.0,
                                 "semitone": 0.25})


def test_pairs_parallel_fifths_and_contrary_motion():
    roll = empty()
    for i, (s, b) in enumerate(((G4, C4), (A4, D4), (B4, E4), (C5, A4 - 12))):  # 5ths in parallel, then contrary
        play(roll, s, 8 * i, 8 * i + 8, 0)
        play(roll, b, 8 * i, 8 * i + 8, 3)
    # Three moves where both voices move: two parallel fifths (up, up), then S up / B down (contrary).
    assert feat(roll, "S-B.parallels")[0] == pytest.approx(2 / 3)
    assert feat(roll, "S-B.contrary")[0] == pytest.approx(1 / 3)
    assert feat(chorale(), "S-B.parallels")[0] == 0.0


def test_sample_chord_fit_clashes_pitch_classes():
    assert feat(chorale(), "chord_fit")[0] == 1.0  # every step a C major triad or G7 chord
    wrong = chorale()
    play(wrong, 61, 0, 8, voice=2)  # tenor C#4 instead of E4 over the first C chord: no chord, a clash with C
    wrong[0, 0:8, E4, 2] = False
    assert feat(wrong, "chord_fit")[0] == pytest.approx(0.75) and feat(wrong, "clashes")[0] == pytest.approx(0.25)
    cluster = empty()
    for v, p in enumerate((C4, 61, D4, 63)):  # C C# D D#: no chord, semitone clashes everywhere
        play(cluster, p, 0, 32, v)
    assert feat(cluster, "chord_fit")[0] == 0.0 and feat(cluster, "clashes")[0] == 1.0
    assert feat(cluster, "pitch_classes")[0] == 4.0
    triad = empty()
    for v, p in enumerate((G4, E4, C4, C3)):
        play(triad, p, 0, 32, v)
    assert feat(triad, "chord_fit")[0] == 1.0 and feat(triad, "beat_chord_fit")[0] == 1.0
    assert feat(triad, "clashes")[0] == 0.0 and feat(triad, "pitch_classes")[0] == 3.0


def wasserstein_1d(a, b) -> float:
    """Wasserstein-1 distance between two 1-D samples (sizes may differ), through the objective's column version."""
    return float(wasserstein_columns(np.asarray(a, float)[:, None], np.asarray(b, float)[:, None])[0])


def test_wasserstein_1d_by_hand():
    assert wasserstein_1d([0.0, 1.0], [0.5]) == pytest.approx(0.5)
    assert wasserstein_1d([1.0, 0.0, 0.0], [0.0, 1.0]) == pytest.approx(1 / 6)
    assert wasserstein_1d([3.0, 1.0], [1.0, 3.0]) == 0.0


def varied(n, seed):
    """n two-bar chorale windows, each transposed and with its alto rhythm varied: a small real-like set."""
    rng = np.random.default_rng(seed)
    out = empty(n)
    for i in range(n):
        chorale(out, i)
        out[i] = np.roll(out[i], int(rng.integers(-5, 6)), axis=1)
        if rng.random() < 0.5:
            out[i, 4:8, :, 1] = False  # a rest in the alto
    return out


def test_music_distance_zero_for_the_same_set_large_for_broken_ones():
    ref, other = varied(40, 0), varied(40, 1)
    assert music_distance(ref, ref) == 0.0
    close = music_distance(other, ref)
    assert 0 <= close < 0.5 and music_distance(other, ref) == close  # deterministic
    silence = music_distance(np.zeros_like(ref), ref)
    noise = music_distance(np.random.default_rng(2).random(ref.shape) < 0.02, ref)
    reversed_ = music_distance(ref[..., ::-1], ref)
    for far in (silence, noise, reversed_):
        assert np.isfinite(far) and far > 5 * max(close, 0.1)
    assert music_distance(ref, ref, ref_features=features(ref)) == 0.0
    assert silence <= objective.TERM_CAP


def test_terms_and_groups_break_the_value_down():
    ref = varied(20, 0)
    terms = distance_terms(ref[..., ::-1], ref)
    assert set(terms) == set(NAMES)
    assert objective.aggregate(terms) == music_distance(ref[..., ::-1], ref)
    groups = group_distances(terms)
    assert groups["order"] > groups["rhythm"]  # reversing voices breaks order, not rhythm


def test_bad_input_fails_loudly():
    with pytest.raises(ValueError, match="N, T, P, K"):
        features(np.zeros((16, 128, 4)))
    with pytest.raises(ValueError, match="tracks"):
        music_distance(np.zeros((1, 16, 128, 2)), np.zeros((1, 16, 128, 4)))


def test_summary_table_carries_the_features_and_json_is_strict():
    summary = metrics.summarize(chorale(), track_names=["soprano", "alto", "tenor", "bass"])
    json.dumps(summary, allow_nan=False)
    assert summary["voices"]["soprano"]["mean_pitch"] == feat(chorale(), "S.mean_pitch")[0]
    assert summary["pairs"]["S-B"]["crossing"] == 0.0 and "chord_fit" in summary["sample"]
    assert "crossing" in metrics.format_table(summary, summary)
    assert MUSIC_DISTANCE_VERSION >= 3


def test_objective_imports_neither_tensorflow_nor_trainer():
    code = ("import sys, chorus.data.objective, chorus.data.calibration; "
            "print([m for m in ('tensorflow', 'chorus.trainer', 'ray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_evaluation_outputs_carry_the_version_and_the_groups():
    from chorus.trainer.config import load_config
    from chorus.trainer.evaluation import evaluate

    cfg = load_config(None, ["eval.num_samples=6"])
    holdout = varied(10, 0)

    def harmonise(melody, z):  # a "generator" that returns the real window each melody came from
        rows = [next(w for w in holdout if np.array_equal(w[..., 0], m[..., 0] > 0)) for m in melody]
        return np.where(np.stack(rows), 1.0, -1.0)

    result = evaluate(harmonise, holdout, cfg, (2, 8, 4))
    flat, doc = result.flat(), result.to_json()
    assert flat["music_distance_version"] == doc["music_distance_version"] == MUSIC_DISTANCE_VERSION
    assert flat["music_distance"] == doc["music_distance"] == result.music_distance < 1.0
    assert set(doc["music_distance_groups"]) == {"texture", "register", "rhythm", "melody", "key", "order", "harmony"}
    assert {f"music_distance_{g}" for g in doc["music_distance_groups"]} <= set(flat)
    json.dumps(doc, allow_nan=False)
    silent = evaluate(lambda melody, z: -np.ones((len(melody), 32, 128, 4)), holdout, cfg, (2, 8, 4))
    assert silent.generated["per_track"]["soprano"]["empty_bar_rate"] == 0.0  # the melody is scored as given
    assert silent.generated["per_track"]["alto"]["empty_bar_rate"] == 1.0
    assert set(doc["music_distance_terms"]) == set(NAMES)
    assert "crossing" in result.table() and "soprano" in result.table() and "largest feature terms" in result.table()


def test_syncopation_counts_off_beat_notes_held_over_the_beat():
    roll = empty()
    play(roll, C4, 0, 2)  # on the beat: never syncopated
    play(roll, D4, 2, 6)  # starts on an eighth off the beat, held over the beat at 4: syncopated
    play(roll, E4, 6, 8)  # off the beat, ends before the next beat (8): not syncopated
    play(roll, F4, 8, 16)
    assert feat(roll, "S.syncopation")[0] == pytest.approx(1 / 4)
    assert feat(chorale(), "S.syncopation")[0] == 0.0


def test_beat_dissonance_counts_dissonant_intervals_on_beats_only():
    roll = empty()
    play(roll, C4, 0, 32, 1)  # alto holds C4
    play(roll, D4, 0, 4, 0)  # soprano: D4 over C on beat 0 (a second: dissonant)
    play(roll, E4, 4, 6, 0)  # E4 on beat 4 (consonant)
    play(roll, 61 + 12, 6, 8, 0)  # C#5 off the beat (dissonant, but not on a beat)
    play(roll, G4, 8, 32, 0)  # G4 on the remaining 6 beats (consonant)
    assert feat(roll, "S-A.beat_dissonance")[0] == pytest.approx(1 / 8)  # 1 of the 8 beats both sound
    assert feat(chorale(), "S-B.beat_dissonance")[0] == 0.0


# ------------------------------------------------------------------ what time's direction shows (version 3)


def backwards(roll):
    return roll[:, ::-1].copy()


def test_a_suspension_resolving_down_and_the_same_backwards():
    roll = empty()
    play(roll, C5, 0, 8, 0)  # soprano C5 held over the bar's third beat ...
    play(roll, B4, 8, 12, 0)  # ... and resolved a step down
    play(roll, 57, 0, 4, 3)  # bass A3: C5 over it is a third (consonant when the soprano's C5 is struck)
    play(roll, D4, 4, 8, 3)  # bass D4: C5 over it is a seventh (dissonant when the C5 is left)
    play(roll, G3, 8, 12, 3)  # bass G3: B4 over it is a third
    # The soprano's C5: consonant when struck, dissonant when left (prepared), left by a step down (resolved). The
    # bass's D4 is dissonant from its start to its end, so it counts neither way.
    assert feat(roll, "prepared_dissonance")[0] == 1.0 and feat(roll, "resolved_dissonance")[0] == 1.0
    back = backwards(roll)  # C5 now struck against D4 (dissonant), left consonant, entered a step up from B4
    assert feat(back, "prepared_dissonance")[0] == -1.0 and feat(back, "resolved_dissonance")[0] == -1.0
    assert feat(roll, "tonal_direction")[0] > 0 > feat(back, "tonal_direction")[0]


def test_passing_dissonance_falls_before_the_beat_and_backwards_on_it():
    roll = empty()
    play(roll, C4, 0, 32, 1)  # alto holds C4
    play(roll, C5, 0, 2, 0)  # soprano C5 on the beat (an octave)
    play(roll, D4 + 12, 2, 4, 0)  # D5 half a beat later: a second, struck off the beat, sounding into the beat
    play(roll, 76, 4, 8, 0)  # E5 on the next beat (a third)
    # Struck on a beat: C5, E5 and the alto's C4, none dissonant; struck off the beat: D5, dissonant.
    assert feat(roll, "accented_dissonance")[0] == 0.0 and feat(roll, "passing_dissonance")[0] == 1.0
    assert feat(roll, "dissonance_into_beat")[0] == 1.0  # dissonant on step 3 (before a beat), on no beat
    back = backwards(roll)  # E5 C5 become D5 on the beat (28), then C5 off it (30)
    assert feat(back, "accented_dissonance")[0] == pytest.approx(1 / 3) and feat(back, "passing_dissonance")[0] == 0
    assert feat(back, "dissonance_into_beat")[0] == -1.0


def cadence():
    """I - IV - V7 - I in C major, a half note each, voices in order: roots C F G C."""
    roll = empty()
    chords = ((C5, G4, E4, C3), (C5, A4, F4, 53), (74, B4, F4, G3), (C5, G4, E4, C3))
    for i, chord in enumerate(chords):
        for v, p in enumerate(chord):
            play(roll, p, 8 * i, 8 * i + 8, v)
    return roll


def test_progressions_run_down_by_fifths_and_the_dominant_goes_to_the_tonic():
    roll = cadence()
    # Roots C-F (up a fourth = down a fifth), F-G (up a second), G-C (down a fifth): all dominant progressions.
    assert feat(roll, "root_progression")[0] == 1.0
    assert feat(roll, "bass_fifths")[0] == 1.0  # bass C-F (+5), F-G (+2: neither), G-C (-7 = +5 mod 12)
    assert feat(roll, "dominant_tonic")[0] == 1.0  # V7 (beat 5) then I (beat 6); I never goes to V7
    back = backwards(roll)  # I - V7 - IV - I
    assert feat(back, "root_progression")[0] == -1.0 and feat(back, "bass_fifths")[0] == -1.0
    assert feat(back, "dominant_tonic")[0] == -1.0
    # V7 stands on beats 4 (strong: the downbeat of bar 2) and 5 (weak): as many of each.
    assert feat(roll, "dominant_on_weak")[0] == 0.0


def test_the_leading_tone_rises_to_the_tonic():
    assert feat(chorale(), "leading_tone")[0] == 1.0  # the soprano's B4 -> C5; nothing falls from C to B
    assert feat(backwards(chorale()), "leading_tone")[0] == -1.0


def test_a_leap_is_recovered_by_a_step_the_other_way():
    roll = empty()
    for i, p in enumerate((C4, G4, F4, E4)):  # up a fifth, then down by steps
        play(roll, p, 4 * i, 4 * i + 4)
    assert feat(roll, "leap_recovered")[0] == 1.0 and feat(roll, "leap_prepared")[0] == 0.0
    assert feat(roll, "stepwise")[0] == pytest.approx(2 / 3) and feat(roll, "descending_steps")[0] == 1.0
    back = backwards(roll)  # E4 F4 G4 C4: the leap comes after the steps
    assert feat(back, "leap_recovered")[0] == 0.0 and feat(back, "leap_prepared")[0] == 1.0
    assert feat(back, "descending_steps")[0] == -1.0


def test_dotted_rhythms_go_long_short():
    roll = empty()
    for start, stop, p in ((0, 6, C4), (6, 8, D4), (8, 14, E4), (14, 16, F4)):  # dotted quarter + eighth, twice
        play(roll, p, start, stop)
    assert feat(roll, "dotted")[0] == 1.0 and feat(backwards(roll), "dotted")[0] == -1.0
    assert feat(chorale(), "dotted")[0] == 0.0  # no dotted pair at all


def test_tonal_direction_is_the_mean_of_the_direction_balances():
    rolls = np.concatenate([cadence(), chorale(), backwards(cadence())])
    f = features(rolls)
    mean = np.mean([f[:, NAMES.index(name)] for name in objective.DIRECTION], axis=0)
    assert np.allclose(f[:, NAMES.index("tonal_direction")], mean)


def test_every_function_of_the_objective_fits_on_a_screen():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(objective))
    long = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 60}
    assert not long, f"functions over 60 lines: {long}"
