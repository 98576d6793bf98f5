"""PBT vs FIFO at equal compute on the search objective (music_distance, lower is better). Prints JSON.

    python benchmarks/pbt_vs_fifo.py                  # 4 trials x 120 steps of configs/default.yaml, PBT every 40
    python benchmarks/pbt_vs_fifo.py --smoke-test     # 2 trials x 6 tiny steps, PBT every 2: checks that it runs
    python benchmarks/pbt_vs_fifo.py --steps 200 --interval 40 --set model.width=8
    python benchmarks/pbt_vs_fifo.py --parallel       # both arms at once, one CPU each: the same machine load

Both arms are built by the project's own machinery (search_config.build_search -> search.run_search) from one
search document that differs only in `scheduler`: the same space (train.g_lr and train.d_lr, log-uniform), the same
number of trials and steps per trial, one CPU and one TF thread per trial on the same local Ray, and the same
search `seed` (and `random` seed, which PBT perturbs with), so both start from the same sampled learning rates.
PBT then copies the checkpoint of a top trial into a bottom one at every perturbation interval and perturbs its
rates.

Per arm: the best music_distance at any evaluation and at the last step, the config the best evaluation was
trained with, wall time, the steps trained (a PBT trial that clones a checkpoint trains on from that
checkpoint's step; counted from the results Tune recorded, so a lower bound: a result on which synchronous PBT
pauses a trial at its last step is not written to result.json), and what PBT did: the evaluations whose config
differs from the trial's previous one (an exploit with perturbed rates) and the restarts from a checkpoint (a
cloned one, or its own after a pause). The machine's matmul GFLOP/s is measured before each arm, since this
machine's load moves it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from chorus.data import tfenv  # noqa: E402

METRIC = "music_distance"
SPACE = {"train.g_lr": {"loguniform": [0.0002, 0.003]}, "train.d_lr": {"loguniform": [0.0002, 0.003]}}
FULL = {"base": "configs/default.yaml", "trials": 4, "steps": 120, "interval": 40, "quantile_fraction": 0.25}
# 2 trials: with quantile 0.5 the worse one is the bottom quantile and clones the better one at every interval
SMOKE = {"base": "configs/tiny.yaml", "trials": 2, "steps": 6, "interval": 2, "quantile_fraction": 0.5}
SMOKE_SETTINGS = ["data.max_pieces=12", "eval.num_samples=8"]


def training_settings(steps: int, interval: int) -> list[str]:
    """Evaluate and checkpoint at every perturbation interval (PBT clones checkpoints; each carries its metric)."""
    return [f"train.steps={steps}", f"train.eval_every={interval}", f"train.checkpoint_every={interval}",
            f"train.log_every={interval}", f"train.sample_every={steps}"]


def search_doc(arm: str, *, base: str, trials: int, interval: int, quantile_fraction: float,
               work: Path, seed: int) -> dict[str, Any]:
    """max_concurrent_trials 0: Ray's CPUs limit how many run at once, and PBT sees the whole population (a
    limit creates trials only as others finish, so PBT would compare a trial with none or one other)."""
    scheduler: dict[str, Any] = {"type": arm}
    if arm == "pbt":
        scheduler.update(perturbation_interval=interval, quantile_fraction=quantile_fraction)
    return {"experiment": f"pbt-vs-fifo-{arm}", "base": str(REPO / base), "space": SPACE, "num_samples": trials,
            "metric": METRIC, "mode": "min", "scheduler": scheduler, "resources": {"cpus": 1}, "threads": 1,
            "max_concurrent_trials": 0, "max_failures": 0, "num_to_keep": 2,
            # a fresh process per trial, as when benchmarks/results/2026-11-30-pbt-vs-fifo.md was measured
            "reuse_actors": False, "seed": seed,
            "storage_path": str(work / "store"), "results_dir": str(work / "results")}


def matmul_gflops() -> float:
    from train_throughput import matmul_gflops as measure  # imports TensorFlow; one definition of the figure

    return round(measure(), 1)


# ------------------------------------------------------------------------------------------ reading an arm


def trial_rows(experiment_path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every trial's reported results in order (Tune's result.json: one JSON object per report, with its config)."""
    trials = {}
    for result_json in sorted(experiment_path.glob("*/result.json")):
        rows = [json.loads(line) for line in result_json.read_text().splitlines() if line.strip()]
        if rows:
            trials[rows[0]["trial_id"]] = rows
    return trials


def params_of(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get("config", {}).get(k) for k in SPACE}


def segments(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Split a trial's rows into runs of its trial function: a new one starts when the restored step changes
    or the step does not advance (PBT restarted it from a cloned checkpoint)."""
    out: list[list[dict[str, Any]]] = []
    for row in rows:
        prev = out[-1][-1] if out else None
        if prev is None or row.get("resumed_from_step") != prev.get("resumed_from_step") \
                or row.get("step", 0) <= prev.get("step", 0):
            out.append([row])
        else:
            out[-1].append(row)
    return out


def pbt_exploits(experiment_path: Path) -> list[dict[str, Any]]:
    """Tune's PBT log (pbt_global.txt): one line per exploit, [target, cloned, target's and clone's iteration,
    the clone's config, the perturbed one]."""
    log = experiment_path / "pbt_global.txt"
    if not log.is_file():
        return []
    out = []
    for line in log.read_text().splitlines():
        target, source, _, _, old, new = json.loads(line)
        out.append({"trial": target, "cloned": source, "cloned_config": old, "new_config": new})
    return out


def sampled_configs(experiment_path: Path) -> dict[str, dict[str, Any]]:
    """Each trial's config as the search drew it, from Tune's newest experiment state (`evaluated_params`; PBT
    changes a trial's `config`, never these). Not its first result: synchronous PBT may exploit a trial at its
    first interval before that result reaches result.json."""
    states = sorted(experiment_path.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return {}
    trials = (json.loads(entry[0]) for entry in json.loads(states[-1].read_text())["trial_data"])
    return {t["trial_id"]: t["evaluated_params"] for t in trials}


def summarize_arm(experiment_path: Path, *, trials: int, steps: int) -> dict[str, Any]:
    runs = trial_rows(experiment_path)
    evaluated = [(tid, r) for tid, rows in runs.items() for r in rows if isinstance(r.get(METRIC), (int, float))]
    best_tid, best = min(evaluated, key=lambda tr: tr[1][METRIC]) if evaluated else (None, None)
    final = {tid: rows[-1].get(METRIC) for tid, rows in runs.items() if rows[-1].get("step") == steps}
    steps_trained, config_changes, restarts = 0, [], []
    for tid, rows in runs.items():
        for i, seg in enumerate(segments(rows)):
            steps_trained += seg[-1].get("step", 0) - seg[0].get("resumed_from_step", 0)
            if i:
                restarts.append({"trial": tid, "from_step": seg[0].get("resumed_from_step")})
        for prev, row in zip(rows, rows[1:], strict=False):
            if params_of(prev) != params_of(row):
                config_changes.append({"trial": tid, "step": row.get("step"), "before": params_of(prev),
                                       "after": params_of(row)})
    finals = [v for v in final.values() if isinstance(v, (int, float))]
    return {
        "trials": len(runs),
        "trials_finished": len(final),
        "best_music_distance": best[METRIC] if best else None,
        "best_trial": {"trial": best_tid, "step": best.get("step"), "config": params_of(best)} if best else None,
        "best_final_music_distance": min(finals) if finals else None,
        "mean_final_music_distance": sum(finals) / len(finals) if finals else None,
        "final_music_distance": final,
        "initial_configs": sampled_configs(experiment_path),
        "final_configs": {tid: params_of(rows[-1]) for tid, rows in runs.items()},
        "steps_trained": steps_trained,
        "steps_planned": trials * steps,
        "config_changes": config_changes,
        "pbt_exploits": pbt_exploits(experiment_path),
        "restarts_from_checkpoint": restarts,
    }


# -------------------------------------------------------------------------------------------------- running


def run_arm(arm: str, *, plan: dict[str, Any], settings: list[str], cores: int, work: Path,
            seed: int) -> dict[str, Any]:
    from chorus.cluster.search import run_search
    from chorus.cluster.search_config import build_search

    search = build_search(search_doc(arm, base=plan["base"], trials=plan["trials"], interval=plan["interval"],
                                     quantile_fraction=plan["quantile_fraction"], work=work, seed=seed),
                          overrides=settings)
    gflops = matmul_gflops()
    # the search's `seed` fixes the sampled learning rates; PBT perturbs with the `random` module
    random.seed(seed)
    tick = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune's progress table; stdout is for the JSON
        outcome = run_search(search, include_dashboard=False, num_cpus=cores)
    wall = time.perf_counter() - tick
    summary = summarize_arm(Path(outcome.experiment_path), trials=plan["trials"], steps=plan["steps"])
    return {"scheduler": arm, "wall_s": round(wall, 1), "timings_s": {k: round(v, 1) for k, v in
                                                                       outcome.timings.items()},
            "matmul_gflops_before": gflops, "errors": outcome.num_errors, **summary}


def run_parallel(args: argparse.Namespace, argv: list[str]) -> None:
    """Each arm in a child process of this script (its own Ray, cores/2 CPUs); merge their JSON."""
    import subprocess

    cores = max(1, (args.cores or os.cpu_count() or 2) // 2)
    rest = [a for a in argv if a != "--parallel"]
    procs = {}
    for arm in ("fifo", "pbt"):
        keep = ["--keep", str(Path(args.keep) / arm)] if args.keep else []
        procs[arm] = subprocess.Popen([sys.executable, __file__, *rest, *keep, "--arms", arm, "--cores", str(cores)],
                                      stdout=subprocess.PIPE, text=True)
    outs = {arm: json.loads(proc.communicate()[0]) for arm, proc in procs.items()}
    if any(proc.returncode for proc in procs.values()):
        sys.exit(f"pbt_vs_fifo: an arm failed: {({arm: proc.returncode for arm, proc in procs.items()})}")
    out = {**outs["fifo"], "pbt": outs["pbt"]["pbt"], "parallel": True,
           "matmul_gflops_after": [outs["fifo"]["matmul_gflops_after"], outs["pbt"]["matmul_gflops_after"]]}
    out["pbt_minus_fifo_best"] = out["pbt"]["best_music_distance"] - out["fifo"]["best_music_distance"]
    print(json.dumps(out, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke-test", action="store_true", help="2 tiny trials, 6 steps, PBT every 2 steps")
    p.add_argument("--base", help=f"training preset (default {FULL['base']})")
    p.add_argument("--trials", type=int, help=f"trials per arm (default {FULL['trials']})")
    p.add_argument("--steps", type=int, help=f"steps per trial (default {FULL['steps']})")
    p.add_argument("--interval", type=int, help=f"PBT perturbation interval = eval/checkpoint interval "
                                                f"(default {FULL['interval']})")
    p.add_argument("--quantile-fraction", type=float, help="PBT: share of trials that clone the top ones")
    p.add_argument("--arms", default="fifo,pbt", help="comma-separated, run in this order")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampled learning rates and PBT's perturbations")
    p.add_argument("--cores", type=int, default=0, help="CPUs given to Ray (one per trial); 0 = all")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    p.add_argument("--keep", metavar="DIR", help="keep Ray's experiments here instead of a temp dir")
    p.add_argument("--parallel", action="store_true",
                   help="run the arms at the same time, each in its own process and Ray with cores/2 CPUs, so that "
                        "both see the same machine load")
    args = p.parse_args()
    if args.parallel:
        return run_parallel(args, sys.argv[1:])

    plan = dict(SMOKE if args.smoke_test else FULL)
    for key in ("base", "trials", "steps", "interval", "quantile_fraction"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    if plan["steps"] % plan["interval"]:
        p.error(f"--steps {plan['steps']} must be a multiple of --interval {plan['interval']}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if not set(arms) <= {"fifo", "pbt"}:
        p.error(f"--arms: expected fifo and/or pbt, got {args.arms!r}")
    cores = args.cores or os.cpu_count() or 1
    settings = (SMOKE_SETTINGS if args.smoke_test else []) + training_settings(plan["steps"], plan["interval"]) \
        + args.set

    tfenv.configure()  # the trials' processes inherit it
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="chorus-pbt-ray-", dir="/tmp"))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    work = Path(args.keep).resolve() if args.keep else Path(tempfile.mkdtemp(prefix="chorus-pbt-"))
    results = {}
    try:
        for arm in arms:
            results[arm] = run_arm(arm, plan=plan, settings=settings, cores=cores, work=work, seed=args.seed)
            print(f"pbt_vs_fifo: {arm} done: {json.dumps(results[arm])}", file=sys.stderr, flush=True)
        gflops_after = matmul_gflops()
    finally:
        import ray

        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)
    out: dict[str, Any] = {"smoke_test": args.smoke_test, **plan, "cores": cores, "cpus_per_trial": 1,
                           "settings": settings, "space": SPACE, "seed": args.seed, "metric": METRIC,
                           "matmul_gflops_after": gflops_after, **results}
    if {"fifo", "pbt"} <= set(results) and results["fifo"]["best_music_distance"] is not None \
            and results["pbt"]["best_music_distance"] is not None:
        out["pbt_minus_fifo_best"] = results["pbt"]["best_music_distance"] - results["fifo"]["best_music_distance"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
