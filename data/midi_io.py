"""MIDI in and out, on MIDI ticks (through mido, the parser pretty_midi itself uses).

- ``read_midi``: a MIDI file -> ``MidiData``: its tracks' notes in ticks, the tempo map, the ticks per beat.
- ``MidiData.roll`` / ``MidiTrack.roll``: notes -> bool (steps, 128) with starts and ends rounded to the NEAREST
  step. Steps follow the beat (ticks / ticks-per-beat), so tempo changes never move the grid and float seconds
  never enter: pypianoroll 1.0.4 floors note ends computed from seconds (0.6 s / 0.15 s = 3.9999 loses a step).
- ``melody_notes`` / ``read_melody``: a user's melody MIDI -> its (start, end, pitch) notes in steps within the
  window / the bool (steps, 128) condition built from them; where the melody track is polyphonic a skyline over
  its NOTES keeps the top line (a lower note never shows through when a higher one ends).
- ``write_midi``: a bool piano roll (T, 128, K) -> a K-track MIDI file with exact tick positions, written atomically.
  A roll alone merges a repeated note into one held note; ``onsets`` (T, 128, K) restores the note boundaries
  (``notes_roll`` makes both from notes, ``roll_notes`` reads notes back from both).

Reading does not go through pretty_midi.PrettyMIDI: its guard (MAX_TICK = 1e7) rejects long valid files at high
PPQ (a quartet movement at 9600 ticks per beat) as "likely corrupt", and it builds a per-tick time table. Tracks
are grouped like pretty_midi's instruments: one per (MIDI track, channel, program) that holds notes, in file order;
channel 10 is drums.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chorus.data.sources import PITCHES
from chorus.errors import InputError
from chorus.files import atomic_path

DEFAULT_VELOCITY = 80
WRITE_PPQ = 480  # ticks per beat of written files (divisible by 1, 2, 3, 4, 5, 6, 8, ... steps per beat)
READER_VERSION = 2  # bump when reading a MIDI file gives different rolls; part of the dataset cache key
DRUM_CHANNEL = 9


@dataclass
class MidiTrack:
    name: str
    program: int
    is_drum: bool
    notes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (start tick, end tick, pitch, velocity)

    def step_notes(self, ppq: int, steps_per_beat: int) -> list[tuple[int, int, int]]:
        """(start step, end step, pitch), rounded to the nearest step; notes shorter than half a step vanish."""
        out = []
        for a, b, pitch, _ in self.notes:
            sa, sb = _to_step(a, ppq, steps_per_beat), _to_step(b, ppq, steps_per_beat)
            if sb > sa:
                out.append((sa, sb, pitch))
        return out

    def roll(self, ppq: int, steps_per_beat: int, length: int | None = None) -> np.ndarray:
        notes = self.step_notes(ppq, steps_per_beat)
        n = length if length is not None else max((b for _, b, _ in notes), default=0)
        roll = np.zeros((n, PITCHES), dtype=bool)  # (steps, pitches)
        for a, b, pitch in notes:
            roll[a:b, pitch] = True
        return roll


@dataclass
class MidiData:
    ppq: int  # ticks per beat
    tempos: list[tuple[int, int]]  # (tick, microseconds per beat), sorted, starting at tick 0
    tracks: list[MidiTrack]

    def pitched(self) -> list[MidiTrack]:
        """Non-drum tracks that hold notes, in file order."""
        return [t for t in self.tracks if not t.is_drum and t.notes]

    def seconds(self, ticks) -> np.ndarray:
        """Ticks -> seconds through the tempo map."""
        ticks = np.asarray(ticks, dtype=np.float64)
        starts = np.array([t for t, _ in self.tempos], dtype=np.float64)
        per_tick = np.array([us for _, us in self.tempos], dtype=np.float64) / 1e6 / self.ppq
        offsets = np.concatenate([[0.0], np.cumsum(np.diff(starts) * per_tick[:-1])])
        i = np.searchsorted(starts, ticks, side="right") - 1
        return offsets[i] + (ticks - starts[i]) * per_tick[i]


def _to_step(tick: int, ppq: int, steps_per_beat: int) -> int:
    """Nearest step (halves round up), in integers: no float error at any PPQ."""
    return (2 * tick * steps_per_beat + ppq) // (2 * ppq)


def read_midi(path: str | Path) -> MidiData:
    """Parse a MIDI file. InputError naming the file if it is missing, unreadable, or holds no notes."""
    import mido

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: MIDI file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mid = mido.MidiFile(str(path))
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError... on a broken file
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        raise InputError(f"{path.name}: cannot read as MIDI ({msg})") from None
    if mid.type == 2 or not mid.ticks_per_beat or mid.ticks_per_beat <= 0:
        raise InputError(f"{path.name}: cannot read as MIDI (type {mid.type}, ticks per beat {mid.ticks_per_beat}; "
                         "expected a type 0 or 1 file with a metrical time division)")
    tempos: dict[int, int] = {}
    tracks: list[MidiTrack] = []
    for track in mid.tracks:
        now, name, programs = 0, "", [0] * 16
        open_notes: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (channel, pitch) -> [(start, velocity)]
        groups: dict[tuple[int, int], MidiTrack] = {}  # (channel, program) -> track, in order of first note
        for msg in track:
            now += msg.time
            if msg.type == "set_tempo":
                tempos[now] = msg.tempo  # a later event at the same tick wins
            elif msg.type == "track_name" and not name:
                name = msg.name
            elif msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "note_on" and msg.velocity > 0:
                open_notes.setdefault((msg.channel, msg.note), []).append((now, msg.velocity))
            elif msg.type in ("note_off", "note_on"):  # note_on with velocity 0 is a note-off
                started = open_notes.pop((msg.channel, msg.note), [])
                later = [s for s in started if s[0] >= now]  # started at this very tick: still open
                if later:
                    open_notes[(msg.channel, msg.note)] = later
                for start, velocity in started:
                    if start < now:
                        key = (msg.channel, programs[msg.channel])
                        if key not in groups:
                            groups[key] = MidiTrack(name, key[1], msg.channel == DRUM_CHANNEL)
                        groups[key].notes.append((start, now, msg.note, velocity))
        for t in groups.values():
            t.name = name
            t.notes.sort()
        tracks.extend(groups.values())
    if not any(t.notes for t in tracks):
        raise InputError(f"{path.name}: no notes found")
    tempos.setdefault(0, 500_000)  # MIDI's default: 120 bpm until the first set_tempo
    return MidiData(int(mid.ticks_per_beat), sorted(tempos.items()), tracks)


def read_rolls(path: str | Path, *, steps_per_beat: int) -> tuple[list[np.ndarray], MidiData]:
    """Bool rolls (steps, 128) of the pitched tracks with notes at this resolution, all as long as the longest."""
    data = read_midi(path)
    notes = [n for n in (t.step_notes(data.ppq, steps_per_beat) for t in data.pitched()) if n]
    length = max((b for track in notes for _, b, _ in track), default=0)
    rolls = []
    for track in notes:
        roll = np.zeros((length, PITCHES), dtype=bool)  # (steps, pitches)
        for a, b, pitch in track:
            roll[a:b, pitch] = True
        rolls.append(roll)
    return rolls, data


def skyline(notes: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The top line of (start, end, pitch) notes: at each onset the highest new note wins; a note that starts
    under a higher sounding note is dropped; a higher onset cuts the sounding note. Lower notes never resume."""
    out: list[list[int]] = []
    for a, b, pitch in sorted(notes, key=lambda n: (n[0], -n[2], -n[1])):
        if out and out[-1][0] == a:  # same onset, lower (or shorter) note
            continue
        if out and out[-1][1] > a and out[-1][2] > pitch:  # under a higher sounding note
            continue
        if out and out[-1][1] > a:
            out[-1][1] = a
        out.append([a, b, pitch])
    return [(a, b, p) for a, b, p in out]


def melody_notes(path: str | Path, *, steps: int, steps_per_beat: int) -> list[tuple[int, int, int]]:
    """A user's melody MIDI -> its (start step, end step, pitch) notes in the window, in order.

    Takes the first non-drum track that has notes (other tracks are ignored), keeps its top line where it is
    polyphonic (``skyline``), drops the leading silence and keeps the notes that sound in the first ``steps``
    steps, the last one cut at the window's end. A repeated pitch stays two notes.
    """
    name = Path(path).name
    expected = "expected a one-track melody"
    try:
        data = read_midi(path)
    except InputError as e:
        raise InputError(f"{e}; {expected}") from None
    tracks = data.pitched()
    notes = skyline(tracks[0].step_notes(data.ppq, steps_per_beat)) if tracks else []
    if not notes:
        raise InputError(f"{name}: no notes found outside drum tracks; {expected}")
    first = notes[0][0]  # leading silence dropped
    return [(a - first, min(b - first, steps), pitch) for a, b, pitch in notes if a - first < steps]


def notes_roll(notes: list[tuple[int, int, int]], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end, pitch) notes -> bool (steps, 128) roll and bool (steps, 128) onsets (each note's first step)."""
    roll = np.zeros((steps, PITCHES), dtype=bool)  # (steps, pitches)
    onsets = np.zeros((steps, PITCHES), dtype=bool)
    for a, b, pitch in notes:
        a, b = max(a, 0), min(b, steps)
        if b > a:
            roll[a:b, pitch] = onsets[a, pitch] = True
    return roll, onsets


def read_melody(path: str | Path, *, steps: int, steps_per_beat: int) -> np.ndarray:
    """A user's melody MIDI -> bool (steps, 128), the generator's condition: the roll of ``melody_notes``
    (padded with silence if the melody is shorter)."""
    return notes_roll(melody_notes(path, steps=steps, steps_per_beat=steps_per_beat), steps)[0]


def _runs(column: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of every run of True in a 1-D bool array."""
    diff = np.diff(np.concatenate([[0], column.astype(np.int8), [0]]))
    return list(zip(np.nonzero(diff > 0)[0].tolist(), np.nonzero(diff < 0)[0].tolist(), strict=True))


def roll_notes(roll: np.ndarray, onsets: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """(start, end, pitch) notes of one track's bool roll (T, 128), sorted: one note per run of True steps, split
    where ``onsets`` (T, 128) marks a new note inside a run (a repeated note). Onsets on silent steps are ignored."""
    out = []
    for pitch in np.flatnonzero(roll.any(axis=0)).tolist():
        for a, b in _runs(roll[:, pitch]):
            cuts = [a] + ([] if onsets is None else (np.flatnonzero(onsets[a + 1 : b, pitch]) + a + 1).tolist())
            out += [(s, e, pitch) for s, e in zip(cuts, [*cuts[1:], b], strict=True)]
    return sorted(out)


def write_midi(
    roll: np.ndarray,
    path: str | Path,
    *,
    steps_per_beat: int,
    tempo: float,
    programs: list[int],
    track_names: list[str],
    onsets: np.ndarray | None = None,
) -> Path:
    """Write a bool roll (T, 128, K) as a type-1 MIDI file with K note tracks; return the path.

    One note per run of True steps (``roll_notes``), and a new note wherever ``onsets`` (bool (T, 128, K), or
    None) marks one inside a run, so a repeated note stays two notes. Notes sit on exact ticks (WRITE_PPQ ticks
    per beat, or a multiple of steps_per_beat), so any reader that maps ticks to the nearest step reads the same
    roll (and notes) back. Track 0 holds the tempo (``tempo`` beats per minute) and a 4/4 time signature; track
    k+1 holds voice k on channel k (skipping the drum channel) with its name and General MIDI program. Non-bool
    input is binarized at > 0. Written atomically (chorus.files).
    """
    import mido

    roll = np.asarray(roll)
    if roll.ndim != 3 or roll.shape[1] != PITCHES:
        raise ValueError(f"write_midi: expected a roll (T, {PITCHES}, K), got shape {roll.shape}")
    if roll.dtype != bool:
        roll = roll > 0
    k = roll.shape[2]
    if len(programs) != k or len(track_names) != k:
        raise ValueError(f"write_midi: need {k} programs and track names, got {len(programs)} and {len(track_names)}")
    if onsets is not None and np.shape(onsets) != roll.shape:
        raise ValueError(f"write_midi: onsets must have the roll's shape {roll.shape}, got {np.shape(onsets)}")
    ppq = WRITE_PPQ if WRITE_PPQ % steps_per_beat == 0 else WRITE_PPQ * steps_per_beat
    ticks = ppq // steps_per_beat
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    mid.tracks.append(mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(float(tempo)), time=0),
        mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0),
    ]))
    channels = [c for c in range(16) if c != DRUM_CHANNEL]
    for i in range(k):
        ch = channels[i % len(channels)]
        events = []  # (tick, order: offs before ons at one tick, message)
        for a, b, pitch in roll_notes(roll[:, :, i], None if onsets is None else np.asarray(onsets)[:, :, i] > 0):
            events.append((a * ticks, 1, mido.Message("note_on", channel=ch, note=pitch, velocity=DEFAULT_VELOCITY)))
            events.append((b * ticks, 0, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1], e[2].note))
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=str(track_names[i]), time=0),
                                mido.Message("program_change", channel=ch, program=int(programs[i]), time=0)])
        now = 0
        for tick, _, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    with atomic_path(path) as tmp:
        mid.save(str(tmp))
    return Path(path)
