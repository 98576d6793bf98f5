"""data.sources: chorales, MIDI folders, .npy/.npz arrays, windowing. MIDI fixtures are written into tmp_path."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from chorus.data.settings import DataConfig
from chorus.data.sources import (
    WindowStats,
    chorale_roll,
    keep_top_note,
    load_array,
    make_windows,
    read_chorales,
    read_midi_folder,
    read_pieces,
)
from chorus.errors import InputError


def write_midi_file(path: Path, tracks: list[list[tuple[int, float, float]]], *, drums: tuple[int, ...] = ()) -> Path:
    """tracks: one list per instrument of (pitch, start_beat, end_beat); 120 bpm, 4/4 at time 0."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    for i, notes in enumerate(tracks):
        inst = pretty_midi.Instrument(program=0, is_drum=i in drums, name=f"t{i}")
        inst.notes += [pretty_midi.Note(velocity=90, pitch=p, start=a * 0.5, end=b * 0.5) for p, a, b in notes]
        pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def four_voices(bars: int) -> list[list[tuple[int, float, float]]]:
    """Quarter notes in 4 voices over `bars` bars of 4/4, every voice always sounding."""
    return [[(72 - 7 * k + b % 3, float(b), float(b + 1)) for b in range(4 * bars)] for k in range(4)]


# ---------------------------------------------------------------------------------------------------------------
# chorales


def _score_with_pickup():
    """4 parts, 4/4, a one-beat pickup (measure 0), then two full bars; the alto has a chord in bar 1."""
    from music21 import chord, meter, note, stream

    score = stream.Score()
    for k in range(4):
        part = stream.Part()
        m0 = stream.Measure(number=0)
        m0.append(meter.TimeSignature("4/4"))
        m0.append(note.Note(50 + k, quarterLength=1))  # the pickup: dropped
        part.append(m0)
        m1 = stream.Measure(number=1)
        if k == 1:
            m1.append(chord.Chord([64, 67], quarterLength=2))  # chord -> top note 67
            m1.append(note.Note(65, quarterLength=2))
        else:
            m1.append(note.Note(70 - 5 * k, quarterLength=4))
        part.append(m1)
        m2 = stream.Measure(number=2)
        m2.append(note.Note(60 - k, quarterLength=4))
        part.append(m2)
        score.insert(0, part)
    return score


def test_chorale_roll_starts_on_measure_one_and_keeps_top_note():
    roll, reason = chorale_roll(_score_with_pickup(), steps_per_beat=4)
    assert reason == ""
    assert roll.shape == (32, 128, 4) and roll.dtype == bool  # 2 bars after the pickup
    assert roll[0, 70, 0] and roll[15, 70, 0] and roll[16, 60, 0]  # step 0 = downbeat of measure 1
    assert not roll[:, 50:54, :].any()  # pickup notes gone
    assert roll[0:8, 67, 1].all() and not roll[:, 64, 1].any()  # chord kept its top note
    assert roll[8:16, 65, 1].all()
    assert (roll.sum(axis=1) == 1).all()  # every voice monophonic and sounding


def test_chorale_roll_rejects_wrong_parts_and_meter():
    from music21 import meter, note, stream

    score = _score_with_pickup()
    score.remove(score.parts[3])
    assert chorale_roll(score, steps_per_beat=4)[1].startswith("3 parts")
    waltz = stream.Score()
    for _ in range(4):
        part = stream.Part()
        m = stream.Measure(number=1)
        m.append(meter.TimeSignature("3/4"))
        m.append(note.Note(60, quarterLength=3))
        part.append(m)
        waltz.insert(0, part)
    roll, reason = chorale_roll(waltz, steps_per_beat=4)
    assert roll is None and "3/4" in reason


def test_chorales_from_corpus_give_bar_aligned_four_track_windows():
    cfg = DataConfig(max_pieces=3)
    result = read_chorales(cfg, progress=False)
    assert len(result.pieces) == 3
    assert result.track_names == ["soprano", "alto", "tenor", "bass"]
    assert all("need" in s["reason"] for s in result.skipped)  # e.g. bwv269 is in 3/4
    for piece in result.pieces:
        w = make_windows(piece.roll, cfg)
        assert w.shape[1:] == (32, 128, 4) and w.dtype == bool and len(w) >= 1
        for i, window in enumerate(w):  # window i starts on bar i (hop 1 bar = 16 steps)
            assert np.array_equal(window, piece.roll[16 * i : 16 * i + 32])
        assert w.any(axis=(1, 2)).all()  # empty_voice=drop: every voice sounds in every window


def test_a_chorale_that_fails_to_parse_is_named_on_stderr_and_recorded(monkeypatch, capsys):
    from music21 import corpus

    real_parse, calls = corpus.parse, []

    def first_one_breaks(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 1:
            raise ValueError("bad measure 3")
        return real_parse(name, *args, **kwargs)

    monkeypatch.setattr(corpus, "parse", first_one_breaks)
    result = read_chorales(DataConfig(max_pieces=1), progress=False)
    broken = calls[0].split("/")[-1]
    assert {"path": broken, "reason": "unparseable: ValueError: bad measure 3"} in result.skipped
    assert f"warning: skipping chorale {broken}: unparseable: ValueError: bad measure 3" in capsys.readouterr().err
    assert len(result.pieces) == 1 and result.pieces[0].piece_id != broken


def test_chorales_need_four_tracks():
    with pytest.raises(InputError, match="data.tracks"):
        read_chorales(DataConfig(tracks=3, max_pieces=1), progress=False)


# ---------------------------------------------------------------------------------------------------------------
# midi folders


def test_midi_folder_skips_and_lists_bad_files(tmp_path, capsys):
    root = tmp_path / "midi"
    write_midi_file(root / "a.mid", four_voices(3))
    write_midi_file(root / "sub" / "b.MIDI", four_voices(2) + [[(36, 0.0, 1.0)]], drums=(4,))
    write_midi_file(root / "two_tracks.mid", four_voices(2)[:2])
    write_midi_file(root / "drums.mid", four_voices(2), drums=(0,))  # only 3 pitched tracks
    write_midi_file(root / "silent.mid", [[], [], [], []])
    (root / "corrupt.mid").write_bytes(b"MThd this is not really a MIDI file")
    (root / "notes.txt").write_text("ignored: not a .mid")
    result = read_midi_folder(DataConfig(source="midi", path=str(root)), progress=False)

    assert [p.piece_id for p in result.pieces] == ["a.mid", "sub/b.MIDI"]
    assert result.pieces[0].roll.shape == (48, 128, 4)  # 3 bars at 4 steps per beat
    assert result.pieces[0].roll[0:4, 72, 0].all()  # track 0 = first non-empty track
    reasons = {s["path"]: s["reason"] for s in result.skipped}
    assert set(reasons) == {"corrupt.mid", "drums.mid", "silent.mid", "two_tracks.mid"}
    assert reasons["two_tracks.mid"] == "2 non-empty non-drum tracks, need 4"
    assert reasons["drums.mid"] == "3 non-empty non-drum tracks, need 4"
    assert reasons["silent.mid"] == "no notes found"
    assert reasons["corrupt.mid"].startswith("cannot read as MIDI")
    assert all("\n" not in r for r in reasons.values())
    err = capsys.readouterr().err
    assert "warning: skipping corrupt.mid" in err and err.count("warning:") == 4


def test_midi_folder_max_pieces(tmp_path):
    for i in range(3):
        write_midi_file(tmp_path / f"{i}.mid", four_voices(2))
    result = read_midi_folder(DataConfig(source="midi", path=str(tmp_path), max_pieces=2), progress=False)
    assert [p.piece_id for p in result.pieces] == ["0.mid", "1.mid"]


def test_midi_folder_empty_missing_or_useless_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        read_midi_folder(DataConfig(source="midi", path=str(tmp_path)), progress=False)
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match="nope: MIDI folder not found"):
        read_midi_folder(DataConfig(source="midi", path=str(missing)), progress=False)
    (tmp_path / "bad.mid").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match="none of the 1 MIDI files is usable"):
        read_midi_folder(DataConfig(source="midi", path=str(tmp_path)), progress=False)
    with pytest.raises(InputError, match="data.path"):
        read_pieces(DataConfig(source="midi"), progress=False)


# ---------------------------------------------------------------------------------------------------------------
# npy / npz arrays


def _rolls(n=3, t=32, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, t, 128, k)) < 0.05


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((3, 32, 128)), r"x\.npy: expected 4 dims \(N, T, 128, K\).*got shape \(3, 32, 128\)"),
        (np.zeros((3, 32, 84, 4)), r"x\.npy: expected 128 pitches.*got shape \(3, 32, 84, 4\)"),
        (np.zeros((3, 16, 128, 4)), r"x\.npy: expected 32 time steps"),
        (np.zeros((3, 32, 128, 5)), r"x\.npy: expected 4 tracks"),
        (np.zeros((0, 32, 128, 4)), r"x\.npy: expected at least one row"),
        (np.full((1, 32, 128, 4), "a"), r"x\.npy: expected a bool, integer or float array, got dtype <U1"),
        (np.zeros((1, 32, 128, 4), complex), r"x\.npy: expected a bool, integer or float array, got dtype complex"),
        (np.full((1, 32, 128, 4), np.nan), r"x\.npy: contains NaN or inf"),
        (np.full((1, 32, 128, 4), 0.5), r"x\.npy: expected values in \{-1, 1\}, \{0, 1\} or bool, found \{0\.5\}"),
        (np.array([-1, 0, 1] * 10923 + [0])[: 32 * 128].reshape(1, 32, 128, 1).repeat(4, 3), r"found \{-1, 0, 1\}"),
    ],
)
def test_npy_validation_names_the_file(tmp_path, array, message):
    path = tmp_path / "x.npy"
    np.save(path, array)
    with pytest.raises(InputError, match=message):
        load_array(path, steps=32, tracks=4)


def test_npy_unreadable_and_wrong_suffix(tmp_path):
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(InputError, match="x.npy: cannot read"):
        load_array(bad, steps=32, tracks=4)
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="o.npy: cannot read"):
        load_array(obj, steps=32, tracks=4)
    with pytest.raises(InputError, match="x.csv: expected an .npy or .npz"):
        load_array(tmp_path / "x.csv", steps=32, tracks=4)


@pytest.mark.parametrize("encode", [lambda r: r, lambda r: r.astype(np.uint8), lambda r: np.where(r, 1.0, -1.0)])
def test_npy_value_encodings_agree(tmp_path, encode):
    rolls = _rolls()
    np.save(tmp_path / "x.npy", encode(rolls))
    x, ids = load_array(tmp_path / "x.npy", steps=32, tracks=4)
    assert x.dtype == bool and np.array_equal(x, rolls)
    assert ids == ["0", "1", "2"]


def test_npz_keys_and_piece_ids(tmp_path):
    rolls = _rolls(4)
    np.savez(tmp_path / "d.npz", other=np.zeros(3), data=rolls, piece=np.array(["p", "p", "q", "r"]))
    x, ids = load_array(tmp_path / "d.npz", steps=32, tracks=4)
    assert np.array_equal(x, rolls) and ids == ["p", "p", "q", "r"]
    np.savez(tmp_path / "e.npz", x=rolls, piece=np.arange(3))
    with pytest.raises(InputError, match="e.npz: 'piece' must be a 1-D array of 4 ids"):
        load_array(tmp_path / "e.npz", steps=32, tracks=4)
    cfg = DataConfig(source="npy", path=str(tmp_path / "d.npz"), max_pieces=2)
    pieces = read_pieces(cfg, progress=False).pieces
    assert [p.piece_id for p in pieces] == ["p", "p", "q"]  # the first 2 pieces, all their rows


def test_pitches_other_than_128_are_refused():
    with pytest.raises(InputError, match="data.pitches"):
        read_pieces(DataConfig(pitches=64), progress=False)


# ---------------------------------------------------------------------------------------------------------------
# windowing


def _piece(steps=64, pitch=60):
    roll = np.zeros((steps, 128, 4), bool)
    roll[:, pitch, :] = True
    return roll


def test_windows_hop_and_short_pieces():
    cfg = DataConfig()  # 32 steps, hop 1 bar = 16 steps
    assert make_windows(_piece(64), cfg).shape == (3, 32, 128, 4)  # starts 0, 16, 32
    assert make_windows(_piece(64), DataConfig(hop_bars=2)).shape == (2, 32, 128, 4)
    assert make_windows(_piece(31), cfg).shape == (0, 32, 128, 4)


def test_transpose_shifts_and_drops_out_of_range_windows():
    roll = _piece(64, pitch=60)
    roll[40, 120, 0] = True  # a high note in the third bar
    stats = WindowStats()
    w = make_windows(roll, DataConfig(transpose=10), stats)
    assert len(w) == 1 and stats.dropped_out_of_range == 2  # windows at 16 and 32 hold the 130
    assert w[0][:, 70, :].all() and not w[0][:, 60, :].any()
    w = make_windows(roll, DataConfig(transpose=-61), stats)  # 60 -> -1 everywhere
    assert len(w) == 0
    w = make_windows(roll, DataConfig(transpose=-60))
    assert len(w) == 3 and w[:, :, 0, :].all()


def test_empty_voice_drop_and_keep():
    roll = _piece(64)
    roll[32:, :, 3] = False  # the bass stops after bar 2: the window at bar 3 has no bass
    stats = WindowStats()
    assert len(make_windows(roll, DataConfig(empty_voice="drop"), stats)) == 2
    assert stats.dropped_empty_voice == 1
    assert len(make_windows(roll, DataConfig(empty_voice="keep"))) == 3


def test_keep_top_note():
    roll = np.zeros((3, 128), bool)
    roll[0, [60, 64, 67]] = True
    roll[1, 40] = True
    out = keep_top_note(roll)
    assert np.argwhere(out).tolist() == [[0, 67], [1, 40]]


def test_midi_reader_version_is_part_of_the_cache_key(tmp_path, monkeypatch):
    """A changed MIDI reader rebuilds datasets cached by an older one: its version is in the input identity."""
    from chorus.data import midi_io
    from chorus.data.dataset import cache_key
    from chorus.data.sources import source_identity

    write_midi_file(tmp_path / "a.mid", four_voices(2))
    cfg = DataConfig(source="midi", path=str(tmp_path))
    assert source_identity(cfg)["reader"] == midi_io.READER_VERSION
    key = cache_key(cfg)
    monkeypatch.setattr(midi_io, "READER_VERSION", midi_io.READER_VERSION + 1)
    assert cache_key(cfg) != key
