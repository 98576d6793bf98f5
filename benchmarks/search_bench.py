"""Search efficiency: K identical short trials through `chorus search` vs the same K runs back to back.

    python benchmarks/search_bench.py                 # K=4, 40 steps each; prints JSON
    python benchmarks/search_bench.py --smoke-test    # K=2, 3 steps: checks that it runs
    python benchmarks/search_bench.py --no-reuse      # the search arm without warm trials, for comparison

Both arms read one dataset cache, built before either is timed. Sequential: one process imports TensorFlow once
and calls trainer.train K times (all cores per run). Search: a local Ray, max_concurrent_trials = cores, one CPU
and one TF thread per trial.

Search figures, all on the driver's clock except where said:
- makespan: from the first trial's start (Tune marks it RUNNING) to the last trial's last result.
- a trial's Ray time: the seconds our reporter spent handing results and checkpoints to Ray (ray_report_s, which
  is cumulative *before* each report), plus what the driver saw that the trial's own clock did not: the receipt
  of its last result minus its start minus time_total_s at that report = the final report and the actor's
  start-up latency (Tune gives no way to separate the two).
- a trial's own time: time_total_s minus its report time before the final one (TF import, data, model, loop).
- start_up_s: per trial, from entering the trial function to the end of its first iteration, less one warm
  iteration (TF import, data, models, tracing); "warm" trials ran in a reused actor (reuse_actors) on a reset model.
- ray_overhead_s = wall - (sum of own times / lanes): set-up and teardown outside the makespan, idle lanes
  inside it, and the reports.
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


def run_settings(steps: int, work: Path) -> list[str]:
    every = max(1, steps // 2)
    return TRAIN_SETTINGS + [f"data.cache_dir={work / 'cache'}", f"train.steps={steps}", f"train.eval_every={every}",
                             f"train.checkpoint_every={every}", f"train.sample_every={every}",
                             f"train.log_every={every}"]


def sequential(k: int, steps: int, work: Path) -> dict:
    """K runs back to back in one fresh process; returns its timings."""
    code = f"""
import json, sys, time
t0 = time.perf_counter()
from chorus.trainer import train
from chorus.trainer.config import load_config
runs, start_up = [], []
for i in range({k}):
    cfg = load_config("configs/tiny.yaml", {run_settings(steps, work)!r} + [f"run.dir={work}/seq-{{i}}"])
    t = time.perf_counter()
    train(cfg, started=t)
    runs.append(time.perf_counter() - t)
    start_up.append(json.loads(open(f"{work}/seq-{{i}}/metrics.jsonl").readlines()[-1]).get("start_up_s"))
print(json.dumps({{"wall_s": time.perf_counter() - t0, "runs_s": runs, "start_up_s": start_up}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def search(k: int, steps: int, work: Path, cores: int, reuse: bool = True) -> dict:
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import build_search

    doc = {"experiment": "bench", "base": str(REPO / "configs" / "tiny.yaml"), "num_samples": k,
           "resources": {"cpus": 1}, "threads": 1, "max_concurrent_trials": cores, "max_failures": 0,
           "num_to_keep": 1, "reuse_actors": reuse, "storage_path": str(work / "store"),
           "results_dir": str(work / "results")}
    search = build_search(doc, overrides=run_settings(steps, work))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's progress table; stdout is for the JSON
        outcome = run_search(search, include_dashboard=False, num_cpus=cores)
    wall = time.perf_counter() - t0
    import ray

    ray.shutdown()
    rows, makespan = trial_timings(outcome.experiment_path)
    lanes = min(cores, k)
    own = sum(r["own_s"] for r in rows) / lanes
    warm = [r["start_up_s"] for r in rows if r["warm_start"]]
    return {"wall_s": wall, "timings_s": outcome.timings, "trials_makespan_s": makespan,
            "start_up_s": {"cold": [r["start_up_s"] for r in rows if not r["warm_start"]], "warm": warm},
            "outside_trials_s": wall - makespan, "trials": rows, "trial_own_time_per_lane_s": own,
            "ray_time_per_lane_s": sum(r["ray_s"] for r in rows) / lanes, "ray_overhead_s": wall - own,
            "ray_overhead_fraction": (wall - own) / own if own else None, "errors": outcome.num_errors}


def trial_timings(experiment_path: str) -> tuple[list[dict], float]:
    """Per trial: start and end (seconds after the first start), own and Ray time; and the makespan."""
    from ray.tune import ExperimentAnalysis

    rows = []
    for t in ExperimentAnalysis(experiment_path).trials:
        meta, last = t.run_metadata, t.last_result
        if meta.start_time is None or meta.last_result_time is None:
            raise RuntimeError(f"trial {t.trial_id}: Tune recorded no start or result time")
        unseen = max(0.0, meta.last_result_time - meta.start_time - last["time_total_s"])  # final report + start-up
        rows.append({"start_s": meta.start_time, "end_s": meta.last_result_time,
                     "own_s": last["time_total_s"] - last["ray_report_s"],
                     "ray_s": last["ray_report_s"] + unseen, "final_report_and_start_up_s": unseen,
                     "loop_s": last.get("wall_seconds", 0.0), "start_up_s": last.get("start_up_s"),
                     "warm_start": last.get("warm_start")})
    first_start = min(r["start_s"] for r in rows)
    makespan = max(r["end_s"] for r in rows) - first_start
    for r in rows:
        r["start_s"], r["end_s"] = r["start_s"] - first_start, r["end_s"] - first_start
    return rows, makespan


def warm_cache(work: Path) -> float:
    """Build the trials' dataset once, untimed by either arm; returns the seconds it took."""
    from chorus.data.dataset import build_dataset
    from chorus.trainer.config import load_config

    tick = time.perf_counter()
    build_dataset(load_config("configs/tiny.yaml", run_settings(1, work)).data, progress=False)
    return time.perf_counter() - tick


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="K")
    p.add_argument("--steps", type=int, default=40, help="iterations per trial")
    p.add_argument("--smoke-test", action="store_true", help="K=2, 3 steps")
    p.add_argument("--no-reuse", action="store_true", help="search arm with reuse_actors: false (a new process and "
                   "a cold start per trial), for comparison")
    args = p.parse_args()
    k, steps = (2, 3) if args.smoke_test else (args.trials, args.steps)
    cores = os.cpu_count() or 1
    own_ray_tmp = "RAY_TMPDIR" not in os.environ  # a RAY_TMPDIR the user set is theirs: never delete it
    if own_ray_tmp:
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="chorus-bench-ray-", dir="/tmp")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(tempfile.mkdtemp(prefix="chorus-bench-"))
    try:
        warm_s = warm_cache(work)
        seq = sequential(k, steps, work)
        par = search(k, steps, work, cores, reuse=not args.no_reuse)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if own_ray_tmp:
            shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    print(json.dumps({
        "trials": k, "steps": steps, "reuse_actors": not args.no_reuse, "cores": cores,
        "settings": run_settings(steps, Path("WORK")),
        "dataset_warm_up_s": warm_s,
        "sequential": {**seq, "trials_per_hour": 3600 * k / seq["wall_s"]},
        "search": {**par, "trials_per_hour": 3600 * k / par["wall_s"]},
        "search_over_sequential": par["wall_s"] / seq["wall_s"],
    }, indent=2))


if __name__ == "__main__":
    main()
