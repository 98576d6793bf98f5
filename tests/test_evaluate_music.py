"""`chorus evaluate --midi DIR` / `--npz FILE`: any 4-part music scored against the holdout like a trained run, beside
the ladder. Files come from other tools (pretty_midi, music21), with tracks in a scrambled order for
--order-by-pitch; real chorales must score like real vs real; bad input is one line and exit 2 before TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests_support import REPO, TINY, run_chorus

from chorus.cli import main
from chorus.data.dataset import build_dataset, load_dataset
from chorus.trainer.config import load_config
from chorus.trainer.ladder import REAL, MusicEvaluation, read_music

N = 32  # eval.num_samples here: the tiny preset's chorales, 30 % held out (~65 holdout windows)
SCRAMBLE = [(3, 0, 2, 1), (1, 3, 0, 2), (2, 1, 3, 0)]  # voice index of each file track, in file order
STEP_S = 0.125  # pretty_midi writes at 120 bpm: a sixteenth is 0.125 s


@pytest.fixture(scope="module")
def setting(data_cache):
    sets = [f"data.cache_dir={data_cache}", "data.holdout_fraction=0.3", f"eval.num_samples={N}"]
    cfg = load_config(TINY, sets)
    return cfg, load_dataset(build_dataset(cfg.data, progress=False)), sets


def write_pretty_midi(path: Path, roll: np.ndarray, order: tuple[int, ...]) -> None:
    """roll (T, 128, 4) as a MIDI file from pretty_midi, file track i holding voice order[i]."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for v in order:
        inst = pretty_midi.Instrument(program=0, name=f"voice {v}")
        for p in range(128):
            on = np.flatnonzero(np.diff(np.concatenate([[0], roll[:, p, v].astype(int), [0]])))
            for a, b in zip(on[::2], on[1::2], strict=True):
                inst.notes.append(pretty_midi.Note(velocity=80, pitch=p, start=a * STEP_S, end=b * STEP_S))
        pm.instruments.append(inst)
    pm.write(str(path))


@pytest.fixture(scope="module")
def scrambled(setting, tmp_path_factory):
    """Nine real train windows, one per file, written by pretty_midi with the voices in scrambled track orders."""
    _, ds, _ = setting
    folder = tmp_path_factory.mktemp("scrambled")
    rows = np.random.default_rng(0).choice(len(ds.train), size=9, replace=False)
    for i, row in enumerate(rows):
        write_pretty_midi(folder / f"piece-{i}.mid", ds.train[row], SCRAMBLE[i % len(SCRAMBLE)])
    return folder, ds.train[rows]


def test_order_by_pitch_recovers_the_voices_of_files_from_another_tool(setting, scrambled):
    cfg, _, _ = setting
    folder, windows = scrambled
    ordered = read_music(folder, cfg, kind="midi", order_by_pitch=True)
    assert np.array_equal(ordered.windows, windows)  # note for note, soprano first
    assert ordered.pieces == [f"piece-{i}.mid" for i in range(9)]
    assert ordered.orders["piece-0.mid"] == [1, 3, 2, 0]  # file track 1 holds the soprano, track 3 the alto, ...
    as_given = read_music(folder, cfg, kind="midi")
    assert np.array_equal(as_given.windows[0], windows[0][..., list(SCRAMBLE[0])])  # track order, top to bottom


def test_an_array_of_rolls_is_cut_into_windows_like_training_data(setting, tmp_path):
    cfg, ds, _ = setting
    two_bars = ds.train[:3]  # (3, 32, 128, 4)
    np.savez(tmp_path / "rolls.npz", x=np.where(two_bars, 1, -1).astype(np.int8))
    assert np.array_equal(read_music(tmp_path / "rolls.npz", cfg, kind="npz").windows, two_bars)
    long = np.concatenate([ds.train[:1], ds.train[1:2]], axis=1)  # (1, 64, 128, 4): windows at steps 0, 16, 32
    np.save(tmp_path / "long.npy", long)
    music = read_music(tmp_path / "long.npy", cfg, kind="npz")
    assert len(music.windows) == 3 and np.array_equal(music.windows[2], ds.train[1])


@pytest.mark.slow
def test_real_chorales_from_music21_score_like_real_vs_real(setting, tmp_path):
    """Chorales of the train split, written to MIDI by music21 itself (pickups and all)."""
    from music21 import corpus

    from chorus.trainer.ladder import evaluate_music

    cfg, ds, _ = setting
    names = {n.split("/")[-1]: n for n in corpus.chorales.Iterator(returnType="filename")}
    for pid in ds.manifest["piece_ids"]["train"][:5]:
        corpus.parse(names[pid]).write("midi", fp=str(tmp_path / f"{pid}.mid"))
    out = evaluate_music(read_music(tmp_path, cfg, kind="midi"), cfg, untrained=False)
    real = out.ladder.get(REAL).value
    value = out.evaluation.music_distance
    assert out.evaluation.n == N and len(out.music.windows) >= N
    assert 0.5 <= value / real <= 2.0, (value, real)
    same_size = out.ladder.get("real, 5 pieces")  # what five real train pieces score: near this folder
    assert same_size.n == N and 0.5 <= value / same_size.value <= 2.0, (value, same_size)
    assert set(out.evaluation.groups) == {"texture", "register", "rhythm", "melody", "key", "order", "harmony"}


@pytest.mark.slow
def test_evaluate_midi_prints_the_value_beside_the_ladder(setting, scrambled, tmp_path):
    _, _, sets = setting
    folder, _ = scrambled
    args = ["evaluate", "--midi", str(folder), "--config", str(TINY), *sum((["--set", s] for s in sets), [])]
    proc = run_chorus(*args, "--order-by-pitch", "--json", str(tmp_path / "e.json"), check=True)
    out = proc.stdout
    assert "ordered by mean pitch, highest = soprano (--order-by-pitch); 9 of 9 files reordered" in out
    assert "music_distance by group:" in out and "soprano" in out
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["n"] == N and doc["order_by_pitch"] and doc["with_replacement"]  # 9 windows, drawn 32 times
    rungs = {r["name"]: r for r in doc["ladder"]}
    assert set(rungs) == {"real vs real", "real, 9 pieces", "weakest corruption", "untrained generator",
                          MusicEvaluation.NAME}
    assert {r["n"] for r in rungs.values()} == {N}
    printed = float(out.split("music_distance: ")[1].split()[0])
    assert printed == pytest.approx(doc["music_distance"], abs=1e-4)
    assert f"-> {doc['music_distance']:7.3f}  n={N}" in out  # the value's place on the ladder
    # real music stays below the weakest corruption; scrambled voices (no --order-by-pitch) do not
    assert doc["music_distance"] < rungs["weakest corruption"]["value"]
    scrambled_out = run_chorus(*args, check=True).stdout
    assert "each file's tracks in their order" in scrambled_out
    assert float(scrambled_out.split("music_distance: ")[1].split()[0]) > 2 * doc["music_distance"]


# ------------------------------------------------------------------------------------------ bad input


def _error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chorus: error: "), err
    return err[0]


def test_bad_music_is_one_line_naming_the_file_and_what_was_expected(setting, tmp_path, capsys):
    import pretty_midi

    _, ds, sets = setting
    cfg_args = ["--config", str(TINY), *sum((["--set", s] for s in sets), [])]
    assert "not found" in _error(capsys, "evaluate", "--midi", str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    assert "no .mid or .midi files" in _error(capsys, "evaluate", "--midi", str(tmp_path / "empty"))
    three = tmp_path / "three"
    three.mkdir()
    write_pretty_midi(three / "a.mid", ds.train[0], (0, 1, 2, 3))
    pm = pretty_midi.PrettyMIDI(str(three / "a.mid"))
    pm.instruments = pm.instruments[:3]
    pm.write(str(three / "trio.mid"))
    line = _error(capsys, "evaluate", "--midi", str(three), *cfg_args)
    assert "trio.mid: 3 non-empty non-drum tracks, expected 4" in line
    (three / "trio.mid").unlink()
    (three / "b.mid").write_bytes(b"MThd not really")
    assert "b.mid: cannot read as MIDI" in _error(capsys, "evaluate", "--midi", str(three), *cfg_args)
    (three / "b.mid").unlink()
    write_pretty_midi(three / "short.mid", ds.train[0][:20], (0, 1, 2, 3))
    assert "short.mid: 20 steps" in _error(capsys, "evaluate", "--midi", str(three), *cfg_args)
    np.save(tmp_path / "flat.npy", np.zeros((2, 32, 128)))
    assert "flat.npy: expected 4 dims" in _error(capsys, "evaluate", "--npz", str(tmp_path / "flat.npy"), *cfg_args)
    np.save(tmp_path / "short.npy", np.zeros((2, 16, 128, 4)))
    assert "expected at least 32" in _error(capsys, "evaluate", "--npz", str(tmp_path / "short.npy"), *cfg_args)
    assert "--order-by-pitch go with --midi" in _error(capsys, "evaluate", "--run", str(tmp_path), "--order-by-pitch")


def test_bad_music_is_checked_before_tensorflow_is_imported(setting, tmp_path):
    """A tensorflow package that exits when imported: the error line must come first."""
    _, ds, sets = setting
    trap = tmp_path / "trap" / "tensorflow"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise SystemExit('tensorflow was imported before the input was checked')\n")
    (tmp_path / "music").mkdir()
    write_pretty_midi(tmp_path / "music" / "short.mid", ds.train[0][:20], (0, 1, 2, 3))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "trap")}
    for target in (["--midi", str(tmp_path / "music")], ["--midi", str(tmp_path / "nothing")]):
        proc = subprocess.run([sys.executable, "-m", "chorus", "evaluate", *target, "--config", str(TINY),
                               *sum((["--set", s] for s in sets), [])], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith("chorus: error: "), proc.stderr[-2000:]
