"""Build, cache, split and load a piano-roll dataset.

A dataset directory holds two files:

- ``dataset.npz``: ``train`` and ``holdout`` as bool ``(N, T, 128, K)``; ``train_piece`` and ``holdout_piece``
  (int, one per window) index into ``pieces`` (the piece ids, str).
- ``manifest.json``: source, path, settings, cache key, sha256 of dataset.npz, shapes, counts, piece ids per
  split, skipped inputs with reasons, dropped windows, library versions, creation time.

The cache key hashes the source, the input's identity (file contents for midi/npy/pypianoroll, music21's version for
chorales) and every setting that changes the result, so a second build with the same key returns the existing
directory without reading the source. Builds hold a file lock (parallel trials may share the cache) and write
into a temporary directory beside the target that is renamed into place only when complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from chorus.data.settings import DataConfig
from chorus.data.sources import (
    PITCHES,
    SourceResult,
    WindowStats,
    make_windows,
    read_pieces,
    sha256_file,
    source_identity,
)
from chorus.errors import InputError
from chorus.versions import DATA_PACKAGES, versions

FORMAT_VERSION = 1  # bump when the build's output changes for the same settings
NPZ_NAME = "dataset.npz"
MANIFEST_NAME = "manifest.json"
# DataConfig fields that do not change the built arrays (and so stay out of the cache key). track_map and
# order_by_pitch do, for the pypianoroll source only: they enter its input identity instead, which keeps the keys
# of every other source's caches as they were before these settings existed.
_NOT_IN_KEY = {"cache_dir", "path", "track_map", "order_by_pitch"}


@dataclass
class Dataset:
    train: np.ndarray  # bool (N_train, T, 128, K)
    holdout: np.ndarray  # bool (N_holdout, T, 128, K)
    train_piece: np.ndarray  # int (N_train,), index into pieces
    holdout_piece: np.ndarray  # int (N_holdout,), index into pieces
    manifest: dict

    @property
    def pieces(self) -> list[str]:
        return list(self.manifest["pieces"])

    @property
    def track_names(self) -> list[str] | None:
        return self.manifest.get("track_names")


def cache_key(cfg: DataConfig) -> str:
    """sha256 over the source, its input identity and every result-changing setting."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_IN_KEY}
    doc = {"format": FORMAT_VERSION, "source": cfg.source, "input": source_identity(cfg), "settings": settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def default_dataset_dir(cfg: DataConfig, key: str | None = None) -> Path:
    key = key or cache_key(cfg)
    return Path(cfg.cache_dir) / f"{cfg.source}-{key[:12]}"


def build_dataset(cfg: DataConfig, out_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Build (or find in the cache) the dataset for cfg; return its directory (dataset.npz + manifest.json)."""
    return _build(cfg, out_dir, progress=progress)[0]


def _build(cfg: DataConfig, out_dir: str | Path | None, *, progress: bool) -> tuple[Path, bool]:
    """-> (dataset dir, cache_hit)."""
    key = cache_key(cfg)
    target = Path(out_dir) if out_dir is not None else default_dataset_dir(cfg, key)
    if _is_valid(target, key):  # fast path without the lock
        return target, True
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _is_valid(target, key):  # another process built it while we waited
            return target, True
        if target.exists() and not (target / MANIFEST_NAME).is_file():
            if not target.is_dir() or any(target.iterdir()):
                raise InputError(f"{target}: exists and is not a chorus dataset directory; choose another out_dir")
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            _write_dataset(cfg, key, tmp, progress=progress)
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache may be shared
            _move_into_place(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target, False


def _move_into_place(tmp: Path, target: Path) -> None:
    if target.exists():  # an older or damaged build with this name: swap it out
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-old-", dir=target.parent))
        os.replace(target, trash / "old")
        os.replace(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _is_valid(target: Path, key: str) -> bool:
    manifest_path, npz_path = target / MANIFEST_NAME, target / NPZ_NAME
    if not (manifest_path.is_file() and npz_path.is_file()):
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("cache_key") == key and manifest.get("sha256") == sha256_file(npz_path)


def split_pieces(n_pieces: int, holdout_fraction: float, seed: int) -> np.ndarray:
    """Indices of the held-out pieces (sorted). At least 1 when holdout_fraction > 0 and n_pieces >= 2,
    never all of them."""
    if n_pieces < 2 or holdout_fraction <= 0:
        return np.zeros(0, dtype=np.int64)
    n_hold = min(max(1, int(round(holdout_fraction * n_pieces))), n_pieces - 1)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_pieces)[:n_hold])


def _windows_by_piece(result: SourceResult, cfg: DataConfig,
                      stats: WindowStats) -> tuple[np.ndarray, np.ndarray, list[str], list[dict]]:
    """(windows (N, steps, pitches, tracks) bool, the piece index of each, piece ids, skipped sources) of the pieces
    read; pieces sharing an id (npz `piece` array) are grouped into one piece. InputError if no window is left."""
    piece_ids: list[str] = []
    index_of: dict[str, int] = {}
    windows: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    skipped = list(result.skipped)
    for piece in result.pieces:
        w = make_windows(piece.roll, cfg, stats)  # (n, steps, pitches, tracks)
        if not len(w):
            continue
        if piece.piece_id not in index_of:
            index_of[piece.piece_id] = len(piece_ids)
            piece_ids.append(piece.piece_id)
        windows.append(w)
        owners.append(np.full(len(w), index_of[piece.piece_id], dtype=np.int64))
    windowed = set(piece_ids)
    for pid in dict.fromkeys(p.piece_id for p in result.pieces):
        if pid not in windowed:
            skipped.append({"path": pid, "reason": _no_window_reason(result.pieces, pid, cfg)})
    if not windows:
        where = cfg.path or cfg.source
        raise InputError(f"{where}: no usable {cfg.steps}-step windows in {len(result.pieces)} pieces "
                         f"(empty_voice={cfg.empty_voice}, transpose={cfg.transpose})")
    return np.concatenate(windows), np.concatenate(owners), piece_ids, skipped


def _write_dataset(cfg: DataConfig, key: str, out: Path, *, progress: bool) -> None:
    t0 = time.time()
    result = read_pieces(cfg, progress=progress)
    stats = WindowStats()
    x, piece_of, piece_ids, skipped = _windows_by_piece(result, cfg, stats)  # x: (N, steps, pitches, tracks), bool

    # Split by piece, never by window.
    hold_ids = split_pieces(len(piece_ids), cfg.holdout_fraction, cfg.seed)
    in_hold = np.isin(piece_of, hold_ids)
    arrays = {
        "train": x[~in_hold],
        "holdout": x[in_hold],
        "train_piece": piece_of[~in_hold],
        "holdout_piece": piece_of[in_hold],
        "pieces": np.array(piece_ids, dtype=str),
    }
    np.savez_compressed(out / NPZ_NAME, **arrays)

    hold_set = set(hold_ids.tolist())
    manifest = {
        "format": FORMAT_VERSION,
        "source": cfg.source,
        "path": str(Path(cfg.path).expanduser().resolve()) if cfg.path else None,
        "settings": dataclasses.asdict(cfg),
        "cache_key": key,
        "sha256": sha256_file(out / NPZ_NAME),
        "dtype": "bool",
        "shapes": {"train": list(arrays["train"].shape), "holdout": list(arrays["holdout"].shape)},
        "counts": {
            "pieces": {"train": len(piece_ids) - len(hold_set), "holdout": len(hold_set)},
            "windows": {"train": int((~in_hold).sum()), "holdout": int(in_hold.sum())},
        },
        "pieces": piece_ids,
        "piece_ids": {
            "train": [p for i, p in enumerate(piece_ids) if i not in hold_set],
            "holdout": [p for i, p in enumerate(piece_ids) if i in hold_set],
        },
        "track_names": result.track_names,
        "skipped": skipped,
        "dropped_windows": {
            "empty_voice": stats.dropped_empty_voice,
            "out_of_range": stats.dropped_out_of_range,
        },
        "versions": versions(DATA_PACKAGES),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.time() - t0, 2),
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    if progress:
        c = manifest["counts"]
        print(f"dataset: {c['windows']['train']} train / {c['windows']['holdout']} holdout windows from "
              f"{c['pieces']['train']} / {c['pieces']['holdout']} pieces", file=sys.stderr, flush=True)


def _no_window_reason(pieces, pid: str, cfg: DataConfig) -> str:
    longest = max(p.roll.shape[0] for p in pieces if p.piece_id == pid)
    if longest < cfg.steps:
        return f"no window: {longest} steps < {cfg.steps}"
    return f"all windows dropped (empty_voice={cfg.empty_voice}, transpose={cfg.transpose})"


# ---------------------------------------------------------------------------------------------------------------
# loading and describing


def _dataset_dir(path: str | Path) -> Path:
    p = Path(path)
    return p.parent if p.name in (NPZ_NAME, MANIFEST_NAME) else p


def load_dataset(path: str | Path) -> Dataset:
    """Load a built dataset directory. InputError if a file is missing or the files do not match."""
    d = _dataset_dir(path)
    manifest_path, npz_path = d / MANIFEST_NAME, d / NPZ_NAME
    for p in (manifest_path, npz_path):
        if not p.is_file():
            raise InputError(f"{d}: not a dataset directory ({p.name} missing; build it with build_dataset)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as e:
        raise InputError(f"{manifest_path}: not valid JSON ({e})") from None
    if manifest.get("sha256") != sha256_file(npz_path):
        raise InputError(f"{d}: {NPZ_NAME} does not match {MANIFEST_NAME} (sha256 differs); rebuild the dataset")
    with np.load(npz_path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in ("train", "holdout", "train_piece", "holdout_piece")}
    for split in ("train", "holdout"):
        if list(arrays[split].shape) != manifest["shapes"][split]:
            raise InputError(f"{d}: {split} has shape {arrays[split].shape}, manifest says {manifest['shapes'][split]}")
    return Dataset(manifest=manifest, **arrays)


def _track_table(x: np.ndarray, names: list[str]) -> list[str]:
    """Per-track density lines for bool windows (N, T, 128, K)."""
    lines = [f"  {'track':<10} {'sounding':>9} {'notes/step':>11} {'pitch range':>12}"]
    for k, name in enumerate(names):
        xk = x[..., k]  # (N, T, 128)
        sounding = float(xk.any(axis=2).mean()) if xk.size else 0.0
        per_step = float(xk.sum(axis=2).mean()) if xk.size else 0.0
        used = np.nonzero(xk.any(axis=(0, 1)))[0]
        rng = f"{used.min()}-{used.max()}" if used.size else "-"
        lines.append(f"  {name:<10} {sounding:>9.1%} {per_step:>11.2f} {rng:>12}")
    return lines


def describe_dataset(path: str | Path, *, qualified_min_steps: int = 2) -> str:
    """Human-readable summary: source, shapes, counts per split, skipped inputs, note density and metrics."""
    ds = load_dataset(path)
    m = ds.manifest
    s = m["settings"]
    k = ds.train.shape[-1]
    names = ds.track_names or [f"track{i}" for i in range(k)]
    lines = [
        f"dataset {_dataset_dir(path)}",
        f"  source: {m['source']}" + (f" ({m['path']})" if m.get("path") else ""),
        f"  windows: (N, {s['steps']}, {PITCHES}, {k}) bool; {s['steps_per_beat']} steps/beat, "
        f"{s['beats_per_bar']} beats/bar, hop {s['hop_bars']} bar(s), transpose {s['transpose']:+d}",
        f"  train:   {len(ds.train):>6} windows from {m['counts']['pieces']['train']:>4} pieces",
        f"  holdout: {len(ds.holdout):>6} windows from {m['counts']['pieces']['holdout']:>4} pieces "
        f"(holdout_fraction {s['holdout_fraction']}, seed {s['seed']})",
        f"  dropped windows: {m['dropped_windows']['empty_voice']} with an empty voice, "
        f"{m['dropped_windows']['out_of_range']} out of pitch range",
        f"  skipped inputs: {len(m['skipped'])}",
    ]
    for item in m["skipped"][:10]:
        lines.append(f"    {item['path']}: {item['reason']}")
    if len(m["skipped"]) > 10:
        lines.append(f"    ... {len(m['skipped']) - 10} more in {MANIFEST_NAME}")
    for split, x in (("train", ds.train), ("holdout", ds.holdout)):
        lines.append(f"  note density ({split}):")
        lines += _track_table(x, names)
    lines += _metrics_lines(ds, names, s, qualified_min_steps)
    return "\n".join(lines)


def _metrics_lines(ds: Dataset, names: list[str], s: dict, qualified_min_steps: int) -> list[str]:
    """The music-metrics table (data.metrics.summarize) of each split."""
    from chorus.data import metrics

    summarize = metrics.summarize
    lines = []
    for split, x in (("train", ds.train), ("holdout", ds.holdout)):
        if not len(x):
            continue
        summary = summarize(
            x,
            steps_per_bar=s["steps_per_beat"] * s["beats_per_bar"],
            steps_per_beat=s["steps_per_beat"],
            qualified_min_steps=qualified_min_steps,
            track_names=names,
        )
        per_track = summary.get("per_track", {})
        metric_names = list(dict.fromkeys(mk for row in per_track.values() for mk in row))
        lines.append(f"  music metrics ({split}, n={summary.get('n', len(x))}, QN >= {qualified_min_steps} steps):")
        widths = [max(8, len(mk)) for mk in metric_names]
        header = "".join(f" {mk:>{w}}" for mk, w in zip(metric_names, widths, strict=True))
        lines.append("  " + f"{'track':<10}" + header)
        for track, row in per_track.items():
            cells = "".join(f" {_fmt(row.get(mk)):>{w}}" for mk, w in zip(metric_names, widths, strict=True))
            lines.append("  " + f"{track!s:<10}" + cells)
        td = summary.get("tonal_distance") or {}
        if td:
            lines.append("  tonal distance: " + ", ".join(f"{_pair(p)} {_fmt(v)}" for p, v in td.items()))
    return lines


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | np.floating):
        return f"{v:.3f}"
    return str(v)


def _pair(p) -> str:
    return "-".join(map(str, p)) if isinstance(p, tuple | list) else str(p)
