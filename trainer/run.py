"""One training run: train(config, report=..., resume_from=...) -> RunResult.

Phases: set up devices and strategy -> find what to resume -> data -> models -> restore -> loop
(iterate, log, evaluate, sample, checkpoint, report) -> final result. Only the chief writes files.
"""
from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chorus.data.dataset import build_dataset, load_dataset
from chorus.data.errors import InputError
from chorus.data.files import write_text_atomic
from chorus.data.pipeline import make_dataset, outside_window
from chorus.trainer import checkpoints as ckpts
from chorus.trainer.config import Config, dump_config
from chorus.trainer.distribute import choose_strategy, configure_devices
from chorus.trainer.evaluation import binarize, evaluate, fixed_inputs, summarize_holdout
from chorus.trainer.gan import WGANGP
from chorus.trainer.model import pipeline_options
from chorus.trainer.rundir import (
    append_metrics,
    check_resumable,
    check_run_dir_usable,
    truncate_metrics,
    versions_text,
)
from chorus.trainer.samples import write_samples
from chorus.trainer.tfenv import tf


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


def train(config: Config, *, report: Callable[[Report], None] | None = None,
          resume_from: str | None = None) -> RunResult:
    cfg = config
    t = cfg.train
    # --- system: devices, strategy, who is chief
    configure_devices(t.cpu_devices, t.threads)
    dist = choose_strategy(t.strategy)
    chief = dist.is_chief
    if t.batch_size % dist.num_replicas:
        raise InputError(f"train.batch_size: {t.batch_size} is not divisible by the {dist.num_replicas} replicas "
                         f"of the {dist.name} strategy")
    run_dir = Path(cfg.run.dir)
    config_yaml = dump_config(cfg)

    # --- what to resume: an explicit checkpoint, else this run dir's latest
    check_run_dir_usable(run_dir)
    resume_prefix = None
    if resume_from:
        resume_prefix = ckpts.require_checkpoint(resume_from)
    elif ckpts.latest_checkpoint(run_dir):
        check_resumable(run_dir, cfg.to_dict())
        resume_prefix = ckpts.latest_checkpoint(run_dir)

    # --- data
    data = load_training_data(cfg, verbose=chief)
    check_data_shape(data, cfg)
    dropped = int(outside_window(data.train, cfg.model.pitch_low, cfg.model.pitch_window).sum())
    if dropped == len(data.train):
        raise InputError(f"model.pitch_low: every training window has notes outside pitches {cfg.model.pitch_low}.."
                         f"{cfg.model.pitch_low + cfg.model.pitch_window - 1}; widen model.pitch_window")

    # --- models, optimizers and state, then restore
    gan = WGANGP(cfg, dist)
    checkpoint = ckpts.make_checkpoint(gan, config_yaml)
    if resume_prefix:
        checkpoint.restore(resume_prefix).assert_existing_objects_matched()
        checkpoint.config.assign(config_yaml)
        # The config's learning rates win over the restored ones: PBT resumes a checkpoint with mutated rates.
        gan.g_opt.learning_rate.assign(t.g_lr)
        gan.d_opt.learning_rate.assign(t.d_lr)
    start_step = int(gan.step.numpy())
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", config_yaml)
        write_text_atomic(run_dir / "versions.json", versions_text())
        truncate_metrics(run_dir, start_step)
        log(f"chorus: {'resuming at step ' + str(start_step) if resume_prefix else 'new run'} in {run_dir} | "
            f"strategy {dist.describe()} | {len(data.train)} train / {len(data.holdout)} holdout windows | "
            f"generator {gan.generator.count_params():,} + critic {gan.critic.count_params():,} parameters"
            + (f" | {dropped} train windows outside the pitch window dropped" if dropped else ""))
    ckpt_dir = ckpts.chief_or_temp_dir(run_dir, chief, dist.worker_index)
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=t.keep_checkpoints,
                                         checkpoint_name="ckpt")
    if chief:
        write_text_atomic(ckpt_dir / "config.yaml", config_yaml)
        write_text_atomic(ckpt_dir / "versions.json", versions_text())

    # --- input pipeline, starting where the checkpoint left off
    start_batch = int(gan.data_position.numpy())
    dist_ds = dist.strategy.distribute_datasets_from_function(
        lambda ctx: make_dataset(data.train, global_batch=t.batch_size, seed=t.seed, start_batch=start_batch,
                                 num_replicas=dist.num_replicas, input_context=ctx, **pipeline_options(cfg)))
    iterator = iter(dist_ds)

    holdout_summary = summarize_holdout(data.holdout, cfg)
    sample_melody, sample_z = fixed_inputs(data.holdout, cfg.sample.num, cfg.sample.seed, gan.z_shape)
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard")) if chief else None

    # --- the loop
    samples_per_iteration = (t.n_critic + 1) * t.batch_size
    step, last_eval, last_prefix, row = start_step, {}, None, {}
    train_seconds, timed_iterations, loop_start = 0.0, 0, time.time()
    while step < t.steps:
        tick = time.perf_counter()
        losses = gan.train_iteration(iterator)
        losses = {k: float(v) for k, v in losses.items()}  # waits for the step to finish
        elapsed = time.perf_counter() - tick
        step = int(gan.step.numpy())
        if step > start_step + 1:  # the first iteration includes tracing and compilation
            train_seconds += elapsed
            timed_iterations += 1
        rate = samples_per_iteration * timed_iterations / train_seconds if train_seconds else 0.0
        row = {"step": step, **losses, "samples_per_sec": rate, "wall_seconds": time.time() - loop_start}
        last = step >= t.steps

        if step % t.log_every == 0 or last:
            if chief:
                eta = (t.steps - step) * samples_per_iteration / rate if rate else 0.0
                log(f"step {step}/{t.steps} | d_loss {losses['d_loss']:.3f} g_loss {losses['g_loss']:.3f} "
                    f"W {losses['wasserstein']:.3f} gp {losses['gradient_penalty']:.3f} | "
                    f"{rate:.1f} samples/s | eta {fmt_seconds(eta)}")
                with writer.as_default(step=step):
                    for k, v in row.items():
                        if k != "step":
                            tf.summary.scalar(f"train/{k}", v)

        eval_now = step % t.eval_every == 0 or last
        if eval_now:
            result = evaluate(gan.generate, data.holdout, cfg, gan.z_shape, holdout_summary)
            last_eval = result.flat()
            if chief:
                log(f"step {step}: music_distance {result.music_distance:.4f}")
                with writer.as_default(step=step):
                    for k, v in last_eval.items():
                        tf.summary.scalar(f"eval/{k}", v)
        if chief and (step % t.log_every == 0 or eval_now):
            append_metrics(run_dir, {**row, **(last_eval if eval_now else {})})

        if step % t.sample_every == 0 or last:
            # Every worker runs the generator: reading its BatchNorm statistics is a collective op.
            rolls = binarize(gan.generate(sample_melody, sample_z), cfg.sample.threshold)
            if chief:
                write_samples(rolls, run_dir / "samples" / f"step-{step:06d}", cfg, title=f"step {step}")

        exported = None
        if step % t.checkpoint_every == 0 or last:
            last_prefix = manager.save(checkpoint_number=step)  # every worker saves; only the chief's is kept
            if not chief and not t.keep_worker_checkpoints:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
            elif report is not None:
                exported = str(ckpts.export_checkpoint(last_prefix, run_dir / "export" / "latest", config_yaml))

        if report is not None and (eval_now or exported or step % t.checkpoint_every == 0 or last):
            report(Report(step=step, metrics={**row, **last_eval}, checkpoint=exported, is_chief=chief,
                          run_dir=str(run_dir)))
        if exported:
            shutil.rmtree(exported, ignore_errors=True)

    if writer is not None:
        writer.flush()
    if chief and timed_iterations:
        rate = samples_per_iteration * timed_iterations / train_seconds
        log(f"chorus: finished at step {step} in {run_dir}; {rate:.1f} samples/s after warm-up")
    return RunResult(run_dir=str(run_dir), step=step, metrics={**row, **last_eval},
                     checkpoint=last_prefix or ckpts.latest_checkpoint(run_dir))
