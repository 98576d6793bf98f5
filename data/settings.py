"""Settings of a dataset build. Plain dataclass; the loader that validates YAML into it lives in trainer.config."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataConfig:
    source: str = field(default="chorales",
                        metadata={"choices": ["chorales", "midi", "npy", "pypianoroll", "dataset"]})
    # MIDI folder (midi), .npy/.npz file (npy), pypianoroll .npz file or folder (pypianoroll), built dataset dir
    path: str | None = None
    cache_dir: str = ".cache/chorus/data"
    steps: int = field(default=32, metadata={"min": 1})
    pitches: int = field(default=128, metadata={"min": 1, "max": 128})
    tracks: int = field(default=4, metadata={"min": 1})
    steps_per_beat: int = field(default=4, metadata={"min": 1})
    beats_per_bar: int = field(default=4, metadata={"min": 1})
    hop_bars: int = field(default=1, metadata={"min": 1})
    transpose: int = field(default=0, metadata={"min": -48, "max": 48})
    empty_voice: str = field(default="drop", metadata={"choices": ["drop", "keep"]})
    holdout_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    max_pieces: int | None = field(default=None, metadata={"min": 1})
    seed: int = 0
    # pypianoroll only: K track indices or names that become the voices (None: the first K non-empty non-drum)
    track_map: list[Any] | None = None  # ints and names mixed; data.pianoroll_io checks them
    order_by_pitch: bool = False  # pypianoroll only: sort each file's K tracks by mean pitch, highest first

    @property
    def steps_per_bar(self) -> int:
        return self.steps_per_beat * self.beats_per_bar
