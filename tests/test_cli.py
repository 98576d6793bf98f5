"""The chorus CLI as a user runs it: train, kill -9, resume, generate, evaluate, data, and bad input (exit 2)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests_support import REPO, TINY, listing, run_chorus


def _sets(overrides):
    return sum((["--set", o] for o in overrides), [])


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("chorus: error:")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny trained run shared by the generate/evaluate tests."""
    root = tmp_path_factory.mktemp("cli")
    run = root / "run"
    run_chorus("train", "--config", str(TINY), "--set", f"run.dir={run}", "--set",
               f"data.cache_dir={root / 'cache'}", check=True)
    return run


def test_help_for_every_subcommand():
    for cmd in (["--help"], ["train", "--help"], ["generate", "--help"], ["evaluate", "--help"],
                ["data", "build", "--help"], ["data", "info", "--help"]):
        proc = run_chorus(*cmd)
        assert proc.returncode == 0 and "usage: chorus" in proc.stdout, cmd


def test_dry_run_prints_counts_and_strategy():
    proc = run_chorus("train", "--config", "configs/lab.yaml", "--dry-run", check=True)
    assert "generator: 8,273,540 parameters" in proc.stdout
    assert "critic:    2,766,785 parameters" in proc.stdout
    assert "strategy:  default" in proc.stdout


@pytest.mark.slow
def test_kill_dash_nine_then_resume(tiny_overrides, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "chorus", "train", "--config", str(TINY), *_sets(tiny_overrides),
            "--set", "train.steps=60", "--set", "train.checkpoint_every=2", "--set", "train.eval_every=30",
            "--set", "train.sample_every=30"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ)
    deadline = time.time() + 600
    while time.time() < deadline and not (run / "checkpoints" / "ckpt-4.index").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "checkpoints" / "ckpt-4.index").is_file(), "no checkpoint before the kill"
    again = run_chorus("train", "--config", str(TINY), *_sets(tiny_overrides), "--set", "train.steps=60",
                       "--set", "train.checkpoint_every=2", "--set", "train.eval_every=30",
                       "--set", "train.sample_every=30", check=True)
    resumed_at = int(again.stderr.split("resuming at step ")[1].split()[0])
    assert resumed_at >= 4
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 60  # no duplicated or lost rows across the kill


def test_generate_from_holdout_and_from_a_melody(trained_run, tmp_path):
    import pretty_midi
    import pypianoroll

    from chorus.data.midi_io import read_rolls

    out = tmp_path / "gen"
    run_chorus("generate", "--run", str(trained_run), "--num", "3", "--out", str(out), "--pianoroll", check=True)
    mids = sorted(out.glob("generated-*.mid"))
    assert len(mids) == 3 and all(m.with_suffix(".png").stat().st_size > 0 for m in mids)
    assert all(m.with_suffix(".wav").stat().st_size > 44 for m in mids)  # audio beside every sample
    assert sorted(p.name for p in out.glob("real-*.wav")) == ["real-0.wav", "real-1.wav", "real-2.wav"]
    # --pianoroll: each sample (and real harmonization) also as a pypianoroll multitrack holding the MIDI's notes
    assert len(list(out.glob("*.npz"))) == 6
    for mid in mids:
        mt = pypianoroll.load(mid.with_suffix(".npz"))
        assert [t.name for t in mt.tracks] == ["soprano", "alto", "tenor", "bass"]
        tracks, _ = read_rolls(mid, steps_per_beat=4)  # the MIDI's tracks that hold notes, in order
        sounding = [t.pianoroll > 0 for t in mt.tracks if t.pianoroll.any()]
        assert len(sounding) == len(tracks)
        for got, roll in zip(sounding, tracks, strict=True):
            np.testing.assert_array_equal(got[: len(roll)], roll[: len(got)])
            assert not got[len(roll):].any()

    melody = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, pitch in enumerate([72, 74, 76, 77, 79, 77, 76, 74]):  # after one beat of silence
        inst.notes.append(pretty_midi.Note(100, pitch, 0.6 + 0.6 * i, 0.6 + 0.6 * (i + 1)))
    melody.instruments.append(inst)
    melody.write(str(tmp_path / "tune.mid"))
    out2 = tmp_path / "gen2"
    run_chorus("generate", "--run", str(trained_run), "--melody", str(tmp_path / "tune.mid"), "--num", "2",
               "--out", str(out2), check=True)
    for mid in sorted(out2.glob("*.mid")):
        pm = pretty_midi.PrettyMIDI(str(mid))
        assert len(pm.instruments) <= 4 and all(i.program == 0 for i in pm.instruments)
        soprano = [n.pitch for n in sorted(pm.instruments[0].notes, key=lambda n: n.start)]
        # Track 0 is the given melody, note for note: the file is at pretty_midi's 120 bpm, so its 32 sixteenths
        # (4 s) after the leading silence hold the first 7 notes of 0.6 s each (the 7th cut short).
        assert soprano == [72, 74, 76, 77, 79, 77, 76]


TWINKLE = [(60, 0, 4), (60, 4, 8), (67, 8, 12), (67, 12, 16), (69, 16, 20), (69, 20, 24), (67, 24, 28)]


def test_generate_keeps_the_twinkle_tune_note_for_note(trained_run, tmp_path):
    """The lab's tune, C4 C4 G4 G4 A4 A4 G4 in quarter notes (and with a half-note last G): track 0 of every file
    `generate` writes holds those 7 notes, the repeated ones as two notes each, as pretty_midi and mido read them."""
    import mido
    import pretty_midi

    for name, tune in (("quarters", TWINKLE), ("half_note_end", TWINKLE[:6] + [(67, 24, 32)])):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)  # a sixteenth step = 0.125 s
        inst = pretty_midi.Instrument(0)
        inst.notes += [pretty_midi.Note(100, p, 0.5 + a * 0.125, 0.5 + b * 0.125) for p, a, b in tune]  # 1 beat rest
        pm.instruments.append(inst)
        pm.write(str(tmp_path / f"{name}.mid"))
        out = tmp_path / name
        run_chorus("generate", "--run", str(trained_run), "--melody", str(tmp_path / f"{name}.mid"), "--num", "3",
                   "--out", str(out), check=True)
        mids = sorted(out.glob("generated-*.mid"))
        assert len(mids) == 3 and sorted(p.name for p in out.iterdir()) == sorted(
            f"{m.stem}{ext}" for m in mids for ext in (".mid", ".png", ".wav")), name
        assert all(m.with_suffix(".png").stat().st_size > 0 and m.with_suffix(".wav").stat().st_size > 44
                   for m in mids)
        for mid in mids:
            read = pretty_midi.PrettyMIDI(str(mid))
            step_s = 60.0 / read.get_tempo_changes()[1][0] / 4
            soprano = sorted(read.instruments[0].notes, key=lambda n: n.start)
            assert [(n.pitch, round(n.start / step_s), round(n.end / step_s)) for n in soprano] == tune, mid.name
            raw = mido.MidiFile(str(mid))  # the same notes in raw ticks, on the step grid exactly
            per_step, now, notes = raw.ticks_per_beat // 4, 0, []
            for msg in raw.tracks[1]:
                now += msg.time
                if msg.type == "note_on" and msg.velocity > 0:
                    notes.append([msg.note, now / per_step, None])
                elif msg.type in ("note_on", "note_off"):
                    notes[-1][2] = now / per_step
            assert [tuple(n) for n in notes] == tune, mid.name


def test_evaluate_prints_table_and_writes_json(trained_run, tmp_path):
    proc = run_chorus("evaluate", "--run", str(trained_run), "--json", str(tmp_path / "e.json"), check=True)
    assert "soprano" in proc.stdout and "bass" in proc.stdout
    doc = json.loads((tmp_path / "e.json").read_text())
    assert np.isfinite(doc["music_distance"]) and set(doc) >= {"generated", "holdout", "step"}
    printed = float(proc.stdout.split("music_distance: ")[1].split()[0])
    assert printed == pytest.approx(doc["music_distance"], abs=1e-4)  # the table and the JSON say the same


def test_data_build_npy_then_train_on_it(tmp_path, data_cache):
    rng = np.random.default_rng(0)
    x = np.full((40, 32, 128, 4), -1.0, np.float32)
    pitches = rng.integers(50, 70, size=(40, 32, 4))
    np.put_along_axis(x, pitches[:, :, None, :], 1.0, axis=2)
    np.save(tmp_path / "mine.npy", x)
    built = run_chorus("data", "build", "--source", "npy", "--path", str(tmp_path / "mine.npy"),
                       "--out", str(tmp_path / "ds"), check=True)
    assert Path(built.stdout.strip()) == tmp_path / "ds"
    info = run_chorus("data", "info", str(tmp_path / "ds"), check=True)
    assert "36 windows" in info.stdout and "4 windows" in info.stdout  # 40 pieces, 10 % held out
    run_chorus("train", "--config", str(TINY), "--set", "data.source=dataset", "--set",
               f"data.path={tmp_path / 'ds'}", "--set", f"run.dir={tmp_path / 'run'}", "--set", "train.steps=2",
               check=True)
    assert (tmp_path / "run" / "checkpoints" / "ckpt-2.index").is_file()


# ------------------------------------------------------------------------------------------ bad input


def test_bad_array_exits_2_naming_the_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 32, 128)))
    _one_line_error(run_chorus("data", "build", "--source", "npy", "--path", str(tmp_path / "bad.npy"),
                               "--out", str(tmp_path / "ds")), "bad.npy")
    assert not (tmp_path / "ds").exists()
    nan = np.zeros((3, 32, 128, 4))
    nan[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    _one_line_error(run_chorus("data", "build", "--source", "npy", "--path", str(tmp_path / "nan.npy")),
                    "nan.npy", "NaN")


def test_training_data_that_cannot_move_to_c_exits_2(tmp_path, data_cache):
    x = np.full((20, 32, 128, 4), -1.0, np.float32)
    x[:, :, 66, 0] = 1.0  # an F# melody: not in C, so every window must move
    x[:, :, 95, 1] = 1.0  # but its voices span the whole pitch window (MIDI 32..95): no window can
    x[:, :, 50, 2] = 1.0
    x[:, :, 32, 3] = 1.0
    np.save(tmp_path / "wide.npy", x)
    base = ["train", "--config", str(TINY), "--set", "data.source=npy", "--set", f"data.path={tmp_path / 'wide.npy'}",
            "--set", f"run.dir={tmp_path / 'run'}"]
    _one_line_error(run_chorus(*base), "model.key_normalize", "moved to C")
    assert not (tmp_path / "run").exists()


def test_empty_midi_folder_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(run_chorus("data", "build", "--source", "midi", "--path", str(tmp_path / "empty")), "empty")


def test_config_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: 3\n")
    _one_line_error(run_chorus("train", "--config", str(bad)), "bad.yaml", "YAML syntax error")
    _one_line_error(run_chorus("train", "--set", "train.stepz=3"), "train.stepz", "did you mean train.steps")
    _one_line_error(run_chorus("train", "--set", "train.g_lr=-1e-3"), "train.g_lr", "> 0")


def test_multi_worker_without_tf_config_exits_2(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    _one_line_error(run_chorus("train", "--config", str(TINY), "--set", "train.strategy=multi_worker",
                               "--set", f"run.dir={tmp_path / 'run'}"), "train.strategy", "TF_CONFIG")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_mixed_precision_run_executes_on_cpu(tiny_overrides, tmp_path):
    """mixed_float16 on a CPU: slow there, but it must run end to end (a fresh process: the policy is global)."""
    run_chorus("train", "--config", str(TINY), *_sets(tiny_overrides), "--set", "train.mixed_precision=true",
               "--set", "train.steps=3", check=True)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3
    assert all(np.isfinite(rows[-1][k]) for k in ("d_loss", "g_loss", "gradient_penalty", "music_distance"))


def test_run_that_is_not_a_run_exits_2(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    before = listing(tmp_path)
    _one_line_error(run_chorus("generate", "--run", str(tmp_path)), str(tmp_path), "not a chorus run")
    _one_line_error(run_chorus("evaluate", "--run", str(tmp_path)), "not a chorus run")
    assert listing(tmp_path) == before


def test_silent_melody_exits_2_and_leaves_run_untouched(trained_run, tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.write(str(tmp_path / "silent.mid"))
    before = listing(trained_run)
    _one_line_error(run_chorus("generate", "--run", str(trained_run), "--melody", str(tmp_path / "silent.mid")),
                    "silent.mid")
    assert listing(trained_run) == before
