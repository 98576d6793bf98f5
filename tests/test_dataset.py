"""data.dataset: build, cache, split by piece, load, describe. Everything is built in tmp_path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from chorus.data import dataset as ds_mod
from chorus.data.dataset import _build, build_dataset, describe_dataset, load_dataset, split_pieces
from chorus.data.settings import DataConfig
from chorus.errors import InputError


def _rolls(n=12, seed=0):
    """n rows (32, 128, 4), every voice sounding somewhere (so empty_voice=drop keeps them all)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 32, 128, 4)) < 0.02
    x[:, 0, 60, :] = True
    return x


def _npy_cfg(tmp_path: Path, array: np.ndarray, name="x.npy", **kw) -> DataConfig:
    path = tmp_path / name
    np.save(path, array)
    return DataConfig(source="npy", path=str(path), cache_dir=str(tmp_path / "cache"), **kw)


def test_build_writes_npz_and_manifest(tmp_path):
    cfg = _npy_cfg(tmp_path, _rolls(12), holdout_fraction=0.25)
    d = build_dataset(cfg, progress=False)
    assert d.parent == tmp_path / "cache" and d.name.startswith("npy-")
    manifest = json.loads((d / "manifest.json").read_text())
    for key in ("source", "path", "settings", "cache_key", "sha256", "shapes", "counts", "piece_ids", "skipped",
                "versions", "created"):
        assert key in manifest
    assert manifest["counts"]["pieces"] == {"train": 9, "holdout": 3}
    assert manifest["counts"]["windows"] == {"train": 9, "holdout": 3}
    assert set(manifest["versions"]) == {"python", "numpy", "pypianoroll", "music21"}
    assert manifest["versions"]["numpy"] == np.__version__
    ds = load_dataset(d)
    assert ds.train.shape == (9, 32, 128, 4) and ds.train.dtype == bool
    assert ds.holdout.shape == (3, 32, 128, 4)
    assert ds.train_piece.dtype.kind == "i" and len(ds.pieces) == 12
    assert sorted(ds.pieces[i] for i in ds.holdout_piece) == sorted(manifest["piece_ids"]["holdout"])


def test_value_encodings_build_the_same_dataset(tmp_path):
    rolls = _rolls(10)
    built = []
    for name, arr in (("b.npy", rolls), ("u.npy", rolls.astype(np.int8)), ("pm.npy", np.where(rolls, 1.0, -1.0))):
        d = build_dataset(_npy_cfg(tmp_path, arr, name=name), progress=False)
        built.append(load_dataset(d))
    for other in built[1:]:
        for key in ("train", "holdout", "train_piece", "holdout_piece"):
            assert np.array_equal(getattr(built[0], key), getattr(other, key))


def test_split_is_by_piece_and_seeded(tmp_path):
    x = _rolls(40)
    piece = np.repeat([f"song{i}" for i in range(10)], 4)  # 10 pieces of 4 rows each
    path = tmp_path / "d.npz"
    np.savez(path, x=x, piece=piece)
    base = dict(source="npy", path=str(path), cache_dir=str(tmp_path / "cache"), holdout_fraction=0.3)
    a = load_dataset(build_dataset(DataConfig(seed=1, **base), progress=False))
    b = load_dataset(build_dataset(DataConfig(seed=1, **base), tmp_path / "again", progress=False))
    c = load_dataset(build_dataset(DataConfig(seed=2, **base), progress=False))
    train_ids, hold_ids = set(a.manifest["piece_ids"]["train"]), set(a.manifest["piece_ids"]["holdout"])
    assert not train_ids & hold_ids and len(hold_ids) == 3 and len(train_ids) == 7
    assert len(a.holdout) == 12  # whole pieces, all 4 windows each
    assert not set(a.train_piece) & set(a.holdout_piece)
    assert hold_ids == set(b.manifest["piece_ids"]["holdout"])  # same seed, same split
    assert hold_ids != set(c.manifest["piece_ids"]["holdout"])  # another seed, another split (for these seeds)


def test_split_sizes():
    assert len(split_pieces(1, 0.1, 0)) == 0
    assert len(split_pieces(2, 0.1, 0)) == 1  # at least one held out once there are 2 pieces
    assert len(split_pieces(5, 0.9, 0)) == 4  # never all of them
    assert len(split_pieces(100, 0.1, 0)) == 10
    assert len(split_pieces(100, 0.0, 0)) == 0  # holdout_fraction 0 asks for no holdout
    assert np.array_equal(split_pieces(50, 0.2, 7), split_pieces(50, 0.2, 7))


def test_second_build_is_a_cache_hit(tmp_path, monkeypatch):
    cfg = _npy_cfg(tmp_path, _rolls(6))
    d1, hit1 = _build(cfg, None, progress=False)
    mtime = (d1 / "dataset.npz").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(ds_mod, "read_pieces", boom)
    d2, hit2 = _build(cfg, None, progress=False)
    assert (hit1, hit2) == (False, True) and d1 == d2
    assert build_dataset(cfg, progress=False) == d1
    assert (d1 / "dataset.npz").stat().st_mtime_ns == mtime
    # a setting that changes the result changes the key and the directory
    monkeypatch.undo()
    d3 = build_dataset(DataConfig(**{**cfg.__dict__, "holdout_fraction": 0.5}), progress=False)
    assert d3 != d1


def test_damaged_cache_is_rebuilt_and_load_refuses_it(tmp_path):
    cfg = _npy_cfg(tmp_path, _rolls(6))
    d = build_dataset(cfg, progress=False)
    with open(d / "dataset.npz", "ab") as f:
        f.write(b"junk")
    with pytest.raises(InputError, match="does not match"):
        load_dataset(d)
    d2, hit = _build(cfg, None, progress=False)
    assert d2 == d and not hit
    load_dataset(d)


def test_failed_build_leaves_nothing_half_written(tmp_path, monkeypatch):
    cfg = _npy_cfg(tmp_path, _rolls(6))
    real = ds_mod._write_dataset

    def dies_after_writing(*args, **kwargs):
        real(*args, **kwargs)  # the files exist in the temp dir ...
        raise KeyboardInterrupt("killed")  # ... when the build is interrupted

    monkeypatch.setattr(ds_mod, "_write_dataset", dies_after_writing)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(cfg, progress=False)
    cache = tmp_path / "cache"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    # a SIGKILLed build leaves its temp dir behind; the next build clears it
    monkeypatch.undo()
    target = ds_mod.default_dataset_dir(cfg)
    stale = cache / f".{target.name}.tmp-dead"
    stale.mkdir()
    (stale / "dataset.npz").write_bytes(b"half")
    d = build_dataset(cfg, progress=False)
    assert d == target and not stale.exists()
    assert oct(d.stat().st_mode & 0o777) == "0o755"


def test_out_dir_that_is_not_a_dataset_is_refused(tmp_path):
    cfg = _npy_cfg(tmp_path, _rolls(3))
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a chorus dataset directory"):
        build_dataset(cfg, precious, progress=False)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_load_dataset_errors(tmp_path):
    with pytest.raises(InputError, match="manifest.json missing"):
        load_dataset(tmp_path)
    d = build_dataset(_npy_cfg(tmp_path, _rolls(3)), progress=False)
    os.remove(d / "dataset.npz")
    with pytest.raises(InputError, match="dataset.npz missing"):
        load_dataset(d)


def test_no_usable_windows_is_an_input_error(tmp_path):
    x = np.zeros((3, 32, 128, 4), bool)
    x[:, :, 60, :3] = True  # the fourth voice never sounds
    with pytest.raises(InputError, match="no usable 32-step windows"):
        build_dataset(_npy_cfg(tmp_path, x), progress=False)
    d = build_dataset(_npy_cfg(tmp_path, x, empty_voice="keep"), progress=False)
    assert load_dataset(d).manifest["counts"]["windows"]["train"] == 2


def _write_four_track_midi(path: Path, bars: int) -> None:
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    pm.time_signature_changes = [pretty_midi.TimeSignature(4, 4, 0.0)]
    for k in range(4):
        inst = pretty_midi.Instrument(program=0, name=f"v{k}")
        inst.notes += [pretty_midi.Note(90, 72 - 7 * k + b % 3, b * 0.5, (b + 1) * 0.5) for b in range(4 * bars)]
        pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))


def test_midi_build_lists_skipped_files_and_describes(tmp_path):
    root = tmp_path / "songs"
    for i in range(3):
        _write_four_track_midi(root / f"s{i}.mid", bars=4)
    _write_four_track_midi(root / "short.mid", bars=1)  # shorter than one 2-bar window
    (root / "broken.mid").write_bytes(b"MThd\x00\x00")
    cfg = DataConfig(source="midi", path=str(root), cache_dir=str(tmp_path / "cache"), transpose=-5)
    d = build_dataset(cfg, progress=False)
    m = load_dataset(d).manifest
    skipped = {s["path"]: s["reason"] for s in m["skipped"]}
    assert set(skipped) == {"broken.mid", "short.mid"}
    assert skipped["short.mid"] == "no window: 16 steps < 32"
    assert m["counts"]["windows"]["train"] + m["counts"]["windows"]["holdout"] == 9  # 3 files x 3 windows
    assert m["counts"]["pieces"]["holdout"] == 1
    text = describe_dataset(d)
    assert "source: midi" in text and "broken.mid" in text and "transpose -5" in text
    assert "train:" in text and "holdout:" in text and "sounding" in text
    # the cache key follows file contents, not mtimes
    os.utime(root / "s0.mid", (1, 1))
    assert build_dataset(cfg, progress=False) == d
    _write_four_track_midi(root / "s0.mid", bars=5)
    assert build_dataset(cfg, progress=False) != d


def test_chorales_build_small(tmp_path):
    cfg = DataConfig(max_pieces=3, cache_dir=str(tmp_path))
    ds = load_dataset(build_dataset(cfg, progress=False))
    assert ds.train.shape[1:] == (32, 128, 4)
    assert ds.track_names == ["soprano", "alto", "tenor", "bass"]
    assert ds.manifest["counts"]["pieces"] == {"train": 2, "holdout": 1}


@pytest.mark.slow
def test_all_chorales(tmp_path):
    ds = load_dataset(build_dataset(DataConfig(cache_dir=str(tmp_path)), progress=False))
    counts = ds.manifest["counts"]
    assert counts["pieces"]["train"] + counts["pieces"]["holdout"] == 296
    assert len(ds.train) + len(ds.holdout) == 3342
    assert not set(ds.manifest["piece_ids"]["train"]) & set(ds.manifest["piece_ids"]["holdout"])
