"""Search efficiency: K identical short trials through `chorus search` vs the same K runs back to back.

    python benchmarks/search_bench.py                 # K=4, 40 steps each; prints JSON
    python benchmarks/search_bench.py --smoke-test    # K=2, 3 steps: checks that it runs

Sequential: one process imports TensorFlow once and calls trainer.train K times (all cores per run).
Search: a local Ray, max_concurrent_trials = cores, one CPU and one TF thread per trial.
Ray overhead = search wall time - (sum of the trials' own time / concurrency), where a trial's own time is
Tune's time_total_s (from the trial function's start: TF import, data, model, loop) minus the time our
reporter spent handing checkpoints to Ray (which is counted as overhead instead).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TRAIN_SETTINGS = ["model.width=8", "train.batch_size=16", "train.n_critic=2", "data.max_pieces=24"]


def run_settings(steps: int) -> list[str]:
    every = max(1, steps // 2)
    return TRAIN_SETTINGS + [f"train.steps={steps}", f"train.eval_every={every}", f"train.checkpoint_every={every}",
                             f"train.sample_every={every}", f"train.log_every={every}"]


def sequential(k: int, steps: int, work: Path) -> dict:
    """K runs back to back in one fresh process; returns its timings."""
    code = f"""
import json, sys, time
t0 = time.perf_counter()
from chorus.trainer import train
from chorus.trainer.config import load_config
runs = []
for i in range({k}):
    cfg = load_config("configs/tiny.yaml", {run_settings(steps)!r} + [f"run.dir={work}/seq-{{i}}"])
    t = time.perf_counter()
    train(cfg)
    runs.append(time.perf_counter() - t)
print(json.dumps({{"wall_s": time.perf_counter() - t0, "runs_s": runs}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def search(k: int, steps: int, work: Path, cores: int) -> dict:
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import build_search

    doc = {"experiment": "bench", "base": str(REPO / "configs" / "tiny.yaml"), "num_samples": k,
           "resources": {"cpus": 1}, "threads": 1, "max_concurrent_trials": cores, "max_failures": 0,
           "num_to_keep": 1, "storage_path": str(work / "store"), "results_dir": str(work / "results")}
    search = build_search(doc, overrides=run_settings(steps))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's progress table; stdout is for the JSON
        outcome = run_search(search, include_dashboard=False, num_cpus=cores)
    wall = time.perf_counter() - t0
    import ray
    from ray.tune import ExperimentAnalysis

    ray.shutdown()
    trials = ExperimentAnalysis(outcome.experiment_path).trials
    total = [t.last_result.get("time_total_s", 0.0) for t in trials]
    report = [t.last_result.get("ray_report_s", 0.0) for t in trials]
    loop = [t.last_result.get("wall_seconds", 0.0) for t in trials]
    own = (sum(total) - sum(report)) / min(cores, k)
    return {"wall_s": wall, "timings_s": outcome.timings, "trial_total_s": total, "trial_loop_s": loop,
            "trial_report_s": report, "trial_own_time_per_lane_s": own, "ray_overhead_s": wall - own,
            "ray_overhead_fraction": (wall - own) / own if own else None, "errors": outcome.num_errors}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="K")
    p.add_argument("--steps", type=int, default=40, help="iterations per trial")
    p.add_argument("--smoke-test", action="store_true", help="K=2, 3 steps")
    args = p.parse_args()
    k, steps = (2, 3) if args.smoke_test else (args.trials, args.steps)
    cores = os.cpu_count() or 1
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="chorus-bench-ray-", dir="/tmp"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="chorus-bench-"))
    try:
        seq = sequential(k, steps, work)
        par = search(k, steps, work, cores)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    print(json.dumps({
        "trials": k, "steps": steps, "cores": cores, "settings": run_settings(steps),
        "sequential": {**seq, "trials_per_hour": 3600 * k / seq["wall_s"]},
        "search": {**par, "trials_per_hour": 3600 * k / par["wall_s"]},
        "search_over_sequential": par["wall_s"] / seq["wall_s"],
    }, indent=2))


if __name__ == "__main__":
    main()
