"""pypianoroll's multitrack .npz format (MuseGAN's Lakh Pianoroll Dataset): read as pieces, write samples.

Only pypianoroll's npz ``load``/``save`` and its ``Multitrack``/``BinaryTrack`` are used (1.0.4: its MIDI
``write`` fails under NumPy 2 with a 2-D tempo, ``Multitrack('x.mid')`` does not read the file, its metrics are
wrong and ``from_pretty_midi`` floors note ends; chorus has its own MIDI reader and metrics).

Reading (the ``pypianoroll`` source; ``data.path`` is one .npz file or a folder searched recursively, sorted by
relative path):

- **tracks**: ``data.track_map`` null takes the first K (``data.tracks``) non-drum tracks that hold a note, in
  file order; a file with fewer is skipped with its reason (in the manifest), and it is an error only when no
  file is usable. A list of K entries picks the voices itself: an int is a track's index in the file, a string
  its name (exact, else the one name equal ignoring case); a track the map names that a file lacks, or a drum
  track, is an InputError naming the file and the key. ``data.order_by_pitch`` then sorts each file's K tracks
  by the mean pitch of their sounding steps, highest first (the soprano, which conditions the generator).
- **time**: pypianoroll's ``resolution`` is time steps per beat. Every run of sounding steps (velocity > 0) of a
  pitch is one note; its start and end go to the nearest step of chorus's grid (``data.steps_per_beat``),
  halves up, exactly as ``data.midi_io`` rounds MIDI ticks; a note shorter than half a step vanishes. Step 0 is
  the file's first downbeat when it marks downbeats (``downbeat``), else its time step 0. Tracks keep their
  chords (like the ``midi`` source); velocities are binarized.

Writing (``write_multitrack``): a bool roll (T, 128, K) -> one Multitrack with K named ``BinaryTrack``s (the
MIDI writer's programs and names), ``resolution`` = steps per beat, a 1-D tempo, a downbeat every bar, saved
atomically with ``pypianoroll.save``. A binary track cannot mark a repeated note inside a held run, so the
``onsets`` the MIDI writer takes have no place here: such notes read back as one held note.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chorus.data.midi_io import _to_step, roll_notes
from chorus.data.settings import DataConfig
from chorus.data.sources import PITCHES, SourceResult, read_folder, sha256_file
from chorus.errors import InputError
from chorus.files import atomic_path

SUFFIX = ".npz"
READER_VERSION = 1  # bump when reading a file gives different rolls; part of the dataset cache key


# ---------------------------------------------------------------------------------------------------------------
# settings and input identity


def check_track_settings(cfg: DataConfig) -> None:
    """data.track_map / data.order_by_pitch: used by the pypianoroll source only; a map names K distinct tracks."""
    if cfg.source != "pypianoroll":
        for key, default in (("track_map", None), ("order_by_pitch", False)):
            if getattr(cfg, key) != default:
                raise InputError(f"data.{key}: used only by data.source pypianoroll, not {cfg.source}")
        return
    m = cfg.track_map
    if m is None:
        return
    if len(m) != cfg.tracks:
        raise InputError(f"data.track_map: expected {cfg.tracks} entries (one per data.tracks), got {len(m)}")
    for i, v in enumerate(m):
        if isinstance(v, bool) or not (isinstance(v, int) and v >= 0 or isinstance(v, str) and v):
            raise InputError(f"data.track_map[{i}]: expected a track index (an integer >= 0) or a track name, "
                             f"got {v!r}")
    if len(set(m)) != len(m):
        raise InputError(f"data.track_map: names a track twice: {m}")


def pianoroll_files(path: str | Path) -> tuple[Path, list[Path]]:
    """(root, files): one .npz file (root = its folder), or every .npz under a folder, sorted by relative path."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() != SUFFIX:
            raise InputError(f"{p}: expected a pypianoroll .npz file or a folder of them")
        return p.parent, [p]
    if not p.is_dir():
        raise InputError(f"{p}: not found (data.path must be a pypianoroll .npz file or a folder of them)")
    files = sorted((f for f in p.rglob("*") if f.is_file() and f.suffix.lower() == SUFFIX),
                   key=lambda f: f.relative_to(p).as_posix())
    if not files:
        raise InputError(f"{p}: no .npz files found (searched recursively)")
    return p, files


def input_identity(cfg: DataConfig, path: Path) -> dict[str, Any]:
    """The cache key's view of the input: the reader, the files' contents and how tracks become voices."""
    check_track_settings(cfg)
    root, files = pianoroll_files(path)
    return {"reader": READER_VERSION, "track_map": cfg.track_map, "order_by_pitch": cfg.order_by_pitch,
            "files": [[f.relative_to(root).as_posix(), f.stat().st_size, sha256_file(f)] for f in files]}


# ---------------------------------------------------------------------------------------------------------------
# reading


def load_multitrack(path: Path, name: str):
    """pypianoroll.load, with an InputError naming the file for anything that is not its npz format."""
    import pypianoroll

    try:
        mt = pypianoroll.load(path)
        resolution = int(mt.resolution)
        if resolution <= 0 or resolution != mt.resolution:
            raise ValueError(f"resolution {mt.resolution!r}, expected a positive integer")
        for t in mt.tracks:
            if t.pianoroll.ndim != 2 or (t.pianoroll.size and t.pianoroll.shape[1] != PITCHES):
                raise ValueError(f"track {t.name!r} has shape {t.pianoroll.shape}, expected (time, {PITCHES})")
    except Exception as e:  # noqa: BLE001 - np.load, zipfile, json, pypianoroll: any failure is a bad file
        msg = " ".join(f"{type(e).__name__}: {e}".split())
        raise InputError(f"{name}: cannot read as a pypianoroll .npz ({msg})") from None
    return mt


def resample(pianoroll: np.ndarray, resolution: int, steps_per_beat: int, start: int, length: int) -> np.ndarray:
    """One track's (time, 128) roll at `resolution` steps per beat -> bool (length, 128) on chorus's grid, from
    time step `start`: every note's ends to the nearest step."""
    out = np.zeros((length, PITCHES), dtype=bool)  # (steps, pitches)
    on = np.asarray(pianoroll)[start:] > 0
    for a, b, pitch in roll_notes(on):  # runs of sounding steps, at the file's resolution
        sa, sb = _to_step(a, resolution, steps_per_beat), min(_to_step(b, resolution, steps_per_beat), length)
        if sb > sa:
            out[sa:sb, pitch] = True
    return out


def _pick(mt, cfg: DataConfig, name: str) -> tuple[list[int] | None, str]:
    """Indices of the K tracks that become voices, in voice order, or (None, reason) to skip the file."""
    tracks = mt.tracks
    if cfg.track_map is None:
        usable = [i for i, t in enumerate(tracks) if not t.is_drum and t.pianoroll.size and t.pianoroll.any()]
        if len(usable) < cfg.tracks:
            return None, f"{len(usable)} non-empty non-drum tracks, need {cfg.tracks}"
        return usable[: cfg.tracks], ""
    names = [str(t.name) for t in tracks]
    shown = ", ".join(f"{i}: {n!r}" for i, n in enumerate(names))
    picked = []
    for i, v in enumerate(cfg.track_map):
        if isinstance(v, int):
            if v >= len(tracks):
                raise InputError(f"{name}: data.track_map[{i}]: track {v}, but the file has {len(tracks)} tracks "
                                 f"({shown})")
            k = v
        else:
            exact = [j for j, n in enumerate(names) if n == v]
            loose = [j for j, n in enumerate(names) if n.lower() == v.lower()]
            match = exact or loose
            if len(match) != 1:
                why = "no track" if not match else f"{len(match)} tracks"
                raise InputError(f"{name}: data.track_map[{i}]: {why} named {v!r} (tracks: {shown})")
            k = match[0]
        if tracks[k].is_drum:
            raise InputError(f"{name}: data.track_map[{i}]: track {k} ({names[k]!r}) is a drum track")
        picked.append(k)
    if len(set(picked)) != len(picked):
        raise InputError(f"{name}: data.track_map: names one track twice ({cfg.track_map} -> tracks {picked})")
    return picked, ""


def multitrack_roll(mt, cfg: DataConfig, name: str) -> tuple[np.ndarray | None, str]:
    """A loaded Multitrack -> (bool (steps, 128, K) on chorus's grid, "") or (None, reason)."""
    from chorus.data.music_files import pitch_order  # lazy: music_files imports data.sources too

    picked, reason = _pick(mt, cfg, name)
    if picked is None:
        return None, reason
    beats = np.flatnonzero(mt.downbeat) if mt.downbeat is not None else np.zeros(0, dtype=int)
    start = int(beats[0]) if len(beats) else 0  # (time steps): the first bar line
    end = max((len(t.pianoroll) for t in mt.tracks), default=0)
    length = _to_step(max(end - start, 0), int(mt.resolution), cfg.steps_per_beat)
    roll = np.stack([resample(mt.tracks[k].pianoroll, int(mt.resolution), cfg.steps_per_beat, start, length)
                     for k in picked], axis=-1)  # (steps, pitches, tracks)
    if not roll.any():
        return None, "the chosen tracks hold no notes"
    if cfg.order_by_pitch:
        roll = roll[..., pitch_order(roll)]
    return roll, ""


def read_pianoroll_source(cfg: DataConfig, *, progress: bool = True) -> SourceResult:
    """Every pypianoroll .npz of data.path as a piece; see the module docstring for the rules."""
    if not cfg.path:
        raise InputError("data.path: required when data.source is pypianoroll")
    check_track_settings(cfg)
    root, files = pianoroll_files(cfg.path)
    return read_folder(root, files, lambda path, rel: multitrack_roll(load_multitrack(path, rel), cfg, rel), cfg,
                       kind="pypianoroll", unusable="pypianoroll files is usable", where=str(cfg.path),
                       progress=progress)


# ---------------------------------------------------------------------------------------------------------------
# writing


def write_multitrack(roll: np.ndarray, path: str | Path, *, steps_per_beat: int, beats_per_bar: int = 4,
                     tempo: float, programs: list[int], track_names: list[str], name: str | None = None) -> Path:
    """Write a bool roll (T, 128, K) as a pypianoroll .npz (one Multitrack, K named BinaryTracks); return the path."""
    import pypianoroll

    roll = np.asarray(roll)
    if roll.ndim != 3 or roll.shape[1] != PITCHES:
        raise ValueError(f"write_multitrack: expected a roll (T, {PITCHES}, K), got shape {roll.shape}")
    k = roll.shape[2]
    if len(programs) != k or len(track_names) != k:
        raise ValueError(f"write_multitrack: need {k} programs and track names, got {len(programs)} and "
                         f"{len(track_names)}")
    on = roll > 0
    steps = on.shape[0]
    downbeat = np.zeros(steps, dtype=bool)
    downbeat[:: steps_per_beat * beats_per_bar] = True
    mt = pypianoroll.Multitrack(
        name=name if name is not None else Path(path).stem, resolution=steps_per_beat,
        tempo=np.full(steps, float(tempo)),  # 1-D: pypianoroll's own MIDI writer fails on a 2-D tempo
        downbeat=downbeat,
        tracks=[pypianoroll.BinaryTrack(name=str(track_names[i]), program=int(programs[i]), is_drum=False,
                                        pianoroll=on[:, :, i]) for i in range(k)])
    with atomic_path(path) as tmp:  # the temp name ends in .npz, so np.savez writes to it and not to tmp.npz
        pypianoroll.save(tmp, mt)
    return Path(path)
