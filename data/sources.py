"""Where piano rolls come from: Bach chorales (music21), a folder of MIDI files, an .npy/.npz array, or
pypianoroll's multitrack .npz files (MuseGAN's Lakh Pianoroll Dataset).

Every source yields *pieces*: ``Piece(piece_id, roll)`` with ``roll`` a bool array ``(steps, 128, K)`` at
``steps_per_beat`` resolution (K = ``data.tracks``). ``make_windows`` cuts a piece into training windows.
Several pieces may share one ``piece_id`` (rows of an .npz with a ``piece`` array); the train/holdout split
groups by id, so one piece never lands on both sides.

Rules, in one place:

- **chorales**: music21's Riemenschneider chorales (each corpus file read once: the numbering lists 21 files
  twice) with exactly K = 4 parts (S, A, T, B, in score order) whose
  every time signature is ``beats_per_bar``/4 (4/4 by default). Step 0 is the downbeat of measure 1: the pickup
  (anacrusis) before it is dropped, so every window starts on a bar line. Notes are quantized to
  ``steps_per_beat`` steps per quarter note; a chord (or a second voice) in a part keeps its top note. Ties
  merge by construction: a bool roll cannot tell a tied note from a held one (nor, for that matter, two
  repeated notes of one pitch from one long note).
- **midi**: every ``*.mid``/``*.midi`` under the folder (recursive, sorted by relative path), read on MIDI ticks
  by ``data.midi_io`` (note starts and ends go to the nearest step; steps follow the beat, so tempo changes do
  not move them). Track mapping: the non-drum tracks (pretty_midi-style instruments: one per MIDI track, channel
  and program) that hold at least one note, in file order; the first K of them become tracks 0..K-1 (track 0
  conditions the generator, so put the melody first). A file with fewer than K such tracks is skipped with its
  reason; so is an unreadable file. Velocities are binarized. Step 0 is tick 0 and is taken as a bar line; bars
  are ``beats_per_bar`` beats (time-signature changes inside a file are ignored). The reader's version
  (``midi_io.READER_VERSION``) is part of the input identity, so a changed reader rebuilds cached datasets.
- **npy**: one array ``(N, T, 128, K)`` with T = ``data.steps``, values in {-1, 1}, {0, 1} or bool (on = > 0).
  An .npz uses key ``x``, else ``data``, else its first array; an optional ``piece`` array (N ids) says which
  rows belong to one piece, otherwise every row is its own piece.
- **pypianoroll**: one multitrack .npz written by ``pypianoroll.save`` (or a folder of them), read and
  resampled to ``steps_per_beat`` by ``data.pianoroll_io``, whose docstring holds the rules: which tracks become
  the voices (``data.track_map``, ``data.order_by_pitch``), rounding, the first downbeat as step 0.
- **windows** (all sources): ``steps`` steps starting every ``hop_bars`` bars; a piece shorter than one window
  gives none. ``transpose`` shifts every pitch; a window in which a sounding note would leave 0..127 is dropped
  (counted, never clipped or wrapped). ``empty_voice``: ``drop`` drops a window in which any track never sounds,
  ``keep`` keeps it.
"""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chorus.data.settings import DataConfig
from chorus.errors import InputError

PITCHES = 128  # the pitch axis is always the full MIDI range
MIDI_SUFFIXES = (".mid", ".midi")
CHORALE_TRACK_NAMES = ["soprano", "alto", "tenor", "bass"]
PROGRESS_EVERY = 25  # pieces between progress lines on stderr
SOURCES = ("chorales", "midi", "npy", "pypianoroll")  # what read_pieces reads (data.source `dataset` is built)


@dataclass
class Piece:
    piece_id: str
    roll: np.ndarray  # bool (steps, 128, K)


@dataclass
class SourceResult:
    pieces: list[Piece]
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"path": ..., "reason": ...}]
    track_names: list[str] | None = None  # known names of the K tracks (chorales), else None


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def keep_top_note(roll: np.ndarray) -> np.ndarray:
    """Keep only the highest sounding pitch per step (and track). roll: bool (T, 128) or (T, 128, K)."""
    squeeze = roll.ndim == 2
    r = roll[..., None] if squeeze else roll  # (T, 128, K)
    top = PITCHES - 1 - np.argmax(r[:, ::-1, :], axis=1)  # (T, K): highest pitch index
    sounding = r.any(axis=1)  # (T, K)
    out = np.zeros_like(r, dtype=bool)
    t_idx, k_idx = np.nonzero(sounding)
    out[t_idx, top[t_idx, k_idx], k_idx] = True
    return out[..., 0] if squeeze else out


# ---------------------------------------------------------------------------------------------------------------
# input identity (cheap; feeds the cache key before anything is parsed)


def midi_files(folder: str | Path) -> list[Path]:
    """All MIDI files under folder, sorted by relative path. InputError if the folder is missing or has none."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: MIDI folder not found (data.path must be a folder of .mid/.midi files)")
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        raise InputError(f"{root}: no .mid or .midi files found (searched recursively)")
    return files


def source_identity(cfg: DataConfig) -> dict:
    """What identifies the input, for the cache key: content hashes of the files, or music21's version."""
    from chorus.data.pianoroll_io import check_track_settings  # lazy: pianoroll_io imports this module

    check_track_settings(cfg)  # data.track_map / order_by_pitch: only for pypianoroll, and well formed
    if cfg.source == "chorales":
        import music21

        return {"music21": music21.__version__}
    if cfg.source == "midi":
        from chorus.data.midi_io import READER_VERSION  # lazy: midi_io imports this module

        root = _require_path(cfg)
        return {
            "reader": READER_VERSION,
            "files": [
                [p.relative_to(root).as_posix(), p.stat().st_size, sha256_file(p)] for p in midi_files(root)
            ]
        }
    if cfg.source == "npy":
        path = _require_path(cfg)
        if not path.is_file():
            raise InputError(f"{path}: array file not found (data.path must be an .npy or .npz file)")
        return {"file": path.name, "sha256": sha256_file(path)}
    if cfg.source == "pypianoroll":
        from chorus.data.pianoroll_io import input_identity  # lazy: pianoroll_io imports this module

        return input_identity(cfg, _require_path(cfg))
    raise InputError(f"data.source: expected one of {', '.join(SOURCES)}, got {cfg.source!r}")


def _require_path(cfg: DataConfig) -> Path:
    if not cfg.path:
        raise InputError(f"data.path: required when data.source is {cfg.source}")
    return Path(cfg.path).expanduser()


# ---------------------------------------------------------------------------------------------------------------
# reading


def read_pieces(cfg: DataConfig, *, progress: bool = True) -> SourceResult:
    """Read the configured source into pieces (at most cfg.max_pieces of them)."""
    if cfg.pitches != PITCHES:
        raise InputError(f"data.pitches: only {PITCHES} (the full MIDI range) is supported, got {cfg.pitches}")
    from chorus.data.pianoroll_io import check_track_settings, read_pianoroll_source  # lazy: imports this module

    readers: dict[str, Callable[..., SourceResult]] = {
        "chorales": read_chorales,
        "midi": read_midi_folder,
        "npy": read_array_file,
        "pypianoroll": read_pianoroll_source,
    }
    if cfg.source not in readers:
        raise InputError(f"data.source: expected one of {', '.join(SOURCES)}, got {cfg.source!r}")
    check_track_settings(cfg)
    return readers[cfg.source](cfg, progress=progress)


def read_chorales(cfg: DataConfig, *, progress: bool = True) -> SourceResult:
    """Bach chorales from music21's corpus; see the module docstring for the rules."""
    if cfg.tracks != 4:
        raise InputError(f"data.tracks: chorales have 4 voices (SATB), got {cfg.tracks}")
    from music21 import corpus

    names = list(corpus.chorales.Iterator(returnType="filename"))
    pieces: list[Piece] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if cfg.max_pieces is not None and len(pieces) >= cfg.max_pieces:
            break
        piece_id = name.split("/")[-1]
        if piece_id in seen:
            continue
        seen.add(piece_id)
        try:
            score = corpus.parse(name)
            roll, reason = chorale_roll(score, steps_per_beat=cfg.steps_per_beat, beats_per_bar=cfg.beats_per_bar)
        except Exception as e:  # a corpus file music21 cannot parse (or read as rolls): skip it, and say so now
            roll, reason = None, f"unparseable: {type(e).__name__}: {e}"
            _warn(f"skipping chorale {piece_id}: {reason}")
        if roll is None:
            skipped.append({"path": piece_id, "reason": reason})
        else:
            pieces.append(Piece(piece_id, roll))
        if progress and i % PROGRESS_EVERY == 0:
            print(f"chorales: parsed {i}/{len(names)}, kept {len(pieces)}", file=sys.stderr, flush=True)
    if progress:
        unparseable = sum(s["reason"].startswith("unparseable") for s in skipped)
        print(f"chorales: kept {len(pieces)} pieces, skipped {len(skipped)} ({unparseable} unparseable; "
              "each piece's reason is in the manifest)", file=sys.stderr, flush=True)
    return SourceResult(pieces, skipped, list(CHORALE_TRACK_NAMES))


def chorale_roll(score, *, steps_per_beat: int, beats_per_bar: int = 4) -> tuple[np.ndarray | None, str]:
    """One music21 score -> (bool roll (steps, 128, 4) from the downbeat of measure 1, "") or (None, reason)."""
    parts = list(score.parts)
    if len(parts) != 4:
        return None, f"{len(parts)} parts, need 4 (SATB)"
    want = f"{beats_per_bar}/4"
    meters = {ts.ratioString for ts in score.recurse().getElementsByClass("TimeSignature")}
    if meters != {want}:
        return None, f"time signature {', '.join(sorted(meters)) or 'none'}, need {want} throughout"
    # The pickup measure is numbered 0; measure 1 starts on the first full bar.
    start = 0.0
    for m in parts[0].getElementsByClass("Measure"):
        if m.number >= 1:
            start = float(m.offset)
            break
    total = int(round((float(score.highestTime) - start) * steps_per_beat))
    if total <= 0:
        return None, "no music after the pickup"
    roll = np.zeros((total, PITCHES, 4), dtype=bool)  # (steps, pitches, tracks)
    for k, part in enumerate(parts):
        for n in part.flatten().notes:
            ql = float(n.duration.quarterLength)
            if ql <= 0:  # grace notes
                continue
            off = float(n.offset) - start
            a = max(int(round(off * steps_per_beat)), 0)
            b = min(int(round((off + ql) * steps_per_beat)), total)
            if b <= a:  # entirely inside the pickup, or shorter than half a step
                continue
            pitch = max(p.midi for p in n.pitches)  # a chord keeps its top note
            roll[a:b, pitch, k] = True
    return keep_top_note(roll), ""


def read_midi_folder(cfg: DataConfig, *, progress: bool = True) -> SourceResult:
    """Every MIDI file under cfg.path; see the module docstring for the track-mapping and skipping rules."""
    from chorus.data.midi_io import read_rolls  # lazy: midi_io imports this module

    root = _require_path(cfg)

    def read_one(path: Path, rel: str) -> tuple[np.ndarray | None, str]:
        try:
            rolls, _ = read_rolls(path, steps_per_beat=cfg.steps_per_beat)  # [(steps, 128)] per pitched track
            return stack_tracks(rolls, cfg.tracks)
        except InputError as e:  # corrupt, truncated, not MIDI at all, or no notes
            return None, str(e).removeprefix(f"{path.name}: ")

    return read_folder(root, midi_files(root), read_one, cfg, kind="midi",
                       unusable=f"MIDI files is usable (need {cfg.tracks} non-empty non-drum tracks)",
                       progress=progress)


def read_folder(root: Path, files: list[Path], read_one, cfg: DataConfig, *, kind: str, unusable: str,
                where: str | None = None, progress: bool = True) -> SourceResult:
    """A folder source's pieces: read_one(path, rel) -> (roll, "") or (None, why) for each file, up to
    data.max_pieces; a skipped file is warned about and listed with its reason (the manifest keeps them)."""
    pieces: list[Piece] = []
    skipped: list[dict[str, str]] = []
    for i, path in enumerate(files, 1):
        if cfg.max_pieces is not None and len(pieces) >= cfg.max_pieces:
            break
        rel = path.relative_to(root).as_posix()
        roll, reason = read_one(path, rel)
        if roll is None:
            reason = " ".join(reason.split())  # one line
            _warn(f"skipping {rel}: {reason}")
            skipped.append({"path": rel, "reason": reason})
        else:
            pieces.append(Piece(rel, roll))
        if progress and i % PROGRESS_EVERY == 0:
            print(f"{kind}: read {i}/{len(files)}, kept {len(pieces)}", file=sys.stderr, flush=True)
    if not pieces:
        raise InputError(f"{where or root}: none of the {len(files)} {unusable}; first reason: "
                         f"{skipped[0]['reason']}")
    return SourceResult(pieces, skipped, None)


def stack_tracks(rolls: list[np.ndarray], tracks: int) -> tuple[np.ndarray | None, str]:
    """Equal-length (steps, 128) rolls of the pitched tracks -> (bool (steps, 128, K) of the first K, "") or
    (None, reason)."""
    if len(rolls) < tracks:
        return None, f"{len(rolls)} non-empty non-drum tracks, need {tracks}"
    return np.stack(rolls[:tracks], axis=-1), ""  # (steps, pitches, tracks)


def read_array_file(cfg: DataConfig, *, progress: bool = True) -> SourceResult:
    """An (N, T, 128, K) array; every row becomes one piece (or joins the piece its `piece` id names)."""
    path = _require_path(cfg)
    x, ids = load_array(path, steps=cfg.steps, tracks=cfg.tracks)
    if cfg.max_pieces is not None:
        keep_ids = list(dict.fromkeys(ids))[: cfg.max_pieces]
        rows = [i for i, pid in enumerate(ids) if pid in set(keep_ids)]
        x, ids = x[rows], [ids[i] for i in rows]
    return SourceResult([Piece(pid, row) for pid, row in zip(ids, x, strict=True)], [], None)


def load_array(path: str | Path, *, steps: int, tracks: int) -> tuple[np.ndarray, list[str]]:
    """Load and validate an .npy/.npz piano-roll array -> (bool (N, T, 128, K), piece ids). InputError if bad."""
    path = Path(path)
    name = path.name
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"{name}: expected an .npy or .npz file")
    if not path.is_file():
        raise InputError(f"{path}: array file not found")
    ids: np.ndarray | None = None
    try:
        if path.suffix.lower() == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = [k for k in z.files if k != "piece"]
                if not keys:
                    raise InputError(f"{name}: no array inside (expected key 'x' or 'data')")
                key = "x" if "x" in keys else "data" if "data" in keys else keys[0]
                x = z[key]
                if "piece" in z.files:
                    ids = z["piece"]
    except InputError:
        raise
    except Exception as e:  # not an array file, or an object array (needs pickle)
        raise InputError(f"{name}: cannot read as a NumPy array ({type(e).__name__}: {e})") from None

    expected = f"(N, {steps}, {PITCHES}, {tracks})"
    if x.ndim != 4:
        raise InputError(f"{name}: expected 4 dims (N, T, {PITCHES}, K) = {expected}, got shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise InputError(f"{name}: expected a bool, integer or float array, got dtype {x.dtype}")
    n, t, p, k = x.shape
    if p != PITCHES:
        raise InputError(f"{name}: expected {PITCHES} pitches on axis 2, shape {expected}, got shape {x.shape}")
    if t != steps:
        raise InputError(f"{name}: expected {steps} time steps (data.steps) on axis 1, shape {expected}, "
                         f"got shape {x.shape}")
    if k != tracks:
        raise InputError(f"{name}: expected {tracks} tracks (data.tracks) on axis 3, shape {expected}, "
                         f"got shape {x.shape}")
    if n == 0:
        raise InputError(f"{name}: expected at least one row, got shape {x.shape}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or inf; expected values in {{-1, 1}}, {{0, 1}} or bool")
    if x.dtype.kind != "b":
        values = np.unique(x)
        if not (set(values.tolist()) <= {-1, 1} or set(values.tolist()) <= {0, 1}):
            shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            raise InputError(f"{name}: expected values in {{-1, 1}}, {{0, 1}} or bool, found {{{shown}}}")
    if ids is None:
        piece_ids = [str(i) for i in range(n)]
    else:
        if ids.ndim != 1 or len(ids) != n:
            raise InputError(f"{name}: 'piece' must be a 1-D array of {n} ids (one per row), got shape {ids.shape}")
        piece_ids = [str(v) for v in ids.tolist()]
    return x > 0, piece_ids


# ---------------------------------------------------------------------------------------------------------------
# windowing


@dataclass
class WindowStats:
    dropped_empty_voice: int = 0
    dropped_out_of_range: int = 0


def make_windows(roll: np.ndarray, cfg: DataConfig, stats: WindowStats | None = None) -> np.ndarray:
    """Cut one piece (steps, 128, K) into windows (n, cfg.steps, 128, K), bool. See the module docstring."""
    stats = stats if stats is not None else WindowStats()
    total, _, k = roll.shape
    hop = cfg.hop_bars * cfg.steps_per_bar
    starts = list(range(0, total - cfg.steps + 1, hop))
    # Transpose the whole piece once; remember the steps where a note would leave 0..127.
    shifted = np.zeros_like(roll, dtype=bool)
    s = cfg.transpose
    lost = np.zeros(total, dtype=bool)  # (steps,)
    if s >= 0:
        shifted[:, s:, :] = roll[:, : PITCHES - s, :]
        lost = roll[:, PITCHES - s :, :].any(axis=(1, 2)) if s else lost
    else:
        shifted[:, : PITCHES + s, :] = roll[:, -s:, :]
        lost = roll[:, :-s, :].any(axis=(1, 2))
    out = []
    for a in starts:
        b = a + cfg.steps
        if lost[a:b].any():
            stats.dropped_out_of_range += 1
            continue
        w = shifted[a:b]  # (steps, pitches, tracks)
        if cfg.empty_voice == "drop" and not w.any(axis=(0, 1)).all():
            stats.dropped_empty_voice += 1
            continue
        out.append(w)
    if not out:
        return np.zeros((0, cfg.steps, PITCHES, k), dtype=bool)
    return np.stack(out)
