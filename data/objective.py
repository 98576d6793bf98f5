"""music_distance: the search objective. Musical features per sample, compared as distributions, in pure numpy.

Input: ``rolls`` shaped (N, T, P, K) = (samples, steps, pitches, voices), anything ``> 0`` is "on"; pitch index p
has pitch class p % 12. Voices are ordered top to bottom (SATB): voice i should sound above voice i + 1.

Each sample becomes one vector of named features (``feature_names``), every one finite for every input: a voice
or pair with nothing to measure gets an explicit value (0, see each feature) instead of NaN, so silence and noise
are compared like anything else. A voice's "line" at a step is its highest sounding pitch.

- per voice (``S.`` ...): sounding (fraction of steps), empty_bars (fraction of bars), polyphony (extra pitches
  per sounding step), mean_pitch and range (of the line; 0 if silent), onsets (note starts per bar), note_length
  (mean steps per note), syncopation (notes that start off the beat and are held over the next beat), onset
  positions within the bar (fractions on the downbeat, other beats, eighth offbeats,
  sixteenths), melodic intervals between successive notes of the line (fractions repeated, step 1-2, third 3-4,
  leap 5-7, large 8-12, beyond the octave; mean size), key-relative pitch classes (fraction of note-steps in the
  estimated key's scale, mean Krumhansl-Kessler weight of the key; in_others_key: the fraction in the scale of the
  key estimated from the other voices alone, so a voice in another key than the rest shows).
- per voice pair (``S-A.`` ...), over the steps where both sound: crossing (upper line below the lower), spacing
  (mean semitones upper minus lower), interval classes mod 12 (perfect 0/7, imperfect 3/4/8/9, fourth 5,
  seconds 2/10, tritone 6, semitone 1/11), parallel fifths and octaves (of the steps where both move), contrary
  motion (same), beat_dissonance (seconds, tritones, semitones on the beats where both sound).
- whole sample: key clarity (best Krumhansl-Kessler correlation over 24 keys), chord fit (fraction of sounding
  steps whose pitch classes fit one triad or seventh chord; beat_chord_fit: the same on beats only), clashes
  (fraction of sounding steps with two pitch classes a semitone apart), pitch classes per step.
- whole sample, what time's direction shows (version 3; a window played backwards keeps every chord and interval and
  breaks these). A "balance" is (forward - backward) / (forward + backward) in [-1, 1], 0 when neither occurs.
  A dissonance is a voice a second, seventh or tritone (mod 12) from another sounding voice.
  - prepared_dissonance: notes that turn dissonant while held (a suspension: consonant when struck, dissonant when
    left) against notes whose dissonance dissolves while held; resolved_dissonance: dissonant notes left by a step
    down against dissonant notes entered by a step up; accented_dissonance / passing_dissonance: of the notes struck
    on / off a beat, the fraction dissonant when struck; dissonance_into_beat: dissonant voice pairs on the last step
    before a beat against those on the beat; leading_tone: leading tone up to the tonic against tonic down to it.
  - root_progression: chord roots from beat to beat (the root of the smallest triad or seventh that holds the
    step's pitch classes) down a fifth, up a second or down a third against the reverse; bass_fifths: the bass down
    a fifth or up a fourth against up a fifth or down a fourth; dominant_tonic: a dominant chord over its root
    followed on the next beat by the root-position tonic triad, against the reverse; dominant_on_weak: dominant
    chords on weak beats against strong ones (the downbeat and the middle of an even bar).
  - tonal_direction: the mean of the DIRECTION balances (one window holds a suspension or two and a cadence, so
    each balance alone is noisy; together they say which way time runs).
  Groups: the dissonance, leading-tone, progression and tonal_direction features are harmony, the four below melody,
  dotted rhythm.
  - stepwise: fraction of all voices' melodic intervals that are steps (1-2 semitones); descending_steps: steps
    down against steps up; leap_recovered / leap_prepared: of the notes approached / left by a leap (LEAP semitones
    or more) between two notes, the fraction left / approached by a step the other way; dotted: dotted long-short
    pairs (3:1, no rest between, the first note struck on a beat) against short-long.

music_distance(gen, ref): for each feature, the Wasserstein-1 distance between the generated and the reference
values, divided by max(reference std, the feature's floor) and capped at TERM_CAP; the result is the power mean
of order POWER (4) of these terms (group_distances breaks them down by musical group). features() of the reference
can be computed once and passed as ref_features. 0 = same distribution; benchmarks/calibration.py shows what values
mean. Every output that stores a value carries MUSIC_DISTANCE_VERSION.
"""
from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import numpy as np

from chorus.data.music_basics import (
    KK_MAJOR,
    KK_MINOR,
    binarize,
    fold_octaves,
    key_scale,
    krumhansl_key,
    krumhansl_scales,
)

MUSIC_DISTANCE_VERSION = 3  # bump whenever a change moves the value; values of different versions never compare

# Order of the power mean over the feature terms: 1 = plain mean, large = the worst feature. 4 is where, on the
# chorales, the listed corruptions clear 5x real-vs-real (time reversal, with the least room: its signs are spread
# over a few noisy features; see benchmarks/results), and a second real sample stays within ~20 %.
POWER = 4
TERM_CAP = 10.0  # one feature's term is at most this many reference spreads (silence stays finite and comparable)

# Interval classes of two simultaneous pitches, by (upper - lower) mod 12.
VERTICAL = {"perfect": (0, 7), "imperfect": (3, 4, 8, 9), "fourth": (5,), "second": (2, 10), "tritone": (6,),
            "semitone": (1, 11)}
# Melodic interval bins by absolute size in semitones: [lo, hi].
MELODIC = {"repeat": (0, 0), "step": (1, 2), "third": (3, 4), "leap": (5, 7), "large": (8, 12),
           "octave_plus": (13, 127)}
ONSET_POSITIONS = ("downbeat", "beat", "eighth", "sixteenth")
# Chords whose subsets count as fitting: major, minor, diminished, augmented triads; dominant, minor, half- and
# fully diminished sevenths (no major seventh, so a minor second never fits).
CHORDS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9))


def _chord_table() -> np.ndarray:
    """(4096,) bool: pitch-class mask m (bit c = class c) is non-empty and inside some transposed CHORDS entry."""
    fits = np.zeros(4096, bool)
    for chord in CHORDS:
        for root in range(12):
            mask = sum(1 << ((root + c) % 12) for c in chord)
            sub = mask
            while sub:  # every non-empty subset of mask
                fits[sub] = True
                sub = (sub - 1) & mask
    return fits


CHORD_FITS = _chord_table()


def _root_table() -> np.ndarray:
    """(4096,) int: the root of the smallest CHORDS entry that holds pitch-class mask m (at least two classes), -1
    if none or if two roots tie (C-E is C major or A minor)."""
    size = np.full(4096, 99)
    root = np.full(4096, -1)
    for chord in CHORDS:
        for r in range(12):
            mask = sum(1 << ((r + c) % 12) for c in chord)
            sub = mask
            while sub:
                if sub & (sub - 1) and len(chord) < size[sub]:  # two classes or more; a smaller chord wins
                    size[sub], root[sub] = len(chord), r
                elif sub & (sub - 1) and len(chord) == size[sub] and root[sub] != r:
                    root[sub] = -2  # tied: no root
                sub = (sub - 1) & mask
    return np.where(root == -2, -1, root)


CHORD_ROOTS = _root_table()
DISSONANT_CLASS = np.isin(np.arange(12), VERTICAL["second"] + VERTICAL["tritone"] + VERTICAL["semitone"])
# Balances of the forward habits of tonal music against their reverses, averaged into tonal_direction: one window holds
# few of each (a suspension or two, a cadence), so each alone is noisy, and together they say which way time runs.
DIRECTION = ("prepared_dissonance", "dissonance_into_beat", "resolved_dissonance", "root_progression", "bass_fifths")
LEAP = 3  # semitones: a melodic interval this large or larger is a leap (thirds included)

# Feature groups and the floor of each feature's scale (in the feature's unit). Fractions: 0.05.
VOICE_FEATURES = {
    "sounding": ("texture", 0.05), "empty_bars": ("texture", 0.05), "polyphony": ("texture", 0.05),
    "mean_pitch": ("register", 1.0), "range": ("register", 1.0),
    "onsets": ("rhythm", 0.25), "note_length": ("rhythm", 0.25), "syncopation": ("rhythm", 0.05),
    **{f"onset_{p}": ("rhythm", 0.05) for p in ONSET_POSITIONS},
    **{f"melodic_{b}": ("melody", 0.05) for b in MELODIC}, "melodic_size": ("melody", 0.25),
    "in_key": ("key", 0.05), "key_weight": ("key", 0.02), "in_others_key": ("key", 0.05),
}
PAIR_FEATURES = {
    "crossing": ("order", 0.05), "spacing": ("order", 1.0),
    **{f"vertical_{c}": ("harmony", 0.05) for c in VERTICAL},
    "parallels": ("harmony", 0.05), "contrary": ("harmony", 0.05), "beat_dissonance": ("harmony", 0.05),
}
SAMPLE_FEATURES = {
    # what time's direction shows (version 3): how dissonances come and go, progressions, motion
    **dict.fromkeys(("prepared_dissonance", "resolved_dissonance", "accented_dissonance", "passing_dissonance",
                     "dissonance_into_beat", "leading_tone", "root_progression", "bass_fifths", "dominant_tonic",
                     "dominant_on_weak", "tonal_direction"), ("harmony", 0.05)),
    **dict.fromkeys(("stepwise", "descending_steps", "leap_recovered", "leap_prepared"), ("melody", 0.05)),
    "dotted": ("rhythm", 0.05),
    "key_clarity": ("key", 0.05), "chord_fit": ("harmony", 0.05), "beat_chord_fit": ("harmony", 0.05),
    "clashes": ("harmony", 0.05), "pitch_classes": ("harmony", 0.25),
}


def voice_labels(k: int) -> list[str]:
    """Short voice names used in feature names: S, A, T, B for four voices, else v0, v1, ..."""
    return list("SATB") if k == 4 else [f"v{i}" for i in range(k)]


def feature_names(k: int) -> list[str]:
    """Names of the feature columns for k voices, in column order."""
    v = voice_labels(k)
    names = [f"{v[i]}.{f}" for i in range(k) for f in VOICE_FEATURES]
    names += [f"{v[i]}-{v[j]}.{f}" for i, j in combinations(range(k), 2) for f in PAIR_FEATURES]
    return names + list(SAMPLE_FEATURES)


def _spec(name: str) -> tuple[str, float]:
    """(group, floor) of a feature name."""
    short = name.split(".")[-1]
    return (VOICE_FEATURES | PAIR_FEATURES | SAMPLE_FEATURES)[short]


def _div(num, den) -> np.ndarray:
    """num / den, 0 where den == 0 (the explicit value of a feature with nothing to measure)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    return np.divide(num, den, out=out, where=den > 0)


class _Voices(NamedTuple):
    """What every feature reads from the rolls, per sample, step and voice (N, T, K) unless noted."""
    xt: np.ndarray  # (N, T, K, P) bool rolls, pitch last
    count: np.ndarray  # pitches sounding
    sounding: np.ndarray  # bool
    line: np.ndarray  # highest sounding pitch, 0 if silent
    chroma: np.ndarray  # (N, T, K, 12) note count per pitch class
    starts: np.ndarray  # (N, T, K, P) a pitch turns on
    onset: np.ndarray  # bool: a note of the voice starts (any pitch turns on)
    d_in: np.ndarray  # at an onset: the line's interval from the previous note (0 where has_in is False)
    has_in: np.ndarray  # an onset with a previous note in the window
    d_out: np.ndarray  # at an onset: the interval to the next note (0 where has_out is False)
    has_out: np.ndarray  # an onset with a next note in the window
    last: np.ndarray  # at an onset: the note's last step (before the next onset or a rest)


def _voices(x: np.ndarray) -> _Voices:
    """Lines, onsets and note links of bool rolls x (N, T, P, K)."""
    n, t, p, k = x.shape
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2))  # (N, T, K, P): reductions over pitch run along memory
    xu = xt.view(np.uint8)
    count = xu.sum(axis=3, dtype=np.int32)
    sounding = count > 0
    line = np.where(sounding, p - 1 - np.argmax(xt[..., ::-1], axis=3), 0)
    chroma = fold_octaves(xu, axis=3, dtype=np.int32)
    starts = xt.copy()  # a note starts where a pitch turns on
    starts[:, 1:] &= ~xt[:, :-1]
    onset = starts.any(axis=3)
    # Each onset's previous and next onset of the same voice (-1 / t where there is none), and the note's last step.
    steps = np.arange(t)[None, :, None]
    latest = np.maximum.accumulate(np.where(onset, steps, -1), axis=1)  # latest onset at or before each step
    before = np.concatenate([np.full_like(latest[:, :1], -1), latest[:, :-1]], axis=1)
    earliest = np.minimum.accumulate(np.where(onset, steps, t)[:, ::-1], axis=1)[:, ::-1]  # at or after
    after = np.concatenate([earliest[:, 1:], np.full_like(earliest[:, :1], t)], axis=1)
    silent_from = np.minimum.accumulate(np.where(sounding, t, steps)[:, ::-1], axis=1)[:, ::-1]
    last = np.minimum(after, silent_from) - 1
    has_in, has_out = onset & (before >= 0), onset & (after < t)
    d_in = np.where(has_in, line - np.take_along_axis(line, before.clip(0), axis=1), 0)
    d_out = np.where(has_out, np.take_along_axis(line, after.clip(max=t - 1), axis=1) - line, 0)
    return _Voices(xt, count, sounding, line, chroma, starts, onset, d_in, has_in, d_out, has_out, last)


def _metric(t: int, steps_per_bar: int, steps_per_beat: int) -> dict[str, np.ndarray]:
    """(T,) bool step kinds: beat, strong (the downbeat, and the middle beat of an even bar), weak (other beats),
    before_beat (the last step before a beat)."""
    pos = np.arange(t) % steps_per_bar
    beat = pos % steps_per_beat == 0
    half_bar = steps_per_bar // 2 if (steps_per_bar // steps_per_beat) % 2 == 0 else steps_per_bar
    strong = pos % half_bar == 0
    before_beat = (pos % steps_per_beat == steps_per_beat - 1) & (steps_per_beat > 1)
    return {"beat": beat, "strong": strong, "weak": beat & ~strong, "before_beat": before_beat}


def features(rolls, *, steps_per_bar: int = 16, steps_per_beat: int = 4) -> np.ndarray:
    """(N, T, P, K) rolls -> (N, F) float features, columns named by feature_names(K); always finite."""
    x = binarize(rolls)  # (N, T, P, K)
    n, t, p, k = x.shape
    if t < 2:
        raise ValueError(f"rolls need at least 2 time steps, got {t}")
    v = _voices(x)
    meter = _metric(t, steps_per_bar, steps_per_beat)
    cols = _rhythm_features(v, steps_per_bar, steps_per_beat)  # short name -> (N, K)
    cols |= _melody_features(v)
    key_cols, (tonic, minor, clarity) = _key_features(v)
    cols |= key_cols
    pcols = _pair_features(v.line, v.sounding, steps_per_beat)  # name -> one (N,) array per pair
    scols = _sample_features(v.chroma, clarity, steps_per_beat)  # name -> (N,)
    scols |= _resolution_features(v, meter, tonic)
    scols |= _progression_features(v, meter, tonic, minor)
    scols |= _motion_features(v, meter)
    scols["tonal_direction"] = np.mean([scols[f] for f in DIRECTION], axis=0)
    out = [np.asarray(cols[f], float)[:, i] for i in range(k) for f in VOICE_FEATURES]
    out += [np.asarray(pcols[f][q], float) for q in range(len(pcols["crossing"])) for f in PAIR_FEATURES]
    out += [np.asarray(scols[f], float) for f in SAMPLE_FEATURES]
    return np.stack(out, axis=1) if n else np.zeros((0, len(out)))


def _rhythm_features(v: _Voices, steps_per_bar: int, steps_per_beat: int) -> dict[str, np.ndarray]:
    """Texture, register and rhythm per voice: (N, K) each."""
    n, t, k = v.line.shape
    n_sounding = v.sounding.sum(axis=1)  # (N, K)
    n_onsets = v.onset.sum(axis=1)
    cols: dict[str, np.ndarray] = {"sounding": n_sounding / t}
    nb = t // steps_per_bar
    bar_sound = v.sounding[:, : nb * steps_per_bar].reshape(n, nb, steps_per_bar, k).any(axis=2) if nb else None
    cols["empty_bars"] = 1.0 - bar_sound.mean(axis=1) if nb else 1.0 - v.sounding.any(axis=1)
    cols["polyphony"] = _div((v.count - 1).clip(0).sum(axis=1), n_sounding)
    cols["mean_pitch"] = _div(v.line.sum(axis=1), n_sounding)
    hi = np.where(v.sounding, v.line, -1).max(axis=1)
    lo = np.where(v.sounding, v.line, v.xt.shape[3]).min(axis=1)
    cols["range"] = np.where(n_sounding > 0, hi - lo, 0)
    cols["onsets"] = n_onsets / max(nb, 1)
    # Syncopation: a note that starts off the beat and is still held at the next beat (its last step reaches it).
    to_beat = (-np.arange(t)) % steps_per_beat  # steps from t to the next beat (0 on a beat)
    inside = (to_beat > 0) & (np.arange(t) + to_beat < t)  # off the beat, with the next beat inside the window
    syncopated = v.onset & inside[None, :, None] & (v.last >= (np.arange(t) + to_beat)[None, :, None])
    cols["syncopation"] = _div(syncopated.sum(axis=1), n_onsets)
    # Mean note length = sounding pitch-steps / pitch onsets (a note is a run on one pitch).
    cols["note_length"] = _div(v.count.sum(axis=1), v.starts.view(np.uint8).sum(axis=(1, 3), dtype=np.int32))
    pos = np.arange(t) % steps_per_bar
    half = steps_per_beat // 2
    kinds = {
        "downbeat": pos == 0,
        "beat": (pos != 0) & (pos % steps_per_beat == 0),
        "eighth": (pos % steps_per_beat != 0) & (half > 0) & (steps_per_beat % 2 == 0) & (pos % max(half, 1) == 0),
    }
    kinds["sixteenth"] = ~(kinds["downbeat"] | kinds["beat"] | kinds["eighth"])
    for name in ONSET_POSITIONS:
        cols[f"onset_{name}"] = _div((v.onset & kinds[name][None, :, None]).sum(axis=1), n_onsets)
    return cols


def _melody_features(v: _Voices) -> dict[str, np.ndarray]:
    """Melodic intervals per voice, (N, K) each: the line at each onset against the line at the previous onset."""
    size = np.abs(v.d_in)
    n_int = v.has_in.sum(axis=1)
    cols = {f"melodic_{name}": _div((v.has_in & (size >= a) & (size <= b)).sum(axis=1), n_int)
            for name, (a, b) in MELODIC.items()}
    cols["melodic_size"] = _div(size.sum(axis=1), n_int)
    return cols


def _key_features(v: _Voices) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Key-relative pitch classes per voice, (N, K) each, and the sample's key: (tonic, is_minor, clarity), (N,) each.

    Krumhansl-Schmuckler over all voices' note-steps; each voice's note-steps measured against it."""
    k = v.line.shape[2]
    pc_voice = v.chroma.sum(axis=1).transpose(0, 2, 1).astype(float)  # (N, 12, K) note-steps per pitch class
    tonic, minor, clarity = krumhansl_key(pc_voice.sum(axis=2))
    rel = (np.arange(12)[None, :] - tonic[:, None]) % 12  # (N, 12) pitch class relative to the tonic
    scale = key_scale(tonic, minor)
    prof = np.where(minor[:, None], KK_MINOR[rel], KK_MAJOR[rel])
    weight = (prof - KK_MAJOR.min()) / (KK_MAJOR.max() - KK_MAJOR.min())  # about 0..1
    cells = pc_voice.sum(axis=1)  # (N, K)
    cols = {"in_key": _div((pc_voice * scale[:, :, None]).sum(axis=1), cells),
            "key_weight": _div((pc_voice * weight[:, :, None]).sum(axis=1), cells)}
    # The same against the key of the other voices alone: does this voice agree with the rest?
    others = np.zeros_like(cells)
    for i in range(k):
        o_scale = krumhansl_scales(pc_voice.sum(axis=2) - pc_voice[:, :, i])
        others[:, i] = _div((pc_voice[:, :, i] * o_scale).sum(axis=1), cells[:, i])
    cols["in_others_key"] = others
    return cols, (tonic, minor, clarity)


def _pair_features(line: np.ndarray, sounding: np.ndarray, steps_per_beat: int) -> dict[str, list[np.ndarray]]:
    """Per PAIR_FEATURES name, one (N,) array per voice pair (upper i, lower j), from the lines (N, T, K)."""
    _, t, k = line.shape
    pcols: dict[str, list[np.ndarray]] = {f: [] for f in PAIR_FEATURES}
    for i, j in combinations(range(k), 2):
        both = sounding[:, :, i] & sounding[:, :, j]  # (N, T)
        nb_ = both.sum(axis=1)
        d = line[:, :, i] - line[:, :, j]
        ic = np.abs(d) % 12
        pcols["crossing"].append(_div((both & (d < 0)).sum(axis=1), nb_))
        pcols["spacing"].append(_div(np.where(both, d, 0).sum(axis=1), nb_))
        for name, classes in VERTICAL.items():
            pcols[f"vertical_{name}"].append(_div((both & np.isin(ic, classes)).sum(axis=1), nb_))
        mi = np.diff(line[:, :, i], axis=1)
        mj = np.diff(line[:, :, j], axis=1)
        moving = both[:, 1:] & both[:, :-1] & (mi != 0) & (mj != 0)  # (N, T - 1) both voices move
        perfect = np.isin(ic, (0, 7))
        parallel = moving & (np.sign(mi) == np.sign(mj)) & perfect[:, 1:] & (ic[:, 1:] == ic[:, :-1])
        n_moving = moving.sum(axis=1)
        pcols["parallels"].append(_div(parallel.sum(axis=1), n_moving))
        pcols["contrary"].append(_div((moving & (np.sign(mi) != np.sign(mj))).sum(axis=1), n_moving))
        beat_both = both & (np.arange(t) % steps_per_beat == 0)[None, :]
        dissonant = np.isin(ic, VERTICAL["second"] + VERTICAL["tritone"] + VERTICAL["semitone"])
        pcols["beat_dissonance"].append(_div((beat_both & dissonant).sum(axis=1), beat_both.sum(axis=1)))
    return pcols


def _sample_features(chroma: np.ndarray, clarity: np.ndarray, steps_per_beat: int) -> dict[str, np.ndarray]:
    """Per SAMPLE_FEATURES name, (N,) values, from the pitch-class counts (N, T, K, 12) and the key clarity."""
    t = chroma.shape[1]
    bits = (1 << np.arange(12))
    pc_step = chroma.any(axis=2)  # (N, T, 12) classes sounding in any voice
    mask = (pc_step * bits).sum(axis=-1)
    any_sound = mask > 0
    fits = CHORD_FITS[mask] & any_sound
    on_beat = any_sound & (np.arange(t) % steps_per_beat == 0)[None, :]
    clash = any_sound & (pc_step & np.roll(pc_step, 1, axis=-1)).any(axis=-1)  # two classes a semitone apart
    scols = {
        "key_clarity": clarity,
        "chord_fit": _div(fits.sum(axis=1), any_sound.sum(axis=1)),
        "beat_chord_fit": _div((fits & on_beat).sum(axis=1), on_beat.sum(axis=1)),
        "clashes": _div(clash.sum(axis=1), any_sound.sum(axis=1)),
        "pitch_classes": _div(pc_step.sum(axis=(1, 2)), any_sound.sum(axis=1)),
    }
    return scols


def _balance(forward, backward) -> np.ndarray:
    """(forward - backward) / (forward + backward): +1 all forward, -1 all backward, 0 if neither (or as many)."""
    forward, backward = np.asarray(forward, float), np.asarray(backward, float)
    return _div(forward - backward, forward + backward)


def _dissonant(line: np.ndarray, sounding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, K) a voice sounds a DISSONANT interval class against another voice, and (N, T) the number of voice
    pairs that do."""
    diss = np.zeros(line.shape, bool)
    pairs = np.zeros(line.shape[:2], np.int32)
    for i, j in combinations(range(line.shape[2]), 2):
        d = sounding[:, :, i] & sounding[:, :, j] & DISSONANT_CLASS[np.abs(line[:, :, i] - line[:, :, j]) % 12]
        diss[:, :, i] |= d
        diss[:, :, j] |= d
        pairs += d
    return diss, pairs


def _resolution_features(v: _Voices, meter: dict[str, np.ndarray], tonic: np.ndarray) -> dict[str, np.ndarray]:
    """How dissonances arrive and leave, and the leading tone, pooled over voices: (N,) each. A dissonance here is a
    voice a second, seventh or tritone (mod 12) from another voice."""
    diss, pairs = _dissonant(v.line, v.sounding)
    at_start = v.onset & diss  # notes dissonant when struck
    at_end = v.onset & np.take_along_axis(diss, v.last.clip(0), axis=1)  # notes dissonant on their last step
    beat = meter["beat"][None, :, None]
    step_down = v.has_out & (v.d_out >= -2) & (v.d_out <= -1)
    step_up_in = v.has_in & (v.d_in >= 1) & (v.d_in <= 2)
    degree = (v.line - tonic[:, None, None]) % 12
    both = (1, 2)
    return {
        # Held into a dissonance (a suspension: consonant when struck, dissonant when left) vs out of one.
        "prepared_dissonance": _balance((at_end & ~at_start).sum(axis=both), (at_start & ~at_end).sum(axis=both)),
        # A dissonance left by a step down vs one entered by a step up (what the resolution becomes backwards).
        "resolved_dissonance": _balance((at_end & step_down).sum(axis=both), (at_start & step_up_in).sum(axis=both)),
        "accented_dissonance": _div((at_start & beat).sum(axis=both), (v.onset & beat).sum(axis=both)),
        "passing_dissonance": _div((at_start & ~beat).sum(axis=both), (v.onset & ~beat).sum(axis=both)),
        # Dissonant voice pairs on the last step before a beat (passing into it) vs on the beat.
        "dissonance_into_beat": _balance(pairs[:, meter["before_beat"]].sum(axis=1),
                                         pairs[:, meter["beat"]].sum(axis=1)),
        # The leading tone up to the tonic vs the tonic down to the leading tone.
        "leading_tone": _balance((v.has_in & (v.d_in == 1) & (degree == 0)).sum(axis=both),
                                 (v.has_in & (v.d_in == -1) & (degree == 11)).sum(axis=both)),
    }


def _progression_features(v: _Voices, meter: dict[str, np.ndarray], tonic: np.ndarray,
                          minor: np.ndarray) -> dict[str, np.ndarray]:
    """Chord progressions from beat to beat and the bass's cadential fifths, (N,) each."""
    n, t, k = v.line.shape
    bits = 1 << np.arange(12)
    mask = ((v.chroma.sum(axis=2) > 0) * bits).sum(axis=-1)  # (N, T) pitch classes sounding, as a bit mask
    beats = np.nonzero(meter["beat"])[0]
    roots = CHORD_ROOTS[mask[:, beats]]  # (N, beats)
    known = (roots[:, 1:] >= 0) & (roots[:, :-1] >= 0) & (roots[:, 1:] != roots[:, :-1])
    motion = (roots[:, 1:] - roots[:, :-1]) % 12
    bass_move = np.where(v.has_in[:, :, -1], v.d_in[:, :, -1] % 12, -1)
    # Tonic triad with the tonic in the bass; dominant (seventh) chord with its root in the bass.
    rel = (np.arange(12)[None, :] - tonic[:, None]) % 12  # (N, 12)
    tonic_set = np.isin(rel, (0, 7)) | (rel == np.where(minor, 3, 4)[:, None])
    dominant_set = np.isin(rel, (7, 11, 2, 5))
    pcs = (mask[:, :, None] & bits) > 0  # (N, T, 12)
    bass = (v.line[:, :, -1] - tonic[:, None]) % 12
    has_bass = v.sounding[:, :, -1] & pcs.any(axis=2)
    is_tonic = has_bass & (bass == 0) & ~(pcs & ~tonic_set[:, None, :]).any(axis=2)
    is_dominant = has_bass & (bass == 7) & ~(pcs & ~dominant_set[:, None, :]).any(axis=2)
    t_b, d_b = is_tonic[:, beats], is_dominant[:, beats]
    return {
        # Roots down a fifth, up a second, down a third (dominant progressions) vs their reverses.
        "root_progression": _balance((known & np.isin(motion, (5, 1, 2, 8, 9))).sum(axis=1),
                                     (known & np.isin(motion, (7, 11, 10, 3, 4))).sum(axis=1)),
        "bass_fifths": _balance((bass_move == 5).sum(axis=1), (bass_move == 7).sum(axis=1)),  # down a fifth vs up
        "dominant_tonic": _balance((d_b[:, :-1] & t_b[:, 1:]).sum(axis=1), (t_b[:, :-1] & d_b[:, 1:]).sum(axis=1)),
        "dominant_on_weak": _balance((is_dominant & meter["weak"]).sum(axis=1),
                                     (is_dominant & meter["strong"]).sum(axis=1)),
    }


def _motion_features(v: _Voices, meter: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Melodic direction and the rhythm of successive notes, pooled over voices, (N,) each."""
    both = (1, 2)
    step_in = (np.abs(v.d_in) >= 1) & (np.abs(v.d_in) <= 2)
    step_out = (np.abs(v.d_out) >= 1) & (np.abs(v.d_out) <= 2)
    turn = np.sign(v.d_in) == -np.sign(v.d_out)
    linked = v.has_in & v.has_out
    leap_in, leap_out = linked & (np.abs(v.d_in) >= LEAP), linked & (np.abs(v.d_out) >= LEAP)
    # Two notes with no rest between, the first struck on a beat: dotted long-short (3:1) vs short-long (1:3).
    t = v.line.shape[1]
    length = v.last - np.arange(t)[None, :, None] + 1
    nxt = np.take_along_axis(length, (v.last + 1).clip(max=t - 1), axis=1)
    adjacent = v.onset & meter["beat"][None, :, None] & (v.last + 1 < t)
    adjacent &= np.take_along_axis(v.onset, (v.last + 1).clip(max=t - 1), axis=1)
    return {
        "stepwise": _div((v.has_in & step_in).sum(axis=both), v.has_in.sum(axis=both)),
        "descending_steps": _balance((v.has_in & step_in & (v.d_in < 0)).sum(axis=both),
                                     (v.has_in & step_in & (v.d_in > 0)).sum(axis=both)),
        "leap_recovered": _div((leap_in & step_out & turn).sum(axis=both), leap_in.sum(axis=both)),
        "leap_prepared": _div((leap_out & step_in & turn).sum(axis=both), leap_out.sum(axis=both)),
        "dotted": _balance((adjacent & (length == 3 * nxt)).sum(axis=both),
                           (adjacent & (3 * length == nxt)).sum(axis=both)),
    }


def feature_means(rolls, *, steps_per_bar: int = 16, steps_per_beat: int = 4) -> dict:
    """Means over samples of features(): {"voices": [{feature: mean}] per voice, "pairs": {(i, j): {feature: mean}},
    "sample": {feature: mean}}; all None for an empty set."""
    x = binarize(rolls)
    k = x.shape[3]
    f = features(x, steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat)
    means = [float(v) if len(f) else None for v in (f.mean(axis=0) if len(f) else np.zeros(f.shape[1]))]
    it = iter(means)
    voices = [{name: next(it) for name in VOICE_FEATURES} for _ in range(k)]
    pairs = {pair: {name: next(it) for name in PAIR_FEATURES} for pair in combinations(range(k), 2)}
    return {"voices": voices, "pairs": pairs, "sample": {name: next(it) for name in SAMPLE_FEATURES}}


def wasserstein_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wasserstein-1 distance between the columns of a (n, F) and b (m, F) (n, m may differ): (F,) distances, each
    the integral over u of |Qa(u) - Qb(u)| of the two empirical quantile functions."""
    a, b = np.sort(np.asarray(a, float), axis=0), np.sort(np.asarray(b, float), axis=0)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("a Wasserstein distance needs at least one value on each side")
    # Both quantile functions are steps that change only at i / len; between breakpoints they are constant, and the
    # breakpoints depend only on the sizes, so one grid serves every column.
    u = np.union1d(np.arange(1, len(a) + 1) / len(a), np.arange(1, len(b) + 1) / len(b))
    width = np.diff(u, prepend=0.0)
    mid = u - width / 2
    qa = a[np.minimum((mid * len(a)).astype(int), len(a) - 1)]
    qb = b[np.minimum((mid * len(b)).astype(int), len(b) - 1)]
    return width @ np.abs(qa - qb)


def feature_terms(gen_features: np.ndarray, ref_features: np.ndarray, k: int) -> dict[str, float]:
    """Per feature name: W1(gen, ref) / max(ref std, floor), capped at TERM_CAP."""
    names = feature_names(k)
    if not (gen_features.shape[1] == ref_features.shape[1] == len(names)) or not len(gen_features) \
            or not len(ref_features):
        raise ValueError(f"feature arrays {gen_features.shape} and {ref_features.shape} do not compare")
    floors = np.array([_spec(name)[1] for name in names])
    scale = np.maximum(ref_features.std(axis=0), floors)
    terms = np.minimum(wasserstein_columns(gen_features, ref_features) / scale, TERM_CAP)
    return dict(zip(names, terms.tolist(), strict=True))


def group_distances(terms: dict[str, float]) -> dict[str, float]:
    """aggregate() of the terms per musical group (register, order, harmony, melody, rhythm, key, texture)."""
    groups: dict[str, list[float]] = {}
    for name, value in terms.items():
        groups.setdefault(_spec(name)[0], []).append(value)
    return {g: aggregate(dict(enumerate(v))) for g, v in groups.items()}


def distance_terms(gen_rolls, ref_rolls, *, steps_per_bar: int = 16, steps_per_beat: int = 4,
                   ref_features: np.ndarray | None = None) -> dict[str, float]:
    """Per feature name, its scaled W1 term of music_distance (the breakdown of one value)."""
    gen_rolls = binarize(gen_rolls)
    k = gen_rolls.shape[3]
    kw = dict(steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat)
    if ref_features is None:
        ref_rolls = binarize(ref_rolls)
        if ref_rolls.shape[3] != k:
            raise ValueError(f"generated rolls have {k} tracks, reference {ref_rolls.shape[3]}")
        ref_features = features(ref_rolls, **kw)
    return feature_terms(features(gen_rolls, **kw), ref_features, k)


def music_distance(gen_rolls, ref_rolls, *, steps_per_bar: int = 16, steps_per_beat: int = 4,
                   ref_features: np.ndarray | None = None) -> float:
    """Power mean (order POWER) of the scaled W1 terms of all features; 0 = same as ref, lower = closer.

    ref_features (from features(ref_rolls)) saves recomputing the reference side; ref_rolls may then be None.
    """
    return aggregate(distance_terms(gen_rolls, ref_rolls, steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat,
                                    ref_features=ref_features))


def aggregate(terms: dict[str, float]) -> float:
    """Power mean of order POWER of the terms. A musical error shows in a few features, and a plain mean would dilute
    it by the many it leaves alone; real-vs-real terms are all small, so the power mean of those stays small."""
    values = np.asarray(list(terms.values()), float)
    return float(np.mean(values**POWER) ** (1 / POWER))
