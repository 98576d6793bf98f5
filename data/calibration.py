"""Calibration of music_distance: how far real windows are from the holdout, and how far broken ones are.

Each corruption takes bool windows (N, T, P, K), voices top to bottom, and returns broken copies that a musician
would call wrong. calibrate() scores them, a second real sample, against the holdout.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from chorus.data.music_basics import fold_octaves, krumhansl_scales, pitch_classes
from chorus.data.objective import features, music_distance


@dataclass(frozen=True)
class Meter:
    steps_per_beat: int = 4
    steps_per_bar: int = 16


Corruption = Callable[[np.ndarray, np.random.Generator, Meter], np.ndarray]


def shift_pitch(x: np.ndarray, semitones) -> np.ndarray:
    """Shift the pitch axis (2) of x (N, T, P, ...) by semitones (a number, or an array broadcast over (N, T));
    notes pushed out of range are dropped."""
    n, t, p = x.shape[:3]
    s = np.broadcast_to(np.asarray(semitones), (n, t))
    src = np.arange(p)[None, None, :] - s[:, :, None]  # (N, T, P) source pitch of each target pitch
    ok = (src >= 0) & (src < p)
    out = np.take_along_axis(x, src.clip(0, p - 1).reshape(n, t, p, *([1] * (x.ndim - 3))), axis=2)
    return out & ok.reshape(n, t, p, *([1] * (x.ndim - 3)))


def _note_ids(v: np.ndarray) -> np.ndarray:
    """(N, T, P) one voice -> (N, T) index of the note (onset count so far) each step belongs to."""
    prev = np.concatenate([np.zeros_like(v[:, :1]), v[:, :-1]], axis=1)
    return np.cumsum((v & ~prev).any(axis=2), axis=1)


def _per_note(v: np.ndarray, rng: np.random.Generator, draw: Callable[[int], np.ndarray]) -> np.ndarray:
    """(N, T) values drawn once per note of voice v (N, T, P)."""
    ids = _note_ids(v)
    values = draw(v.shape[0] * (ids.max() + 1)).reshape(v.shape[0], ids.max() + 1)
    return np.take_along_axis(values, ids, axis=1)


def _key_pitches(x: np.ndarray) -> np.ndarray:
    """(N, P) bool: the pitches in each window's estimated key scale (major or harmonic minor)."""
    pc = fold_octaves(x.sum(axis=(1, 3)), axis=1).astype(float)  # (N, 12) note-steps per pitch class
    return krumhansl_scales(pc)[:, pitch_classes(x.shape[2])]


def _voice_range(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) lowest and highest pitch of voice v (N, T, P); 60..72 where it is silent."""
    any_p = v.any(axis=1)
    p = v.shape[2]
    lo = np.where(any_p.any(axis=1), np.argmax(any_p, axis=1), 60)
    hi = np.where(any_p.any(axis=1), p - 1 - np.argmax(any_p[:, ::-1], axis=1), 72)
    return lo, hi


def silence(x, rng, meter):
    return np.zeros_like(x)


def random_notes(x, rng, meter):
    """Uniformly random cells, as many per voice as the real windows have."""
    density = x.mean(axis=(0, 1, 2), keepdims=True)
    return rng.random(x.shape) < density


def time_permuted(x, rng, meter):
    """The steps of each window in a random order (rhythm and melody destroyed, chords kept)."""
    return np.stack([w[rng.permutation(x.shape[1])] for w in x])


def reversed_in_time(x, rng, meter):
    """The whole window played backwards, melody included: every chord and interval kept, time's direction lost
    (resolutions become preparations, cadences run from tonic to dominant)."""
    return x[:, ::-1].copy()


def voices_reversed(x, rng, meter):
    return x[..., ::-1].copy()


def unison(x, rng, meter):
    return np.repeat(x[..., :1], x.shape[3], axis=3)


def lower_transposed(x, rng, meter):
    """Every lower voice transposed by its own random interval of 1 to 11 semitones up or down."""
    out = x.copy()
    for k in range(1, x.shape[3]):
        s = rng.integers(1, 12, size=(len(x), 1)) * rng.choice([-1, 1], size=(len(x), 1))
        out[..., k] = shift_pitch(x[..., k], s)
    return out


def tritone_lower(x, rng, meter):
    """The lower voices together a tritone away from the melody (each chord fine, against the tune wrong)."""
    out = x.copy()
    out[..., 1:] = shift_pitch(x[..., 1:], 6 * rng.choice([-1, 1], size=(len(x), 1)))
    return out


def held_chords(x, rng, meter):
    """Every voice holds what it plays on each bar's downbeat for the whole bar (whole notes, no rhythm)."""
    bar = meter.steps_per_bar
    out = x.copy()
    for start in range(0, x.shape[1], bar):
        out[:, start:start + bar] = x[:, start:start + 1]
    return out


def melody_octaves(x, rng, meter):
    """Half of the melody's notes moved an octave up or down."""
    out = x.copy()
    s = _per_note(x[..., 0], rng, lambda m: rng.choice([-12, 0, 0, 12], size=m))
    out[..., 0] = shift_pitch(x[..., 0], s)
    return out


def random_walks_in_key(x, rng, meter):
    """Every voice a random walk over the key's scale in its own register, one note per beat."""
    n, t, p, k = x.shape
    in_key = _key_pitches(x)
    out = np.zeros_like(x)
    for v in range(k):
        lo, hi = _voice_range(x[..., v])
        for i in range(n):
            choices = np.nonzero(in_key[i, lo[i]:hi[i] + 1])[0] + lo[i]
            choices = choices if choices.size else np.array([lo[i]])
            idx = rng.integers(len(choices))
            for beat in range(0, t, meter.steps_per_beat):
                idx = int(np.clip(idx + rng.integers(-2, 3), 0, len(choices) - 1))
                out[i, beat:beat + meter.steps_per_beat, choices[idx], v] = True
    return out


def parallel_perfect(x, rng, meter):
    """Lower voices = the melody a fifth, an octave and an octave and a fifth below: parallels everywhere."""
    out = x.copy()
    for v, s in zip(range(1, x.shape[3]), (-7, -12, -19, -24, -31), strict=False):
        out[..., v] = shift_pitch(x[..., 0], s)
    return out


def alto_tenor_swapped(x, rng, meter):
    out = x.copy()
    out[..., 1], out[..., 2] = x[..., 2], x[..., 1]
    return out


def semitone_jitter(x, rng, meter):
    """Half of the notes of every voice moved a semitone up or down."""
    out = x.copy()
    for v in range(x.shape[3]):
        s = _per_note(x[..., v], rng, lambda m: rng.choice([-1, 0, 0, 1], size=m))
        out[..., v] = shift_pitch(x[..., v], s)
    return out


def clusters(x, rng, meter):
    """Lower voices one, two and three semitones under the melody: chromatic clusters."""
    out = x.copy()
    for v in range(1, x.shape[3]):
        out[..., v] = shift_pitch(x[..., 0], -v)
    return out


def random_chord_tones(x, rng, meter):
    """The real melody over lower voices that pick random in-key pitches of their register on every beat."""
    n, t, p, k = x.shape
    in_key = _key_pitches(x)
    out = x.copy()
    for v in range(1, k):
        lo, hi = _voice_range(x[..., v])
        out[..., v] = False
        for i in range(n):
            choices = np.nonzero(in_key[i, lo[i]:hi[i] + 1])[0] + lo[i]
            choices = choices if choices.size else np.array([lo[i]])
            for beat in range(0, t, meter.steps_per_beat):
                out[i, beat:beat + meter.steps_per_beat, rng.choice(choices), v] = True
    return out


def mismatched_melody(x, rng, meter):
    """The real lower voices under the melody of another window: a generator that ignores its melody."""
    out = x.copy()
    out[..., 0] = x[np.roll(np.arange(len(x)), 1), :, :, 0]
    return out


def lower_voices_late(x, rng, meter):
    """The lower voices one beat late against the melody."""
    b = meter.steps_per_beat
    out = x.copy()
    out[:, b:, :, 1:] = x[:, :-b, :, 1:]
    out[:, :b, :, 1:] = False
    return out


def staccato(x, rng, meter):
    """Every note cut to its first step (a sixteenth), the rest of it silent."""
    out = x.copy()
    out[:, 1:] &= ~x[:, :-1]
    return out


def melody_semitone(x, rng, meter):
    """The melody a semitone up against the real lower voices."""
    out = x.copy()
    out[..., 0] = shift_pitch(x[..., 0], 1)
    return out


def bass_octave_up(x, rng, meter):
    """The bass an octave higher, into the tenor's and alto's register."""
    out = x.copy()
    out[..., -1] = shift_pitch(x[..., -1], 12)
    return out


CORRUPTIONS: dict[str, tuple[str, Corruption]] = {
    "silence": ("every voice silent", silence),
    "random_notes": ("uniformly random notes, real density", random_notes),
    "time_permuted": ("time steps permuted (rhythm destroyed)", time_permuted),
    "reversed": ("the whole window backwards in time, melody included", reversed_in_time),
    "voices_reversed": ("voices reversed (bass on top)", voices_reversed),
    "unison": ("all four voices = the soprano", unison),
    "lower_transposed": ("A, T, B each transposed by its own random interval", lower_transposed),
    "tritone_lower": ("A, T, B together a tritone away from the soprano", tritone_lower),
    "held_chords": ("each bar's downbeat chord held for the bar (whole notes)", held_chords),
    "melody_octaves": ("half the melody notes displaced by an octave", melody_octaves),
    "random_walks_in_key": ("every voice a random walk in key, one note per beat", random_walks_in_key),
    "parallel_perfect": ("A, T, B = soprano a 5th, 8ve, 12th below (parallels)", parallel_perfect),
    "alto_tenor_swapped": ("alto and tenor swapped", alto_tenor_swapped),
    "semitone_jitter": ("half the notes of each voice moved a semitone", semitone_jitter),
    "clusters": ("A, T, B 1, 2, 3 semitones under the soprano (clusters)", clusters),
    "random_chord_tones": ("real soprano, random in-key pitches below per beat", random_chord_tones),
    "mismatched_melody": ("real lower voices under another window's melody", mismatched_melody),
    "lower_voices_late": ("A, T, B one beat late against the soprano", lower_voices_late),
    "staccato": ("every note cut to one sixteenth", staccato),
    "melody_semitone": ("the melody a semitone up against the real lower voices", melody_semitone),
    "bass_octave_up": ("the bass an octave up, into the tenor's register", bass_octave_up),
}


@dataclass
class Row:
    name: str
    description: str
    distance: float
    ratio: float  # distance / real-vs-real


def calibrate(holdout: np.ndarray, reference: np.ndarray, rng: np.random.Generator, *, n: int = 64,
              steps_per_bar: int = 16, steps_per_beat: int = 4) -> list[Row]:
    """music_distance against the holdout of: n reference windows (real vs real, the unit of the ratios), another
    n reference windows (a second real sample), and each corruption of n holdout windows.

    reference: real windows from other pieces (e.g. the train split), at least 2 n of them.
    """
    kw = dict(steps_per_bar=steps_per_bar, steps_per_beat=steps_per_beat)
    meter = Meter(steps_per_beat=steps_per_beat, steps_per_bar=steps_per_bar)
    ref_features = features(holdout, **kw)

    def score(x: np.ndarray) -> float:
        return music_distance(x, None, ref_features=ref_features, **kw)

    if len(reference) < 2 * n:
        raise ValueError(f"calibrate needs at least {2 * n} reference windows, got {len(reference)}")
    pick = rng.permutation(len(reference))
    base = score(reference[pick[:n]])
    rows = [Row("real", "real windows of other pieces (the unit)", base, 1.0)]
    second = score(reference[pick[n:2 * n]])
    rows.append(Row("real_again", "a second sample of real windows", second, second / base))
    sample = holdout[rng.choice(len(holdout), size=n, replace=n > len(holdout))]
    for name, (description, corrupt) in CORRUPTIONS.items():
        d = score(corrupt(sample, rng, meter))
        rows.append(Row(name, description, d, d / base))
    return rows


def format_rows(rows: list[Row]) -> str:
    """A Markdown table of calibrate's rows."""
    lines = ["| case | music_distance | x real |", "|---|---:|---:|"]
    lines += [f"| {r.description} (`{r.name}`) | {r.distance:.3f} | {r.ratio:.1f} |" for r in rows]
    return "\n".join(lines)
