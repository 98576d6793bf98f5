"""Any music as scoring windows: a folder of 4-part MIDI files, or an .npy/.npz array of rolls (`chorus evaluate`).

The windows are cut as a dataset cuts its pieces (``sources.make_windows``: ``data.steps`` steps every
``data.hop_bars`` bars from step 0, ``data.transpose`` applied, windows with a note pushed out of 0..127 dropped),
with one difference: a window in which a voice is silent is kept and counted, as a model's samples are, since
dropping it would hide a system's silent voice. Files are read strictly: any file that cannot be used is an
InputError naming the file and what was expected, never a silent skip.

- **MIDI**: every ``*.mid``/``*.midi`` under the folder (recursive, sorted), read by ``data.midi_io`` like the
  ``midi`` source (steps follow the beat, step 0 is tick 0 and a bar line). A file must hold exactly K non-empty,
  non-drum tracks; they are the voices top to bottom in file order, or, with ``order_by_pitch``, sorted by the
  mean pitch of their sounding steps, highest first (the soprano).
- **array**: ``(N, T, 128, K)`` with T >= ``data.steps`` (values {-1, 1}, {0, 1} or bool, as the ``npy`` source
  reads it: an .npz's ``x``, else ``data``, else its first array); each row is one piece, cut into windows.
  ``order_by_pitch`` sorts each row's tracks.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chorus.data.settings import DataConfig
from chorus.data.sources import PITCHES, WindowStats, load_array, make_windows, midi_files
from chorus.errors import InputError


@dataclass
class MusicWindows:
    windows: np.ndarray  # bool (N, T, 128, K), voices top to bottom
    source: str  # the folder or file
    pieces: list[str]  # one name per file (or array row)
    kind: str = "files"  # what a piece is: "files" (MIDI) or "rows" (an array)
    orders: dict[str, list[int]] = field(default_factory=dict)  # with order_by_pitch: piece -> its tracks' order
    silent_voice: int = 0  # windows kept although a voice never sounds in them
    out_of_range: int = 0  # windows dropped: data.transpose pushed a note out of 0..127

    def describe(self) -> str:
        out = (f"{len(self.windows)} windows of {self.windows.shape[1]} steps from {len(self.pieces)} {self.kind} "
               f"of {self.source}")
        if self.silent_voice:
            out += f" ({self.silent_voice} with a silent voice, kept)"
        if self.out_of_range:
            out += f" ({self.out_of_range} dropped: a note out of 0..127 after data.transpose)"
        return out


def pitch_order(roll: np.ndarray) -> list[int]:
    """Track indices of roll (T, 128, K) by the mean pitch of their sounding steps, highest first."""
    pitches = np.arange(roll.shape[1])
    means = [float((roll[..., k].sum(axis=0) * pitches).sum() / max(roll[..., k].sum(), 1))
             for k in range(roll.shape[2])]
    return sorted(range(roll.shape[2]), key=lambda k: -means[k])


def _cut(roll: np.ndarray, name: str, cfg: DataConfig, stats: WindowStats) -> np.ndarray:
    """One piece (T, 128, K) -> its windows; InputError naming the piece if it gives none."""
    if roll.shape[0] < cfg.steps:
        raise InputError(f"{name}: {roll.shape[0]} steps at {cfg.steps_per_beat} per beat, expected at least "
                         f"{cfg.steps} (data.steps) for one window")
    w = make_windows(roll, dataclasses.replace(cfg, empty_voice="keep"), stats)
    if not len(w):
        raise InputError(f"{name}: every window has a note pushed out of 0..127 by data.transpose={cfg.transpose}")
    return w


def _collect(pieces: list[tuple[str, np.ndarray]], source: str, kind: str, cfg: DataConfig,
             order_by_pitch: bool) -> MusicWindows:
    stats = WindowStats()
    windows, orders = [], {}
    for name, roll in pieces:  # roll (T, 128, K) in file order
        if order_by_pitch:
            orders[name] = pitch_order(roll)
            roll = roll[..., orders[name]]
        windows.append(_cut(roll, name, cfg, stats))
    x = np.concatenate(windows)  # (N, T, 128, K)
    silent = int((~x.any(axis=(1, 2))).any(axis=1).sum())
    return MusicWindows(x, source, [n for n, _ in pieces], kind, orders, silent, stats.dropped_out_of_range)


def read_midi_windows(folder: str | Path, cfg: DataConfig, *, order_by_pitch: bool = False) -> MusicWindows:
    """Every MIDI file under folder as windows (see the module docstring). InputError on the first unusable file."""
    from chorus.data.midi_io import read_rolls  # lazy: midi_io imports data.sources

    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: folder not found (expected a folder of .mid/.midi files)")
    pieces = []
    for path in midi_files(root):  # InputError: no folder, or no MIDI files in it
        rel = path.relative_to(root).as_posix()
        try:
            rolls, _ = read_rolls(path, steps_per_beat=cfg.steps_per_beat)  # [(steps, 128)] per pitched track
        except InputError as e:
            raise InputError(f"{rel}: {str(e).removeprefix(f'{path.name}: ')}") from None
        if len(rolls) != cfg.tracks:
            raise InputError(f"{rel}: {len(rolls)} non-empty non-drum tracks, expected {cfg.tracks} (data.tracks: "
                             "one track per voice)")
        pieces.append((rel, np.stack(rolls, axis=-1)))  # (steps, pitches, tracks)
    return _collect(pieces, str(root), "files", cfg, order_by_pitch)


def read_array_windows(path: str | Path, cfg: DataConfig, *, order_by_pitch: bool = False) -> MusicWindows:
    """An (N, T, 128, K) array file (T >= data.steps) as windows, each row a piece. InputError if unusable."""
    path = Path(path)
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"{path}: expected an .npy or .npz file of rolls (N, T, {PITCHES}, {cfg.tracks})")
    if not path.is_file():
        raise InputError(f"{path}: array file not found")
    steps = _steps_of(path)
    if steps is not None and steps < cfg.steps:
        raise InputError(f"{path.name}: rolls of {steps} steps, expected at least {cfg.steps} (data.steps) on axis 1")
    x, _ = load_array(path, steps=steps if steps is not None else cfg.steps, tracks=cfg.tracks)  # (N, T, 128, K)
    return _collect([(f"row {i}", row) for i, row in enumerate(x)], str(path), "rows", cfg, order_by_pitch)


def _steps_of(path: Path) -> int | None:
    """Axis 1 of the array in path, if it reads as a 4-D array (load_array says what is wrong otherwise)."""
    try:
        if path.suffix.lower() == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = [k for k in z.files if k != "piece"]
                key = "x" if "x" in keys else "data" if "data" in keys else keys[0] if keys else None
                shape = z[key].shape if key else ()
    except Exception:  # noqa: BLE001 - load_array reads it again and names the problem
        return None
    return shape[1] if len(shape) == 4 else None
