"""Time to quality: the default preset, then the lab preset, on this machine; music_distance against wall time.

    python benchmarks/time_to_quality.py                       # default (its own steps), then lab capped at 10 min
    python benchmarks/time_to_quality.py --lab-minutes 20 --eval-every 25
    python benchmarks/time_to_quality.py --presets default --out /tmp/ttq
    python benchmarks/time_to_quality.py --presets long --eval-every 200      # configs/long.yaml, about 2 hours

Each preset trains from scratch in OUT/<preset> with evaluations every --eval-every iterations (the lab preset
every --lab-eval-every). The bar is the best (lowest) music_distance of every calibration corruption of real
holdout windows (chorus.data.calibration), computed on the same data; "lower voices randomly transposed" is
reported on its own as the stretch case. For each preset it also prints the value at the first evaluation past
each of --marks minutes (15, 30, 60, 120), so long runs show where they level off. Wall time counts everything
from the call to train(): data loading, tracing, training and the evaluations themselves. Prints a Markdown
table per preset, the summary table of benchmarks/results/*-time-to-quality.md, and the matmul GFLOP/s of the
machine before and after (a shared host moves a lot).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chorus.data.calibration import calibrate
from chorus.data.objective import MUSIC_DISTANCE_VERSION
from chorus.trainer.config import load_config

STRETCH = "lower_transposed"


class OutOfTime(Exception):
    """Raised from the report callback to stop a capped preset."""


def gflops() -> float:
    a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(10):
        a @ a
    return 10 * 2 * 512**3 / (time.perf_counter() - t) / 1e9


def run_preset(name: str, overrides: list[str], minutes: float | None) -> tuple[list[dict], float, int]:
    """Train one preset; return its evaluations [{step, wall_s, music_distance, samples_per_sec}], wall s, step."""
    from chorus.trainer import train

    cfg = load_config(None if name == "default" else name, overrides)
    evals: list[dict] = []
    start = time.time()

    def report(r) -> None:
        wall = time.time() - start
        if "music_distance" in r.metrics and (not evals or evals[-1]["step"] != r.step):
            evals.append({"step": r.step, "wall_s": round(wall, 1), "music_distance": r.metrics["music_distance"],
                          "samples_per_sec": round(r.metrics.get("samples_per_sec", 0.0), 1)})
            print(f"  {name}: step {r.step}, {wall / 60:.1f} min, music_distance {r.metrics['music_distance']:.3f}",
                  flush=True)
        if minutes is not None and wall > 60 * minutes:
            raise OutOfTime

    step = 0
    try:
        step = train(cfg, report=report).step
    except OutOfTime:
        step = evals[-1]["step"] if evals else 0
    return evals, time.time() - start, step


def at_mark(evals: list[dict], minutes: float) -> str:
    """The first evaluation at or past `minutes` of wall time, as '15 min: 1.234 (step 1400)'."""
    e = next((e for e in evals if e["wall_s"] >= 60 * minutes), None)
    return f"{minutes:g} min: " + (f"{e['music_distance']:.3f} (step {e['step']})" if e else "not reached")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["default", "lab"])
    ap.add_argument("--out", default="runs/time_to_quality")
    ap.add_argument("--eval-every", type=int, default=50, help="default preset: iterations between evaluations")
    ap.add_argument("--lab-eval-every", type=int, default=5, help="lab preset: iterations between evaluations")
    ap.add_argument("--lab-minutes", type=float, default=10.0, help="cap of the lab preset's wall time")
    ap.add_argument("--minutes", type=float, default=None, help="cap of every other preset (default: none)")
    ap.add_argument("--marks", type=float, nargs="+", default=[15, 30, 60, 120],
                    help="minutes at which each preset's curve is summarized")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="override for every preset")
    args = ap.parse_args()

    from chorus.trainer.run import load_training_data

    base = load_config(None, args.overrides)
    data = load_training_data(base, verbose=True)
    kw = dict(steps_per_bar=base.data.steps_per_bar, steps_per_beat=base.data.steps_per_beat)
    rows = calibrate(data.holdout, data.train, np.random.default_rng(0), n=base.eval.num_samples, **kw)
    corruptions = {r.name: r.distance for r in rows if r.name not in ("real", "real_again")}
    bar_name = min(corruptions, key=corruptions.get)
    bar = corruptions[bar_name]
    print(f"music_distance v{MUSIC_DISTANCE_VERSION}: real vs real {rows[0].distance:.3f}; best corruption "
          f"{bar_name} {bar:.3f}; stretch ({STRETCH}) {corruptions[STRETCH]:.3f}; matmul {gflops():.0f} GFLOP/s",
          flush=True)

    summary = []
    for name in args.presets:
        every = args.lab_eval_every if name == "lab" else args.eval_every
        cap = args.lab_minutes if name == "lab" else args.minutes
        overrides = [*args.overrides, f"run.dir={Path(args.out) / name}", f"train.eval_every={every}"]
        print(f"{name}: training (evaluation every {every} iterations{f', capped at {cap} min' if cap else ''})",
              flush=True)
        evals, wall, step = run_preset(name, overrides, cap)
        beat = next((e for e in evals if e["music_distance"] < bar), None)
        stretch = next((e for e in evals if e["music_distance"] < corruptions[STRETCH]), None)
        print(f"\n{name}: | step | wall min | music_distance | samples/s |\n|---:|---:|---:|---:|")
        for e in evals:
            print(f"| {e['step']} | {e['wall_s'] / 60:.1f} | {e['music_distance']:.3f} | {e['samples_per_sec']} |")
        print(f"{name} at " + "; ".join(at_mark(evals, m) for m in args.marks))
        final = evals[-1]["music_distance"] if evals else float("nan")
        summary.append({
            "preset": name, "steps": step, "wall_min": round(wall / 60, 1), "final": final,
            "beats_corruptions": f"{beat['wall_s'] / 60:.1f} min (step {beat['step']})" if beat
            else f"not within {wall / 60:.0f} minutes",
            "beats_stretch": f"{stretch['wall_s'] / 60:.1f} min (step {stretch['step']})" if stretch
            else f"not within {wall / 60:.0f} minutes",
            "final_beats_all": final < bar,
        })
    print(f"\nmatmul {gflops():.0f} GFLOP/s; bar = best corruption ({bar_name}) {bar:.3f}; "
          f"stretch ({STRETCH}) {corruptions[STRETCH]:.3f}\n")
    print("| preset | iterations | wall time | final music_distance | beats every corruption "
          "| beats the stretch case |")
    print("|---|---:|---:|---:|---|---|")
    for s in summary:
        print(f"| {s['preset']} | {s['steps']} | {s['wall_min']} min | {s['final']:.3f} | {s['beats_corruptions']} "
              f"| {s['beats_stretch']} |")
    print(json.dumps({"bar": bar, "bar_name": bar_name, "corruptions": corruptions, "summary": summary}))


if __name__ == "__main__":
    main()
