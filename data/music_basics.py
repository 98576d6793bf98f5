"""Music basics, written once: pitch names and classes, scales, the two key rules, and binarizing a roll.

Pure numpy. A roll's pitch index i is MIDI pitch ``pitch_low + i`` (0 for full 128-pitch rolls), and MIDI pitch m
has pitch class m % 12 (0 = C).

Two key rules, each with its own job:

- ``scale_count_key``: the major scale holding the most note-steps (ties to the lowest tonic). The lab's rule: the
  in_scale_rate metric and the pipeline's key normalization use it, so their values match the lab's.
- ``krumhansl_key``: Krumhansl-Schmuckler correlation with the Krumhansl-Kessler profiles, major or minor, with a
  clarity. The objective uses it, because it tells minor from major and says how sure it is.
"""
from __future__ import annotations

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 11)  # harmonic minor: the raised leading tone is in key
# SCALES[t, c]: pitch class c belongs to the major scale on tonic t.
SCALES = np.array([[(c - t) % 12 in MAJOR_SCALE for c in range(12)] for t in range(12)])

# Krumhansl-Kessler key profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def note_name(pitch: int) -> str:
    """MIDI pitch -> scientific name: 60 -> C4."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def binarize(rolls) -> np.ndarray:
    """Rolls (N, T, P, K) of any kind (bool, {0, 1}, {-1, 1}) -> bool, on where > 0."""
    rolls = np.asarray(rolls)
    if rolls.ndim != 4:
        raise ValueError(f"rolls must be shaped (N, T, P, K), got {rolls.shape}")
    return rolls > 0


def pitch_classes(pitches: int, pitch_low: int = 0) -> np.ndarray:
    """(pitches,) pitch class of each pitch index of a roll whose index 0 is MIDI pitch_low."""
    return (pitch_low + np.arange(pitches)) % 12


def fold_octaves(x: np.ndarray, *, axis: int, pitch_low: int = 0, dtype=np.int64) -> np.ndarray:
    """Fold the pitch axis of x into 12 pitch classes (summing octaves): that axis becomes length 12, class 0 = C."""
    axis = axis % x.ndim
    idx = [slice(None)] * x.ndim

    def fold(c):
        idx[axis] = slice((c - pitch_low) % 12, None, 12)  # the indices whose pitch class is c
        return x[tuple(idx)].sum(axis=axis, dtype=dtype)

    return np.stack([fold(c) for c in range(12)], axis=axis)


def scale_count_key(pc_counts: np.ndarray) -> np.ndarray:
    """(N, 12) note-steps per pitch class -> (N,) tonic of the major scale holding the most (ties: lowest tonic)."""
    score = np.asarray(pc_counts) @ SCALES.T.astype(np.int64)  # (N, 12 tonics)
    return score.argmax(axis=1)  # argmax returns the first maximum: ties go to the lowest tonic


def krumhansl_key(pc_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 12) pitch-class weights -> tonic (N,), is_minor (N,) and clarity (N,) = the best correlation (0 if silent).

    Krumhansl-Schmuckler: correlate the weights with the 12 rotations of both Krumhansl-Kessler profiles.
    """
    rot = np.arange(12)
    profiles = np.concatenate([KK_MAJOR[(rot[None, :] - rot[:, None]) % 12],
                               KK_MINOR[(rot[None, :] - rot[:, None]) % 12]])  # (24 keys, 12): row t = profile on t
    profiles = profiles - profiles.mean(axis=1, keepdims=True)
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    w = pc_weight - pc_weight.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    unit = np.divide(w, norm, out=np.zeros(w.shape), where=norm > 0)
    corr = unit @ profiles.T  # (N, 24); 0 for a silent (or flat) sample
    best = corr.argmax(axis=1)
    return best % 12, best >= 12, np.maximum(corr.max(axis=1), 0.0)


def key_scale(tonic: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """(N, 12) bool: the pitch classes of each key's scale (major, or harmonic minor)."""
    rel = (np.arange(12)[None, :] - np.asarray(tonic)[:, None]) % 12
    return np.where(np.asarray(minor)[:, None], np.isin(rel, MINOR_SCALE), np.isin(rel, MAJOR_SCALE))


def krumhansl_scales(pc_weight: np.ndarray) -> np.ndarray:
    """(N, 12) pitch-class weights -> (N, 12) bool: the scale of each row's Krumhansl key."""
    tonic, minor, _ = krumhansl_key(pc_weight)
    return key_scale(tonic, minor)
