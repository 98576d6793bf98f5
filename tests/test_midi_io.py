"""data.midi_io (write_midi, read_midi, read_melody) and data.plot. Files are written into tmp_path."""
from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest

from chorus.data.midi_io import melody_notes, notes_roll, read_melody, read_rolls, roll_notes, skyline, write_midi
from chorus.data.plot import save_pianoroll_png
from chorus.data.settings import DataConfig
from chorus.data.sources import keep_top_note, read_midi_folder
from chorus.errors import InputError


def _random_roll(rng, steps=64, tracks=4):
    """Monophonic voices of 1-5 step notes with occasional rests."""
    roll = np.zeros((steps, 128, tracks), bool)
    for k in range(tracks):
        t = 0
        while t < steps:
            d = int(rng.integers(1, 6))
            if rng.random() < 0.8:
                roll[t : t + d, int(rng.integers(30, 90)), k] = True
            t += d + int(rng.integers(0, 2))
    return roll


def _notes(roll_k: np.ndarray) -> set[tuple[int, int, int]]:
    """(pitch, start step, end step) of every run of True in a (T, 128) roll."""
    padded = np.pad(roll_k.astype(np.int8), ((1, 1), (0, 0)))
    diff = np.diff(padded, axis=0)
    out = set()
    for p in range(128):
        for a, b in zip(np.nonzero(diff[:, p] > 0)[0], np.nonzero(diff[:, p] < 0)[0], strict=True):
            out.add((p, int(a), int(b)))
    return out


def _mido_notes(path: Path, steps_per_beat: int, exact: bool = False) -> list[set[tuple[int, int, int]]]:
    """(pitch, start step, end step) per MIDI track that holds notes, ticks rounded to steps (or, if exact,
    asserted to be whole steps)."""
    mid = mido.MidiFile(str(path))
    to_step = steps_per_beat / mid.ticks_per_beat
    if exact:
        per_step = mid.ticks_per_beat // steps_per_beat
        assert all((np.cumsum([m.time for m in t]) % per_step == 0).all() for t in mid.tracks)
    per_track = []
    for track in mid.tracks:
        now, started, notes = 0, {}, set()
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                started[msg.note] = now
            elif msg.type in ("note_off", "note_on"):
                notes.add((msg.note, round(started.pop(msg.note) * to_step), round(now * to_step)))
        if notes:
            per_track.append(notes)
    return per_track


@pytest.mark.parametrize("tempo", [100.0, 90.0, 123.4])
def test_write_midi_round_trips_on_exact_ticks(tmp_path, tempo):
    rng = np.random.default_rng(int(tempo))
    names = ["soprano", "alto", "tenor", "bass"]
    step_s = 60.0 / tempo / 4
    for trial in range(5):
        roll = _random_roll(rng)
        path = write_midi(roll, tmp_path / "out" / "s.mid", steps_per_beat=4, tempo=tempo,
                          programs=[0, 0, 0, 0], track_names=names)
        assert [p.name for p in path.parent.iterdir()] == ["s.mid"]  # no temp file left behind
        rolls, data = read_rolls(path, steps_per_beat=4)
        assert [t.name for t in data.pitched()] == names
        for k in range(4):
            back = np.zeros((64, 128), bool)
            back[: len(rolls[k])] = rolls[k][:64]
            assert np.array_equal(back, roll[:, :, k]), (trial, k)
        # other tools: mido sees exact tick multiples of a step (no rounding needed), pretty_midi exact seconds
        assert _mido_notes(path, 4, exact=True) == [_notes(roll[:, :, k]) for k in range(4)]
        pm = pretty_midi.PrettyMIDI(str(path))
        assert pm.get_tempo_changes()[1][0] == pytest.approx(tempo, rel=1e-4)
        for k, inst in enumerate(pm.instruments):
            got = {(n.pitch, round(n.start / step_s), round(n.end / step_s)) for n in inst.notes}
            assert got == _notes(roll[:, :, k])
            # (a tempo is whole microseconds per beat in MIDI: 90 bpm is 666,667 us, so allow that much)
            assert all(abs(n.end / step_s - round(n.end / step_s)) < 1e-4 for n in inst.notes)


def _pretty_midi_file(path: Path, roll: np.ndarray, *, bpm: float, ppq: int) -> Path:
    """Another tool's file: pretty_midi, notes placed in seconds."""
    pm = pretty_midi.PrettyMIDI(resolution=ppq, initial_tempo=bpm)
    step = 60.0 / bpm / 4
    for k in range(roll.shape[2]):
        inst = pretty_midi.Instrument(program=k)
        inst.notes += [pretty_midi.Note(90, p, a * step, b * step) for p, a, b in sorted(_notes(roll[:, :, k]))]
        pm.instruments.append(inst)
    pm.write(str(path))
    return path


def _mido_file(path: Path, roll: np.ndarray, *, bpm: float, ppq: int, tempo_change_at: int | None = None) -> Path:
    """Another tool's file: raw mido messages, note_on velocity 0 as note-off, one track per voice, and
    optionally a tempo change (to 60 bpm) at step tempo_change_at, which must not move the step grid."""
    per_step = ppq // 4
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    tempo = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))]
    if tempo_change_at is not None:
        tempo.append((tempo_change_at * per_step, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60))))
    tracks = [tempo]
    for k in range(roll.shape[2]):
        ev = []
        for p, a, b in _notes(roll[:, :, k]):
            ev += [(a * per_step, mido.Message("note_on", channel=k, note=p, velocity=64)),
                   (b * per_step, mido.Message("note_on", channel=k, note=p, velocity=0))]
        tracks.append(sorted(ev, key=lambda e: (e[0], e[1].velocity)))
    for events in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, msg in events:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


@pytest.mark.parametrize("bpm", [100.0, 120.0])
@pytest.mark.parametrize("ppq", [96, 220, 480, 960])
def test_files_of_other_tools_read_back_step_for_step(tmp_path, bpm, ppq):
    rng = np.random.default_rng(ppq + int(bpm))
    roll = _random_roll(rng, steps=48)
    files = [_pretty_midi_file(tmp_path / "pm.mid", roll, bpm=bpm, ppq=ppq),
             _mido_file(tmp_path / "mido.mid", roll, bpm=bpm, ppq=ppq),
             _mido_file(tmp_path / "tempo.mid", roll, bpm=bpm, ppq=ppq, tempo_change_at=20)]
    for path in files:
        rolls, _ = read_rolls(path, steps_per_beat=4)
        back = np.zeros_like(roll)
        for k in range(4):
            back[: len(rolls[k]), :, k] = rolls[k][:48]
        assert np.array_equal(back, roll), path.name


def test_project_files_reread_identically_through_the_midi_source(tmp_path):
    """write_midi -> data.source=midi gives the same roll, step for step (the lab-style folder loses nothing)."""
    rng = np.random.default_rng(5)
    rolls = [_random_roll(rng, steps=64) for _ in range(3)]
    for i, roll in enumerate(rolls):
        roll[-1, 40, :] = True  # every voice sounds in the last step, so the read length is 64
        write_midi(roll, tmp_path / f"{i}.mid", steps_per_beat=4, tempo=100.0, programs=[0] * 4,
                   track_names=list("satb"))
    result = read_midi_folder(DataConfig(source="midi", path=str(tmp_path)), progress=False)
    assert [p.piece_id for p in result.pieces] == ["0.mid", "1.mid", "2.mid"]
    for piece, roll in zip(result.pieces, rolls, strict=True):
        assert np.array_equal(piece.roll, roll)


def test_long_high_ppq_file_is_read_not_rejected(tmp_path):
    """A 20-minute movement at 9600 ticks per beat passes 10^7 ticks: pretty_midi calls it corrupt, we read it."""
    roll = np.zeros((4 * 1100, 128, 4), bool)  # 1100 beats
    for k in range(4):
        for beat in range(1100):
            roll[4 * beat : 4 * beat + 3, 60 + 5 * k + beat % 7, k] = True
    path = _mido_file(tmp_path / "long.mid", roll, bpm=60.0, ppq=9600)
    with pytest.raises(ValueError, match="likely corrupt"):
        pretty_midi.PrettyMIDI(str(path))
    result = read_midi_folder(DataConfig(source="midi", path=str(tmp_path)), progress=False)
    assert not result.skipped and np.array_equal(result.pieces[0].roll, roll[:-1])  # the last step is silent


def test_skyline_keeps_the_top_line_of_a_polyphonic_melody():
    notes = [(72, 0, 4), (60, 0, 8),  # accompaniment held under the melody
             (74, 4, 6),  # the melody rests at 6-8: the accompaniment must not show through
             (55, 5, 7),  # starts under a sounding higher note: dropped
             (67, 8, 12), (76, 10, 12)]  # a higher onset cuts the sounding note
    got = skyline([(a, b, p) for p, a, b in notes])
    assert got == [(0, 4, 72), (4, 6, 74), (8, 10, 67), (10, 12, 76)]
    # a roll-based top note would let the held 60 through at steps 6-8
    roll = np.zeros((12, 128), bool)
    for p, a, b in notes:
        roll[a:b, p] = True
    assert keep_top_note(roll)[6:8, 60].all()


def test_write_midi_accepts_plus_minus_one_and_checks_shape(tmp_path):
    roll = np.full((32, 128, 2), -1.0)
    roll[0:8, 60, 0] = 1.0
    roll[4:8, 48, 1] = 1.0  # (pretty_midi drops a track without notes when it reads a file)
    path = write_midi(roll, tmp_path / "pm.mid", steps_per_beat=4, tempo=100.0, programs=[0, 41],
                      track_names=["a", "b"])
    rolls, data = read_rolls(path, steps_per_beat=4)
    assert [t.program for t in data.pitched()] == [0, 41]
    assert np.argwhere(rolls[0])[:, 0].tolist() == list(range(8))
    with pytest.raises(ValueError, match="expected a roll"):
        write_midi(np.zeros((32, 128)), tmp_path / "x.mid", steps_per_beat=4, tempo=100.0, programs=[0],
                   track_names=["a"])


def _melody_file(path: Path, tracks: list[list[tuple[int, float, float]]], drums=()) -> Path:
    """(pitch, start_step, end_step) notes at 4 steps per beat, 120 bpm."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    step = 0.5 / 4
    for i, notes in enumerate(tracks):
        inst = pretty_midi.Instrument(program=0, is_drum=i in drums)
        inst.notes += [pretty_midi.Note(100, p, a * step, b * step) for p, a, b in notes]
        pm.instruments.append(inst)
    pm.write(str(path))
    return path


def test_read_melody_drops_leading_silence_and_keeps_top_note(tmp_path):
    path = _melody_file(tmp_path / "m.mid", [
        [],  # an empty first track is passed over
        [(60, 8, 12), (64, 8, 12), (62, 12, 20), (67, 24, 30)],  # chord at step 8, rest 20-24
        [(40, 0, 64)],  # later tracks are ignored
    ], drums=())
    mel = read_melody(path, steps=32, steps_per_beat=4)
    assert mel.shape == (32, 128) and mel.dtype == bool
    assert (mel.sum(axis=1) <= 1).all()
    assert mel[0:4, 64].all() and not mel[:, 60].any()  # started at step 8 -> 0; top note of the chord
    assert mel[4:12, 62].all() and not mel[12:16].any() and mel[16:22, 67].all()
    assert not mel[22:].any()  # padded with silence

    short = read_melody(path, steps=8, steps_per_beat=4)
    assert short.shape == (8, 128) and short[0:4, 64].all() and short[4:8, 62].all()


def test_read_melody_skips_drums(tmp_path):
    path = _melody_file(tmp_path / "d.mid", [[(36, 0, 4)], [(72, 4, 8)]], drums=(0,))
    mel = read_melody(path, steps=16, steps_per_beat=4)
    assert mel[0:4, 72].all() and mel.sum() == 4


def test_read_melody_of_a_single_short_note(tmp_path):
    path = _melody_file(tmp_path / "one.mid", [[(69, 2, 5)]])  # under 2 beats: pypianoroll alone fails
    mel = read_melody(path, steps=32, steps_per_beat=4)
    assert np.argwhere(mel).tolist() == [[0, 69], [1, 69], [2, 69]]


def test_read_melody_round_trips_write_midi(tmp_path):
    roll = np.zeros((32, 128, 1), bool)
    roll[0:6, 67, 0] = roll[6:8, 65, 0] = roll[8:16, 64, 0] = roll[20:32, 62, 0] = True
    path = write_midi(roll, tmp_path / "mel.mid", steps_per_beat=4, tempo=100.0, programs=[0], track_names=["m"])
    assert np.array_equal(read_melody(path, steps=32, steps_per_beat=4), roll[:, :, 0])


TWINKLE = [(60, 0, 4), (60, 4, 8), (67, 8, 12), (67, 12, 16), (69, 16, 20), (69, 20, 24), (67, 24, 28)]


def test_repeated_melody_notes_stay_separate_notes(tmp_path):
    """Twinkle (C4 C4 G4 G4 A4 A4 G4): the roll merges each repeated pair, the notes and onsets keep them, and
    write_midi with the onsets writes them as separate notes, as pretty_midi and mido read them back."""
    path = _melody_file(tmp_path / "twinkle.mid", [[(p, a + 2, b + 2) for p, a, b in TWINKLE]])  # leading rest
    notes = melody_notes(path, steps=32, steps_per_beat=4)
    assert notes == [(a, b, p) for p, a, b in TWINKLE]
    roll, onsets = notes_roll(notes, 32)
    assert np.array_equal(roll, read_melody(path, steps=32, steps_per_beat=4))
    assert roll[0:8, 60].all() and np.flatnonzero(onsets[:, 60]).tolist() == [0, 4]
    assert roll_notes(roll) == [(0, 8, 60), (8, 16, 67), (16, 24, 69), (24, 28, 67)]  # what the roll alone says
    assert roll_notes(roll, onsets) == notes
    out = write_midi(roll[:, :, None], tmp_path / "out.mid", steps_per_beat=4, tempo=100.0, programs=[0],
                     track_names=["melody"], onsets=onsets[:, :, None])
    step_s = 60.0 / 100.0 / 4
    got = [(n.pitch, round(n.start / step_s), round(n.end / step_s))
           for n in sorted(pretty_midi.PrettyMIDI(str(out)).instruments[0].notes, key=lambda n: n.start)]
    assert got == TWINKLE
    assert _mido_notes(out, 4, exact=True) == [set(TWINKLE)]
    merged = write_midi(roll[:, :, None], tmp_path / "merged.mid", steps_per_beat=4, tempo=100.0, programs=[0],
                        track_names=["melody"])  # without onsets: one note per run, as before
    assert len(pretty_midi.PrettyMIDI(str(merged)).instruments[0].notes) == 4
    with pytest.raises(ValueError, match="onsets must have the roll's shape"):
        write_midi(roll[:, :, None], tmp_path / "x.mid", steps_per_beat=4, tempo=100.0, programs=[0],
                   track_names=["m"], onsets=onsets)


def test_melody_notes_are_cut_at_the_window(tmp_path):
    """The window's last note is cut at its end, later notes are dropped; a half-note last G fills the window."""
    tune = TWINKLE[:6] + [(67, 24, 32)]
    path = _melody_file(tmp_path / "long.mid", [tune + [(65, 32, 36), (65, 36, 40)]])
    assert melody_notes(path, steps=32, steps_per_beat=4) == [(a, b, p) for p, a, b in tune]
    assert melody_notes(path, steps=26, steps_per_beat=4)[-2:] == [(20, 24, 69), (24, 26, 67)]


def test_note_ends_round_to_the_nearest_step_not_down(tmp_path):
    """pypianoroll floors note ends computed in seconds; chorus rounds ticks to the nearest step (halves up)."""
    ppq, per_step = 480, 120
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100.0))])
    # (pitch, start tick, end tick, expected end step)
    cases = [(60, 0, 4 * per_step - 1, 4), (62, 0, 3 * per_step + 60, 4), (64, 0, 3 * per_step + 59, 3),
             (65, 0, 4 * per_step + 1, 4)]
    ev = []
    for p, a, b, _ in cases:
        ev += [(a, mido.Message("note_on", note=p, velocity=64)), (b, mido.Message("note_off", note=p))]
    now = 0
    for tick, msg in sorted(ev, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - now))
        now = tick
    mid.tracks.append(track)
    mid.save(str(tmp_path / "ends.mid"))
    rolls, _ = read_rolls(tmp_path / "ends.mid", steps_per_beat=4)
    for p, _, _, end in cases:
        assert np.flatnonzero(rolls[0][:, p]).tolist() == list(range(end)), p  # a floor would lose a step


def test_read_melody_errors(tmp_path):
    empty = _melody_file(tmp_path / "empty.mid", [[]])
    with pytest.raises(InputError, match=r"empty.mid: no notes found; expected a one-track melody"):
        read_melody(empty, steps=32, steps_per_beat=4)
    drums = _melody_file(tmp_path / "drums.mid", [[(36, 0, 4)]], drums=(0,))
    with pytest.raises(InputError, match="drums.mid: no notes found outside drum tracks"):
        read_melody(drums, steps=32, steps_per_beat=4)
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(InputError, match="junk.mid: cannot read as MIDI"):
        read_melody(junk, steps=32, steps_per_beat=4)
    with pytest.raises(InputError, match="missing.mid: MIDI file not found"):
        read_melody(tmp_path / "missing.mid", steps=32, steps_per_beat=4)


def test_save_pianoroll_png(tmp_path):
    roll = np.zeros((32, 128, 4), bool)
    for k in range(4):
        roll[:, 72 - 7 * k + (np.arange(32) // 4) % 3, k] = False
        roll[np.arange(32), 72 - 7 * k + (np.arange(32) // 4) % 3, k] = True
    path = save_pianoroll_png(roll, tmp_path / "png" / "s.png", track_names=["s", "a", "t", "b"], steps_per_beat=4,
                              steps_per_bar=16, title="sample")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["s.png"]
    silent = save_pianoroll_png(np.zeros((32, 128, 2), bool), tmp_path / "silent.png", track_names=["x", "y"],
                                steps_per_beat=4, steps_per_bar=16)
    assert silent.stat().st_size > 0
    held = np.zeros((32, 128, 1), bool)
    held[0:8, 60, 0] = True
    onsets = np.zeros_like(held)
    onsets[[0, 4], 60, 0] = True  # two notes of one pitch: a line splits the bar
    one = save_pianoroll_png(held, tmp_path / "one.png", track_names=["m"], steps_per_beat=4, steps_per_bar=16)
    two = save_pianoroll_png(held, tmp_path / "two.png", track_names=["m"], steps_per_beat=4, steps_per_bar=16,
                             onsets=onsets)
    assert one.read_bytes() != two.read_bytes()
