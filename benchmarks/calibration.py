"""Calibration table of music_distance: real windows and broken real windows, each against the holdout set.

    python benchmarks/calibration.py                          # all chorales (cold cache: ~2 min to parse)
    python benchmarks/calibration.py --set data.max_pieces=80  # faster, noisier
    python benchmarks/calibration.py --seeds 3                 # repeat with other samples: min / max of each row
    python benchmarks/calibration.py --untrained               # also the untrained default generator (imports TF)
    python benchmarks/calibration.py --smoke-test              # 12 pieces, n = 16: checks that it runs

Prints a Markdown table (every corruption's value and ratio to real vs real) and the time one music_distance
call takes (n samples vs the holdout), and features() of 256 samples.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from chorus.data.calibration import calibrate, format_rows
from chorus.data.dataset import build_dataset, load_dataset
from chorus.data.objective import MUSIC_DISTANCE_VERSION, features, music_distance
from chorus.trainer.config import load_config


def numpy_gflops(n: int = 1024, repeats: int = 5) -> float:
    """numpy's matmul speed right now (it moves a lot on a shared host); the objective runs in numpy."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * n**3 / (time.perf_counter() - t) / 1e9


def untrained_distance(cfg, holdout: np.ndarray) -> float:
    """music_distance of the config's generator with its seeded initial weights (training's step 0)."""
    from chorus.data import tfenv
    from chorus.trainer.evaluation import evaluate
    from chorus.trainer.model import build_generator, generate_batched, z_shape

    keras = tfenv.keras()

    keras.utils.set_random_seed(cfg.train.seed)  # as trainer.gan.WGANGP seeds its initialisers
    generator = build_generator(cfg)
    return evaluate(lambda m, z: generate_batched(generator, m, z), holdout, cfg, z_shape(cfg)).music_distance


def best_of_3(fn) -> float:
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def print_timing(ds, n: int, kw: dict) -> None:
    """The time of one music_distance call (n samples against the holdout) and of features() on 256 samples."""
    sample = ds.train[:n]
    full = best_of_3(lambda: music_distance(sample, ds.holdout, **kw))
    ref_features = features(ds.holdout, **kw)
    gen_only = best_of_3(lambda: music_distance(sample, None, ref_features=ref_features, **kw))
    f256 = best_of_3(lambda: features(ds.train[:256], **kw))
    print(f"\none music_distance call, {n} samples vs {len(ds.holdout)} holdout windows (best of 3): {full:.3f} s "
          f"with the holdout's features, {gen_only:.3f} s with them precomputed; features() of 256 samples "
          f"{f256:.3f} s; numpy matmul {numpy_gflops():.0f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], help="config override, e.g. data.max_pieces=80")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with this many seeds")
    parser.add_argument("--n", type=int, default=None, help="windows per scored set (default eval.num_samples)")
    parser.add_argument("--untrained", action="store_true",
                        help="also score the generator of this config with its seeded random weights, as training does")
    parser.add_argument("--smoke-test", action="store_true", help="12 pieces, n = 16")
    args = parser.parse_args()
    smoke = ["data.max_pieces=12", "data.holdout_fraction=0.3"] if args.smoke_test else []
    cfg = load_config(None, smoke + args.set)
    args.n = args.n or (16 if args.smoke_test else cfg.eval.num_samples)
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

    if args.untrained:
        print(f"\nuntrained generator (train.seed {cfg.train.seed}), evaluated as training does: "
              f"music_distance {untrained_distance(cfg, ds.holdout):.3f} (real vs real: {runs[0][0].distance:.3f})")

    print_timing(ds, args.n, kw)


if __name__ == "__main__":
    main()
