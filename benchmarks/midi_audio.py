"""MIDI reading and audio figures: note-steps lost by a floor reader (pypianoroll 1.0.4) vs chorus's, and the
numpy SoundFont player's render time.

    python benchmarks/midi_audio.py

Writes random 4-voice rolls as other tools do (pretty_midi, notes in seconds) at 100 and 120 bpm and several
PPQs, reads them back with pypianoroll.read and with chorus.data.midi_io, and counts the note-steps that differ.
Then renders a two-bar 4-track sample with the numpy player (best of 5, after one warm-up that loads the font).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pypianoroll

from chorus.data.audio import render_midi
from chorus.data.midi_io import read_rolls, write_midi


def random_roll(rng, steps=64, tracks=4):
    roll = np.zeros((steps, 128, tracks), bool)
    for k in range(tracks):
        t = 0
        while t < steps:
            d = int(rng.integers(1, 6))
            roll[t : t + d, int(rng.integers(40, 80)), k] = True
            t += d
    return roll


def pretty_midi_file(path: Path, roll, bpm: float, ppq: int) -> None:
    pm = pretty_midi.PrettyMIDI(resolution=ppq, initial_tempo=bpm)
    step = 60.0 / bpm / 4
    for k in range(roll.shape[2]):
        inst = pretty_midi.Instrument(0)
        for p in range(128):
            col = np.concatenate([[0], roll[:, p, k].astype(int), [0]])
            d = np.diff(col)
            for a, b in zip(np.nonzero(d > 0)[0], np.nonzero(d < 0)[0], strict=True):
                inst.notes.append(pretty_midi.Note(90, p, a * step, b * step))
        pm.instruments.append(inst)
    pm.write(str(path))


def lost_fraction(back: list[np.ndarray], roll: np.ndarray) -> float:
    got = np.zeros_like(roll)
    for k, r in enumerate(back[: roll.shape[2]]):
        n = min(len(r), len(roll))
        got[:n, :, k] = r[:n]
    return float((roll & ~got).sum() / roll.sum())


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mid"
        for bpm in (100.0, 120.0):
            for ppq in (96, 220, 480, 960):
                floor, ours = [], []
                for _ in range(20):
                    roll = random_roll(rng)
                    pretty_midi_file(path, roll, bpm, ppq)
                    mt = pypianoroll.read(path, resolution=4)
                    floor.append(lost_fraction([t.pianoroll > 0 for t in mt.tracks], roll))
                    ours.append(lost_fraction(read_rolls(path, steps_per_beat=4)[0], roll))
                print(f"note-steps lost at {bpm:g} bpm, PPQ {ppq}: pypianoroll {100 * np.mean(floor):.1f} %, "
                      f"chorus {100 * np.mean(ours):.1f} %")
        roll = random_roll(rng, steps=32)
        write_midi(roll, path, steps_per_beat=4, tempo=100.0, programs=[0, 40, 71, 32], track_names=list("satb"))
        render_midi(path, Path(tmp) / "x.wav", mode="numpy")
        times = []
        for _ in range(5):
            t = time.perf_counter()
            render_midi(path, Path(tmp) / "x.wav", mode="numpy")
            times.append(time.perf_counter() - t)
        print(f"numpy render of a 2-bar 4-track sample: {min(times):.3f} s (best of 5)")


if __name__ == "__main__":
    main()
