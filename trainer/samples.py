"""Writing piano rolls as MIDI, PNG and WAV (and TensorBoard audio), so samples can be seen and heard, and
optionally as pypianoroll .npz files (MuseGAN's multitrack format) for tools that read that."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chorus.data.audio import read_wav, try_render
from chorus.data.midi_io import write_midi
from chorus.data.pianoroll_io import write_multitrack
from chorus.data.plot import save_pianoroll_png
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config


def write_samples(rolls: np.ndarray, out_dir: str | Path, cfg: Config, *, prefix: str = "sample",
                  title: str | None = None, real: np.ndarray | None = None, tensorboard=None,
                  step: int | None = None, onsets: np.ndarray | None = None, pianoroll: bool = False) -> list[Path]:
    """rolls: bool (N, T, P, K). Writes PREFIX-i.mid, .png and .wav for each; returns the MIDI paths.

    ``onsets`` (N, T, P, K), or None: note starts inside held runs (a user's repeated melody notes), so the MIDI
    file, and the PNG and WAV made from the same notes, keep them as separate notes (data.midi_io.write_midi).

    ``real`` (N, T, P, K): the real harmonizations of the same melodies, written beside them as real-i.* so
    that a listener can compare. ``tensorboard``: a tf.summary writer that also gets the WAVs as audio at
    ``step``. A WAV that cannot be rendered is a one-line warning (cfg.sample.audio none: no WAVs).

    ``pianoroll``: also write PREFIX-i.npz (and real-i.npz), one pypianoroll Multitrack each with the MIDI file's
    track names and programs (data.pianoroll_io.write_multitrack; it holds the roll, so ``onsets`` do not apply).
    """
    paths = _write(rolls, Path(out_dir), cfg, prefix, title, onsets, pianoroll)
    real_paths = (_write(real, Path(out_dir), cfg, "real", "holdout (real)", None, pianoroll)
                  if real is not None else [])
    if tensorboard is not None and cfg.sample.audio != "none":
        _log_audio(tensorboard, step, cfg.sample.sample_rate, {"samples/generated": paths, "samples/real": real_paths})
    return paths


def _write(rolls: np.ndarray, out_dir: Path, cfg: Config, prefix: str, title: str | None,
           onsets: np.ndarray | None, pianoroll: bool = False) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, roll in enumerate(rolls):
        mid = out_dir / f"{prefix}-{i}.mid"
        onset = None if onsets is None else onsets[i]  # (T, P, K)
        write_midi(roll, mid, steps_per_beat=cfg.data.steps_per_beat, tempo=cfg.sample.tempo,
                   programs=cfg.sample.programs, track_names=cfg.sample.track_names, onsets=onset)
        save_pianoroll_png(roll, out_dir / f"{prefix}-{i}.png", track_names=cfg.sample.track_names,
                           steps_per_beat=cfg.data.steps_per_beat, steps_per_bar=cfg.data.steps_per_bar,
                           title=f"{title} #{i}" if title else None, onsets=onset)
        # the WAV is rendered from the MIDI file, so it plays the same notes
        try_render(mid, mid.with_suffix(".wav"), mode=cfg.sample.audio, sample_rate=cfg.sample.sample_rate)
        if pianoroll:
            write_multitrack(roll, mid.with_suffix(".npz"), steps_per_beat=cfg.data.steps_per_beat,
                             beats_per_bar=cfg.data.beats_per_bar, tempo=cfg.sample.tempo,
                             programs=cfg.sample.programs, track_names=cfg.sample.track_names)
        paths.append(mid)
    return paths


def real_harmonizations(holdout: np.ndarray, melody: np.ndarray) -> np.ndarray:
    """For each melody (N, T, P, 1) in {-1, 1} (or bool), a holdout window (T, P, K) whose track 0 is that
    melody: the real harmonization the generated sample can be compared with. -> bool (N, T, P, K)."""
    keys = RollCodec.melody(holdout)[..., 0] > 0  # (windows, T, P)
    out = []
    for m in melody[..., 0] > 0:  # (T, P)
        match = np.flatnonzero((keys == m).all(axis=(1, 2)))
        if not match.size:
            raise ValueError("real_harmonizations: a melody is not track 0 of any holdout window")
        out.append(holdout[match[0]] > 0)
    return np.stack(out)


def _log_audio(writer, step: int | None, sample_rate: int, groups: dict[str, list[Path]]) -> None:
    """The WAVs beside MIDI files as TensorBoard audio summaries (mono, zero-padded to the longest)."""
    from chorus.data import tfenv

    tf = tfenv.tensorflow()

    for name, mids in groups.items():
        wavs = [m.with_suffix(".wav") for m in mids if m.with_suffix(".wav").is_file()]
        if not wavs:
            continue
        clips = [read_wav(w)[0].mean(axis=1) for w in wavs]  # (frames,) each
        batch = np.zeros((len(clips), max(len(c) for c in clips), 1), np.float32)  # (k, frames, channels)
        for i, c in enumerate(clips):
            batch[i, : len(c), 0] = c
        with writer.as_default(step=step):
            tf.summary.audio(name, batch, sample_rate, max_outputs=len(clips))
