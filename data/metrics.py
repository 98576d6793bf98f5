"""Music metrics for piano rolls, in pure numpy.

Input: ``rolls`` shaped (N, T, P, K) = (samples, time steps, pitches, tracks). Anything where ``> 0`` means "on"
is accepted (bool, {0, 1} ints, {-1, 1} floats). Pitch index p has pitch class p % 12, so index 0 must be a C
(true for P = 128 with index = MIDI number). Trailing steps that do not fill a whole bar (or beat) are ignored.

Per-track metrics, one value per sample and track (NaN where undefined):

- empty_bar_rate: fraction of bars in which the track has no active step (1.0 = every bar empty).
- used_pitch_classes: mean over the track's non-empty bars of the number of distinct pitch classes in the bar
  (1..12; octaves fold, so C4 and C5 count once); 0 if every bar is empty.
- qualified_note_rate: a note is a maximal run of active steps on one pitch; the fraction of notes lasting at least
  ``qualified_min_steps`` steps. MuseGAN's 3 of 96 steps per bar is under one step at 16 steps per bar, so the
  default is 2 steps (an eighth note). NaN if the track has no notes.
- polyphonic_rate: among the steps where the track sounds, the fraction with two or more pitches. NaN if silent.
- in_scale_rate: one key per sample, the major scale (of 12; a minor key shares its relative major's pitch set)
  holding the most active (step, pitch) cells over all tracks, ties to the lowest tonic; per track, the fraction of
  its active cells whose pitch class is in that scale. Key-relative, so transposed data scores the same.
  NaN if the track has no notes.

tonal_distance (Harte, Sandler & Gasser 2006): per beat, a track's chroma (active steps per pitch class, L1
normalised) maps to a 6-D tonal centroid on the circles of fifths, minor thirds and major thirds (radii 1, 1, 0.5).
For a track pair: the mean, over the beats where both tracks sound, of the Euclidean distance between their
centroids (0 = same harmony, larger = weaker harmonic relation, at most 3). NaN if no beat has both.

The search objective, music_distance, and its musical features live in data.objective; summarize() adds the
means of those features (per voice, per voice pair, per sample) to the table.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from chorus.data import objective
from chorus.data.music_basics import SCALES, binarize, fold_octaves, scale_count_key

PER_TRACK = ("empty_bar_rate", "used_pitch_classes", "qualified_note_rate", "polyphonic_rate", "in_scale_rate")

_L = np.arange(12)
# Harte's transform, (6, 12): column l is the centroid of pitch class l alone.
PHI = np.stack([
    np.sin(_L * 7 * np.pi / 6), np.cos(_L * 7 * np.pi / 6),  # circle of fifths, r1 = 1
    np.sin(_L * 3 * np.pi / 2), np.cos(_L * 3 * np.pi / 2),  # circle of minor thirds, r2 = 1
    0.5 * np.sin(_L * 2 * np.pi / 3), 0.5 * np.cos(_L * 2 * np.pi / 3),  # circle of major thirds, r3 = 0.5
])


def _ratio(num, den) -> np.ndarray:
    """num / den as floats, NaN where den == 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), np.nan)
    return np.divide(num, den, out=out, where=den > 0)


def _chroma(rolls: np.ndarray) -> np.ndarray:
    """(N, T, P, K) bool -> (N, T, 12, K) number of active pitches per pitch class."""
    return fold_octaves(rolls, axis=2, dtype=np.int32)


def _blocks(x: np.ndarray, size: int, what: str) -> np.ndarray:
    """Split the time axis (1) into whole blocks: (N, T, ...) -> (N, T // size, size, ...)."""
    n = x.shape[1] // size
    if n == 0:
        raise ValueError(f"{x.shape[1]} time steps hold no whole {what} of {size} steps")
    return x[:, : n * size].reshape(x.shape[0], n, size, *x.shape[2:])


def _notes(rolls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every note (maximal run of active steps on one pitch): its length in steps and its owner n * K + k."""
    k = rolls.shape[3]
    n, t, p, _ = rolls.shape
    x = np.zeros((n, k, p, t + 2), np.int8)  # (N, K, P, T + 2); signed, so a diff can be -1 (no uint8 wraparound)
    x[..., 1:-1] = rolls.transpose(0, 3, 2, 1)  # silent steps on both ends close notes that touch the edges
    edges = np.diff(x, axis=-1)  # +1 at an onset, -1 one step after the note ends
    onsets, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    # nonzero lists in C order and runs in one row never interleave, so the i-th onset and i-th end share a note.
    return ends[-1] - onsets[-1], onsets[0] * k + onsets[1]


def estimate_key(rolls) -> np.ndarray:
    """(N,) tonic (0 = C) of each sample's major scale, estimated over all tracks (see in_scale_rate)."""
    return scale_count_key(_chroma(binarize(rolls)).sum(axis=(1, 3)))


def per_sample_track_metrics(rolls, *, steps_per_bar=16, qualified_min_steps=2) -> dict[str, np.ndarray]:
    """Each metric in PER_TRACK -> (N, K) per-sample values (NaN where undefined, e.g. QN of a track with no notes)."""
    rolls = binarize(rolls)
    n, _, _, k = rolls.shape
    chroma = _chroma(rolls)  # (N, T, 12, K)
    out = {}

    # Bars: a bar is empty exactly when none of its pitch classes is active.
    upc = _blocks(chroma, steps_per_bar, "bar").any(axis=2).sum(axis=2)  # (N, bars, K) pitch classes per bar
    full = upc > 0
    out["empty_bar_rate"] = 1.0 - full.mean(axis=1)
    out["used_pitch_classes"] = np.nan_to_num(_ratio(upc.sum(axis=1), full.sum(axis=1)))  # 0 if all bars empty

    # Notes: count them and the qualified ones per (sample, track).
    lengths, owner = _notes(rolls)
    notes = np.bincount(owner, minlength=n * k).reshape(n, k)
    qualified = np.bincount(owner, weights=lengths >= qualified_min_steps, minlength=n * k).reshape(n, k)
    out["qualified_note_rate"] = _ratio(qualified, notes)

    voices = rolls.sum(axis=2)  # (N, T, K) pitches sounding per step
    out["polyphonic_rate"] = _ratio((voices >= 2).sum(axis=1), (voices >= 1).sum(axis=1))

    pc_cells = chroma.sum(axis=1)  # (N, 12, K) active cells per pitch class
    scale = SCALES[scale_count_key(pc_cells.sum(axis=2))]  # (N, 12) the sample's scale
    out["in_scale_rate"] = _ratio((pc_cells * scale[:, :, None]).sum(axis=1), pc_cells.sum(axis=1))
    return out


def tonal_centroids(rolls, *, steps_per_beat=4) -> np.ndarray:
    """(N, beats, K, 6) Harte tonal centroid of each track's chroma per beat; NaN where the track is silent."""
    chroma = _blocks(_chroma(binarize(rolls)), steps_per_beat, "beat").sum(axis=2)  # (N, beats, 12, K)
    chroma = _ratio(chroma, chroma.sum(axis=2, keepdims=True))  # L1-normalised, NaN where silent
    return np.einsum("dl,nblk->nbkd", PHI, chroma)


def tonal_distance(rolls, *, steps_per_beat=4) -> dict[tuple[int, int], np.ndarray]:
    """Per track pair (i < j) -> (N,) mean over the beats where both sound of the distance between their centroids."""
    centroids = tonal_centroids(rolls, steps_per_beat=steps_per_beat)
    out = {}
    for i, j in combinations(range(centroids.shape[2]), 2):
        dist = np.linalg.norm(centroids[:, :, i] - centroids[:, :, j], axis=-1)  # (N, beats), NaN unless both sound
        both = np.isfinite(dist)
        out[(i, j)] = _ratio(np.where(both, dist, 0.0).sum(axis=1), both.sum(axis=1))
    return out


def _mean(values: np.ndarray) -> float | None:
    """Mean of the finite values as a plain float; None (JSON null) if there are none."""
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def _pair_names(names: list[str]) -> dict[tuple[int, int], str]:
    """'S-A' from initials when the initials are unique, else full names ('track0-track1')."""
    initials = [name[:1].upper() for name in names]
    short = initials if len(set(initials)) == len(initials) else names
    return {(i, j): f"{short[i]}-{short[j]}" for i, j in combinations(range(len(names)), 2)}


def summarize(rolls, *, steps_per_bar=16, steps_per_beat=4, qualified_min_steps=2, track_names=None) -> dict:
    """JSON-ready means over samples: {"per_track": {name: {metric: mean}}, "tonal_distance": {pair: mean},
    "voices": {name: {feature: mean}}, "pairs": {pair: {feature: mean}}, "sample": {feature: mean}, "n": N}.

    per_track holds the metrics above; voices, pairs and sample hold data.objective's per-voice, voice-pair and
    whole-sample features. Means skip NaN samples; a mean with no finite sample is None.
    """
    rolls = binarize(rolls)
    k = rolls.shape[3]
    names = list(track_names) if track_names is not None else [f"track{t}" for t in range(k)]
    if len(names) != k:
        raise ValueError(f"track_names has {len(names)} names for {k} tracks")
    per = per_sample_track_metrics(rolls, steps_per_bar=steps_per_bar, qualified_min_steps=qualified_min_steps)
    td = tonal_distance(rolls, steps_per_beat=steps_per_beat)
    feats = objective.feature_means(rolls, steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat)
    pairs = _pair_names(names)
    return {
        "per_track": {name: {m: _mean(per[m][:, t]) for m in PER_TRACK} for t, name in enumerate(names)},
        "tonal_distance": {pairs[pair]: _mean(values) for pair, values in td.items()},
        "voices": {name: feats["voices"][t] for t, name in enumerate(names)},
        "pairs": {pairs[pair]: values for pair, values in feats["pairs"].items()},
        "sample": feats["sample"],
        "n": int(rolls.shape[0]),
    }


def format_table(gen_summary: dict, ref_summary: dict, *, label: str = "generated") -> str:
    """Aligned text table of two summaries: per track its metrics and voice features, the tonal-distance rows, the
    voice-pair feature rows, then the whole-sample feature rows."""

    def number(x) -> str:
        return "-" if x is None or x != x else f"{x:.3f}"  # x != x catches NaN

    rows = []
    for track, metrics in gen_summary["per_track"].items():
        for metric, g in metrics.items():
            rows.append((track, metric, g, ref_summary["per_track"].get(track, {}).get(metric)))
        for feature, g in gen_summary.get("voices", {}).get(track, {}).items():
            rows.append((track, feature, g, ref_summary.get("voices", {}).get(track, {}).get(feature)))
    for pair, g in gen_summary["tonal_distance"].items():
        rows.append((pair, "tonal_distance", g, ref_summary["tonal_distance"].get(pair)))
    for pair, features in gen_summary.get("pairs", {}).items():
        for feature, g in features.items():
            rows.append((pair, feature, g, ref_summary.get("pairs", {}).get(pair, {}).get(feature)))
    for feature, g in gen_summary.get("sample", {}).items():
        rows.append(("all", feature, g, ref_summary.get("sample", {}).get(feature)))

    header = ("track", "metric", f"{label} (n={gen_summary['n']})", f"holdout (n={ref_summary['n']})", "|diff|")
    cells = [header] + [
        (track, metric, number(g), number(r), number(None if g is None or r is None else abs(g - r)))
        for track, metric, g, r in rows
    ]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(row) -> str:  # names left-aligned, numbers right-aligned
        return "  ".join(s.ljust(w) if c < 2 else s.rjust(w) for c, (s, w) in enumerate(zip(row, widths, strict=True)))

    return "\n".join(line(row).rstrip() for row in cells)
