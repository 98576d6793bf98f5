"""Using a trained run: load its generator, complete melodies, evaluate against the holdout set."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chorus.data import tfenv
from chorus.data.midi_io import melody_notes, notes_roll
from chorus.errors import InputError
from chorus.files import write_text_atomic
from chorus.trainer.checkpoints import require_checkpoint
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config, config_from_dict, read_yaml
from chorus.trainer.evaluation import Evaluation, evaluate, fixed_inputs, truncated_normal
from chorus.trainer.ladder import Ladder, build_ladder
from chorus.trainer.model import build_generator, generate_batched, z_shape
from chorus.trainer.rundir import require_run_dir
from chorus.trainer.samples import real_harmonizations, write_samples

tf = tfenv.tensorflow()


@dataclass
class LoadedRun:
    cfg: Config
    generator: object
    step: int
    checkpoint: str

    def generate(self, melody: np.ndarray, z: np.ndarray) -> np.ndarray:
        return generate_batched(self.generator, melody, z)


def load_run(run_dir: str | Path) -> LoadedRun:
    """A run dir (config.yaml + checkpoints/) or an exported checkpoint dir (config.yaml + checkpoint files)."""
    run_dir = require_run_dir(run_dir)
    prefix = require_checkpoint(run_dir)
    cfg = config_from_dict(read_yaml(run_dir / "config.yaml"), source=f"{run_dir / 'config.yaml'}: ")
    generator = build_generator(cfg)
    step = tf.Variable(0, dtype=tf.int64)
    # a run trained with a moving average samples from it, as its training samples and evaluations did
    name = "ema_generator" if cfg.train.ema_decay else "generator"
    tf.train.Checkpoint(**{name: generator}, step=step).restore(prefix).expect_partial()
    return LoadedRun(cfg, generator, int(step.numpy()), prefix)


def holdout_windows(cfg: Config) -> np.ndarray:
    from chorus.trainer.run import load_training_data

    return load_training_data(cfg, verbose=True).holdout


def generate_from_run(run_dir: str | Path, *, melody: str | Path | None = None, num: int = 4,
                      out: str | Path | None = None, seed: int = 0, pianoroll: bool = False) -> list[Path]:
    """num 4-track MIDI files (+ PNGs and WAVs) conditioned on a melody MIDI file, or on holdout melodies if none
    (then with the real harmonizations of those melodies beside them, as real-i.*).

    Track 0 of every file is the given melody note for note (repeated notes stay separate notes), while the
    generator sees its binary roll, as in training."""
    if num < 1:
        raise InputError(f"--num: expected a positive number of samples, got {num}")
    run = load_run(run_dir)
    cfg = run.cfg
    zs = z_shape(cfg)
    onsets = None
    if melody is not None:
        notes = melody_notes(melody, steps=cfg.data.steps, steps_per_beat=cfg.data.steps_per_beat)
        roll, onset = notes_roll(notes, cfg.data.steps)  # (T, 128) each
        m = np.repeat(RollCodec.user_rolls(roll[None, :, :, None]), num, axis=0)  # (num, T, 128, 1)
        z = truncated_normal(np.random.default_rng(seed), (num, *zs))  # fresh noise: num different harmonisations
    else:
        holdout = holdout_windows(cfg)
        m, z = fixed_inputs(holdout, num, seed, zs)
        real = real_harmonizations(holdout, m)  # holdout melodies: their real harmonizations go beside
    # the melody track is the given melody, as in the lab's inference
    rolls = RollCodec.with_melody(RollCodec.notes(run.generate(m, z), cfg.sample.threshold), m)
    if melody is not None:  # with its note boundaries, which the roll alone loses on a repeated note
        onsets = np.zeros(rolls.shape, dtype=bool)  # (num, T, P, K)
        onsets[..., RollCodec.MELODY_TRACK] = onset
    out = Path(out) if out else Path(run_dir) / "generated"
    return write_samples(rolls, out, cfg, prefix=f"generated-step{run.step}", title=f"step {run.step}",
                         real=real if melody is None else None, onsets=onsets, pianoroll=pianoroll)


def evaluate_run(run_dir: str | Path, json_path: str | Path | None = None) -> tuple[Evaluation, Path, int, Ladder]:
    """The run's latest checkpoint against its holdout at n = eval.num_samples, placed on the ladder of its data
    (trainer.ladder); both go to the JSON (default RUN/evaluation.json)."""
    from chorus.trainer.run import load_training_data

    run = load_run(run_dir)
    data = load_training_data(run.cfg, verbose=True)
    result = evaluate(run.generate, data.holdout, run.cfg, z_shape(run.cfg))
    ladder = build_ladder(data.train, data.holdout, run.cfg).placed(f"this run (step {run.step})",
                                                                    result.music_distance, result.n)
    json_path = Path(json_path) if json_path else Path(run_dir) / "evaluation.json"
    doc = {"run": str(run_dir), "step": run.step, "checkpoint": run.checkpoint, **result.to_json(),
           "ladder": ladder.to_json()}
    write_text_atomic(json_path, json.dumps(doc, indent=2) + "\n")
    return result, json_path, run.step, ladder
