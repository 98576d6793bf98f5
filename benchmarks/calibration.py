"""Calibration table of music_distance: real windows and broken real windows, each against the holdout set.

    python benchmarks/calibration.py                          # all chorales (cold cache: ~2 min to parse)
    python benchmarks/calibration.py --set data.max_pieces=80  # faster, noisier
    python benchmarks/calibration.py --seeds 3                 # repeat with other samples: min / max of each row

Prints a Markdown table (the README's) and the time one music_distance call takes (64 samples vs the holdout).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from chorus.data.calibration import calibrate, format_rows
from chorus.data.dataset import build_dataset, load_dataset
from chorus.data.objective import MUSIC_DISTANCE_VERSION, music_distance
from chorus.trainer.config import load_config


def gflops() -> float:
    """The machine's matmul speed right now (it moves a lot on a shared host)."""
    a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * 512**3 / (time.perf_counter() - t) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. data.max_pieces=80")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds")
    parser.add_argument("--n", type=int, default=64, help="windows per scored set (eval.num_samples)")
    args = parser.parse_args()
    cfg = load_config(None, args.set)
    ds = load_dataset(build_dataset(cfg.data, progress=True))
    print(f"music_distance version {MUSIC_DISTANCE_VERSION}; holdout {len(ds.holdout)} windows, "
          f"train {len(ds.train)}; n = {args.n} per set")

    kw = dict(steps_per_bar=cfg.data.steps_per_bar, steps_per_beat=cfg.data.steps_per_beat)
    runs = [calibrate(ds.holdout, ds.train, np.random.default_rng(seed), n=args.n, **kw) for seed in range(args.seeds)]
    print(format_rows(runs[0]))
    if args.seeds > 1:
        print(f"\nover {args.seeds} seeds (x real, min / max):")
        for i, row in enumerate(runs[0]):
            ratios = [r[i].ratio for r in runs]
            dists = [r[i].distance for r in runs]
            print(f"  {row.name:<22} {min(dists):7.3f} .. {max(dists):7.3f}   "
                  f"x {min(ratios):6.1f} .. {max(ratios):6.1f}")

    sample = ds.train[:args.n]
    t = time.perf_counter()
    music_distance(sample, ds.holdout, **kw)
    took = time.perf_counter() - t
    print(f"\none music_distance call, {args.n} samples vs {len(ds.holdout)} holdout windows (features of both): "
          f"{took:.3f} s; matmul {gflops():.0f} GFLOP/s")


if __name__ == "__main__":
    main()
