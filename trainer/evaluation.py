"""Music metrics of generated samples against the holdout set, with fixed melodies and noise.

Evaluation inputs are a pure function of eval.seed, so music_distance is comparable across steps and runs.
`score` is the one scoring rule: generated samples, real windows, corruptions and any other music are scored by it
against the holdout, and each value carries its n (the number of samples scored), since the value depends on it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from chorus.data import metrics, objective
from chorus.trainer.codec import RollCodec
from chorus.trainer.config import Config


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal, redrawn beyond 2 standard deviations (as tf.random.truncated_normal)."""
    out = rng.standard_normal(shape).astype(np.float32)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
        bad = np.abs(out) > 2
    return out


def draw_rows(count: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The evaluation's rule for n rows out of count windows: without replacement, unless n > count."""
    return rng.choice(count, size=n, replace=n > count)


def draw_windows(rolls: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n windows of rolls drawn as an evaluation draws its melodies (eval.seed), whole: each with its own melody."""
    return rolls[draw_rows(len(rolls), n, np.random.default_rng(seed))]


def fixed_inputs(rolls: np.ndarray, n: int, seed: int, z_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """n (melody, z) pairs: melodies are track 0 of windows drawn (with replacement only if needed) from rolls."""
    rng = np.random.default_rng(seed)
    idx = draw_rows(len(rolls), n, rng)
    melody = RollCodec.user_rolls(RollCodec.melody(rolls[idx]))  # (n, steps, pitches, 1) in {-1, 1}
    return melody, truncated_normal(rng, (n, *z_shape))


@dataclass
class Evaluation:
    generated: dict[str, Any]  # metrics.summarize of the generated samples
    holdout: dict[str, Any]  # metrics.summarize of the holdout windows
    music_distance: float
    groups: dict[str, float] | None = None  # music_distance broken down by musical group (objective.group_distances)
    terms: dict[str, float] | None = None  # and by feature (objective.distance_terms)
    version: int = objective.MUSIC_DISTANCE_VERSION  # values of different versions never compare
    n: int | None = None  # samples scored (eval.num_samples for a model): the value depends on it

    def flat(self) -> dict[str, float]:
        """Flat float metrics for metrics.jsonl, TensorBoard and Ray (the feature means stay in the JSON)."""
        out = {"music_distance": float(self.music_distance), "music_distance_version": self.version,
               "music_distance_n": self.n}
        out |= {f"music_distance_{g}": float(v) for g, v in (self.groups or {}).items()}
        for track, values in self.generated["per_track"].items():
            for name, value in values.items():
                if value is not None:  # None: undefined, e.g. the note rate of a silent track
                    out[f"{track}_{name}"] = float(value)
        for pair, value in self.generated["tonal_distance"].items():
            if value is not None:
                out[f"tonal_distance_{pair}"] = float(value)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"music_distance": float(self.music_distance), "music_distance_version": self.version, "n": self.n,
                "music_distance_groups": self.groups, "music_distance_terms": self.terms,
                "generated": self.generated, "holdout": self.holdout}

    def table(self, label: str = "generated") -> str:
        """The per-track table (label: the scored music's column), then what music_distance is made of: its groups
        and its largest feature terms."""
        lines = [metrics.format_table(self.generated, self.holdout, label=label)]
        if self.groups:
            lines.append("music_distance by group: " + ", ".join(f"{g} {v:.2f}" for g, v in self.groups.items()))
        if self.terms:
            top = sorted(self.terms.items(), key=lambda kv: -kv[1])[:10]
            lines.append("largest feature terms (holdout spreads): " + ", ".join(f"{n} {v:.2f}" for n, v in top))
        return "\n".join(lines)


def metric_settings(cfg: Config) -> dict[str, int]:
    return {"steps_per_bar": cfg.data.steps_per_bar, "steps_per_beat": cfg.data.steps_per_beat,
            "qualified_min_steps": cfg.eval.qualified_min_steps}


def summarize_holdout(holdout: np.ndarray, cfg: Config) -> dict[str, Any]:
    """The reference side of every evaluation; a run computes it once."""
    return metrics.summarize(holdout, track_names=cfg.sample.track_names, **metric_settings(cfg))


def evaluate(generate: Callable[[np.ndarray, np.ndarray], np.ndarray], holdout: np.ndarray, cfg: Config,
             z_shape: tuple[int, ...], holdout_summary: dict[str, Any] | None = None,
             holdout_features: np.ndarray | None = None) -> Evaluation:
    """Complete eval.num_samples holdout melodies with fixed noise; compare their metrics with the holdout's.

    Track 0 is the given melody, as in what `chorus generate` writes: the score is of the harmonisation a user gets.
    A run passes holdout_summary and holdout_features (objective.features of the holdout), computed once.
    """
    melody, z = fixed_inputs(holdout, cfg.eval.num_samples, cfg.eval.seed, z_shape)
    generated = RollCodec.with_melody(RollCodec.notes(generate(melody, z), cfg.sample.threshold), melody)
    return score(generated, holdout, cfg, holdout_summary, holdout_features)


def reference_features(holdout: np.ndarray, cfg: Config) -> np.ndarray:
    """objective.features of the holdout: the reference side of music_distance, computed once per holdout."""
    return objective.features(holdout, steps_per_bar=cfg.data.steps_per_bar, steps_per_beat=cfg.data.steps_per_beat)


def score(rolls: np.ndarray, holdout: np.ndarray, cfg: Config, holdout_summary: dict[str, Any] | None = None,
          ref_features: np.ndarray | None = None) -> Evaluation:
    """Bool windows (n, T, P, K), voices top to bottom, against the holdout: their metrics beside the holdout's and
    music_distance (with its groups and terms) at n = len(rolls)."""
    if holdout_summary is None:
        holdout_summary = summarize_holdout(holdout, cfg)
    terms = objective.distance_terms(rolls, holdout, steps_per_bar=cfg.data.steps_per_bar,
                                     steps_per_beat=cfg.data.steps_per_beat, ref_features=ref_features)
    return Evaluation(
        generated=metrics.summarize(rolls, track_names=cfg.sample.track_names, **metric_settings(cfg)),
        holdout=holdout_summary,
        music_distance=objective.aggregate(terms),
        groups=objective.group_distances(terms),
        terms=terms,
        n=len(rolls),
    )
