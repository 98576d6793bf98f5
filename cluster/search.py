"""`chorus search`: run a hyperparameter search on Ray Tune and collect its results.

    search YAML --load_search--> Search --run_search--> Tuner(function trainable, space, scheduler, storage)
                                                   --> results/<experiment>/ (cluster.results.collect)

Starts a local Ray, or joins the cluster named by RAY_ADDRESS. `resume_search` continues an interrupted search
with Tuner.restore: finished trials stay finished, unfinished ones continue from their last checkpoint (the
newest complete one in storage: cluster.tune_state). Before the first trial, cluster.preflight checks that the
storage is shared by every node and that a trial's worker group fits, and caps the concurrency at what fits.

Running the same search YAML again is safe (`choose_experiment`): an experiment whose results were exported
(DONE_FILE in its storage dir) is kept and the new search runs as `<experiment>-2`, `-3`, ...; an interrupted one
with the same settings (the head lost, the machine rebooted) is resumed instead of started over. Results are
written atomically, and `<results_dir>/latest` names the newest experiment.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from chorus.cluster import results as results_mod
from chorus.cluster.search_config import (
    Search,
    default_storage_path,
    is_uri,
    load_search,
    search_from_dict,
    search_to_dict,
)
from chorus.errors import InputError

EXPERIMENT_LINE = "chorus: search experiment: "  # then its path; `chorus submit` resumes it after a lost head
DONE_FILE = "chorus-done.json"  # in the experiment's storage dir, written once its results are exported
# settings that do not change which trials run: a search that differs only here resumes an interrupted one
_NOT_COMPARED = ("experiment", "storage_path", "results_dir", "max_concurrent_trials")


@dataclass
class SearchOutcome:
    experiment_path: str  # Ray's experiment dir (storage_path/experiment)
    results_path: str  # results_dir/experiment
    num_trials: int
    num_errors: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds: ray_init, prepare, fit, collect


def experiment_path(search: Search) -> str:
    return results_mod.join(search.spec.storage_path, search.spec.experiment)


def results_path(search: Search) -> str:
    return results_mod.join(search.spec.results_dir, search.spec.experiment)


def init_ray(**ray_init_kwargs: Any) -> float:
    """Join RAY_ADDRESS if set, else start a local Ray; returns the seconds it took (0 if already up)."""
    import ray

    if ray.is_initialized():
        return 0.0
    tick = time.perf_counter()
    ray_init_kwargs.setdefault("address", os.environ.get("RAY_ADDRESS") or None)
    ray_init_kwargs.setdefault("log_to_driver", True)
    ray.init(**ray_init_kwargs)
    return time.perf_counter() - tick


def prepare_data(search: Search) -> None:
    """Build (or find) the base dataset once, before trials race for it; errors in the data surface here."""
    from chorus.data.dataset import build_dataset
    from chorus.trainer.config import config_from_dict

    cfg = config_from_dict(search.base_config)
    if cfg.data.source != "dataset":
        build_dataset(cfg.data, progress=True)


def _progress_reporter(search: Search):
    from ray import tune

    metrics = {"step": "step", search.spec.metric: search.spec.metric, "d_loss": "d_loss", "g_loss": "g_loss"}
    # Not sort_by_metric: Ray sorts finished trials by their metric and fails on one without any (a trial that was
    # still starting when the time budget ended), which crashed a whole search at its last report.
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=list(search.spec.space),
                            max_report_frequency=15, sort_by_metric=False)


def make_tuner(search: Search, *, callbacks: list | None = None):
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from chorus.cluster.tune_adapter import make_scheduler, make_trainable, param_space

    spec = search.spec
    return tune.Tuner(
        make_trainable(search),
        param_space=param_space(search),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                    scheduler=make_scheduler(search), reuse_actors=spec.reuse_actors,
                                    # its own generator: numpy's global one is shared with whatever else draws.
                                    # Tune ignores max_concurrent_trials beside a given generator: it goes here
                                    search_alg=BasicVariantGenerator(random_state=spec.seed,
                                                                     max_concurrent=spec.max_concurrent_trials),
                                    time_budget_s=spec.time_budget_s or None),
        run_config=tune.RunConfig(
            name=spec.experiment,
            storage_path=spec.storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.num_to_keep,
                                                    checkpoint_score_attribute=spec.metric,
                                                    checkpoint_score_order=spec.mode),
            progress_reporter=_progress_reporter(search),
            verbose=1,
            callbacks=callbacks,
        ),
    )


def _fit(tuner, search: Search, timings: dict[str, float]) -> SearchOutcome:
    # Tune's classic table (trial, status, params, step, metric) instead of the newer per-result output
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    tick = time.perf_counter()
    grid = tuner.fit()
    timings["fit"] = time.perf_counter() - tick
    tick = time.perf_counter()
    dest = results_path(search)
    print(f"chorus: exporting results to {dest}/", file=sys.stderr, flush=True)
    outcome = SearchOutcome(experiment_path(search), dest, len(grid), grid.num_errors, timings)
    _export(search, outcome)
    timings["collect"] = time.perf_counter() - tick
    print(f"chorus: {len(grid)} trials ({grid.num_errors} failed); results in {dest}/ "
          f"(report.html, trials.md, best/)", file=sys.stderr, flush=True)
    return outcome


def _export(search: Search, outcome: SearchOutcome) -> None:
    """Results folder (written whole or not at all), then the done marker, then the `latest` pointer: a search
    killed anywhere in here is still unfinished, and its resume exports again."""
    results_mod.collect(outcome.experiment_path, outcome.results_path, metric=search.spec.metric,
                        mode=search.spec.mode, param_keys=list(search.spec.space), experiment=search.spec.experiment)
    done = {"results": outcome.results_path, "trials": outcome.num_trials, "errors": outcome.num_errors,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    results_mod.write_text(results_mod.join(outcome.experiment_path, DONE_FILE), json.dumps(done) + "\n")
    results_mod.point_latest(search.spec.results_dir, search.spec.experiment)


def experiment_status(exp: str) -> str:
    """'finished' (results exported), 'interrupted' (Tune state to restore) or 'new' (nothing to continue)."""
    from ray import tune

    if results_mod.exists(results_mod.join(exp, DONE_FILE)):
        return "finished"
    return "interrupted" if tune.Tuner.can_restore(exp) else "new"


def _comparable(doc: dict[str, Any]) -> str:
    spec = {k: v for k, v in doc["spec"].items() if k not in _NOT_COMPARED}
    return json.dumps({"spec": spec, "base_config": doc["base_config"]}, sort_keys=True, default=str)


def choose_experiment(search: Search) -> tuple[str, str]:
    """(name, status) for a new search: its experiment name while that is new, or interrupted with the same
    settings (then it is resumed); else the first free `<name>-N`. Finished experiments are never touched."""
    wanted = _comparable(json.loads(json.dumps(search_to_dict(search), default=str)))
    for k in itertools.count(1):
        name = search.spec.experiment if k == 1 else f"{search.spec.experiment}-{k}"
        exp = results_mod.join(search.spec.storage_path, name)
        status = experiment_status(exp)
        if status == "new":
            return name, status
        if status == "interrupted":
            snapshot = results_mod.load_search_snapshot(exp)
            if snapshot is not None and _comparable(snapshot) == wanted:
                return name, status
            print(f"chorus: experiment {name!r} was interrupted with other settings; kept (continue it with "
                  f"`chorus search --resume {name}`)", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def run_search(search: Search, *, callbacks: list | None = None, prepare: bool = True,
               **ray_init_kwargs: Any) -> SearchOutcome:
    """Run a search: a new experiment, or the interrupted one of the same name and settings, resumed (see
    choose_experiment; a finished experiment is kept and this one gets a new name)."""
    from chorus.cluster.preflight import apply_capacity, check_shared_storage

    timings = {"ray_init": init_ray(**ray_init_kwargs)}
    tick = time.perf_counter()
    check_shared_storage(search.spec.storage_path)
    name, status = choose_experiment(search)
    if name != search.spec.experiment:
        print(f"chorus: experiment {search.spec.experiment!r} is taken (kept as it is); this search is {name!r}",
              file=sys.stderr, flush=True)
    search.spec.experiment = name
    exp = experiment_path(search)
    if status == "interrupted":
        print(f"chorus: experiment {name!r} was interrupted: resuming it", file=sys.stderr, flush=True)
        return resume_search(exp, **ray_init_kwargs)
    print(EXPERIMENT_LINE + exp, file=sys.stderr, flush=True)
    apply_capacity(search)
    if prepare:
        prepare_data(search)
    results_mod.write_text(results_mod.join(exp, results_mod.SEARCH_FILE), json.dumps(search_to_dict(search)))
    tuner = make_tuner(search, callbacks=callbacks)
    timings["prepare"] = time.perf_counter() - tick
    return _fit(tuner, search, timings)


def find_experiment(name_or_path: str, storage_path: str) -> str:
    """--resume takes a name (looked up in the storage path) or the experiment's path/URI itself."""
    if is_uri(name_or_path) or "/" in name_or_path or os.sep in name_or_path:
        return name_or_path if is_uri(name_or_path) else os.path.abspath(name_or_path)
    return results_mod.join(storage_path, name_or_path)


def resume_search(experiment: str, *, config_path: str | None = None, **ray_init_kwargs: Any) -> SearchOutcome:
    """Continue an interrupted search; finished trials are not rerun. A finished search is not run again: its
    results are exported once more only if they are missing."""
    storage = load_search(config_path).spec.storage_path if config_path else default_storage_path()
    exp = find_experiment(experiment, storage)
    snapshot = results_mod.load_search_snapshot(exp) if results_mod.exists(exp) else None
    if snapshot is None:
        raise InputError(f"--resume {experiment}: no chorus search at {exp} (expected {results_mod.SEARCH_FILE}); "
                         f"pass the search YAML too if it used another storage_path")
    search = search_from_dict(snapshot)
    search.spec.storage_path, search.spec.experiment = exp.rstrip("/").rsplit("/", 1)
    print(EXPERIMENT_LINE + exp, file=sys.stderr, flush=True)
    if experiment_status(exp) == "finished":
        return _finished(search, exp)
    from ray import tune

    from chorus.cluster.preflight import check_shared_storage
    from chorus.cluster.tune_adapter import make_trainable, param_space
    from chorus.cluster.tune_state import repair_experiment

    timings = {"ray_init": init_ray(**ray_init_kwargs)}
    if not tune.Tuner.can_restore(exp):
        raise InputError(f"--resume {experiment}: {exp} holds no restorable Tune state")
    check_shared_storage(search.spec.storage_path)
    tick = time.perf_counter()
    # the saved state may name a checkpoint that pruning deleted since, or miss newer ones: match it to storage
    plan = repair_experiment(exp)
    for trial in plan:
        print(f"chorus: resume: {trial}", file=sys.stderr, flush=True)
    redone = sum(t.redone for t in plan)
    print(f"chorus: resume: {len(plan)} unfinished trial(s) continue from their newest complete checkpoint; "
          f"{redone} reported step(s) redone", file=sys.stderr, flush=True)
    tuner = tune.Tuner.restore(exp, trainable=make_trainable(search), param_space=param_space(search),
                               resume_unfinished=True, resume_errored=True)
    timings["prepare"] = time.perf_counter() - tick
    return _fit(tuner, search, timings)


def _finished(search: Search, exp: str) -> SearchOutcome:
    """A finished search: its recorded outcome; the results exported again if they went missing."""
    done = json.loads(results_mod.read_text(results_mod.join(exp, DONE_FILE)))
    outcome = SearchOutcome(exp, results_path(search), int(done["trials"]), int(done["errors"]))
    if not results_mod.exists(results_mod.join(outcome.results_path, "trials.csv")):
        print(f"chorus: experiment {search.spec.experiment!r} had finished; exporting its results again",
              file=sys.stderr, flush=True)
        _export(search, outcome)
    print(f"chorus: experiment {search.spec.experiment!r} had finished at {done.get('finished_at', '?')}: "
          f"{outcome.num_trials} trials ({outcome.num_errors} failed); results in {outcome.results_path}/",
          file=sys.stderr, flush=True)
    return outcome


def search_command(config: str | None, overrides: list[str], resume: str | None) -> int:
    """The body of `chorus search`: returns the exit status (1 when any trial failed for good)."""
    if resume:
        outcome = resume_search(resume, config_path=config)
    else:
        if config is None:
            raise InputError("chorus search: give a search YAML (e.g. configs/search.yaml) or --resume EXPERIMENT")
        outcome = run_search(load_search(config, overrides))
    return 1 if outcome.num_errors else 0
