"""Writing generated piano rolls as MIDI and PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from chorus.data.midi_io import write_midi
from chorus.data.plot import save_pianoroll_png
from chorus.trainer.config import Config


def write_samples(rolls: np.ndarray, out_dir: str | Path, cfg: Config, *, prefix: str = "sample",
                  title: str | None = None) -> list[Path]:
    """rolls: bool (N, T, P, K). Writes PREFIX-i.mid and PREFIX-i.png for each; returns the MIDI paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, roll in enumerate(rolls):
        mid = out_dir / f"{prefix}-{i}.mid"
        write_midi(roll, mid, steps_per_beat=cfg.data.steps_per_beat, tempo=cfg.sample.tempo,
                   programs=cfg.sample.programs, track_names=cfg.sample.track_names)
        save_pianoroll_png(roll, out_dir / f"{prefix}-{i}.png", track_names=cfg.sample.track_names,
                           steps_per_beat=cfg.data.steps_per_beat, steps_per_bar=cfg.data.steps_per_bar,
                           title=f"{title} #{i}" if title else None)
        paths.append(mid)
    return paths
