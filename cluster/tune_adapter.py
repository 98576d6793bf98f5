"""Ray adapts to the trainer: Tune trainables, search space, scheduler and the report bridge.

Three layers, as in Ray's own TensorFlow examples:
- `train_trial`: the one trial body (trainer.train with Ray's checkpoint and report), run in the Tune trial
  process for a single-worker trial and on every Ray Train worker of a multi-worker one;
- `make_trainable`: the Tune function trainable. With one worker it runs the body itself; with more it drives a
  TensorflowTrainer named after the trial id (so a retried trial resumes its own run);
- the Tuner, built in cluster.search.

Every reported checkpoint is a self-contained run directory (config.yaml, checkpoints/, the latest samples,
metrics.jsonl), so the best one can be copied out as is and `chorus generate --run` accepts it. Its manifest
(MANIFEST, written last) lists every file with its size: a checkpoint is complete only when all of them are there,
which is how a resume tells a whole checkpoint from a half-written or half-pruned one (cluster.tune_state).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune

from chorus.cluster.search_config import Search, trial_config
from chorus.data import tfenv

RUN_SUBDIR = "run"  # the trainer's run dir inside a trial's working directory
# What a multi-worker trial's driver process reserves: memory only, never a CPU. A CPU sliver (0.01) would leave
# 0.99 CPU on its node, where no whole-CPU Train worker then fits: two such trials deadlocked a 2 x 1-CPU cluster.
DRIVER_MEMORY = 256 * 2**20
MANIFEST = "chorus-checkpoint.json"  # in every staged checkpoint: {"step", "metrics", "files": {path: size}}
# A reused trial process first waits for the previous trial's thread to end. Ray waits 2 s by default and then
# errors the *next* trial; a stopped trial only ends at its next report (up to log_every steps plus an evaluation
# away), and a finished one still writes its last checkpoint and events, so give it time.
REUSE_HANDOVER_S = 300
THREAD_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@dataclass
class TrialSettings:
    """What a trial needs to know besides its sampled parameters (plain data: it is pickled to workers)."""

    experiment: str
    metric: str
    mode: str
    threads: int
    workers: int
    cpus: float
    gpus: float
    max_failures: int
    num_to_keep: int
    storage_path: str

    @classmethod
    def from_search(cls, search: Search) -> TrialSettings:
        s = search.spec
        return cls(experiment=s.experiment, metric=s.metric, mode=s.mode, threads=trial_threads(search),
                   workers=s.resources.workers, cpus=s.resources.cpus, gpus=s.resources.gpus,
                   max_failures=s.max_failures, num_to_keep=s.num_to_keep, storage_path=s.storage_path)


def trial_threads(search: Search) -> int:
    """TF threads per trial (per worker): explicit, else the trial's CPUs, so parallel trials share the cores."""
    if search.spec.threads:
        return search.spec.threads
    return max(1, int(search.spec.resources.cpus))


def thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in THREAD_ENV}


def limit_threads(threads: int) -> None:
    """Before TensorFlow is imported in this process: cap its and OpenMP's thread pools."""
    os.environ.update(thread_env(threads))


# ------------------------------------------------------------------------------------ search space, scheduler


def param_space(search: Search) -> dict[str, Any]:
    """YAML distributions -> Tune domains, keyed by the dotted config key."""
    space = {}
    for key, dim in search.spec.space.items():
        (kind, args), = dim.items()
        space[key] = {
            "choice": lambda a: tune.choice(a),
            "grid": lambda a: tune.grid_search(a),
            "uniform": lambda a: tune.uniform(a[0], a[1]),
            "loguniform": lambda a: tune.loguniform(a[0], a[1]),
            "randint": lambda a: tune.randint(a[0], a[1]),
        }[kind](args)
    return space


def make_scheduler(search: Search):
    sched = search.spec.scheduler
    if sched.type == "fifo":
        return None
    train_cfg = search.base_config["train"]
    if sched.type == "asha":
        from ray.tune.schedulers import ASHAScheduler

        # a grace period longer than the run is the whole run (Ray asserts grace_period <= max_t): a short
        # `--set train.steps=...` on a search file written for long trials still runs
        return ASHAScheduler(time_attr="step", max_t=train_cfg["steps"],
                             grace_period=min(sched.grace_period, train_cfg["steps"]),
                             reduction_factor=sched.reduction_factor)
    from ray.tune.schedulers import PopulationBasedTraining

    mutations = {k: v for k, v in param_space(search).items() if not isinstance(v, dict)}
    # synch: asynchronous PBT only keeps a top trial's checkpoint when that trial's own result arrives while it
    # ranks on top, so with a few trials most exploits were skipped ("no checkpoint for trial ..."); synchronous
    # PBT ranks all trials at each interval, then the bottom ones clone the top ones' checkpoints.
    return PopulationBasedTraining(time_attr="step",
                                   perturbation_interval=sched.perturbation_interval or train_cfg["checkpoint_every"],
                                   hyperparam_mutations=mutations, quantile_fraction=sched.quantile_fraction,
                                   synch=True)


# ------------------------------------------------------------------------------------------ the report bridge


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


def stage_checkpoint(report, dest: Path) -> Path:
    """Lay out a reported checkpoint as a run dir: config.yaml, checkpoints/, latest samples, metrics.jsonl."""
    run_dir, exported = Path(report.run_dir), Path(report.checkpoint)
    _copy_tree(exported, dest / "checkpoints")
    for name in ("config.yaml", "versions.json"):
        if (exported / name).is_file():
            shutil.copy2(exported / name, dest / name)
    sample_steps = sorted(p for p in (run_dir / "samples").glob("step-*") if p.is_dir()
                          and _step_of(p.name) is not None and _step_of(p.name) <= report.step)
    if sample_steps:
        _copy_tree(sample_steps[-1], dest / "samples" / sample_steps[-1].name)
    metrics = run_dir / "metrics.jsonl"
    if metrics.is_file():
        shutil.copy2(metrics, dest / "metrics.jsonl")
    write_manifest(dest, report.step, report.metrics)
    return dest


def write_manifest(dest: Path, step: int, metrics: dict[str, Any]) -> None:
    """List the staged files with their sizes (last, so that the manifest only exists over whole files)."""
    files = {p.relative_to(dest).as_posix(): p.stat().st_size for p in sorted(dest.rglob("*")) if p.is_file()}
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    (dest / MANIFEST).write_text(json.dumps({"step": step, "metrics": {**numbers, "step": step}, "files": files}))


def read_manifest(ckpt_dir: Path) -> dict[str, Any] | None:
    path = ckpt_dir / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _step_of(name: str) -> int | None:
    try:
        return int(name.rsplit("-", 1)[-1])
    except ValueError:
        return None


class RayReporter:
    """trainer.train's `report` callback: forwards metrics and checkpoints to Tune (or to Ray Train).

    report_fn is ray.tune.report in a single-worker trial and ray.train.report on a Train worker. Extra keys:
    `resumed_from_step` (0 for a fresh start) and the seconds spent here (`ray_report_s`, cumulative). With
    `tensorboard` (a path or URI), the chief copies its TensorBoard events there at each checkpoint.
    """

    def __init__(self, report_fn: Callable[..., None], checkpoint_cls: Any, *, metric: str,
                 resumed_from_step: int, always_forward: bool, extra: dict[str, Any] | None = None,
                 tensorboard: str | None = None):
        self.report_fn, self.checkpoint_cls, self.metric = report_fn, checkpoint_cls, metric
        self.resumed_from_step, self.always_forward = resumed_from_step, always_forward
        self.extra = dict(extra or {})
        self.tensorboard = tensorboard  # the chief copies its TensorBoard events here at each checkpoint
        self.chief = False
        self.report_s = 0.0

    def __call__(self, report) -> None:
        tick = time.perf_counter()
        metrics = {k: v for k, v in report.metrics.items() if isinstance(v, (int, float))}
        metrics.update(step=report.step, resumed_from_step=self.resumed_from_step, ray_report_s=self.report_s,
                       **self.extra)
        # Tune insists that every result carries the metric it ranks by; before the first evaluation there is
        # none. Ray Train workers must all report at the same steps, so they forward everything.
        if not self.always_forward and self.metric not in metrics and not report.checkpoint:
            return
        self.chief = report.is_chief
        if report.checkpoint and report.is_chief and self.tensorboard:
            sync_tensorboard(Path(report.run_dir), self.tensorboard)
        if report.checkpoint:
            # next to the run dir, inside Ray's session dir: cleaned up with it even after a SIGKILL
            with tempfile.TemporaryDirectory(prefix=".ray-checkpoint-", dir=Path(report.run_dir).parent) as tmp:
                staged = stage_checkpoint(report, Path(tmp))
                self.report_fn(metrics, checkpoint=self.checkpoint_cls.from_directory(str(staged)))
        else:
            self.report_fn(metrics)
        self.report_s += time.perf_counter() - tick


@contextlib.contextmanager
def restored_checkpoint(checkpoint) -> Iterator[Path | None]:
    """The directory of the checkpoint to resume from (downloaded when remote), or None for a fresh start."""
    if checkpoint is None:
        yield None
        return
    with checkpoint.as_directory() as d:
        yield Path(d)


def checkpoint_step(ckpt_dir: Path | None) -> int:
    """The step of a staged checkpoint, from its checkpoints/checkpoint state file (ckpt-<step>)."""
    if ckpt_dir is None:
        return 0
    state = ckpt_dir / "checkpoints" / "checkpoint"
    if not state.is_file():
        return 0
    for line in state.read_text().splitlines():
        if line.startswith("model_checkpoint_path:"):
            name = line.split(":", 1)[1].strip().strip('"')
            step = _step_of(name)
            return step or 0
    return 0


def prepare_run_dir(run_dir: Path, restored: Path | None) -> None:
    """A retried trial may start on a fresh machine: seed its run dir with the metrics history so far."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if restored is not None and (restored / "metrics.jsonl").is_file() and not (run_dir / "metrics.jsonl").exists():
        shutil.copy2(restored / "metrics.jsonl", run_dir / "metrics.jsonl")
        if (restored / "config.yaml").is_file() and not (run_dir / "config.yaml").exists():
            shutil.copy2(restored / "config.yaml", run_dir / "config.yaml")


# ----------------------------------------------------------------------------------------------- trainables


def tensorboard_dir(settings: TrialSettings, trial_id: str) -> str:
    """Where a trial's TensorBoard events go: <storage_path>/<experiment>/tensorboard/<trial id>, next to Tune's
    state, so that one TensorBoard over storage_path (the compose `tensorboard` service) lists every trial."""
    return f"{settings.storage_path.rstrip('/')}/{settings.experiment}/tensorboard/{trial_id}"


def sync_tensorboard(run_dir: Path, dest: str) -> None:
    """Copy the trainer's run_dir/tensorboard (written on the trial's node) to the storage path."""
    from chorus.cluster.results import copy_tree

    if (run_dir / "tensorboard").is_dir():
        copy_tree(str(run_dir / "tensorboard"), dest)


def train_trial(params: dict[str, Any], base_config: dict[str, Any], settings: TrialSettings, *, session: Any,
                run_dir: Path, trial_id: str, always_forward: bool, extra: dict[str, Any] | None = None) -> None:
    """The one trial body: trainer.train resuming from the session's checkpoint, reporting through the session.

    session is `ray.tune` in a single-worker trial and `ray.train` on a Ray Train worker; both offer
    get_checkpoint, report and Checkpoint. Ray Train workers must all report at the same steps (always_forward).
    """
    entered = time.perf_counter()
    limit_threads(settings.threads)
    tfenv.quiet_native_logs()  # Ray forwards the trial's stderr to the driver's terminal
    cfg = trial_config(base_config, params)
    if not cfg.train.threads:
        cfg.train.threads = settings.threads
    cfg.run.dir = str(run_dir)
    with restored_checkpoint(session.get_checkpoint()) as restored:
        prepare_run_dir(run_dir, restored)
        resumed = checkpoint_step(restored)
        extra = {"ray_setup_s": time.perf_counter() - entered, **(extra or {})}
        manifest = read_manifest(restored) if restored else None
        if manifest and resumed >= cfg.train.steps:
            # restored from the final checkpoint (the driver died before it saw the trial end): report where it
            # ended, so that the trial finishes at its last step instead of rerunning or ending without a result
            session.report({**manifest["metrics"], "resumed_from_step": resumed, "ray_report_s": 0.0, **extra})
            return
        reporter = RayReporter(session.report, session.Checkpoint, metric=settings.metric, resumed_from_step=resumed,
                               always_forward=always_forward, extra=extra,
                               tensorboard=tensorboard_dir(settings, trial_id))
        from chorus.trainer import train  # imports TensorFlow: after limit_threads() and the filter

        train(cfg, report=reporter, resume_from=str(restored / "checkpoints") if restored else None, started=entered)
    if reporter.chief:
        sync_tensorboard(run_dir, reporter.tensorboard)  # the events written after the last report


def train_fn_per_worker(loop_config: dict[str, Any]) -> None:
    """One Ray Train worker: TF_CONFIG is set by TensorflowTrainer, so the `auto` strategy is multi-worker."""
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    train_trial(loop_config["params"], loop_config["base_config"], TrialSettings(**loop_config["settings"]),
                session=ray.train, run_dir=Path(loop_config["local_dir"]) / f"rank{rank}" / RUN_SUBDIR,
                trial_id=loop_config["trial_id"], always_forward=True, extra={"rank0_pid": os.getpid()})


def inner_storage_path(settings: TrialSettings) -> str:
    return f"{settings.storage_path.rstrip('/')}/{settings.experiment}/_train"


def run_multi_worker_trial(params: dict[str, Any], base_config: dict[str, Any], settings: TrialSettings) -> None:
    """A Tune trial that is itself a TensorflowTrainer run over `workers` Ray-placed workers."""
    import ray.train
    from ray.train.tensorflow import TensorflowTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    resources = {"CPU": settings.cpus, **({"GPU": settings.gpus} if settings.gpus else {})}
    trainer = TensorflowTrainer(
        train_fn_per_worker,
        train_loop_config={"params": params, "base_config": base_config, "settings": asdict(settings),
                           "local_dir": str(Path.cwd()), "trial_id": trial_id},
        scaling_config=ray.train.ScalingConfig(num_workers=settings.workers, use_gpu=settings.gpus > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=trial_id,  # never a timestamp: a retried or resumed trial finds and continues its own run
            storage_path=inner_storage_path(settings),
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=settings.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=settings.num_to_keep,
                                                         checkpoint_score_attribute=settings.metric,
                                                         checkpoint_score_order=settings.mode),
            worker_runtime_env={"env_vars": thread_env(settings.threads)},
        ),
    )
    trainer.fit()


def make_trainable(search: Search):
    """The Tune function trainable for this search, with its per-trial resources."""
    settings = TrialSettings.from_search(search)
    base_config = search.base_config
    res = search.spec.resources
    if res.workers == 1:
        def run(params):
            train_trial(params, base_config, settings, session=tune, run_dir=Path.cwd() / RUN_SUBDIR,
                        trial_id=tune.get_context().get_trial_id(), always_forward=False)

        resources = {"cpu": res.cpus, **({"gpu": res.gpus} if res.gpus else {})}
    else:
        def run(params):
            run_multi_worker_trial(params, base_config, settings)

        # the trial process only drives the workers, which Ray Train places with their own resources (outside
        # the trial's placement group, as one gang); Tune refuses an empty request, so the driver asks for memory
        resources = {"cpu": 0, "memory": DRIVER_MEMORY}

    def chorus_trial(params):
        # read by Tune's reset_config in this process, when it is handed the next trial
        os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", str(REUSE_HANDOVER_S))
        run(params)

    return tune.with_resources(chorus_trial, resources)
