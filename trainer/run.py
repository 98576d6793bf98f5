"""One training run: train(config, report=..., resume_from=...) -> RunResult.

`set_up` does everything before the first step (devices, strategy, what to resume, data, models, restore, run
dir, input pipeline) and returns a `Session`. `train` is then a flat loop whose blocks each have one concern:
iterate, log, evaluate, samples, checkpoint and report; each block that needs more than a few lines is a function
here that reads on its own. Only the chief writes files.
"""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus.data import objective, tfenv
from chorus.data.dataset import Dataset, build_dataset, load_dataset
from chorus.data.pipeline import Windows, make_dataset, training_windows
from chorus.errors import InputError
from chorus.files import write_text_atomic
from chorus.trainer import checkpoints as ckpts
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config, dump_config
from chorus.trainer.distribute import Distribution, choose_strategy, configure_devices
from chorus.trainer.evaluation import evaluate, fixed_inputs, summarize_holdout
from chorus.trainer.gan import WGANGP
from chorus.trainer.model import generate_batched, pipeline_options
from chorus.trainer.rundir import (
    append_metrics,
    check_resumable,
    check_run_dir_usable,
    truncate_metrics,
    versions_text,
)
from chorus.trainer.samples import real_harmonizations, write_samples
from chorus.trainer.warm import acquire_gan

tf = tfenv.tensorflow()


@dataclass
class Report:
    """What the trainer tells its caller every eval_every / checkpoint_every steps and at the end."""
    step: int
    metrics: dict[str, float]
    checkpoint: str | None  # chief only: a self-contained checkpoint directory; copy it, it is replaced later
    is_chief: bool
    run_dir: str


@dataclass
class RunResult:
    run_dir: str
    step: int
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None  # prefix of the last checkpoint


def load_training_data(cfg: Config, *, verbose: bool = True):
    if cfg.data.source == "dataset":
        return load_dataset(cfg.data.path)
    return load_dataset(build_dataset(cfg.data, progress=verbose))


def check_data_shape(ds, cfg: Config) -> None:
    want = (cfg.data.steps, cfg.data.pitches, cfg.data.tracks)
    for split in ("train", "holdout"):
        arr = getattr(ds, split)
        if tuple(arr.shape[1:]) != want:
            raise InputError(f"data: the {split} windows are shaped {tuple(arr.shape[1:])}, but data.steps, "
                             f"data.pitches and data.tracks ask for {want}")
        if len(arr) == 0:
            raise InputError(f"data: the {split} split is empty; use more pieces or change data.holdout_fraction")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class Session:
    """Everything set up for a run's loop; built by set_up."""
    cfg: Config
    dist: Distribution
    run_dir: Path
    config_yaml: str
    data: Dataset  # train and holdout windows
    gan: WGANGP  # built, or reused from this process's previous run (trainer.warm)
    warm: bool  # the WGANGP and its traced step came from this process's previous run
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    ckpt_dir: Path
    iterator: Any  # over the distributed input pipeline, starting at the restored data position
    holdout_summary: dict[str, Any]  # the holdout's metrics, computed once
    holdout_features: Any  # the holdout's objective features, computed once (not at every evaluation)
    sample_melody: Any  # fixed holdout melodies and noise: samples across steps are comparable
    sample_z: Any
    sample_real: Any  # the holdout's own harmonizations of those melodies, written beside the samples
    writer: Any  # TensorBoard writer (chief), else None
    start_step: int

    @property
    def chief(self) -> bool:
        return self.dist.is_chief


def set_up_distribution(t) -> Distribution:
    """Devices, strategy and who is chief; the global batch must split evenly over the replicas."""
    configure_devices(t.cpu_devices, t.threads)
    dist = choose_strategy(t.strategy)
    if t.batch_size % dist.num_replicas:
        raise InputError(f"train.batch_size: {t.batch_size} is not divisible by the {dist.num_replicas} replicas "
                         f"of the {dist.name} strategy")
    return dist


def find_resume_prefix(cfg: Config, run_dir: Path, resume_from: str | None) -> str | None:
    """What to resume: an explicit checkpoint, else this run dir's latest (if its config allows), else nothing."""
    check_run_dir_usable(run_dir)
    if resume_from:
        return ckpts.require_checkpoint(resume_from)
    if ckpts.latest_checkpoint(run_dir):
        check_resumable(run_dir, cfg.to_dict())
        return ckpts.latest_checkpoint(run_dir)
    return None


def load_windows(cfg: Config, *, verbose: bool) -> tuple[Dataset, Windows]:
    """The dataset, and its training windows as the model computes over them (InputError if none is left)."""
    data = load_training_data(cfg, verbose=verbose)
    check_data_shape(data, cfg)
    m = cfg.model
    windows = training_windows(data.train, pitch_low=m.pitch_low, pitch_window=m.pitch_window,
                               key_normalize=m.key_normalize)
    if windows.outside == len(data.train):
        raise InputError(f"model.pitch_low: every training window has notes outside pitches {m.pitch_low}.."
                         f"{m.pitch_low + m.pitch_window - 1}; widen model.pitch_window")
    if not len(windows.rolls):
        raise InputError("model.key_normalize: no training window fits the pitch window once moved to C; "
                         "widen model.pitch_window or set model.key_normalize: false")
    return data, windows


def restore(checkpoint: tf.train.Checkpoint, gan: WGANGP, prefix: str, config_yaml: str, t) -> None:
    """Restore every object of the checkpoint; the config (and its learning rates) are this run's."""
    checkpoint.restore(prefix).assert_existing_objects_matched()
    checkpoint.config.assign(config_yaml)
    # The config's learning rates win over the restored ones: PBT resumes a checkpoint with mutated rates.
    gan.g_opt.learning_rate.assign(t.g_lr)
    gan.d_opt.learning_rate.assign(t.d_lr)


def log_start(run_dir: Path, dist: Distribution, data: Dataset, windows: Windows, gan: WGANGP,
              resumed_at: int | None) -> None:
    log(f"chorus: {'new run' if resumed_at is None else 'resuming at step ' + str(resumed_at)} in {run_dir} | "
        f"strategy {dist.describe()} | {len(data.train)} train / {len(data.holdout)} holdout windows | "
        f"generator {gan.generator.count_params():,} + critic {gan.critic.count_params():,} parameters"
        + (f" | {windows.outside} train windows outside the pitch window dropped" if windows.outside else "")
        + (f" | {windows.unfit} that leave it once moved to C dropped" if windows.unfit else ""))


def set_up(cfg: Config, resume_from: str | None = None) -> Session:
    """Devices and strategy, what to resume, data, models (restored), run dir files, input pipeline."""
    t = cfg.train
    # --- system: devices, strategy, who is chief
    dist = set_up_distribution(t)
    chief = dist.is_chief
    run_dir = Path(cfg.run.dir)
    config_yaml = dump_config(cfg)

    # --- what to resume, and the data
    resume_prefix = find_resume_prefix(cfg, run_dir, resume_from)
    data, windows = load_windows(cfg, verbose=chief)

    # --- models, optimizers and state, then restore
    gan, warm = acquire_gan(cfg, dist)
    checkpoint = ckpts.make_checkpoint(gan, config_yaml)
    if resume_prefix:
        restore(checkpoint, gan, resume_prefix, config_yaml, t)
    start_step = int(gan.step.numpy())

    # --- run dir: config, versions, metrics cut back to the restored step; checkpoint manager
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", config_yaml)
        write_text_atomic(run_dir / "versions.json", versions_text())
        truncate_metrics(run_dir, start_step)
        log_start(run_dir, dist, data, windows, gan, start_step if resume_prefix else None)
    ckpt_dir = ckpts.chief_or_temp_dir(run_dir, chief, dist.worker_index)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=t.keep_checkpoints,
                                         checkpoint_name="ckpt")
    if chief:
        write_text_atomic(ckpt_dir / "config.yaml", config_yaml)
        write_text_atomic(ckpt_dir / "versions.json", versions_text())

    # --- input pipeline, starting where the checkpoint left off
    start_batch = int(gan.data_position.numpy())
    dist_ds = dist.strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(windows, global_batch=t.batch_size, seed=t.seed, start_batch=start_batch,
                                 num_replicas=dist.num_replicas, input_context=ctx, **pipeline_options(cfg)))

    # --- what evaluation and samples compare against
    sample_melody, sample_z = fixed_inputs(data.holdout, cfg.sample.num, cfg.sample.seed, gan.z_shape)
    return Session(
        cfg=cfg, dist=dist, run_dir=run_dir, config_yaml=config_yaml, data=data, gan=gan, checkpoint=checkpoint,
        manager=manager, ckpt_dir=ckpt_dir, iterator=iter(dist_ds),
        holdout_summary=summarize_holdout(data.holdout, cfg),
        holdout_features=objective.features(data.holdout, steps_per_bar=cfg.data.steps_per_bar,
                                            steps_per_beat=cfg.data.steps_per_beat),
        sample_melody=sample_melody, sample_z=sample_z,
        sample_real=real_harmonizations(data.holdout, sample_melody),
        writer=tf.summary.create_file_writer(str(run_dir / "tensorboard")) if chief else None,
        start_step=start_step, warm=warm)


def log_progress(s: Session, row: dict[str, float]) -> None:
    """Chief: one line on stderr and the train/ scalars in TensorBoard."""
    t, step, rate = s.cfg.train, row["step"], row["samples_per_sec"]
    eta = (t.steps - step) * (t.n_critic + 1) * t.batch_size / rate if rate else 0.0
    log(f"step {step}/{t.steps} | d_loss {row['d_loss']:.3f} g_loss {row['g_loss']:.3f} "
        f"W {row['wasserstein']:.3f} gp {row['gradient_penalty']:.3f} | {rate:.1f} samples/s | eta {fmt_seconds(eta)}")
    with s.writer.as_default(step=step):
        for k, v in row.items():
            if k != "step":
                tf.summary.scalar(f"train/{k}", v)


def evaluate_now(s: Session, step: int) -> dict[str, float]:
    """Generated samples vs the holdout's music metrics (every worker: generating is collective); the chief logs."""
    result = evaluate(s.gan.generate, s.data.holdout, s.cfg, s.gan.z_shape, s.holdout_summary, s.holdout_features)
    flat = result.flat()
    raw = ""
    if s.gan.ema_generator is not None:  # what the average buys: the same objective of the raw weights
        flat["music_distance_raw"] = evaluate(
            lambda melody, z: generate_batched(s.gan.generator, melody, z), s.data.holdout, s.cfg, s.gan.z_shape,
            s.holdout_summary, s.holdout_features).music_distance
        raw = f" (raw generator {flat['music_distance_raw']:.4f})"
    if s.chief:
        log(f"step {step}: music_distance {result.music_distance:.4f}{raw}")
        with s.writer.as_default(step=step):
            for k, v in flat.items():
                tf.summary.scalar(f"eval/{k}", v)
    return flat


def write_step_samples(s: Session, step: int) -> None:
    """MIDI + PNG + WAV of the fixed melodies beside the real harmonizations, and TensorBoard audio; every worker
    runs the generator (its BatchNorm read is collective)."""
    rolls = RollCodec.notes(s.gan.generate(s.sample_melody, s.sample_z), s.cfg.sample.threshold)
    if s.chief:
        write_samples(rolls, s.run_dir / "samples" / f"step-{step:06d}", s.cfg, title=f"step {step}",
                      real=s.sample_real, tensorboard=s.writer, step=step)


def save_checkpoint(s: Session, step: int, export: bool) -> tuple[str, str | None]:
    """Every worker saves (collective); only the chief's is kept. Returns (prefix, exported dir or None)."""
    prefix = s.manager.save(checkpoint_number=step)
    if not s.chief:
        if not s.cfg.train.keep_worker_checkpoints:
            shutil.rmtree(s.ckpt_dir, ignore_errors=True)
        return prefix, None
    if not export:
        return prefix, None
    return prefix, str(ckpts.export_checkpoint(prefix, s.run_dir / "export" / "latest", s.config_yaml))


def set_learning_rates(gan: WGANGP, t, step: int) -> None:
    """train.lr_end_fraction < 1: both rates fall linearly from d_lr/g_lr to that fraction of them at the end."""
    if t.lr_end_fraction != 1.0:
        scale = 1.0 - (1.0 - t.lr_end_fraction) * step / t.steps
        gan.g_opt.learning_rate.assign(t.g_lr * scale)
        gan.d_opt.learning_rate.assign(t.d_lr * scale)


def after_iteration(s: Session, row: dict[str, float], last_eval: dict[str, float],
                    report: Callable[[Report], None] | None) -> tuple[dict[str, float], str | None]:
    """Whatever is due at row's step: log, evaluate, samples, checkpoint, report. -> (the latest evaluation, the
    checkpoint prefix saved now or None)."""
    t, step = s.cfg.train, row["step"]
    last = step >= t.steps
    log_now = step % t.log_every == 0 or last
    eval_now = step % t.eval_every == 0 or last
    checkpoint_now = step % t.checkpoint_every == 0 or last

    # --- log
    if s.chief and log_now:
        log_progress(s, row)

    # --- evaluate on the holdout; the metrics row carries the evaluation of this step
    if eval_now:
        last_eval = evaluate_now(s, step)
    if s.chief and (log_now or eval_now):
        append_metrics(s.run_dir, {**row, **(last_eval if eval_now else {})})

    # --- samples
    if step % t.sample_every == 0 or last:
        write_step_samples(s, step)

    # --- checkpoint, then report to the caller (Ray Tune) with a self-contained copy it may keep
    prefix = exported = None
    if checkpoint_now:
        prefix, exported = save_checkpoint(s, step, export=report is not None)
    if report is not None and (eval_now or checkpoint_now):
        report(Report(step=step, metrics={**row, **last_eval}, checkpoint=exported, is_chief=s.chief,
                      run_dir=str(s.run_dir)))
    if exported:
        shutil.rmtree(exported, ignore_errors=True)
    return last_eval, prefix


def train(config: Config, *, report: Callable[[Report], None] | None = None,
          resume_from: str | None = None, started: float | None = None) -> RunResult:
    """Train config's run; `started` (a perf_counter reading) is when the caller began, for start_up_s."""
    started = time.perf_counter() if started is None else started
    s = set_up(config, resume_from)
    t, gan = s.cfg.train, s.gan
    samples_per_iteration = (t.n_critic + 1) * t.batch_size
    step, last_eval, last_prefix, row = s.start_step, {}, None, {}
    train_seconds, timed_iterations, loop_start = 0.0, 0, time.time()
    start_up: dict[str, float] = {}
    first_done = 0.0
    while step < t.steps:
        # --- one iteration: n_critic critic steps and one generator step, at this step's learning rates
        set_learning_rates(gan, t, step)
        tick = time.perf_counter()
        losses = {k: float(v) for k, v in gan.train_iteration(s.iterator).items()}  # waits for the step
        elapsed = time.perf_counter() - tick
        step = int(gan.step.numpy())
        if step > s.start_step + 1:  # the first iteration includes tracing and compilation
            train_seconds += elapsed
            timed_iterations += 1
        else:
            first_done = time.perf_counter()
        if step == s.start_step + 2:
            # start-up: from `started` to the end of the first iteration, less what a warm iteration takes
            start_up = {"start_up_s": first_done - started - elapsed, "warm_start": float(s.warm)}
        rate = samples_per_iteration * timed_iterations / train_seconds if train_seconds else 0.0
        row = {"step": step, **losses, "samples_per_sec": rate, "wall_seconds": time.time() - loop_start,
               **start_up}
        last_eval, prefix = after_iteration(s, row, last_eval, report)
        last_prefix = prefix or last_prefix

    if s.writer is not None:
        s.writer.flush()
    if s.chief and timed_iterations:
        log(f"chorus: finished at step {step} in {s.run_dir}; "
            f"{samples_per_iteration * timed_iterations / train_seconds:.1f} samples/s after warm-up")
    return RunResult(run_dir=str(s.run_dir), step=step, metrics={**row, **last_eval},
                     checkpoint=last_prefix or ckpts.latest_checkpoint(s.run_dir))
