"""Checkpoints: one bundle of models, optimizers, step, data position, RNG state and the config.

tf.train.CheckpointManager writes each checkpoint's files first and then atomically rewrites the small
`checkpoint` state file, so a run killed mid-save still points at the previous complete checkpoint.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from chorus.data import tfenv
from chorus.errors import InputError
from chorus.files import write_text_atomic
from chorus.trainer.rundir import STATE_FILE, versions_text

tf = tfenv.tensorflow()


def make_checkpoint(gan, config_yaml: str) -> tf.train.Checkpoint:
    extra = {"ema_generator": gan.ema_generator} if gan.ema_generator is not None else {}
    return tf.train.Checkpoint(
        generator=gan.generator, critic=gan.critic, g_opt=gan.g_opt, d_opt=gan.d_opt,
        rng=gan.rng, step=gan.step, data_position=gan.data_position,
        config=tf.Variable(config_yaml, trainable=False, name="config_yaml"), **extra,
    )


def latest_checkpoint(path: str | Path) -> str | None:
    """The newest checkpoint prefix in a run dir (its checkpoints/) or in a checkpoint dir; None if there is none."""
    path = Path(path)
    for d in (path / "checkpoints", path):
        if (d / STATE_FILE).is_file():
            prefix = tf.train.latest_checkpoint(str(d))
            if prefix:
                return prefix
    return None


def require_checkpoint(path: str | Path) -> str:
    prefix = latest_checkpoint(path)
    if prefix is None:
        raise InputError(f"{path}: not a chorus run or checkpoint directory "
                         f"(expected checkpoints/{STATE_FILE} or {STATE_FILE} with a saved checkpoint)")
    return prefix


def export_checkpoint(prefix: str, dest: str | Path, config_yaml: str) -> Path:
    """A self-contained directory holding one checkpoint (hard links when possible) plus config and versions."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src_dir, name = Path(prefix).parent, Path(prefix).name
    for f in src_dir.glob(name + ".*"):
        try:
            os.link(f, tmp / f.name)
        except OSError:
            shutil.copy2(f, tmp / f.name)
    # The CheckpointState text proto, with a relative path so the directory can move.
    write_text_atomic(tmp / STATE_FILE, f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    write_text_atomic(tmp / "config.yaml", config_yaml)
    write_text_atomic(tmp / "versions.json", versions_text())
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def chief_or_temp_dir(run_dir: Path, is_chief: bool, worker_index: int) -> Path:
    """MultiWorkerMirroredStrategy needs every worker to save; only the chief's copy is kept."""
    return run_dir / "checkpoints" if is_chief else run_dir / ".worker_tmp" / f"worker{worker_index}"
