"""MIDI in and out, through pypianoroll 1.0.4 (whose API differs from 0.5.x; see reference.md).

- ``write_midi``: a bool piano roll (T, 128, K) -> a K-track MIDI file, written atomically.
- ``read_melody``: a user's one-track melody MIDI -> a bool (steps, 128) condition for the generator.
- ``read_multitrack``: pypianoroll.read with errors that say what is wrong (unreadable vs. no notes).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from chorus.data.errors import InputError
from chorus.data.files import atomic_path
from chorus.data.sources import PITCHES, keep_top_note

DEFAULT_VELOCITY = 80


def write_midi(
    roll: np.ndarray,
    path: str | Path,
    *,
    steps_per_beat: int,
    tempo: float,
    programs: list[int],
    track_names: list[str],
) -> Path:
    """Write a bool roll (T, 128, K) as a K-track MIDI file (one note per run of True steps); return the path.

    Non-bool input is binarized at > 0. The file starts with a 4/4 time signature at time 0, so that
    pypianoroll.read puts step 0 on the first beat and reads the same notes back (trailing silence aside; a
    track without notes is written empty, and pretty_midi/pypianoroll drop it when reading). ``tempo`` is in beats per
    minute; ``programs`` are General MIDI programs, one per track. Written atomically (data.files).
    """
    import pypianoroll
    from pretty_midi import TimeSignature

    roll = np.asarray(roll)
    if roll.ndim != 3 or roll.shape[1] != PITCHES:
        raise ValueError(f"write_midi: expected a roll (T, {PITCHES}, K), got shape {roll.shape}")
    if roll.dtype != bool:
        roll = roll > 0
    t, _, k = roll.shape
    if len(programs) != k or len(track_names) != k:
        raise ValueError(f"write_midi: need {k} programs and track names, got {len(programs)} and {len(track_names)}")
    tracks = [
        pypianoroll.BinaryTrack(name=str(track_names[i]), program=int(programs[i]), pianoroll=roll[:, :, i])
        for i in range(k)
    ]
    # A 1-D tempo array: pypianoroll 1.0.4's write() fails under NumPy 2 on the 2-D tempo that read() returns.
    mt = pypianoroll.Multitrack(resolution=steps_per_beat, tempo=np.full(t, float(tempo)), tracks=tracks)
    pm = pypianoroll.to_pretty_midi(mt, default_tempo=float(tempo), default_velocity=DEFAULT_VELOCITY)
    pm.time_signature_changes = [TimeSignature(4, 4, 0.0)]
    # pypianoroll.read floors note-off positions, so an end that float rounding puts a hair before its step
    # boundary loses a whole step (e.g. at 100 bpm). End every note one MIDI tick late (1/220 beat): the
    # file reads back with the same steps in pypianoroll and, rounding ticks to steps, in mido.
    tick = 60.0 / (float(tempo) * pm.resolution)
    for inst in pm.instruments:
        for note in inst.notes:
            note.end += tick
    with atomic_path(path) as tmp:
        pm.write(str(tmp))
    return Path(path)


def read_multitrack(path: str | Path, *, steps_per_beat: int):
    """pypianoroll.read(path, resolution=steps_per_beat), done as its two steps (pretty_midi parse, then
    pypianoroll.from_pretty_midi) so that an unreadable file and a file without notes fail with different
    InputErrors naming the file."""
    import pypianoroll
    from pretty_midi import PrettyMIDI, Text

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: MIDI file not found")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretty_midi warns about meta events on non-zero tracks
        try:
            pm = PrettyMIDI(str(path))
        except Exception as e:
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            raise InputError(f"{path.name}: cannot read as MIDI ({msg})") from None
        if not any(inst.notes for inst in pm.instruments):
            raise InputError(f"{path.name}: no notes found")
        # pypianoroll 1.0.4 raises IndexError on music shorter than 2 beats; a silent text event at beat 2
        # lengthens the beat grid (the roll gains trailing silence, nothing else).
        beats = pm.get_beats()
        if len(beats) < 2:
            first = float(beats[0]) if len(beats) else 0.0
            pm.text_events.append(Text("", first + 2 * 60.0 / float(pm.get_tempo_changes()[1][0])))
        try:
            return pypianoroll.from_pretty_midi(pm, resolution=steps_per_beat)
        except Exception as e:
            msg = " ".join(f"{type(e).__name__}: {e}".split())
            raise InputError(f"{path.name}: cannot turn into a piano roll ({msg})") from None


def read_melody(path: str | Path, *, steps: int, steps_per_beat: int) -> np.ndarray:
    """A user's melody MIDI -> bool (steps, 128), the generator's condition.

    Takes the first non-drum track that has notes (other tracks are ignored), binarizes it, keeps the top note
    where it is polyphonic, drops the leading silence and keeps ``steps`` steps, padding with silence if the
    melody is shorter.
    """
    name = Path(path).name
    expected = "expected a one-track melody"
    try:
        mt = read_multitrack(path, steps_per_beat=steps_per_beat)
    except InputError as e:
        raise InputError(f"{e}; {expected}") from None
    for track in mt.tracks:
        if not track.is_drum and track.pianoroll.size and (track.pianoroll > 0).any():
            roll = keep_top_note(track.pianoroll > 0)  # (T, 128)
            break
    else:
        raise InputError(f"{name}: no notes found outside drum tracks; {expected}")
    first = int(np.argmax(roll.any(axis=1)))  # first sounding step
    roll = roll[first : first + steps]
    out = np.zeros((steps, PITCHES), dtype=bool)  # (steps, pitches)
    out[: len(roll)] = roll
    return out
