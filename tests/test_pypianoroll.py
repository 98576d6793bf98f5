"""The pypianoroll source and export (data/pianoroll_io.py), on files that pypianoroll itself writes: resampling to
chorus's grid (nearest step), the track map, the first downbeat as step 0, a dataset build with a skipped file,
the round trip chorus -> pypianoroll .npz -> chorus, write_samples' opt-in export, and one-line errors."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pypianoroll
import pytest
from tests_support import run_chorus

from chorus.data.dataset import FORMAT_VERSION, build_dataset, cache_key, load_dataset
from chorus.data.pianoroll_io import read_pianoroll_source, write_multitrack
from chorus.data.settings import DataConfig
from chorus.data.sources import read_pieces, source_identity
from chorus.errors import InputError

RES = 24  # pypianoroll time steps per beat (the Lakh Pianoroll Dataset's resolution); 6 per sixteenth
PICKUP = RES  # one beat before the first downbeat
BARS = 3


def _track(name, notes, *, is_drum=False, program=0, velocity=None):
    """notes: (start, end, pitch) in time steps at RES from the file's step 0."""
    roll = np.zeros((PICKUP + BARS * 4 * RES, 128), dtype=np.uint8 if velocity else bool)
    for a, b, p in notes:
        roll[a:b, p] = velocity or True
    cls = pypianoroll.StandardTrack if velocity else pypianoroll.BinaryTrack
    return cls(name=name, program=program, is_drum=is_drum, pianoroll=roll)


def _voice(pitch, offset=0):
    """A voice that sounds through the 3 bars: whole notes (4 beats), the first starting at the downbeat."""
    return [(PICKUP + bar * 4 * RES, PICKUP + (bar + 1) * 4 * RES, pitch + offset) for bar in range(BARS)]


def write_lpd_style(path, *, soprano_notes=None):
    """A Lakh-Pianoroll-style file written by pypianoroll.save: a drum track first, an empty track, then bass,
    alto, soprano (with velocities) and tenor, in that file order; a pickup beat before the first downbeat."""
    total = PICKUP + BARS * 4 * RES
    downbeat = np.zeros(total, dtype=bool)
    downbeat[PICKUP::4 * RES] = True
    soprano = soprano_notes if soprano_notes is not None else _voice(72)
    mt = pypianoroll.Multitrack(name=path.stem, resolution=RES, tempo=np.full(total, 100.0), downbeat=downbeat,
                                tracks=[_track("Drums", [(0, 12, 36), (48, 60, 38)], is_drum=True),
                                        _track("Strings", [], program=48),
                                        _track("Bass", _voice(43), program=32),
                                        _track("Alto", _voice(64)),
                                        _track("Soprano", [(0, 12, 71)] + soprano, velocity=90),  # pickup note
                                        _track("Tenor", _voice(55), program=1)])
    pypianoroll.save(path, mt)
    return path


def _cfg(path, **kw) -> DataConfig:
    return DataConfig(source="pypianoroll", path=str(path), **kw)


def test_reads_what_pypianoroll_saves_on_chorus_grid(tmp_path):
    # Soprano notes that do not fall on sixteenths: ends and starts go to the NEAREST step, halves up.
    odd = [(PICKUP + 0, PICKUP + 14, 72),  # 14/6 = 2.33 -> step 2
           (PICKUP + 14, PICKUP + 33, 74),  # 2.33 -> 2, 5.5 -> 6 (half up)
           (PICKUP + 33, PICKUP + 35, 76),  # 5.5 -> 6, 5.83 -> 6: shorter than half a step, vanishes
           (PICKUP + 40, PICKUP + 4 * RES * BARS, 77)]  # 6.67 -> 7 .. the end
    path = write_lpd_style(tmp_path / "song.npz", soprano_notes=odd)
    (piece,) = read_pieces(_cfg(path), progress=False).pieces
    assert piece.piece_id == "song.npz"
    roll = piece.roll  # (steps, 128, 4): bass, alto, soprano, tenor in file order (drums and the empty track out)
    assert roll.shape == (BARS * 16, 128, 4) and roll.dtype == bool
    assert [np.flatnonzero(roll[:, :, k].any(axis=0)).tolist() for k in range(4)] == [[43], [64], [72, 74, 77], [55]]
    soprano = roll[:, :, 2]
    assert np.flatnonzero(soprano[:, 72]).tolist() == [0, 1]
    assert np.flatnonzero(soprano[:, 74]).tolist() == [2, 3, 4, 5]
    assert not soprano[:, 76].any()  # the 2-time-step note is gone; the pickup note (before the downbeat) too
    assert np.flatnonzero(soprano[:, 77]).tolist() == list(range(7, BARS * 16))
    assert roll[:, 43, 0].all() and roll[:, 64, 1].all() and roll[:, 55, 3].all()  # whole notes, bar 0 = step 0


def test_track_map_by_index_and_name_and_order_by_pitch(tmp_path):
    path = write_lpd_style(tmp_path / "song.npz")

    def pitches(cfg):
        roll = read_pieces(cfg, progress=False).pieces[0].roll
        return [int(np.flatnonzero(roll[:, :, k].any(axis=0))[0]) for k in range(4)]

    assert pitches(_cfg(path)) == [43, 64, 72, 55]  # the default: file order
    assert pitches(_cfg(path, order_by_pitch=True)) == [72, 64, 55, 43]  # soprano, alto, tenor, bass
    assert pitches(_cfg(path, track_map=["Soprano", "alto", 5, 2])) == [72, 64, 55, 43]  # names ignore case
    assert pitches(_cfg(path, track_map=[2, 3, 4, 5], order_by_pitch=True)) == [72, 64, 55, 43]
    # an empty track picked by the map is read (as silence): the windows' empty_voice rule decides
    roll = read_pieces(_cfg(path, track_map=[4, 3, 1, 2]), progress=False).pieces[0].roll
    assert not roll[:, :, 2].any() and roll[:, :, 3].any()


@pytest.mark.parametrize("kw, message", [
    (dict(track_map=[4, 3, 9, 2]), "song.npz: data.track_map[2]: track 9, but the file has 6 tracks"),
    (dict(track_map=["Soprano", "Alto", "Viola", 2]), "song.npz: data.track_map[2]: no track named 'Viola'"),
    (dict(track_map=[4, 3, 0, 2]), "song.npz: data.track_map[2]: track 0 ('Drums') is a drum track"),
    (dict(track_map=[4, 3, 2]), "data.track_map: expected 4 entries (one per data.tracks), got 3"),
    (dict(track_map=[4, 3, "Bass", 2]), "song.npz: data.track_map: names one track twice"),
    (dict(track_map=[4, 3, 2.5, 2]), "data.track_map[2]: expected a track index (an integer >= 0) or a track name"),
    (dict(track_map=[4, 4, 3, 2]), "data.track_map: names a track twice"),
])
def test_bad_track_map_is_one_line_naming_the_key(tmp_path, kw, message):
    path = write_lpd_style(tmp_path / "song.npz")
    with pytest.raises(InputError) as err:
        source_identity(_cfg(path, **kw))  # the settings are checked before anything is read
        read_pieces(_cfg(path, **kw), progress=False)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_track_settings_belong_to_the_pypianoroll_source():
    with pytest.raises(InputError, match="data.track_map: used only by data.source pypianoroll, not midi"):
        read_pieces(DataConfig(source="midi", path="x", track_map=[0, 1, 2, 3]), progress=False)
    with pytest.raises(InputError, match="data.order_by_pitch: used only by data.source pypianoroll, not npy"):
        source_identity(DataConfig(source="npy", path="x.npy", order_by_pitch=True))


def test_bad_files_are_one_line_naming_the_file(tmp_path):
    np.savez(tmp_path / "rolls.npz", x=np.zeros((1, 32, 128, 4)))  # chorus's npy format, not pypianoroll's
    with pytest.raises(InputError) as err:
        read_pianoroll_source(_cfg(tmp_path / "rolls.npz"), progress=False)
    assert str(err.value).startswith("rolls.npz: cannot read as a pypianoroll .npz (RuntimeError: Cannot find")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match=r"^junk.npz: cannot read as a pypianoroll .npz \("):
        read_pianoroll_source(_cfg(tmp_path / "junk.npz"), progress=False)
    (tmp_path / "song.mid").touch()
    with pytest.raises(InputError, match="expected a pypianoroll .npz file or a folder"):
        read_pianoroll_source(_cfg(tmp_path / "song.mid"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .npz files found"):
        read_pianoroll_source(_cfg(tmp_path / "empty"), progress=False)
    with pytest.raises(InputError, match="data.path: required when data.source is pypianoroll"):
        read_pieces(DataConfig(source="pypianoroll"), progress=False)


def test_cli_data_build_exits_2_with_one_line(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    proc = run_chorus("data", "build", "--source", "pypianoroll", "--path", str(tmp_path / "junk.npz"),
                      "--set", f"data.cache_dir={tmp_path / 'cache'}", timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "junk.npz: cannot read as a pypianoroll .npz" in lines[0]


def test_dataset_build_from_a_folder_skips_a_file_with_too_few_tracks(tmp_path):
    folder = tmp_path / "lpd"
    for name in ("a", "b", "sub/c"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_lpd_style(folder / f"{name}.npz")
    thin = pypianoroll.Multitrack(name="thin", resolution=RES, tracks=[_track("Piano", _voice(60))])
    pypianoroll.save(folder / "thin.npz", thin)
    cfg = _cfg(folder, cache_dir=str(tmp_path / "cache"), holdout_fraction=0.34, order_by_pitch=True)
    ds = load_dataset(build_dataset(cfg, progress=False))
    assert sorted(ds.pieces) == ["a.npz", "b.npz", "sub/c.npz"]
    assert ds.manifest["skipped"] == [{"path": "thin.npz", "reason": "1 non-empty non-drum tracks, need 4"}]
    x = np.concatenate([ds.train, ds.holdout])
    assert x.shape == (6, 32, 128, 4)  # 3 bars: windows at bars 0 and 1 of each file
    assert [int(np.flatnonzero(x[0, :, :, k].any(axis=0))[0]) for k in range(4)] == [72, 64, 55, 43]
    # the track settings are in the key: another map is another build
    assert cache_key(dataclasses.replace(cfg, order_by_pitch=False)) != cache_key(cfg)


def test_other_sources_keep_their_cache_keys(tmp_path):
    """The new settings stay out of the settings hash: a key computed as before they existed is unchanged."""
    np.save(tmp_path / "x.npy", np.ones((2, 32, 128, 4), dtype=bool))
    cfg = DataConfig(source="npy", path=str(tmp_path / "x.npy"))
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("cache_dir", "path", "track_map", "order_by_pitch")}
    doc = {"format": FORMAT_VERSION, "source": "npy", "input": source_identity(cfg), "settings": settings}
    assert cache_key(cfg) == hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def test_export_round_trip_through_pypianoroll_and_the_source(tmp_path):
    rng = np.random.default_rng(3)
    roll = np.zeros((32, 128, 4), dtype=bool)
    for k, base in enumerate((72, 64, 55, 43)):
        for start in range(0, 32, 4):
            roll[start: start + int(rng.integers(1, 5)), base + int(rng.integers(0, 5)), k] = True
    path = write_multitrack(roll, tmp_path / "sample-0.npz", steps_per_beat=4, tempo=100.0, programs=[0, 0, 32, 33],
                            track_names=["soprano", "alto", "tenor", "bass"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample-0.npz"]  # no temp file left
    mt = pypianoroll.load(path)
    assert mt.resolution == 4 and mt.name == "sample-0" and mt.tempo.shape == (32,) and mt.tempo[0] == 100.0
    assert np.flatnonzero(mt.downbeat).tolist() == [0, 16]
    assert [(t.name, t.program, t.is_drum) for t in mt.tracks] == [
        ("soprano", 0, False), ("alto", 0, False), ("tenor", 32, False), ("bass", 33, False)]
    np.testing.assert_array_equal(np.stack([t.pianoroll for t in mt.tracks], axis=-1), roll)
    (piece,) = read_pieces(_cfg(path), progress=False).pieces  # and back through chorus's source
    np.testing.assert_array_equal(piece.roll, roll)
    (piece,) = read_pieces(_cfg(path, steps_per_beat=2), progress=False).pieces  # resampled to eighths
    assert piece.roll.shape == (16, 128, 4)


def test_write_samples_exports_beside_the_midi_only_when_asked(tmp_path):
    from chorus.trainer.config import load_config
    from chorus.trainer.samples import write_samples

    cfg = load_config(None, ["sample.audio=none"])
    rolls = np.zeros((2, 32, 128, 4), dtype=bool)
    for k, pitch in enumerate((72, 64, 55, 43)):
        rolls[:, :, pitch, k] = True
    write_samples(rolls, tmp_path / "plain", cfg)
    assert not list((tmp_path / "plain").glob("*.npz"))
    mids = write_samples(rolls, tmp_path / "both", cfg, real=rolls, pianoroll=True)
    assert sorted(p.name for p in (tmp_path / "both").glob("*.npz")) == [
        "real-0.npz", "real-1.npz", "sample-0.npz", "sample-1.npz"]
    for mid in mids:
        mt = pypianoroll.load(mid.with_suffix(".npz"))
        assert [t.name for t in mt.tracks] == cfg.sample.track_names
        assert [t.program for t in mt.tracks] == cfg.sample.programs
        np.testing.assert_array_equal(np.stack([t.pianoroll for t in mt.tracks], axis=-1), rolls[0])
